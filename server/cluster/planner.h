// Planner: the partition assignment after one membership change (issue #11,
// PROTOCOL.md §10; research/aae-membership.md D1 "Claim algorithm"). A pure,
// deterministic function of (assignment, members, change): every node that
// plans the same change gets the same plan, so a plan can be recomputed and
// compared at commit time.
//
// The assignment is the stored preference list of each partition (N distinct
// node ids, the owner first). The plan keeps these properties:
//   - the replicas of a partition stay on distinct nodes;
//   - every member ends with Q*N/S replica slots, within one (S = members
//     after the change), and owns (is first for) Q/S partitions, within one;
//   - as few replica slots change node as the balance allows: a join moves
//     only the slots the new node takes, a leave or a remove only the
//     leaving node's slots and what balance needs beyond them, and a replace
//     moves exactly the old node's slots to the new node, nothing else;
//   - ownership is balanced by reordering lists, which moves no data; slots
//     that move are non-owner slots where there is a choice.
// Ties are broken by node id and partition number.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/status.h"

namespace ringkv::cluster {

// assignment[p]: the preference list of partition p, owner first.
using Assignment = std::vector<std::vector<std::string>>;

struct MembershipChange {
  enum class Kind { kJoin, kLeave, kReplace, kRemove };
  Kind kind = Kind::kJoin;
  std::string node;      // join: the new node; leave, remove, replace: the node going
  std::string new_node;  // replace: the node taking its place
  bool operator==(const MembershipChange&) const = default;
};

// One replica slot that changes node: partition `partition`'s replica
// `from` is copied to `to` (which then holds it at position `slot`).
struct PartitionMove {
  uint32_t partition = 0;
  int slot = 0;
  std::string from;
  std::string to;
  bool operator==(const PartitionMove&) const = default;
};

struct Plan {
  Assignment after;
  std::vector<std::string> members_after;  // sorted
  std::vector<PartitionMove> moves;        // by partition, then slot
};

// Today's assignment (epoch 1, `--cluster`): partitions dealt round-robin to
// the members sorted by id, each list the owner and the next N-1 members
// (the same as Ring). BadRequest as Ring::Make.
Status RoundRobinAssignment(std::vector<std::string> members, uint32_t partitions, int replicas,
                            Assignment* out);

// The plan for `change` on `before` (whose members are `members`).
// BadRequest naming the problem: an unknown or already-present node, a
// cluster that would have fewer members than replicas, an inconsistent
// assignment (a list of another length, a repeated or unknown node).
Status PlanMembershipChange(const Assignment& before, const std::vector<std::string>& members,
                            const MembershipChange& change, Plan* out);

// Replica slots per node, and partitions owned per node (zero for members
// that hold none).
std::map<std::string, int> SlotCounts(const Assignment& a, const std::vector<std::string>& members);
std::map<std::string, int> OwnerCounts(const Assignment& a,
                                       const std::vector<std::string>& members);

}  // namespace ringkv::cluster
