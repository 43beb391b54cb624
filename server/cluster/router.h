// ReplicaRouter: the ReplicaTransport a coordinator uses in kvd. Requests for
// this node's own replica go to the local store (through LocalReplica) without
// touching the network; every other node's go to the remote transport.
//
// Thread-safety: safe to call concurrently once SetRemote() has been called
// (or never, for a lone node: remote requests then fail with Unavailable).
#pragma once

#include <atomic>
#include <string>

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

class ReplicaRouter final : public ReplicaTransport {
 public:
  // REQUIRES: `local` outlives the router.
  ReplicaRouter(std::string self, LocalReplica* local) : self_(std::move(self)), local_(local) {}

  // REQUIRES: `remote` outlives the router.
  void SetRemote(ReplicaTransport* remote) { remote_.store(remote, std::memory_order_release); }

  void Write(const std::string& node, const std::string& key, const Record& record,
             uint64_t timeout_ms, WriteDone done) override {
    if (node == self_) return local_->WriteLocal(key, record, std::move(done));
    ReplicaTransport* remote = remote_.load(std::memory_order_acquire);
    if (remote == nullptr) return done(Status::Unavailable("no transport to " + node));
    remote->Write(node, key, record, timeout_ms, std::move(done));
  }

  void Read(const std::string& node, const std::string& key, uint64_t timeout_ms,
            ReadDone done) override {
    if (node == self_) {
      Record record;
      Status s = local_->ReadLocal(key, &record);
      return done(s, std::move(record));
    }
    ReplicaTransport* remote = remote_.load(std::memory_order_acquire);
    if (remote == nullptr) return done(Status::Unavailable("no transport to " + node), Record());
    remote->Read(node, key, timeout_ms, std::move(done));
  }

 private:
  const std::string self_;
  LocalReplica* local_;
  std::atomic<ReplicaTransport*> remote_{nullptr};
};

}  // namespace ringkv::cluster
