// Last-writer-wins inside RocksDB: the merge operator that resolves a key to the
// record with the greatest version, and the compaction filter that purges
// the records the partition's GC watermark allows (aae::IsGcEligible).
//
// Why a merge operator: a replica write then needs no read of the old record
// (one Merge call), and concurrent writes to one key resolve in the store
// itself, in any order of arrival.
//
// Why the filter only touches full values: RocksDB turns a removed full value
// into a deletion marker, which still hides older values below it, whereas a
// removed merge operand would uncover them. Merged results reach the filter as
// full values on a later compaction.
#pragma once

#include <rocksdb/compaction_filter.h>
#include <rocksdb/merge_operator.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

namespace ringkv {

// The LWW merge operator. Thread-safe and stateless.
std::shared_ptr<rocksdb::MergeOperator> NewLwwMergeOperator();

// A factory for one partition's compaction filters: each compaction reads
// *watermark_hlc (the partition's GC watermark) once when it starts, and its
// filter removes exactly the full values IsPurgeable() under it; nothing else
// is ever purged, so purges never make anti-entropy trees differ.
// REQUIRES: watermark_hlc outlives the factory.
std::shared_ptr<rocksdb::CompactionFilterFactory> NewPurgeFilterFactory(
    const std::atomic<uint64_t>* watermark_hlc);

// True if the encoded record is aae::IsGcEligible() under `watermark_hlc`.
// A record that does not decode is never purgeable (exposed for tests).
bool IsPurgeable(std::string_view encoded, uint64_t watermark_hlc);

}  // namespace ringkv
