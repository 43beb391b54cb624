#include "server/cluster/planner.h"

#include <algorithm>
#include <set>
#include <utility>

#include "server/cluster/ring.h"

namespace ringkv::cluster {
namespace {

bool Holds(const std::vector<std::string>& list, const std::string& node) {
  return std::find(list.begin(), list.end(), node) != list.end();
}

Status Validate(const Assignment& a, const std::set<std::string>& members) {
  if (a.empty()) return Status::BadRequest("the assignment has no partitions");
  const size_t n = a[0].size();
  if (n == 0) return Status::BadRequest("the assignment has no replicas");
  for (size_t p = 0; p < a.size(); ++p) {
    if (a[p].size() != n) {
      return Status::BadRequest("partition " + std::to_string(p) + " has " +
                                std::to_string(a[p].size()) + " replicas, not " +
                                std::to_string(n));
    }
    const std::set<std::string> distinct(a[p].begin(), a[p].end());
    if (distinct.size() != n) {
      return Status::BadRequest("partition " + std::to_string(p) + " names a node twice");
    }
    for (const std::string& node : a[p]) {
      if (members.count(node) == 0) {
        return Status::BadRequest("partition " + std::to_string(p) + " names '" + node +
                                  "', not a member");
      }
    }
  }
  return Status::OK();
}

// Moves replica slots from the most loaded node to the least loaded one, two
// or more apart, until all are within one of each other: each move is one
// that any balanced result needs (a node above the rounded-up share must
// give, one below the rounded-down share must take). The slot taken is in a
// partition the receiver does not replicate yet (one exists: the giver holds
// more partitions than the receiver), a non-owner slot where there is one.
// Ties: lower id first, lower partition first.
void Rebalance(Assignment* a, std::map<std::string, int>* count) {
  for (;;) {
    std::vector<std::pair<int, std::string>> order;  // (count, id)
    for (const auto& [node, c] : *count) order.emplace_back(c, node);
    std::sort(order.begin(), order.end());
    bool moved = false;
    // The most loaded giver first (it must give), to the neediest receiver
    // that can take one of its partitions.
    for (size_t hi = order.size(); hi-- > 0 && !moved;) {
      for (size_t lo = 0; lo < hi && !moved; ++lo) {
        if (order[hi].first - order[lo].first < 2) break;
        const std::string& r = order[lo].second;
        const std::string& d = order[hi].second;
        for (int pass = 0; pass < 2 && !moved; ++pass) {
          for (auto& list : *a) {
            if (Holds(list, r)) continue;
            const size_t begin = pass == 0 ? 1 : 0;
            const size_t end = pass == 0 ? list.size() : 1;
            for (size_t slot = begin; slot < end; ++slot) {
              if (list[slot] != d) continue;
              list[slot] = r;
              ++(*count)[r];
              --(*count)[d];
              moved = true;
              break;
            }
            if (moved) break;
          }
        }
      }
    }
    if (!moved) return;
  }
}

// Balances ownership by reordering lists, so that the replica sets, and the
// data, stay where they are: ownership passes from a node that owns the most
// along a chain of partitions (x owns one that y replicates, y owns one that
// z replicates, ...) to a node that owns two fewer, by swapping first places
// along it. Breadth first, so chains are as short as they can be; lower ids
// and partitions first.
void BalanceOwners(Assignment* a, const std::vector<std::string>& members) {
  std::map<std::string, int> owners = OwnerCounts(*a, members);
  for (;;) {
    int most = 0;
    for (const auto& [node, c] : owners) most = std::max(most, c);
    // BFS from every node owning `most`; via[y] = (partition, slot of y).
    std::map<std::string, std::pair<size_t, size_t>> via;
    std::map<std::string, std::string> parent;
    std::vector<std::string> frontier;
    for (const auto& [node, c] : owners) {
      if (c == most) {
        frontier.push_back(node);
        parent[node] = "";
      }
    }
    std::string found;
    for (size_t i = 0; i < frontier.size() && found.empty(); ++i) {
      const std::string x = frontier[i];
      for (size_t p = 0; p < a->size() && found.empty(); ++p) {
        const auto& list = (*a)[p];
        if (list[0] != x) continue;
        for (size_t k = 1; k < list.size(); ++k) {
          const std::string& y = list[k];
          if (parent.count(y) != 0) continue;
          parent[y] = x;
          via[y] = {p, k};
          if (owners[y] <= most - 2) {
            found = y;
            break;
          }
          frontier.push_back(y);
        }
      }
    }
    if (found.empty()) return;
    // Walk back from the node that owns too few: each swap gives one more
    // partition to the later node and one fewer to the earlier.
    for (std::string y = found; !parent[y].empty(); y = parent[y]) {
      const auto [p, k] = via[y];
      std::swap((*a)[p][0], (*a)[p][k]);
    }
    owners = OwnerCounts(*a, members);
  }
}

// Each node's share of `total` slots: total/S, one more for the largest
// holders now (lower id on ties), so that as little as possible moves.
std::map<std::string, int> Shares(const std::vector<std::string>& nodes,
                                  const std::map<std::string, int>& now, int total) {
  std::vector<std::string> order = nodes;
  std::sort(order.begin(), order.end(), [&now](const std::string& a, const std::string& b) {
    const int ca = now.at(a), cb = now.at(b);
    return ca != cb ? ca > cb : a < b;
  });
  const int s = static_cast<int>(nodes.size());
  std::map<std::string, int> out;
  for (int i = 0; i < s; ++i) out[order[i]] = total / s + (i < total % s ? 1 : 0);
  return out;
}

class LeavingMatcher {
 public:
  LeavingMatcher(Assignment* a, const std::string& leaving, const std::vector<std::string>& nodes,
                 std::map<std::string, int>* count)
      : a_(a), leaving_(leaving), nodes_(nodes), count_(count) {
    int total = 0;
    for (const auto& list : *a) total += static_cast<int>(list.size());
    share_ = Shares(nodes, *count, total);
    for (size_t p = 0; p < a->size(); ++p) {
      for (size_t k = 0; k < (*a)[p].size(); ++k) {
        if ((*a)[p][k] == leaving) slots_.push_back({p, k});
      }
    }
    match_.assign(slots_.size(), "");
  }

  void Run() {
    for (size_t i = 0; i < slots_.size(); ++i) {
      std::set<std::string> visited;
      if (!Augment(i, &visited)) {
        // No receiver with room can take it: the least loaded one that can.
        const std::string* best = nullptr;
        for (const std::string& m : nodes_) {
          if (!Eligible(i, m)) continue;
          if (best == nullptr || Load(m) < Load(*best)) best = &m;
        }
        match_[i] = *best;  // one exists: at least N members remain
      }
    }
    for (size_t i = 0; i < slots_.size(); ++i) {
      (*a_)[slots_[i].first][slots_[i].second] = match_[i];
      ++(*count_)[match_[i]];
    }
  }

 private:
  bool Eligible(size_t i, const std::string& node) const {
    return !Holds((*a_)[slots_[i].first], node);
  }
  int Load(const std::string& node) const {
    int n = count_->at(node);
    for (const auto& m : match_) n += m == node ? 1 : 0;
    return n;
  }
  bool Augment(size_t i, std::set<std::string>* visited) {
    // The receivers with the most room first (lower id on ties).
    std::vector<std::string> order = nodes_;
    std::stable_sort(order.begin(), order.end(),
                     [this](const std::string& x, const std::string& y) {
                       return share_.at(x) - Load(x) > share_.at(y) - Load(y);
                     });
    for (const std::string& r : order) {
      if (!Eligible(i, r) || visited->count(r) != 0) continue;
      visited->insert(r);
      if (share_.at(r) - Load(r) > 0) {
        match_[i] = r;
        return true;
      }
      for (size_t j = 0; j < slots_.size(); ++j) {
        if (match_[j] != r) continue;
        match_[j].clear();
        if (Augment(j, visited)) {
          match_[i] = r;
          return true;
        }
        match_[j] = r;
      }
    }
    return false;
  }

  Assignment* const a_;
  const std::string leaving_;
  const std::vector<std::string>& nodes_;
  std::map<std::string, int>* const count_;
  std::map<std::string, int> share_;
  std::vector<std::pair<size_t, size_t>> slots_;  // (partition, slot) held by the leaving node
  std::vector<std::string> match_;                // the receiver of each, "" while none
};

void AssignLeavingSlots(Assignment* a, const std::string& leaving,
                        const std::vector<std::string>& nodes, std::map<std::string, int>* count) {
  LeavingMatcher(a, leaving, nodes, count).Run();
}

}  // namespace

Status RoundRobinAssignment(std::vector<std::string> members, uint32_t partitions, int replicas,
                            Assignment* out) {
  Ring ring;
  RINGKV_RETURN_IF_ERROR(Ring::Make(std::move(members), partitions, replicas, &ring));
  Assignment a(partitions);
  for (uint32_t p = 0; p < partitions; ++p) a[p] = ring.PreferenceList(p);
  *out = std::move(a);
  return Status::OK();
}

std::map<std::string, int> SlotCounts(const Assignment& a,
                                      const std::vector<std::string>& members) {
  std::map<std::string, int> out;
  for (const std::string& m : members) out[m] = 0;
  for (const auto& list : a) {
    for (const std::string& node : list) ++out[node];
  }
  return out;
}

std::map<std::string, int> OwnerCounts(const Assignment& a,
                                       const std::vector<std::string>& members) {
  std::map<std::string, int> out;
  for (const std::string& m : members) out[m] = 0;
  for (const auto& list : a) {
    if (!list.empty()) ++out[list[0]];
  }
  return out;
}

Status PlanMembershipChange(const Assignment& before, const std::vector<std::string>& members,
                            const MembershipChange& change, Plan* out) {
  const std::set<std::string> member_set(members.begin(), members.end());
  if (member_set.size() != members.size()) {
    return Status::BadRequest("the member list names a node twice");
  }
  RINGKV_RETURN_IF_ERROR(Validate(before, member_set));
  const int replicas = static_cast<int>(before[0].size());
  if (change.node.empty()) return Status::BadRequest("the change names no node");

  std::set<std::string> after_set = member_set;
  std::string leaving;
  switch (change.kind) {
    case MembershipChange::Kind::kJoin:
      if (member_set.count(change.node) != 0) {
        return Status::BadRequest("'" + change.node + "' is already a member");
      }
      after_set.insert(change.node);
      break;
    case MembershipChange::Kind::kLeave:
    case MembershipChange::Kind::kRemove:
      if (member_set.count(change.node) == 0) {
        return Status::BadRequest("'" + change.node + "' is not a member");
      }
      after_set.erase(change.node);
      leaving = change.node;
      if (static_cast<int>(after_set.size()) < replicas) {
        return Status::BadRequest("without '" + change.node + "' the cluster would have " +
                                  std::to_string(after_set.size()) + " members for " +
                                  std::to_string(replicas) + " replicas of each key");
      }
      break;
    case MembershipChange::Kind::kReplace:
      if (member_set.count(change.node) == 0) {
        return Status::BadRequest("'" + change.node + "' is not a member");
      }
      if (change.new_node.empty() || member_set.count(change.new_node) != 0) {
        return Status::BadRequest("the replacement must be a new node, not '" + change.new_node +
                                  "'");
      }
      after_set.erase(change.node);
      after_set.insert(change.new_node);
      break;
  }

  Plan plan;
  plan.after = before;
  plan.members_after.assign(after_set.begin(), after_set.end());
  if (change.kind == MembershipChange::Kind::kReplace) {
    // Every slot of the old node goes to the new one, in its place; nothing
    // else moves (ownership included).
    for (auto& list : plan.after) {
      for (std::string& node : list) {
        if (node == change.node) node = change.new_node;
      }
    }
  } else {
    std::map<std::string, int> count = SlotCounts(plan.after, plan.members_after);
    count.erase(leaving);
    // The leaving node's slots must move. They go where balance needs them
    // (each node up to its share: the rounded-up share for the largest
    // holders), matched so that no receiver already replicates the
    // partition: a bipartite matching with capacities, by augmenting paths,
    // so that a slot whose natural receiver is taken can push an earlier
    // choice elsewhere instead of costing a second move later.
    if (!leaving.empty()) AssignLeavingSlots(&plan.after, leaving, plan.members_after, &count);
    Rebalance(&plan.after, &count);
    BalanceOwners(&plan.after, plan.members_after);
  }

  // The moves: what each list gained, paired with what it lost.
  for (size_t p = 0; p < before.size(); ++p) {
    std::vector<std::string> lost;
    for (const std::string& node : before[p]) {
      if (!Holds(plan.after[p], node)) lost.push_back(node);
    }
    size_t next = 0;
    for (size_t slot = 0; slot < plan.after[p].size(); ++slot) {
      const std::string& node = plan.after[p][slot];
      if (Holds(before[p], node)) continue;
      plan.moves.push_back({static_cast<uint32_t>(p), static_cast<int>(slot), lost[next++], node});
    }
  }
  *out = std::move(plan);
  return Status::OK();
}

}  // namespace ringkv::cluster
