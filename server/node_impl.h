// Node::Impl: the request handler's inside (server/node.h), shared by the
// files that implement it: node.cc (client ops, replicas, anti-entropy),
// node_membership.cc (the cluster map and its changes, issue #11).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/store.h"
#include "engine/version.h"
#include "server/auth_gate.h"
#include "server/background.h"
#include "server/cluster/anti_entropy.h"
#include "server/cluster/coordinator.h"
#include "server/cluster/counters.h"
#include "server/cluster/handoff.h"
#include "server/cluster/membership.h"
#include "server/cluster/ring.h"
#include "server/cluster/router.h"
#include "server/cluster_manager.h"
#include "server/local_replica.h"
#include "server/metrics.h"
#include "server/node.h"
#include "server/protocol.h"
#include "server/stats.h"

namespace ringkv {

class Node::Impl {
 public:
  explicit Impl(const NodeOptions& o);

  Status Open();
  void Handle(const std::shared_ptr<Connection>& conn, std::string_view line, Done done);
  std::string RequestTooLarge();
  void SetAdvertisedAddress(std::string address);
  void SetPeerTransport(cluster::ReplicaTransport* peers) { router_->SetRemote(peers); }
  cluster::Membership* membership() { return &membership_; }
  cluster::HintedHandoff* handoff() { return handoff_.get(); }
  HybridClock* hybrid_clock() { return &hlc_; }
  const std::string& fingerprint() const { return fingerprint_; }
  void Shutdown();
  void SetAaeRemotes(std::map<std::string, std::unique_ptr<cluster::AaeReplica>> remotes);
  void AddAaeRemote(const std::string& id, std::unique_ptr<cluster::AaeReplica> remote) {
    std::lock_guard<std::mutex> l(remotes_mu_);
    remotes_.emplace(id, std::move(remote));
  }
  void OnPeerHello(const std::string& peer, bool dir_changed, uint64_t epoch);
  // Membership wiring (node_membership.cc).
  void SetPeerSender(ClusterManager::SendFn send) { manager_->SetSend(std::move(send)); }
  void SetPeerListener(Node::PeerListener listener) { peer_listener_ = std::move(listener); }
  void StartMembership() { manager_->Start(); }
  uint64_t map_epoch() const { return manager_->epoch(); }
  const std::string& data_dir_id() const { return dir_id_; }
  Status ReloadUsers();
  net::PeerHandshakeFactory PeerHandshakes() const;

 private:
  using Handler = void (Impl::*)(const Request&, Done);

  std::string Fail(const std::string& id_json, const Status& s);
  uint64_t TimeoutOf(const Request& req) const {
    return req.timeout_ms > 0 ? req.timeout_ms : opts_.request_timeout_ms;
  }

  void Put(const Request& req, Done done);
  void Get(const Request& req, Done done);
  void Delete(const Request& req, Done done);
  void Ping(const Request& req, Done done);
  void StatsOp(const Request& req, Done done);
  void ClusterOp(const Request& req, Done done);
  void Locate(const Request& req, Done done);
  void Backup(const Request& req, Done done);
  void PeerWrite(const Request& req, Done done);
  void PeerRead(const Request& req, Done done);
  void PeerHello(const Request& req, Done done);
  void AaeOp(const Request& req, Done done);
  void Compact(const Request& req, Done done);
  void PeerAaeTree(const Request& req, Done done);
  void PeerAaeKeys(const Request& req, Done done);
  void PeerAaeFetch(const Request& req, Done done);
  void PeerAaeScan(const Request& req, Done done);
  void PeerAaeGc(const Request& req, Done done);
  void Auth(const Request& req, Done done);
  void PeerChallenge(const Request& req, Done done);
  void PeerAuth(const Request& req, Done done);
  // Membership (node_membership.cc).
  void MembershipOp(const Request& req, Done done);
  void PeerMembershipOp(const Request& req, Done done);
  void PeerMapOp(const Request& req, Done done);
  void PeerMapPush(const Request& req, Done done);
  void PeerXferOpen(const Request& req, Done done);
  void PeerXferRead(const Request& req, Done done);
  void PeerXferClose(const Request& req, Done done);
  void PeerMoveReport(const Request& req, Done done);
  Status OpenMembership();
  // A new map becomes current: the ring, the members, the partitions held.
  void InstallMap(const cluster::ClusterMap& map, const cluster::ClusterMap* previous);
  // The current ring.
  const cluster::Ring* ring() const { return rings_->Current(); }
  // The replica acceptance check for a peer _write/_read.
  Status Fence(const Request& req, bool write);

  // Runs `fn` on the background worker, answering a request whose partition
  // is out of range at once.
  void OnWorker(const Request& req, Done done, std::function<std::string()> fn);
  // Runs a long job (backup, compact) on a thread of its own.
  void RunJob(std::function<void()> fn);

  Status OpenAntiEntropy();
  // True while this replica's reads must not count toward a quorum: its
  // partition is being rebuilt, or a new data dir has not yet heard every
  // live peer say whether it knew this node (a lost disk, see OnPeerHello).
  bool RefusesQuorumReads(uint32_t partition) const;
  cluster::AaeReplica* AaeReplicaOf(const std::string& node);
  // The scheduler's view, with each partition's watermark as the store holds
  // it (raised by this node's rounds, a peer's or an exchange).
  cluster::AaeStatus AaeSnapshot();

  // Runs a put or delete through the coordinator.
  void CoordinateWrite(const Request& req, Record record, Done done);
  // The response to a get, from the newest record the replicas had.
  std::string RenderGet(const std::string& id_json, const std::optional<Record>& newest);
  std::string StatsJson();
  MetricsInput GatherMetrics();
  void NoteSlow(Op op, const std::string& key, uint64_t us);

 public:
  std::string MetricsText() { return RenderPrometheus(GatherMetrics()); }
  ConnectionStats* connection_stats() { return &connections_; }

 private:
  const NodeOptions opts_;
  Limits limits_;
  HybridClock hlc_;
  std::unique_ptr<cluster::RingHolder> rings_;
  std::unique_ptr<ClusterManager> manager_;
  Node::PeerListener peer_listener_;
  std::unique_ptr<LocalReplica> replica_;
  Store* store_ = nullptr;  // replica_'s
  Stats stats_;
  ConnectionStats connections_;
  cluster::Counters counters_;
  cluster::Membership membership_;
  std::string fingerprint_;
  std::unique_ptr<cluster::ReplicaRouter> router_;
  std::unique_ptr<cluster::HintedHandoff> handoff_;
  std::unique_ptr<cluster::Coordinator> coordinator_;

  // Who may do what (PROTOCOL.md §11): users, the cluster secret.
  std::unique_ptr<AuthGate> gate_;

  // Anti-entropy. The remotes are set once the peer client runs.
  class StateStore;
  std::unique_ptr<StateStore> aae_state_;
  std::unique_ptr<cluster::AntiEntropy> anti_entropy_;
  std::mutex remotes_mu_;
  std::map<std::string, std::unique_ptr<cluster::AaeReplica>> remotes_;  // by remotes_mu_
  // Lost-disk detection: a data dir this run created (or a previous run that
  // created it had not finished checking) asks its peers in _hello whether
  // they knew it. `fresh_` until every live peer has answered.
  std::atomic<bool> fresh_{false};
  mutable std::mutex seen_mu_;
  // Each peer that ever said hello, with the data dir identity it last
  // gave (by seen_mu_).
  std::map<std::string, std::string> seen_peers_;
  std::string dir_id_;              // this data dir's identity (set in Open)
  std::set<std::string> answered_;  // peers whose hello answer we had (by seen_mu_)

  // mu_ protects the following.
  std::mutex mu_;
  std::string advertised_;
  struct Job {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  std::vector<Job> jobs_;  // background jobs (backups); finished ones joined lazily

  std::atomic<uint64_t> last_slow_log_ms_{0};
  std::atomic<uint64_t> slow_suppressed_{0};
  std::atomic<uint64_t> last_mismatch_log_ms_{0};
  std::atomic<uint64_t> last_internal_log_ms_{0};
  std::atomic<uint64_t> internal_unlogged_{0};

  // Round deadlines and the work kept off I/O and peer threads (hint
  // delivery, local repairs). Declared last, so destroyed first: its threads
  // are joined while everything they use still exists.
  std::unique_ptr<Background> background_;
};

}  // namespace ringkv
