// Node: one kvd's request handling, storage and statistics, wired together.
//
// Node implements RequestHandler: it parses each request line (server/protocol),
// runs the operation against the local store and record cache, and renders the
// response. It owns the Store, the RecordCache, the HybridClock and the Stats.
//
// Thread-safety: Handle() is safe to call concurrently from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "engine/status.h"
#include "server/connection_stats.h"
#include "server/net/peer_handshake.h"
#include "server/node_options.h"
#include "server/request_handler.h"

namespace ringkv {
class HybridClock;
namespace cluster {
class AaeReplica;
class HintedHandoff;
class Membership;
class ReplicaTransport;
}  // namespace cluster

class Node final : public RequestHandler {
 public:
  // Opens the store and builds the node. `options` must have been through
  // FinalizeNodeOptions(). Fails with a clear message (unusable data dir,
  // identity mismatch, ...).
  static Status Open(const NodeOptions& options, std::unique_ptr<Node>* out);

  ~Node() override;

  void Handle(const std::shared_ptr<Connection>& conn, std::string_view line, Done done) override;
  std::string RequestTooLargeResponse() override;

  // The node's metrics in the Prometheus text format (GET /metrics).
  std::string MetricsText();

  // The other members' replicas for anti-entropy (server/net/remote_aae_replica.h),
  // once the peer client runs. Exchanges with a member start only once set.
  void SetAaeRemotes(std::map<std::string, std::unique_ptr<cluster::AaeReplica>> remotes);
  // One more (a member the cluster map added); a known id is kept as it is.
  void AddAaeRemote(const std::string& id, std::unique_ptr<cluster::AaeReplica> remote);
  // A peer answered this node's hello; `dir_changed`: it knew this node
  // with another data dir (this one new: a lost disk, PROTOCOL.md §9).
  // `epoch`: the peer's cluster map epoch (a higher one is fetched, a lower
  // one sent the map).
  void OnPeerHello(const std::string& peer, bool dir_changed, uint64_t epoch);
  // This data dir's identity: random, made when the dir was created.
  const std::string& data_dir_id() const;

  // Connection counts, kept by the network layer, shown in stats and metrics.
  ConnectionStats* connection_stats();

  // The address clients should use for this node, as reported by `cluster`.
  // Call once the listener is bound (with port 0 the kernel picks the port).
  void SetAdvertisedAddress(std::string address);

  // ---- Cluster wiring (kvd's main does this; a lone node needs none of it) ----

  // The transport to replicas on other nodes; this node's own replica is
  // always served locally. Until it is set, remote replicas count as failed.
  // REQUIRES: `peers` outlives the node; call before serving requests.
  void SetPeerTransport(cluster::ReplicaTransport* peers);
  // Who is up; the failure detector reports into it.
  cluster::Membership* membership();
  // Null when hinted handoff is off. Tick() it periodically.
  cluster::HintedHandoff* handoff();
  // The node's hybrid logical clock (its versions' source).
  HybridClock* hybrid_clock();
  // What this node sends in _hello, for peers to compare with their own
  // (the cluster's id, Q and N; members are the map's business).
  const std::string& cluster_fingerprint() const;
  // The installed cluster map's epoch (0 while a --join node waits).
  uint64_t map_epoch() const;

  // Membership (issue #11). The network layer sends the cluster manager's
  // peer requests (`node` is a map id, or "@seedN" for the N-th --join
  // seed), and is told of every member the map adds, to reach it. Set both,
  // then StartMembership().
  using PeerSendDone = std::function<void(Status, std::string_view line)>;
  using PeerSender = std::function<void(const std::string& node, std::string line,
                                        uint64_t timeout_ms, PeerSendDone done)>;
  void SetPeerSender(PeerSender send);
  using PeerListener = std::function<void(const std::string& id, const std::string& address)>;
  void SetPeerListener(PeerListener listener);
  void StartMembership();

  // Re-reads --auth-file (SIGHUP); on failure keeps the users it had and
  // returns why.
  Status ReloadUsers();
  // The handshake the peer client runs on every new connection (the cluster
  // secret's proof), or an empty factory when there is no secret.
  net::PeerHandshakeFactory PeerHandshakes() const;

  // Waits for background jobs (backups) to finish. Call before destruction,
  // after the network layer has stopped accepting requests.
  void Shutdown();

  class Impl;

 private:
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringkv
