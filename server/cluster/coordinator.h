// Coordinator: runs one client write or read against a key's replicas.
//
// Write: stamp a new version (HLC), send the record to every live replica of
// the key's preference list (this node's own replica included, through the
// transport), answer after W acknowledgements. Fewer than W live replicas:
// Unavailable before anything is written. Replicas that are down, fail or time
// out get a hint (unless hinted handoff is off); hints never count toward W.
// Once writes were sent, a round that cannot reach W answers Timeout (the
// write may be on some replicas).
//
// Read: ask every live replica, wait for R answers (a replica without the key
// answers too), and take the newest. Replicas among those first R that are
// stale or lack the key are repaired before answering, so a later quorum read
// cannot return an older value (monotonic quorum reads); stale replicas that
// answer after that are repaired in the background.
//
// Writes are ordered across coordinators (PROTOCOL.md §8, clock skew): a
// replica answers a write whose version is not newer than the one it holds
// with Stale and that version. The coordinator then observes it, re-stamps the
// record above it and sends it again to every live replica, and only W acks of
// one stamp count. With W > N/2 the acks of a write that starts after another
// was acknowledged include a replica that holds that other write, so an
// acknowledged write is newer than every write acknowledged before it began,
// whatever the coordinators' clocks say. A round re-stamps at most
// kMaxRestamps times (more means newer concurrent writes keep winning) and
// then answers Timeout.
//
// The map (cluster_map.h): each round takes the current ring once and keeps
// it. During a membership change a write goes to the old and the new replica
// set of its partition and needs W acks in each; reads go to the read set.
// Every request carries the ring's epoch; a replica with another epoch
// answers StaleEpoch, which counts as a failure of that replica (no hint).
// A round that fails after a StaleEpoch catches up (CoordinatorOptions::
// catch_up) and is routed again by the new ring, keeping its stamp and its
// deadline; once writes were sent, a later failure answers Timeout (the
// write may be on some replicas), never Unavailable.
//
// Deadlines: every round arms its own deadline (timeout_ms, through the Timer
// seam) and answers Timeout when it passes, so a replica reply that never
// comes cannot hang the request.
//
// Failures: a round that can no longer reach W (or R) answers Internal if a
// replica failed with Internal (a storage failure such as a full disk, whose
// message it carries), else Timeout.
//
// Off the caller's thread: hints stored after a replica failed and repairs of
// this node's own replica run on the background Executor, never inline on a
// transport callback (which may be the peer client's only I/O thread).
//
// Each round is a small state machine shared by its callbacks; no lock is held
// while calling the transport or a caller's callback. `done` runs exactly
// once, on a transport callback's thread, the timer's, or the caller's.
//
// Thread-safety: Write() and Read() may be called concurrently from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "engine/record.h"
#include "engine/status.h"
#include "engine/version.h"
#include "server/cluster/counters.h"
#include "server/cluster/membership.h"
#include "server/cluster/ring.h"
#include "server/cluster/timer.h"
#include "server/cluster/transport.h"

namespace ringkv::cluster {

class HintedHandoff;

struct CoordinatorOptions {
  // This node's id, stamped into versions. Required.
  std::string node_id;
  // Arms each round's deadline. nullptr: rounds rely on the transport's own
  // timeouts (tests that drive every reply themselves).
  Timer* timer = nullptr;
  // Runs hint writes and local repairs off the callback thread. nullptr: inline.
  Executor* background = nullptr;
  // Brings this node's map and a replica's together after the replica
  // answered StaleEpoch(replica_epoch) (fetch the newer map, or send ours),
  // then runs `then` off the caller's thread. Set: the round is routed again
  // by the current ring (at most kMaxReroutes times, within its deadline),
  // invisibly to the client. Unset (tests): the round answers StaleEpoch.
  std::function<void(uint64_t replica_epoch, std::function<void()> then)> catch_up;
};

// Routes per round after a StaleEpoch before it gives up.
constexpr int kMaxReroutes = 3;

// Re-stamps per write round before it gives up (see the header comment).
constexpr int kMaxRestamps = 8;

class Coordinator {
 public:
  // OK with the stamped version, or the error to answer.
  using WriteDone = std::function<void(Status, Version)>;
  // OK with the newest record (possibly a tombstone or expired), OK with
  // nullopt if no replica has the key, or the error to answer.
  using ReadDone = std::function<void(Status, std::optional<Record>)>;

  // REQUIRES: every pointer outlives the coordinator; `handoff` may be null
  // (hinted handoff off).
  Coordinator(CoordinatorOptions options, const RingSource* rings, const Membership* membership,
              ReplicaTransport* transport, HybridClock* clock, HintedHandoff* handoff,
              Counters* counters);

  // Writes `record` (its version is overwritten with a fresh stamp).
  // REQUIRES: 1 <= w <= N, timeout_ms > 0.
  void Write(const std::string& key, Record record, int w, uint64_t timeout_ms, WriteDone done);

  // REQUIRES: 1 <= r <= N, timeout_ms > 0.
  void Read(const std::string& key, int r, uint64_t timeout_ms, ReadDone done);

 private:
  // Splits `list` into the live replicas, remote ones first and this node
  // last (its write runs inline, so sending to the others first overlaps
  // their work with ours), and the down ones.
  void Replicas(const std::vector<std::string>& list, std::vector<std::string>* live,
                std::vector<std::string>* down) const;

  struct WriteRound;
  struct ReadRound;
  Status RouteWrite(WriteRound* round) const;
  void RerouteWrite(const std::shared_ptr<WriteRound>& round);
  void ReadAttempt(const std::string& key, int r, uint64_t timeout_ms, ReadDone done, int reroutes);
  void SendReads(const std::shared_ptr<ReadRound>& round, const std::vector<std::string>& live,
                 int attempt, Epoch epoch);
  void RerouteRead(const std::shared_ptr<ReadRound>& round);
  // Sends the round's stamp of attempt `attempt` to `nodes` (a copy of the round's live list:
  // a reroute may replace that list while this runs).
  void SendWrites(const std::shared_ptr<WriteRound>& round, int attempt,
                  const std::shared_ptr<const Record>& record,
                  const std::vector<std::string>& nodes, Epoch epoch);
  void OnWriteReply(const std::shared_ptr<WriteRound>& round, int attempt, const std::string& node,
                    Status s);
  void OnReadReply(const std::shared_ptr<ReadRound>& round, int attempt, const std::string& node,
                   Status s, Record record);
  void Repair(const std::string& key, const std::string& node, const Record& newest, Epoch epoch,
              uint64_t timeout_ms, std::function<void()> then);
  void LogRepair(const std::string& key, const std::string& node);
  // Stores a hint for `node` (never for this node itself); a failure is
  // logged and counted, never silently dropped.
  void Hint(const std::string& node, const std::string& key, const Record& record);
  // Runs `fn` on the background executor (inline without one).
  void InBackground(std::function<void()> fn);

  const CoordinatorOptions options_;
  const RingSource* rings_;
  const Membership* membership_;
  ReplicaTransport* transport_;
  HybridClock* clock_;
  HintedHandoff* handoff_;
  Counters* counters_;
  std::atomic<int64_t> last_repair_log_{0};  // steady_clock ticks
  std::atomic<uint64_t> repairs_unlogged_{0};
  std::atomic<int64_t> last_hint_error_log_{0};  // steady_clock ticks
};

}  // namespace ringkv::cluster
