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
// Each round is a small state machine shared by its callbacks; no lock is held
// while calling the transport or a caller's callback.
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
#include "server/cluster/transport.h"

namespace ringkv::cluster {

class HintedHandoff;

struct CoordinatorOptions {
  // This node's id, stamped into versions. Required.
  std::string node_id;
};

class Coordinator {
 public:
  // OK with the stamped version, or the error to answer.
  using WriteDone = std::function<void(Status, Version)>;
  // OK with the newest record (possibly a tombstone or expired), OK with
  // nullopt if no replica has the key, or the error to answer.
  using ReadDone = std::function<void(Status, std::optional<Record>)>;

  // REQUIRES: every pointer outlives the coordinator; `handoff` may be null
  // (hinted handoff off).
  Coordinator(CoordinatorOptions options, const Ring* ring, const Membership* membership,
              ReplicaTransport* transport, HybridClock* clock, HintedHandoff* handoff,
              Counters* counters);

  // Writes `record` (its version is overwritten with a fresh stamp).
  // REQUIRES: 1 <= w <= N, timeout_ms > 0.
  void Write(const std::string& key, Record record, int w, uint64_t timeout_ms, WriteDone done);

  // REQUIRES: 1 <= r <= N, timeout_ms > 0.
  void Read(const std::string& key, int r, uint64_t timeout_ms, ReadDone done);

 private:
  // Splits `key`'s preference list into the live replicas, remote ones first
  // and this node last (its write runs inline, so sending to the others first
  // overlaps their work with ours), and the down ones. Returns N.
  size_t Replicas(const std::string& key, std::vector<std::string>* live,
                  std::vector<std::string>* down) const;

  struct WriteRound;
  struct ReadRound;
  void OnWriteReply(const std::shared_ptr<WriteRound>& round, const std::string& node, Status s);
  void OnReadReply(const std::shared_ptr<ReadRound>& round, const std::string& node, Status s,
                   Record record);
  void Repair(const std::string& key, const std::string& node, const Record& newest,
              uint64_t timeout_ms, std::function<void()> then);
  void LogRepair(const std::string& key, const std::string& node);

  const CoordinatorOptions options_;
  const Ring* ring_;
  const Membership* membership_;
  ReplicaTransport* transport_;
  HybridClock* clock_;
  HintedHandoff* handoff_;
  Counters* counters_;
  std::atomic<int64_t> last_repair_log_{0};  // steady_clock ticks
  std::atomic<uint64_t> repairs_unlogged_{0};
};

}  // namespace ringkv::cluster
