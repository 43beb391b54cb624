// Anti-entropy hash trees (TictacAAE-style), one per partition replica.
//
// A tree summarises what a replica holds for one partition as kSegments
// 64-bit segment hashes. A key's segment comes from the top bits of its ring
// hash (the partition takes the low bits, so the two are independent), and a
// segment's hash is the XOR of EntryHash(key, version, flags, expiry) over the
// keys in it: versions, never values. XOR makes the tree order-free and lets
// trees of disjoint sets merge.
//
// Levels: kBranches level-1 hashes (the "root" an exchange compares first;
// each the XOR of its kSegmentsPerBranch segments), then the segments.
//
// What a tree covers: every record of the partition except those that the
// GC watermark allows compaction to purge (IsGcEligible()), so that purges
// never make two replicas' trees differ.
//
// How it is kept current (measured in docs/benchmarks.md, "anti-entropy"):
// a write only marks its segment dirty (one atomic OR, no read on the write
// path); a reader of the tree first settles it: when any segment is dirty,
// one scan of the partition recomputes the dirty segments. The scan is the
// only cost and is paid when a tree is read (an exchange), not per write.
//
// Thread-safety: Tree is a plain value. DirtySet is safe to Mark() from any
// thread concurrently with TakeAll().
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/record.h"
#include "engine/status.h"

namespace ringkv::aae {

constexpr uint32_t kSegmentBits = 12;
constexpr uint32_t kSegments = 1u << kSegmentBits;  // 4096
constexpr uint32_t kBranches = 64;
constexpr uint32_t kSegmentsPerBranch = kSegments / kBranches;  // 64

// The segment of a key whose ring hash (cluster::KeyHash, xxh64 seed 0) is
// `key_hash`: its top kSegmentBits bits.
inline uint32_t SegmentOf(uint64_t key_hash) {
  return static_cast<uint32_t>(key_hash >> (64 - kSegmentBits));
}
// SegmentOf(xxh64(key)).
uint32_t SegmentOfKey(std::string_view key);
inline uint32_t BranchOf(uint32_t segment) { return segment / kSegmentsPerBranch; }

// The hash one record contributes to its segment: xxh64 of the key, the
// version (HLC and node id), the tombstone flag and the expiry. Never 0 in
// practice; equal records on two replicas give equal hashes.
uint64_t EntryHash(std::string_view key, const Record& meta);

// True when compaction may purge `meta` under the partition's GC watermark
// `watermark_hlc`: a tombstone stamped below it, or a record that expired
// before its physical time. 0 = nothing is eligible.
bool IsGcEligible(const Record& meta, uint64_t watermark_hlc);

class Tree {
 public:
  Tree() { Clear(); }

  void Clear();
  // XORs `hash` into `segment` (and its branch): adding or removing one
  // entry is the same operation.
  void Toggle(uint32_t segment, uint64_t hash);
  // Replaces a segment's hash, keeping its branch consistent.
  void SetSegment(uint32_t segment, uint64_t hash);

  uint64_t segment(uint32_t s) const { return segments_[s]; }
  uint64_t branch(uint32_t b) const { return branches_[b]; }
  const std::array<uint64_t, kBranches>& branches() const { return branches_; }
  // The kSegmentsPerBranch segment hashes of branch `b`.
  std::array<uint64_t, kSegmentsPerBranch> BranchSegments(uint32_t b) const;
  // XOR of all branches: one number for "is anything different".
  uint64_t Root() const;

  // Fixed-size little-endian encoding of the segments (for persistence);
  // Decode() rebuilds the branches. Decode fails (Internal) on a wrong size.
  std::string Encode() const;
  Status Decode(std::string_view data);

  bool operator==(const Tree& o) const { return segments_ == o.segments_; }

 private:
  std::array<uint64_t, kSegments> segments_;
  std::array<uint64_t, kBranches> branches_;
};

// Which segments of one partition need recomputing. Mark() is the write
// path's whole cost.
class DirtySet {
 public:
  DirtySet() { MarkAll(); }
  void Mark(uint32_t segment) {
    words_[segment / 64].fetch_or(1ULL << (segment % 64), std::memory_order_release);
  }
  void MarkAll();
  bool Any() const;
  size_t Count() const;
  // Clears and returns the marked segments (as a bitmap of kSegments bits).
  std::array<uint64_t, kSegments / 64> TakeAll();
  // Sets the bits of `bitmap` (a TakeAll() result to put back).
  void MarkBitmap(const std::array<uint64_t, kSegments / 64>& bitmap);

 private:
  std::array<std::atomic<uint64_t>, kSegments / 64> words_;
};

// One key as an exchange lists it: the version and flags, no value.
struct KeyVersion {
  std::string key;
  Record meta;  // meta.value is empty
  bool operator==(const KeyVersion&) const = default;
};

}  // namespace ringkv::aae
