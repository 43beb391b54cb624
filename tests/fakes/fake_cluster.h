// FakeCluster: a whole cluster's replicas in memory, behind ReplicaTransport.
//
// Each node holds a map of records merged last-writer-wins. Per node, a mode
// decides what happens to a request: served at once, failed as unreachable,
// failed as timed out, or held until the test releases it (to delay and
// reorder replies without sleeping). Every request is counted.
//
// Thread-safety: for single-threaded tests; callbacks run inline or on release.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "server/cluster/transport.h"

namespace ringkv::testing {

class FakeCluster final : public cluster::ReplicaTransport {
 public:
  // kInternal fails like a replica whose disk is full; kSilent never answers
  // (a lost reply: only the coordinator's own deadline ends the round).
  enum class Mode { kServe, kUnreachable, kTimeout, kHold, kInternal, kSilent, kStatus };

  void SetMode(const std::string& node, Mode mode) { nodes_[node].mode = mode; }
  // What a node in kStatus mode answers (StaleEpoch, say).
  void SetStatus(const std::string& node, Status status) {
    nodes_[node].status = std::move(status);
  }

  void Write(const std::string& node, const std::string& key, const Record& record, cluster::Epoch,
             uint64_t, WriteDone done) override {
    NodeState& n = nodes_[node];
    ++n.writes;
    Run(
        n,
        [this, node, key, record, done] {
          // As a real replica (server/node.cc WriteLocal): a write that is
          // not newer than the held version is answered Stale with it.
          auto held = Get(node, key);
          if (held && !(held->version < record.version)) {
            return done(held->version == record.version ? Status::OK()
                                                        : Status::Stale(held->version.ToString()));
          }
          Apply(node, key, record);
          done(Status::OK());
        },
        [done](Status s) { done(s); });
  }

  void Read(const std::string& node, const std::string& key, cluster::Epoch, uint64_t,
            ReadDone done) override {
    NodeState& n = nodes_[node];
    ++n.reads;
    Run(
        n,
        [this, node, key, done] {
          auto rec = Get(node, key);
          if (rec) return done(Status::OK(), *rec);
          done(Status::NotFound(), Record());
        },
        [done](Status s) { done(s, Record()); });
  }

  // Serves the held requests of `node`, oldest first (or newest first).
  void Release(const std::string& node, bool newest_first = false) {
    auto held = std::move(nodes_[node].held);
    nodes_[node].held.clear();
    if (newest_first) {
      for (auto it = held.rbegin(); it != held.rend(); ++it) it->serve();
    } else {
      for (auto& h : held) h.serve();
    }
  }
  // Fails the held requests of `node` with Timeout.
  void ExpireHeld(const std::string& node) {
    auto held = std::move(nodes_[node].held);
    nodes_[node].held.clear();
    for (auto& h : held) h.fail(Status::Timeout("fake timeout"));
  }
  size_t held(const std::string& node) { return nodes_[node].held.size(); }

  void Apply(const std::string& node, const std::string& key, const Record& record) {
    auto& data = nodes_[node].data;
    auto it = data.find(key);
    if (it == data.end() || it->second.version < record.version) data[key] = record;
  }
  std::optional<Record> Get(const std::string& node, const std::string& key) {
    auto& data = nodes_[node].data;
    auto it = data.find(key);
    if (it == data.end()) return std::nullopt;
    return it->second;
  }
  int writes(const std::string& node) { return nodes_[node].writes; }
  int reads(const std::string& node) { return nodes_[node].reads; }

 private:
  struct Held {
    std::function<void()> serve;
    std::function<void(Status)> fail;
  };
  struct NodeState {
    Mode mode = Mode::kServe;
    Status status;
    std::map<std::string, Record> data;
    std::deque<Held> held;
    int writes = 0;
    int reads = 0;
  };

  void Run(NodeState& n, std::function<void()> serve, std::function<void(Status)> fail) {
    switch (n.mode) {
      case Mode::kServe:
        return serve();
      case Mode::kUnreachable:
        return fail(Status::Unavailable("fake: connection refused"));
      case Mode::kTimeout:
        return fail(Status::Timeout("fake timeout"));
      case Mode::kHold:
        n.held.push_back({std::move(serve), std::move(fail)});
        return;
      case Mode::kInternal:
        return fail(Status::Internal("fake: no space left on device"));
      case Mode::kSilent:
        return;
      case Mode::kStatus:
        return fail(n.status);
    }
  }

  std::map<std::string, NodeState> nodes_;
};

}  // namespace ringkv::testing
