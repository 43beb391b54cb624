// HintedHandoff: keeps writes for replicas that missed them and delivers them
// when those replicas are back.
//
// A hint is stored durably in the coordinator's `hints` column family, one per
// (target, key), holding the newest record (engine/store.h). Tick(), called
// periodically by the network layer, starts a delivery batch for each target
// that is up, has hints and has no batch in flight; a batch that fully
// succeeds is followed at once by the next, so one batch in flight per target
// is the throttle that keeps delivery from starving client traffic. A hint is
// deleted only once its target acknowledged it, and only if no newer hint for
// the same key arrived meanwhile. Hints older than max_age_ms (by their
// version's time) are dropped undelivered and counted.
//
// Threads: every store access of delivery (listing, deleting) runs on the
// background Executor, never on the thread of a transport callback (the peer
// client's only I/O thread) or of Tick() (the failure detector's).
//
// A target that answers Stale already holds the hinted version or a newer
// one: the hint is done and deleted like a delivered one.
//
// pending() is an estimate: it counts hints added and not yet delivered, and
// is reset to the exact value 0 whenever a target's hints are found exhausted.
//
// Thread-safety: all methods are safe to call concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "engine/clock.h"
#include "engine/store.h"
#include "server/cluster/counters.h"
#include "server/cluster/membership.h"
#include "server/cluster/ring.h"
#include "server/cluster/timer.h"
#include "server/cluster/transport.h"

namespace ringkv::cluster {

struct HandoffOptions {
  // Hints per delivery batch. Default: 64.
  size_t batch = 64;
  // Hints whose version is older than this are dropped. Default: 3 hours.
  uint64_t max_age_ms = 3ULL * 3600 * 1000;
  // How long a target has to acknowledge one hint. Default: 2000.
  uint64_t timeout_ms = 2000;
  // Runs delivery's store work. nullptr: inline (tests).
  Executor* background = nullptr;
};

class HintedHandoff {
 public:
  // REQUIRES: every pointer outlives this object.
  // `rings`: a hint whose target no longer holds its partition at the
  // current ring follows the partition to its replicas (hints_retargeted).
  HintedHandoff(HandoffOptions options, Store* store, ReplicaTransport* transport,
                const Membership* membership, const RingSource* rings, const Clock* clock,
                Counters* counters);

  // Counts the hints already on disk (after a restart). Call once before use.
  Status Init();

  // Stores a hint for `target`. Durable when it returns OK.
  Status AddHint(const std::string& target, const std::string& key, const Record& record);

  // Starts delivery to every target that is up and idle.
  void Tick();

  uint64_t pending() const;
  std::map<std::string, uint64_t> pending_per_target() const;

 private:
  void DeliverBatch(const std::string& target);
  // True if `hint`'s target no longer holds its partition: the hint is then
  // given to the partition's replicas (and kept if that fails), and `then`
  // runs when that is done.
  bool Retarget(const Hint& hint, std::function<void()> then);
  void InBackground(std::function<void()> fn);
  void FinishBatch(const std::string& target, bool ok, const std::string& next_cursor,
                   bool end_of_pass);
  // Deletes a hint that needs no more delivery; counts it in `counter`.
  void Remove(const Hint& hint, std::atomic<uint64_t>* counter);

  const HandoffOptions options_;
  Store* store_;
  ReplicaTransport* transport_;
  const Membership* membership_;
  const RingSource* rings_;
  const Clock* clock_;
  Counters* counters_;

  // mu_ protects the following.
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> pending_;
  std::map<std::string, bool> in_flight_;
  std::map<std::string, uint64_t> added_;  // hints ever added per target
  // One walk over a target's hints, batch by batch.
  struct Pass {
    std::string cursor;               // last key delivered; "" = start a new pass
    uint64_t added_at_start = 0;      // added_[target] when the pass began
    uint64_t delivered_at_start = 0;  // counters_->hints_delivered then (all targets)
    bool all_ok = true;               // no delivery failed in this pass
  };
  std::map<std::string, Pass> passes_;
};

}  // namespace ringkv::cluster
