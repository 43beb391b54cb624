// Membership: which members this node believes are up.
//
// Members follow the installed cluster map (SetMembers); a member that is
// added starts up, one that is no longer listed is forgotten. The failure detector (server/net)
// pings every peer and reports each outcome here; a peer is marked down after
// kMissesToDown consecutive failures, or at once when its connection is
// refused, and up again on its first success. This node is always up.
//
// Thread-safety: all methods are safe to call concurrently. The listener is
// called without any lock held, on the thread that reported the change.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ringkv::cluster {

struct MemberStatus {
  std::string id;
  std::string address;
  bool up = true;
};

class Membership {
 public:
  static constexpr int kMissesToDown = 3;

  // Called with (node, up) whenever a member changes state.
  using Listener = std::function<void(const std::string& node, bool up)>;

  // `members` are (id, address) pairs and must include `self`.
  // Every peer starts up: a node that is down fails its first pings quickly.
  Membership(const std::vector<std::pair<std::string, std::string>>& members, std::string self);

  const std::string& self() const { return self_; }
  bool IsUp(const std::string& node) const;
  // Peers (every member but self), in id order.
  std::vector<std::string> Peers() const;
  std::string AddressOf(const std::string& node) const;
  std::vector<MemberStatus> Snapshot() const;

  // Makes the members exactly `members` (id, address): new ones start up,
  // known ones keep their state, missing ones are dropped.
  void SetMembers(const std::vector<std::pair<std::string, std::string>>& members);

  void ReportSuccess(const std::string& node);
  // `definitive`: the failure proves the node is down (connection refused).
  void ReportFailure(const std::string& node, bool definitive);

  // Sets the state-change listener. Call before any report.
  void SetListener(Listener listener) { listener_ = std::move(listener); }

 private:
  struct State {
    std::string address;
    bool up = true;
    int misses = 0;
  };

  const std::string self_;
  Listener listener_;
  mutable std::mutex mu_;
  std::map<std::string, State> members_;  // guarded by mu_
};

}  // namespace ringkv::cluster
