// Node::Impl's membership side (issue #11, PROTOCOL.md §10): the cluster
// manager's wiring, installing maps, fencing peer requests and the
// membership ops. The logic lives in server/cluster_manager.h and
// server/cluster/cluster_map.h; this file connects it to the node.
#include <spdlog/spdlog.h>

#include "server/node_impl.h"
#include "server/protocol_membership.h"

namespace ringkv {
namespace {

std::vector<std::pair<std::string, std::string>> MemberPairs(const NodeOptions& o) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Member& m : o.cluster) out.emplace_back(m.id, m.address);
  return out;
}

}  // namespace

Status Node::Impl::OpenMembership() {
  ClusterManagerOptions mo;
  mo.node_id = opts_.node_id;
  mo.data_dir = opts_.data_dir;
  mo.seeds = opts_.join_seeds;
  mo.transfer_bytes_per_s = opts_.transfer_bytes_per_s;
  mo.transfer_limit = opts_.transfer_limit;
  mo.timeout_ms = opts_.request_timeout_ms;
  mo.clock = opts_.clock;
  ClusterManager::Hooks hooks;
  hooks.install = [this](const cluster::ClusterMap& map, const cluster::ClusterMap* previous) {
    InstallMap(map, previous);
  };
  hooks.is_up = [this](const std::string& node) { return membership_.IsUp(node); };
  hooks.ingest = [this](uint32_t p, const std::string& path) {
    return replica_->IngestPartition(p, path);
  };
  hooks.drop = [this](uint32_t p) { return replica_->DropPartition(p); };
  manager_ = std::make_unique<ClusterManager>(mo, store_, std::move(hooks));
  if (!opts_.join_seeds.empty()) return manager_->Open(nullptr);
  cluster::ClusterMap initial;
  const auto members = MemberPairs(opts_);
  RINGKV_RETURN_IF_ERROR(cluster::InitialMap(ClusterIdOf(members, opts_.partitions, opts_.replicas),
                                             members, opts_.partitions, opts_.replicas, &initial));
  return manager_->Open(&initial);
}

// Runs before `map` becomes current (ClusterManager::Install). Order
// matters: a partition this node takes in a change is emptied of anything a
// past stay left behind before the ring lets writes for it in, and one it
// gave away is dropped only once the ring refuses them.
void Node::Impl::InstallMap(const cluster::ClusterMap& map, const cluster::ClusterMap* previous) {
  const std::string& self = opts_.node_id;
  for (uint32_t p = 0; p < map.partitions; ++p) {
    // (At start-up, previous is null: what the store holds is this node's.)
    const bool taken = previous != nullptr && !previous->Holds(self, p) && map.Holds(self, p);
    if (taken && store_->HasPartition(p)) {
      Status s = replica_->DropPartition(p);
      if (!s.ok()) spdlog::error("[membership] cannot clear partition {}: {}", p, s.message());
    }
  }
  // Peers first, so that the new ring never names a node the transport
  // cannot reach.
  std::vector<std::pair<std::string, std::string>> members;
  for (const cluster::MapMember& m : map.members) {
    if (m.state == cluster::MemberState::kLeft) continue;
    members.emplace_back(m.id, m.id == self ? opts_.listen : m.address);
    if (m.id != self && peer_listener_) peer_listener_(m.id, m.address);
  }
  if (map.Find(self) == nullptr) members.emplace_back(self, opts_.listen);
  membership_.SetMembers(members);
  rings_->Set(cluster::Ring::FromMap(map));
  for (uint32_t p = 0; p < map.partitions; ++p) {
    if (!map.Holds(self, p) && store_->HasPartition(p)) {
      // Given away: drop it off the request threads.
      background_->Run([this, p] {
        if (ring()->Replicates(opts_.node_id, p)) return;  // taken back meanwhile
        Status s = replica_->DropPartition(p);
        if (!s.ok()) {
          spdlog::error("[membership] cannot drop partition {}: {}", p, s.message());
        } else {
          spdlog::info("[membership] dropped partition {} (now held by others)", p);
        }
      });
    }
  }
}

Status Node::Impl::Fence(const Request& req, bool write) {
  if (!manager_->member()) return Status::Unavailable("this node is not a member yet");
  const cluster::Ring* r = ring();
  Status s = cluster::CheckFence(*r, opts_.node_id, r->PartitionOf(req.key),
                                 cluster::Epoch{req.epoch}, write);
  if (!s.ok()) counters_.fenced_requests.fetch_add(1, std::memory_order_relaxed);
  return s;
}

// Off the I/O thread (a commit writes the map and may drop a partition's
// leftovers), on the background executor: these are short.
void Node::Impl::MembershipOp(const Request& req, Done done) {
  background_->Run([this, req, done = std::move(done)] { manager_->Membership(req, done); });
}

void Node::Impl::PeerMembershipOp(const Request& req, Done done) {
  MembershipOp(req, std::move(done));
}

void Node::Impl::PeerMapOp(const Request& req, Done done) {
  std::shared_ptr<const cluster::ClusterMap> map = manager_->map();
  if (!map) return done(Fail(req.id_json, Status::Unavailable("this node has no cluster map yet")));
  done(RenderMap(req.id_json, *map));
}

void Node::Impl::PeerMapPush(const Request& req, Done done) {
  cluster::ClusterMap map;
  Status s = DecodeMap(req.map_json, &map);
  if (s.ok()) s = manager_->Offer(map, "a peer");
  if (!s.ok()) return done(Fail(req.id_json, s));
  done(ResponseBuilder(req.id_json)
           .AddInt("epoch", static_cast<int64_t>(manager_->epoch()))
           .Finish());
}

void Node::Impl::PeerXferOpen(const Request& req, Done done) {
  RunJob([this, req, done = std::move(done)] {
    XferFile f;
    Status s = manager_->OpenTransfer(req.partition, req.epoch, &f);
    if (!s.ok()) return done(Fail(req.id_json, s));
    done(RenderXferOpen(req.id_json, f));
  });
}

void Node::Impl::PeerXferRead(const Request& req, Done done) {
  background_->Run([this, req, done = std::move(done)] {
    std::string data;
    bool eof = false;
    Status s = manager_->ReadTransfer(req.file, req.offset, req.length, &data, &eof);
    if (!s.ok()) return done(Fail(req.id_json, s));
    done(RenderXferRead(req.id_json, data, eof));
  });
}

void Node::Impl::PeerXferClose(const Request& req, Done done) {
  Status s = manager_->CloseTransfer(req.file);
  if (!s.ok()) return done(Fail(req.id_json, s));
  done(ResponseBuilder(req.id_json).Finish());
}

void Node::Impl::PeerMoveReport(const Request& req, Done done) {
  manager_->OnMoveReport(req);
  done(ResponseBuilder(req.id_json).Finish());
}

}  // namespace ringkv
