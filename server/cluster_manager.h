// ClusterManager: this node's cluster map and its changes (issue #11,
// PROTOCOL.md §10; the map's phases are in server/cluster/cluster_map.h).
//
// It keeps the installed map (persisted in the meta family as
// "cluster_map"), spreads it (a higher epoch seen in a hello is fetched, a
// lower one pushed), runs the claimant's side of staged changes (stage,
// plan, commit with a compare-and-set on the epoch, advancing a change's
// phases), copies the partitions that move to this node and serves the ones
// that move away.
//
// A move is copied as files: the source writes a snapshot of the partition
// as one SST of Merge entries (Store::ExportPartition), the target reads it in
// chunks (`--transfer-mb-per-s`), checks its xxh64 and ingests it. Writes
// arriving meanwhile go to both replica sets, and the LWW merge makes the
// order of file and writes irrelevant. A source that is down is replaced by
// every live replica of the partition (their union holds every acknowledged
// write). Progress lives in memory: a node killed in the middle copies again
// from the start after its restart, which the merge makes harmless.
//
// Threads: one of its own runs the periodic work (fetching maps for a
// joining node, the claimant's phase changes, starting copies and reporting
// them); each copy runs on a thread of its own, at most `transfer_limit` at
// once. Everything else is called from request threads and only takes mu_.
//
// Thread-safety: all public methods are safe to call concurrently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/clock.h"
#include "engine/store.h"
#include "server/cluster/cluster_map.h"
#include "server/protocol.h"
#include "server/protocol_membership.h"

namespace ringkv {

struct ClusterManagerOptions {
  std::string node_id;
  std::string data_dir;
  // Seeds of a node started with --join (HOST:PORT each); empty otherwise.
  std::vector<std::string> seeds;
  // Copy throttle per node, bytes a second. Default: 64 MiB/s.
  uint64_t transfer_bytes_per_s = 64ULL << 20;
  // Copies running at once on this node. Default: 2.
  int transfer_limit = 2;
  uint64_t timeout_ms = 2000;
  // How often the periodic work runs. Default: 200 ms.
  uint64_t tick_ms = 200;
  const Clock* clock = SystemClock::Default();
};

struct ClusterManagerCounters {
  std::atomic<uint64_t> moves_started{0}, moves_done{0}, move_failures{0};
  std::atomic<uint64_t> bytes_in{0}, bytes_out{0};
  std::atomic<uint64_t> maps_installed{0};
  std::atomic<uint64_t> split_brain{0};  // equal epochs, different maps
};

class ClusterManager {
 public:
  using SendDone = std::function<void(Status, std::string_view line)>;
  // Sends a request line to a node (an id of the map, or "@seedN" for the
  // N-th --join seed) and hands back its response line.
  using SendFn =
      std::function<void(const std::string& node, std::string line, uint64_t timeout_ms, SendDone)>;
  struct Hooks {
    // A new map is being installed (`previous` null for the first); runs
    // before the map becomes current. Fast work only.
    std::function<void(const cluster::ClusterMap& map, const cluster::ClusterMap* previous)>
        install;
    std::function<bool(const std::string& node)> is_up;
    // Imports a copied file into a partition / drops a partition, with the
    // record cache kept coherent (LocalReplica).
    std::function<Status(uint32_t partition, const std::string& path)> ingest;
    std::function<Status(uint32_t partition)> drop;
  };

  ClusterManager(ClusterManagerOptions options, Store* store, Hooks hooks);
  ~ClusterManager();

  // Loads the stored map; without one, installs `initial` (epoch 1 from
  // --cluster), or waits to be added when `initial` is null (--join).
  // A stored map is authoritative: an `initial` that differs is logged.
  Status Open(const cluster::ClusterMap* initial);
  void SetSend(SendFn send) { send_ = std::move(send); }
  void Start();
  void Stop();

  // The installed map; null while a --join node waits for its first map.
  std::shared_ptr<const cluster::ClusterMap> map() const;
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
  // This node is in the map and has not left.
  bool member() const;

  // Installs `map` if it is of this cluster and newer than the current one.
  // Equal epochs with another map: logged loudly, counted, refused.
  Status Offer(const cluster::ClusterMap& map, const std::string& from);
  // A peer's epoch, from a hello either way: a higher one is fetched from
  // it, a lower one is sent the map.
  void OnPeerEpoch(const std::string& peer, uint64_t epoch);
  // After a replica answered StaleEpoch(replica_epoch): catch up (fetch) or
  // help it catch up (push to every member); `then` runs when done.
  void Sync(uint64_t replica_epoch, std::function<void()> then);

  // The `membership` op (PROTOCOL.md §10), from a client or forwarded by a
  // member to this claimant. Answers through `done` with a response line.
  void Membership(const Request& req, std::function<void(std::string)> done);
  // A target's progress or readiness (claimant).
  void OnMoveReport(const Request& req);

  // The source side of a copy (blocking: call off the I/O threads).
  Status OpenTransfer(uint32_t partition, uint64_t epoch, XferFile* out);
  Status ReadTransfer(const std::string& file, uint64_t offset, uint64_t length, std::string* data,
                      bool* eof);
  Status CloseTransfer(const std::string& file);

  const ClusterManagerCounters& counters() const { return counters_; }
  // Moves of the current change with their progress as this node knows it.
  std::vector<TransferView> Transfers();

 private:
  struct Progress {
    uint64_t done = 0, total = 0;
    double rate = 0;
    bool ready = false;
  };

  Status Install(std::shared_ptr<const cluster::ClusterMap> map, bool persist);
  void Push(const cluster::ClusterMap& map, const std::vector<std::string>& to);
  void Fetch(const std::string& from, std::function<void()> then);
  void Run();
  void Tick();
  void ClaimantTick(const std::shared_ptr<const cluster::ClusterMap>& map);
  void MoverTick(const std::shared_ptr<const cluster::ClusterMap>& map);
  void Copy(std::shared_ptr<const cluster::ClusterMap> map, cluster::MapMove move);
  Status CopyFrom(const cluster::ClusterMap& map, const cluster::MapMove& move,
                  const std::string& source, uint64_t* bytes, uint64_t* watermark);
  // Blocking request to a node, for the copy threads.
  Status Call(const std::string& node, std::string line, std::string* reply);
  std::string HandleClaimant(const Request& req);
  PlanView MakePlan(const cluster::ClusterMap& map,
                    const std::vector<cluster::StagedChange>& staged);
  void Report(const cluster::ClusterMap& map, uint32_t partition, const Progress& p);

  const ClusterManagerOptions options_;
  Store* const store_;
  const Hooks hooks_;
  SendFn send_;
  ClusterManagerCounters counters_;
  std::atomic<uint64_t> epoch_{0};
  std::string transfer_dir_;

  mutable std::mutex mu_;  // protects the following
  std::shared_ptr<const cluster::ClusterMap> map_;
  std::map<std::string, uint64_t> peer_epochs_;  // last epoch each peer showed
  std::set<std::string> fetching_;               // peers a fetch is outstanding from
  std::vector<cluster::StagedChange> staged_;    // the claimant's staged changes
  std::map<std::pair<uint32_t, std::string>, Progress> progress_;  // (partition, to), claimant's
  std::map<uint32_t, Progress> copies_;                            // this node's incoming copies
  std::set<uint32_t> copying_;                                     // copy threads running
  uint64_t copies_of_epoch_ = 0;  // the copy-phase epoch copies_ is of
  struct CopyThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  std::vector<CopyThread> threads_;  // copy threads: finished ones joined each tick, all at Stop
  uint64_t last_report_ms_ = 0;
  bool stopping_ = false;
  bool kick_ = false;  // run the periodic work now (a copy ended, a map came)
  std::condition_variable cv_;
  std::mutex commit_mu_;  // one commit at a time
  std::thread thread_;
};

}  // namespace ringkv
