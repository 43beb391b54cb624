#include "server/cluster/membership.h"

namespace ringkv::cluster {

Membership::Membership(const std::vector<std::pair<std::string, std::string>>& members,
                       std::string self)
    : self_(std::move(self)) {
  for (const auto& [id, address] : members) members_[id] = State{address, true, 0};
}

void Membership::SetMembers(const std::vector<std::pair<std::string, std::string>>& members) {
  std::lock_guard<std::mutex> l(mu_);
  std::map<std::string, State> next;
  for (const auto& [id, address] : members) {
    auto it = members_.find(id);
    next[id] = it != members_.end() ? it->second : State{address, true, 0};
    next[id].address = address;
  }
  members_ = std::move(next);
}

bool Membership::IsUp(const std::string& node) const {
  if (node == self_) return true;
  std::lock_guard<std::mutex> l(mu_);
  auto it = members_.find(node);
  return it != members_.end() && it->second.up;
}

std::vector<std::string> Membership::Peers() const {
  std::vector<std::string> out;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [id, state] : members_) {
    if (id != self_) out.push_back(id);
  }
  return out;
}

std::string Membership::AddressOf(const std::string& node) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = members_.find(node);
  return it == members_.end() ? std::string() : it->second.address;
}

std::vector<MemberStatus> Membership::Snapshot() const {
  std::vector<MemberStatus> out;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [id, state] : members_) {
    out.push_back({id, state.address, id == self_ || state.up});
  }
  return out;
}

void Membership::ReportSuccess(const std::string& node) {
  bool changed = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = members_.find(node);
    if (it == members_.end() || node == self_) return;
    it->second.misses = 0;
    changed = !it->second.up;
    it->second.up = true;
  }
  if (changed && listener_) listener_(node, true);
}

void Membership::ReportFailure(const std::string& node, bool definitive) {
  bool changed = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = members_.find(node);
    if (it == members_.end() || node == self_) return;
    ++it->second.misses;
    if (it->second.up && (definitive || it->second.misses >= kMissesToDown)) {
      it->second.up = false;
      changed = true;
    }
  }
  if (changed && listener_) listener_(node, false);
}

}  // namespace ringkv::cluster
