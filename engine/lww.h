// Last-writer-wins inside RocksDB: the merge operator that resolves a key to the
// record with the greatest version, and the compaction filter that purges
// tombstones and expired records after the grace period.
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

#include <memory>

#include "engine/clock.h"

namespace ringkv {

// The LWW merge operator. Thread-safe and stateless.
std::shared_ptr<rocksdb::MergeOperator> NewLwwMergeOperator();

// A factory for compaction filters that remove a record when
//   it is a tombstone whose version is older than now - grace_ms, or
//   it has expired before now - grace_ms.
// REQUIRES: clock outlives the factory.
std::shared_ptr<rocksdb::CompactionFilterFactory> NewPurgeFilterFactory(const Clock* clock,
                                                                        uint64_t grace_ms);

// True if the encoded record may be purged at `now_ms` (exposed for tests).
bool IsPurgeable(std::string_view encoded, uint64_t now_ms, uint64_t grace_ms);

}  // namespace ringkv
