// One anti-entropy exchange of one partition between two replicas, and the
// bulk pull that rebuilds a replica that lost its data. Pure logic: no asio,
// no threads; time only through cluster::Timer, replicas through AaeReplica.
//
// Exchange (TictacAAE's, research D4):
//   1. Root of both sides. Different GC watermarks: the lower side raises
//      its own to the higher (any watermark was set after every replica
//      confirmed), and the exchange ends kWatermarkRaised.
//   2. Level-1 hashes compared; after `pause_ms` compared again; only
//      branches that differ both times go on (in-flight writes settle).
//   3. The same for those branches' segments: differing twice.
//   4. Up to `max_segments` differing segments (the lowest ids: close
//      together) are listed by both sides (keys and versions, no values).
//   5. For each key whose versions differ, the newest record is fetched from
//      the side that has it and put to the side that is behind. Keys listed
//      whose versions turn out equal are counted as false deltas.
// Budget: repairs take tokens (keys and bytes) from the shared RepairBudget;
// when it is empty the exchange waits (on the timer) before the next batch.
//
// Pull (rebuild): pages of `source`'s records (Scan) are put into `target`
// until the scan reaches the end; budgeted the same way.
//
// Both sides are asked the same question at once and the next stage starts
// only after both answered (the first failure, prefixed with the replica's
// id, is the result's status). A truncated listing makes the result
// incomplete; a key it left out may then look missing on that side and be
// pushed there anyway, which the last-writer-wins write makes harmless.
// Budget tokens are taken per batch after the fetch (when the value bytes
// are known), before the put. The exchange has no deadline of its own: the
// replicas' transport times out.
//
// Thread-safety: an exchange runs on whatever threads the replicas and the
// timer call back on; it keeps its own state alive until `done` is called,
// exactly once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "server/cluster/aae_replica.h"
#include "server/cluster/timer.h"

namespace ringkv::cluster {

struct ExchangeOptions {
  // Pause between a compare and its confirmation. Default: 500 ms.
  uint64_t pause_ms = 500;
  // Differing segments listed per exchange. Listing costs one scan of the
  // partition however many segments it names (engine/aae_tree.h), so the
  // bound that matters is max_keys; a node that missed many writes then
  // catches up in one exchange per partition. Default: 4096 (all).
  size_t max_segments = 4096;
  // Keys listed per side per exchange. Default: 20000.
  size_t max_keys = 20000;
  // Records fetched and put per batch. Default: 256.
  size_t batch_keys = 256;
  // Pull: records per page and value bytes per page. Defaults: 1000, 1 MiB.
  size_t page_keys = 1000;
  size_t page_bytes = 1 << 20;
};

// Token buckets shared by every exchange of a node: repairs per second in
// keys and in bytes of values. 0 = unlimited. Thread-safe.
class RepairBudget {
 public:
  RepairBudget(uint64_t keys_per_s, uint64_t bytes_per_s);
  // Takes `keys` and `bytes` at `now_ms` if available and returns 0;
  // otherwise takes nothing and returns how many ms to wait before trying
  // again. A request larger than a second's worth is granted once the
  // bucket is full (so it never waits forever).
  uint64_t TryTake(uint64_t now_ms, uint64_t keys, uint64_t bytes);

 private:
  std::mutex mu_;
  const uint64_t keys_per_s_, bytes_per_s_;
  double keys_ = 0, bytes_ = 0;
  uint64_t last_ms_ = 0;
  bool started_ = false;
};

struct ExchangeResult {
  enum class Outcome {
    kInSync,           // trees equal (or every difference vanished on confirm)
    kRepaired,         // differences found and repaired
    kWatermarkRaised,  // watermarks differed; the lower one was raised
    kFailed,           // a replica failed or timed out (status says why)
  };
  Outcome outcome = Outcome::kFailed;
  Status status;
  uint32_t segments_differing = 0;  // after confirmation
  uint64_t keys_listed = 0;         // both sides together
  uint64_t keys_pushed = 0;         // local newer: put to remote
  uint64_t keys_pulled = 0;         // remote newer: put to local
  // Listed in a differing segment with equal versions on both sides (the
  // segment's other keys: about keys-per-segment for each differing one).
  uint64_t false_deltas = 0;
  uint64_t bytes_repaired = 0;
  // The oldest version (HLC) among the keys that differed, taking for each
  // key its newest version (the one replicas must agree on); UINT64_MAX when
  // none did. A watermark round confirms a peer only when this is not below
  // the round's start.
  uint64_t oldest_difference_hlc = UINT64_MAX;
  // True when some differing segments were left for a later exchange
  // (more than max_segments, or a listing truncated at max_keys).
  bool incomplete = false;
};

const char* OutcomeName(ExchangeResult::Outcome outcome);

using ExchangeDone = std::function<void(ExchangeResult)>;
// Returns the current time in ms (the budget's clock).
using NowFn = std::function<uint64_t()>;

// Runs one exchange of `partition` between `local` and `remote`. Returns the
// running exchange: hold it until `done` has been called (the timer holds a
// pausing exchange only weakly, and the exchange does not hold itself).
// Dropping it sooner abandons the exchange: it is freed at its next pause or
// once its replica calls have answered, and `done` is never called.
// REQUIRES: local, remote, timer and budget outlive the exchange.
[[nodiscard]] std::shared_ptr<void> RunExchange(AaeReplica* local, AaeReplica* remote,
                                                uint32_t partition, const ExchangeOptions& options,
                                                Timer* timer, RepairBudget* budget, NowFn now,
                                                ExchangeDone done);

struct PullResult {
  Status status;
  uint64_t records = 0;
  uint64_t bytes = 0;
};

// Copies every record of `partition` from `source` into `target`. Returns
// the running pull, to hold as RunExchange()'s.
[[nodiscard]] std::shared_ptr<void> RunPull(AaeReplica* source, AaeReplica* target,
                                            uint32_t partition, const ExchangeOptions& options,
                                            Timer* timer, RepairBudget* budget, NowFn now,
                                            std::function<void(PullResult)> done);

}  // namespace ringkv::cluster
