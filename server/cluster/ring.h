// Ring: where keys live, at one epoch of the cluster map (cluster_map.h).
// No I/O, identical on every node that installed the same map.
//
// The key space is cut into Q fixed partitions (Q a power of two); a key's
// partition is the low bits of the xxHash64 of its bytes (seed 0), which is the
// same on every machine and build. Each partition's preference list (its read
// set, owner first) comes from the map's assignment; during a change, writes
// go to the old and the new list (WriteSets). Make() builds epoch 1's
// round-robin rule: partitions dealt to the members sorted by id, each list
// the owner followed by the next N-1 members in that order.
//
// Thread-safety: immutable after construction; safe to share. RingHolder
// swaps the current one atomically.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "server/cluster/cluster_map.h"

namespace ringkv::cluster {

// The stable 64-bit hash of a key's bytes.
uint64_t KeyHash(std::string_view key);

class Ring {
 public:
  // BadRequest if members is empty or has duplicates, partitions is not a
  // power of two, or replicas is not in 1..members.
  static Status Make(std::vector<std::string> member_ids, uint32_t partitions, int replicas,
                     Ring* out);
  // The ring of `map` (which ValidateMap accepts).
  static Ring FromMap(const ClusterMap& map);

  uint32_t PartitionOf(std::string_view key) const {
    return static_cast<uint32_t>(KeyHash(key) & (partitions_ - 1));
  }
  // The N distinct node ids that replicate `partition`, owner first.
  // REQUIRES: partition < partitions().
  const std::vector<std::string>& PreferenceList(uint32_t partition) const {
    return preference_[partition];
  }
  // Where writes of `partition` go: W acks are needed in `old_set`, and in
  // `new_set` when a change is in progress (empty otherwise).
  const std::vector<std::string>& WriteSet(uint32_t partition) const {
    return write_old_[partition];
  }
  const std::vector<std::string>& NewWriteSet(uint32_t partition) const {
    return write_new_[partition];
  }
  // True if `node` must hold `partition` at this epoch (in a write set).
  bool Replicates(std::string_view node, uint32_t partition) const;
  // True if `node` answers reads of `partition` at this epoch.
  bool Reads(std::string_view node, uint32_t partition) const;

  // The map epoch this ring is of; 0 for a ring built by Make() (tests,
  // which fence nothing).
  uint64_t epoch() const { return epoch_; }

  uint32_t partitions() const { return partitions_; }
  int replicas() const { return replicas_; }
  const std::vector<std::string>& members() const { return members_; }

 private:
  std::vector<std::string> members_;  // sorted
  uint32_t partitions_ = 0;
  int replicas_ = 0;
  uint64_t epoch_ = 0;
  std::vector<std::vector<std::string>> preference_;
  std::vector<std::vector<std::string>> write_old_, write_new_;
};

// Where the current ring is taken from (the coordinator, the local replica).
// The pointer is for synchronous use: a caller must not keep it past the
// call it took it in (a coordinator round copies the replica lists it needs).
class RingSource {
 public:
  virtual ~RingSource() = default;
  virtual const Ring* Current() const = 0;
};

// The current ring, replaced whole when a new map is installed. Current() is
// one acquire load: an atomic<shared_ptr> costs 250 ns a request with two
// I/O threads on it (a lock and a shared count, bench/micro_bench
// BM_RingCurrent). A replaced ring is kept until kKeptRings newer ones were
// installed, far longer than any synchronous use lasts (maps change at most
// a few times a second; a use takes microseconds).
class RingHolder final : public RingSource {
 public:
  static constexpr size_t kKeptRings = 64;

  explicit RingHolder(Ring ring) { Set(std::move(ring)); }
  const Ring* Current() const override { return current_.load(std::memory_order_acquire); }
  void Set(Ring ring) {
    std::lock_guard<std::mutex> l(mu_);
    kept_.push_back(std::make_unique<const Ring>(std::move(ring)));
    current_.store(kept_.back().get(), std::memory_order_release);
    if (kept_.size() > kKeptRings) kept_.pop_front();
  }

 private:
  std::atomic<const Ring*> current_{nullptr};
  std::mutex mu_;
  std::deque<std::unique_ptr<const Ring>> kept_;  // by mu_; the newest last
};

}  // namespace ringkv::cluster
