// AntiEntropy: when this node exchanges which partition with which peer, the
// rebuild of a lost disk, and the tombstone GC watermark rounds
// (PROTOCOL.md §9; docs/architecture.md, "Anti-entropy").
//
// Scheduling: every `interval_ms` (jittered ±10 %) the node starts at most one
// job, unless one is still running or busy() says the node is loaded (the
// tick is then counted as skipped). A job is, in order of preference:
//   - rebuild: a partition this node must get back from a peer (see
//     BeginRebuild): a Pull of the peer's records, then an Exchange; when it
//     succeeds the peer is struck off the partition's pending set. While any
//     rebuild is pending, jobs run back to back instead of once a tick.
//   - the same pair again, at once, when its exchange left differences for
//     later (incomplete). After an exchange that repaired something (or left
//     some for later) the next job starts at once too: a diverged node
//     converges at the speed of the pauses and the repair budget, not of
//     the tick; an in-sync node runs one exchange a tick.
//   - catch-up: once an exchange with a peer repairs something, every other
//     partition this node shares with that peer is queued and exchanged back
//     to back (a peer behind in one partition was most likely away for all
//     of them), in sync or not, until the queue is empty.
//   - exchange: the next (partition, peer) of a shuffled cycle over every
//     partition this node replicates and every other replica of it that is
//     up.
// The cycle is rebuilt (and reshuffled) once exhausted; a pair whose peer is
// down when its turn comes is passed over until the next cycle and is not
// counted as an exchange. The shuffle and the jitter come from one
// std::mt19937_64 seeded with options.seed. A rebuild job that fails is
// retried at the next tick, not back to back (a failing peer is not
// hammered).
//
// Rebuild state (AaeStateStore): "aae_rebuild/<p>" holds the peers partition
// p still waits for, comma-separated ("" once done), and "aae_rebuild" the
// number of partitions the rebuild began with ("" when none is under way).
// BeginRebuild writes the partitions first and the flag last (the flag is
// the commit point); Start() loads them. A pull that succeeded is not redone
// when only the exchange after it failed (remembered in memory only). A
// rebuild's exchange that only raised the watermark (a wiped replica's is
// behind) runs once more before the peer is struck off; a peer is struck off
// after an exchange that compared the trees (in_sync or repaired).
//
// Watermark rounds (research D5): the first replica of a partition's
// preference list leads. A round starts at T0 = hlc.Now(); a peer is
// confirmed by an exchange that started after T0 and found no difference
// older than T0 (and left nothing for later). When every other replica is
// confirmed, the leader raises the watermark on every replica to
//   min(T0, MakeHlc(now - floor_ms, 0))
// where floor_ms is at least the tombstone grace, the hint window and the
// clock skew bound together, and starts the next round. A replica that is
// down, or still rebuilding, cannot be confirmed, so the watermark waits for
// it however long it takes. A confirmation is dropped when its peer is seen
// down at a tick, and a round never raises while a replica is down; a raise
// that fails on some replica keeps the confirmations and is retried after
// the partition's next exchange (replicas left with unequal watermarks are
// evened by their next exchange). A partition with no other replica (N = 1), or
// every partition when exchanges are off (--no-anti-entropy), is raised to
// now - floor_ms on every tick without confirmation (the grace period alone,
// as before anti-entropy).
//
// Status: a partition is in sync when the latest exchange with every other
// replica was in_sync (a partition with no other replica always is).
//
// Stopping: Stop() waits for calls under way into what the owner supplied
// (replicas, callbacks, state store) and lets no new one start; a job still
// in flight ends at its next replica call (refused with Unavailable) and its
// result is dropped, so the owner may destroy the replicas once Stop()
// returns. The timer must still outlive every job: a job waiting on it (a
// pause) ends when it fires. REQUIRES: Stop() is not called from inside a
// replica's, the timer's or a callback's call into this object.
//
// Thread-safety: all public methods are safe to call concurrently. Jobs run
// on the replicas' and the timer's threads; none is called with a lock held.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/version.h"
#include "server/cluster/aae_exchange.h"
#include "server/cluster/aae_replica.h"
#include "server/cluster/timer.h"

namespace ringkv::cluster {

struct AntiEntropyOptions {
  std::string self;
  // How often a job starts. Default: 10000.
  uint64_t interval_ms = 10000;
  // false (--no-anti-entropy): no exchanges, no rebuilds; watermarks follow
  // the grace period alone.
  bool exchanges = true;
  // Minimum age of a watermark: tombstone grace + hint window + clock skew.
  uint64_t floor_ms = 10ULL * 24 * 3600 * 1000;
  // Repair budget: keys and value bytes per second (0 = unlimited).
  uint64_t repair_keys_per_s = 20000;
  uint64_t repair_bytes_per_s = 32ULL << 20;
  ExchangeOptions exchange;
  // Seed of the cycle's shuffle and the jitter (tests fix it).
  uint64_t seed = 0;
};

// Persistence of the rebuild state (the node's meta values in kvd).
class AaeStateStore {
 public:
  virtual ~AaeStateStore() = default;
  virtual Status Get(const std::string& name, std::string* value) = 0;  // NotFound if absent
  virtual Status Put(const std::string& name, const std::string& value) = 0;
};

// What `aae` and stats show.
struct AaePeerStatus {
  uint64_t last_ms = 0;  // when the last exchange with this peer ended (0 = never)
  ExchangeResult::Outcome outcome = ExchangeResult::Outcome::kFailed;
  std::string error;           // the status message when it failed
  uint64_t keys_repaired = 0;  // by that exchange
  uint64_t segments_differing = 0;
  uint64_t total_repaired = 0;  // by every exchange with this peer
};
struct AaePartitionStatus {
  uint32_t partition = 0;
  std::vector<std::string> replicas;
  uint64_t watermark = 0;  // the highest this node's rounds raised it to (0 = none yet)
  bool leader = false;
  bool in_sync = false;          // the last exchange with every other replica was in sync
  uint64_t last_in_sync_ms = 0;  // when that last held (0 = never)
  std::vector<std::string> rebuild_pending;  // peers still to pull from
  std::map<std::string, AaePeerStatus> peers;
};
struct AaeStatus {
  bool enabled = true;
  uint64_t exchanges = 0;                                // finished, any outcome
  std::map<std::string, uint64_t> exchanges_by_outcome;  // in_sync, repaired, ...
  uint64_t ticks_skipped = 0;
  uint64_t keys_repaired = 0;
  uint64_t false_deltas = 0;
  uint64_t segments_differing = 0;  // sum over exchanges
  uint64_t watermark_raises = 0;
  uint32_t partitions_in_sync = 0;
  uint32_t partitions_total = 0;  // partitions this node replicates
  // Rebuild progress.
  bool rebuilding = false;
  uint32_t rebuild_partitions_pending = 0;
  uint32_t rebuild_partitions_total = 0;
  uint64_t rebuild_records = 0;
  uint64_t rebuild_bytes = 0;
  std::vector<AaePartitionStatus> partitions;
};

class AntiEntropy {
 public:
  // Per partition: its replicas, owner first.
  using PreferenceFn = std::function<std::vector<std::string>(uint32_t partition)>;
  using IsUpFn = std::function<bool(const std::string& node)>;
  // The replica of `node` (this node's own for options.self); null if none.
  using ReplicaFn = std::function<AaeReplica*(const std::string& node)>;
  using BusyFn = std::function<bool()>;

  // REQUIRES: every pointer outlives the object; Stop() before destroying
  // what the callbacks use.
  AntiEntropy(AntiEntropyOptions options, uint32_t partitions, PreferenceFn preference,
              IsUpFn is_up, ReplicaFn replica, Timer* timer, NowFn now, HybridClock* hlc,
              AaeStateStore* state, BusyFn busy);
  ~AntiEntropy();

  // Loads the persisted rebuild state and starts ticking.
  Status Start();
  // No job starts after this; a running one finishes (its result dropped).
  void Stop();

  // This node lost its data (an empty data dir under an id its peers knew):
  // every partition it replicates is pending a pull from each other replica.
  // Persisted; idempotent while a rebuild is under way (a call after one
  // finished starts a new one). With exchanges off it does nothing (nothing
  // would ever pull, and the replica would stay out of read quorums).
  Status BeginRebuild();
  // True while `partition` still waits for a pull from some replica: this
  // replica's reads of it must not count toward a read quorum.
  bool IsRebuilding(uint32_t partition) const;

  // Runs one tick now (tests, and `aae` with "now"): starts a job if none is
  // running, even when busy() says the node is loaded. Returns false if one
  // was running.
  bool TickNow();

  AaeStatus Snapshot() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ringkv::cluster
