// LocalReplica: this node's own replica of every partition it holds.
//
// The bottom of every path that touches this node's data: the Store, the
// RecordCache in front of it and the WriteBatcher that group-commits writes,
// with the rules a replica keeps whoever asks (the coordinator through the
// router, a peer's _write, hinted handoff, anti-entropy):
//   - a write not newer than the held version is answered Stale (see
//     WriteLocal), so that coordinators re-stamp above it;
//   - a read for a quorum of a partition that is still being rebuilt (after
//     a lost disk) is refused with Unavailable, so that a replica that lost
//     data never counts toward R (the rebuild gate, set by the node);
//   - anti-entropy's scans and bulk writes run on the background executor,
//     never on an I/O or peer thread.
//
// Thread-safety: all methods are safe to call concurrently.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "engine/clock.h"
#include "engine/record_cache.h"
#include "engine/store.h"
#include "server/cluster/aae_replica.h"
#include "server/cluster/ring.h"
#include "server/cluster/router.h"
#include "server/cluster/timer.h"
#include "server/write_batcher.h"

namespace ringkv {

class LocalReplica final : public cluster::LocalReplica, public cluster::AaeReplica {
 public:
  struct Options {
    std::string node_id;
    size_t cache_bytes = 256ULL << 20;
    const Clock* clock = SystemClock::Default();
    // Versions are accepted at most this far ahead of the clock; the
    // applied-version watermark starts there (see WriteLocal).
    uint64_t max_clock_skew_ms = 60000;
  };

  // Opens the store (`store_options`) and builds the cache and batcher.
  // REQUIRES: `background` outlives the replica.
  static Status Open(const Options& options, const StoreOptions& store_options,
                     cluster::Executor* background, std::unique_ptr<LocalReplica>* out);

  // A partition moving in or out (issue #11): drops this replica's copy of
  // it / ingests an SST file into it, and forgets its cached records either
  // way (a partition that moves A -> B -> A must not serve A's old cache).
  Status DropPartition(uint32_t partition);
  Status IngestPartition(uint32_t partition, const std::string& sst_path);

  // Decides which partitions refuse quorum reads (true = still rebuilding).
  // Set once, before requests arrive.
  void SetRebuildGate(std::function<bool(uint32_t partition)> gate) { gate_ = std::move(gate); }

  // cluster::LocalReplica.
  void WriteLocal(const std::string& key, const Record& record,
                  cluster::ReplicaTransport::WriteDone done) override;
  // Unavailable while the key's partition is rebuilding.
  Status ReadLocal(const std::string& key, Record* out) override;
  // ReadLocal() without the rebuild gate: what this replica holds (get
  // with "local": true, the operator's view).
  Status ReadOwn(const std::string& key, Record* out);

  // cluster::AaeReplica, on this node's store.
  const std::string& id() const override { return options_.node_id; }
  void Root(uint32_t partition, RootDone done) override;
  void Branches(uint32_t partition, std::vector<uint32_t> branches, BranchesDone done) override;
  void Keys(uint32_t partition, std::vector<uint32_t> segments, size_t limit,
            KeysDone done) override;
  void Fetch(uint32_t partition, std::vector<std::string> keys, RecordsDone done) override;
  void Scan(uint32_t partition, std::string after_key, size_t limit_keys, size_t limit_bytes,
            ScanDone done) override;
  void Put(uint32_t partition, cluster::AaeRecords records, Done done) override;
  void RaiseWatermark(uint32_t partition, uint64_t watermark_hlc, Done done) override;

  // The same AAE reads, blocking, for the peer handlers (which run them on
  // the background executor themselves).
  Status TreeNow(uint32_t partition, aae::Tree* out);
  Status FetchNow(uint32_t partition, const std::vector<std::string>& keys,
                  cluster::AaeRecords* out);
  // Merges `records` into the store as one write (LWW; the cache follows).
  Status PutNow(uint32_t partition, const cluster::AaeRecords& records);

  Store* store() { return store_.get(); }
  RecordCache* cache() { return &cache_; }
  WriteBatcher* batcher() { return batcher_.get(); }
  // Writes that were not above the applied watermark and so paid a lookup of
  // the version held (stats `write_version_checks`).
  uint64_t version_checks() const { return version_checks_.load(std::memory_order_relaxed); }

 private:
  LocalReplica(const Options& options, uint32_t partitions, cluster::Executor* background);
  uint32_t PartitionOf(std::string_view key) const {
    return static_cast<uint32_t>(cluster::KeyHash(key) & partition_mask_);
  }
  void ForgetCached(uint32_t partition);
  void RaiseApplied(uint64_t hlc);
  // Raises the watermark, here and in the store, to the highest version any
  // record can carry: max_clock_skew_ms ahead of this clock.
  Status RaiseToClockCeiling();

  const Options options_;
  const uint64_t partition_mask_;
  cluster::Executor* const background_;
  RecordCache cache_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<WriteBatcher> batcher_;
  std::function<bool(uint32_t)> gate_;
  // At least the version of every record this replica holds (see WriteLocal).
  // Starts at the store's persisted watermark (Store::RecordHlcWatermark).
  // Where the store has none (a data dir from before it was kept) and after
  // an import, it is raised to the highest version any record can carry: one
  // accepted at most max_clock_skew_ms ahead of this clock.
  std::atomic<uint64_t> applied_hlc_{0};
  std::atomic<uint64_t> version_checks_{0};
};

}  // namespace ringkv
