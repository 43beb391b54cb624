// ReplicaRouter: the ReplicaTransport a coordinator uses in kvd. Requests for
// this node's own replica go to the local store (through LocalReplica) without
// touching the network, after the same acceptance check (fencing) a remote
// replica makes; every other node's go to the remote transport.
//
// Thread-safety: safe to call concurrently once SetRemote() has been called
// (or never, for a lone node: remote requests then fail with Unavailable).
#pragma once

#include <atomic>
#include <string>

#include "server/cluster/ring.h"
#include "server/cluster/transport.h"

namespace ringkv::cluster {

// This node's own replica of every partition it holds.
class LocalReplica {
 public:
  virtual ~LocalReplica() = default;
  // Merges `record` into `key` (LWW); calls done(OK) once it is in the WAL,
  // before returning or later on the calling thread (writes are group
  // committed per event-loop wake-up).
  virtual void WriteLocal(const std::string& key, const Record& record,
                          ReplicaTransport::WriteDone done) = 0;
  // NotFound if this node has no record of `key`.
  virtual Status ReadLocal(const std::string& key, Record* out) = 0;
};

// The replica acceptance rule (research/aae-membership.md D2): `self` serves
// a request for `partition` routed by `epoch` only if the epoch is its ring's
// (or 0, not routed by the map) and, at that epoch, it is in the partition's
// write set (writes) or read set (reads). Otherwise StaleEpoch with the
// ring's epoch: a coordinator with an old map catches up and retries, and no
// write creates a partition this node does not hold. A ring of epoch 0
// (Ring::Make, in tests) fences nothing.
inline Status CheckFence(const Ring& ring, std::string_view self, uint32_t partition, Epoch epoch,
                         bool write) {
  if (ring.epoch() == 0) return Status::OK();
  if (epoch.value != 0 && epoch.value != ring.epoch()) return Status::StaleEpoch(ring.epoch());
  const bool serves = write ? ring.Replicates(self, partition) : ring.Reads(self, partition);
  return serves ? Status::OK() : Status::StaleEpoch(ring.epoch());
}

class ReplicaRouter final : public ReplicaTransport {
 public:
  // REQUIRES: `local` and `rings` outlive the router.
  ReplicaRouter(std::string self, LocalReplica* local, const RingSource* rings)
      : self_(std::move(self)), local_(local), rings_(rings) {}

  // REQUIRES: `remote` outlives the router.
  void SetRemote(ReplicaTransport* remote) { remote_.store(remote, std::memory_order_release); }

  void Write(const std::string& node, const std::string& key, const Record& record, Epoch epoch,
             uint64_t timeout_ms, WriteDone done) override {
    if (node == self_) {
      const Ring* ring = rings_->Current();
      Status s = CheckFence(*ring, self_, ring->PartitionOf(key), epoch, /*write=*/true);
      if (!s.ok()) return done(s);
      return local_->WriteLocal(key, record, std::move(done));
    }
    ReplicaTransport* remote = remote_.load(std::memory_order_acquire);
    if (remote == nullptr) return done(Status::Unavailable("no transport to " + node));
    remote->Write(node, key, record, epoch, timeout_ms, std::move(done));
  }

  void Read(const std::string& node, const std::string& key, Epoch epoch, uint64_t timeout_ms,
            ReadDone done) override {
    if (node == self_) {
      const Ring* ring = rings_->Current();
      Status s = CheckFence(*ring, self_, ring->PartitionOf(key), epoch, /*write=*/false);
      if (!s.ok()) return done(s, Record());
      Record record;
      s = local_->ReadLocal(key, &record);
      return done(s, std::move(record));
    }
    ReplicaTransport* remote = remote_.load(std::memory_order_acquire);
    if (remote == nullptr) return done(Status::Unavailable("no transport to " + node), Record());
    remote->Read(node, key, epoch, timeout_ms, std::move(done));
  }

 private:
  const std::string self_;
  LocalReplica* local_;
  const RingSource* rings_;
  std::atomic<ReplicaTransport*> remote_{nullptr};
};

}  // namespace ringkv::cluster
