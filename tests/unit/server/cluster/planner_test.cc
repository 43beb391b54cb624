// The membership planner (server/cluster/planner.h): balance, distinct
// replicas, minimal moves and determinism for every cluster size 1..12,
// Q = 64 and 256, N = 1..5, for joins, leaves, removes and replaces, and over
// a chain of changes (an assignment the planner made, not round-robin).
#include "server/cluster/planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "server/cluster/ring.h"

namespace ringkv::cluster {
namespace {

std::vector<std::string> Nodes(int count, const std::string& prefix = "n") {
  std::vector<std::string> out;
  for (int i = 1; i <= count; ++i) out.push_back(prefix + (i < 10 ? "0" : "") + std::to_string(i));
  return out;
}

// The fewest slots that must change node to reach a balanced assignment of
// `after_members` from `before`: the leaving node's slots, and what any node
// holds beyond the most it may keep (the largest holders keep the rounded-up
// share). Computed here independently of the planner.
size_t LowerBound(const Assignment& before, const std::vector<std::string>& after_members) {
  std::map<std::string, int> held;
  for (const auto& m : after_members) held[m] = 0;
  size_t gone = 0;
  for (const auto& list : before) {
    for (const auto& node : list) {
      if (held.count(node) != 0) {
        ++held[node];
      } else {
        ++gone;
      }
    }
  }
  const int total = static_cast<int>(before.size() * before[0].size());
  const int s = static_cast<int>(after_members.size());
  std::vector<int> counts;
  for (const auto& [node, c] : held) counts.push_back(c);
  std::sort(counts.rbegin(), counts.rend());
  size_t must = gone;
  for (int i = 0; i < s; ++i) {
    const int keep = total / s + (i < total % s ? 1 : 0);
    if (counts[i] > keep) must += static_cast<size_t>(counts[i] - keep);
  }
  return must;
}

// The properties every join, leave and remove keeps, from any assignment;
// `what` names the case in failures.
void ExpectGoodPlan(const Assignment& before, const Plan& plan, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(plan.after.size(), before.size());
  const std::set<std::string> members(plan.members_after.begin(), plan.members_after.end());
  const size_t n = before[0].size();
  for (const auto& list : plan.after) {
    ASSERT_EQ(list.size(), n);
    EXPECT_EQ(std::set<std::string>(list.begin(), list.end()).size(), n) << "distinct replicas";
    for (const auto& node : list) EXPECT_EQ(members.count(node), 1u) << node;
  }
  const int s = static_cast<int>(members.size());
  const int total = static_cast<int>(before.size() * n);
  for (const auto& [node, c] : SlotCounts(plan.after, plan.members_after)) {
    EXPECT_GE(c, total / s) << node << " slots";
    EXPECT_LE(c, (total + s - 1) / s) << node << " slots";
  }
  const int q = static_cast<int>(before.size());
  for (const auto& [node, c] : OwnerCounts(plan.after, plan.members_after)) {
    EXPECT_GE(c, q / s) << node << " owns";
    EXPECT_LE(c, (q + s - 1) / s) << node << " owns";
  }
  // The moves are exactly the difference, each slot once.
  size_t changed = 0;
  for (size_t p = 0; p < before.size(); ++p) {
    for (const auto& node : plan.after[p]) {
      if (std::find(before[p].begin(), before[p].end(), node) == before[p].end()) ++changed;
    }
  }
  EXPECT_EQ(plan.moves.size(), changed);
  for (const auto& m : plan.moves) {
    ASSERT_LT(m.partition, plan.after.size());
    EXPECT_EQ(plan.after[m.partition][m.slot], m.to);
    EXPECT_NE(std::find(before[m.partition].begin(), before[m.partition].end(), m.from),
              before[m.partition].end());
  }
  EXPECT_EQ(plan.moves.size(), LowerBound(before, plan.members_after)) << "minimal moves";
}

Plan MustPlan(const Assignment& before, const std::vector<std::string>& members,
              const MembershipChange& change) {
  Plan plan;
  Status s = PlanMembershipChange(before, members, change, &plan);
  EXPECT_TRUE(s.ok()) << s.ToString();
  Plan again;
  EXPECT_TRUE(PlanMembershipChange(before, members, change, &again).ok());
  EXPECT_EQ(again.after, plan.after) << "deterministic";
  EXPECT_EQ(again.moves, plan.moves) << "deterministic";
  return plan;
}

TEST(PlannerTest, RoundRobinIsTodaysRing) {
  Assignment a;
  ASSERT_TRUE(RoundRobinAssignment(Nodes(5), 64, 3, &a).ok());
  Ring ring;
  ASSERT_TRUE(Ring::Make(Nodes(5), 64, 3, &ring).ok());
  for (uint32_t p = 0; p < 64; ++p) EXPECT_EQ(a[p], ring.PreferenceList(p));
}

TEST(PlannerTest, EverySizePartitionCountAndReplicaCount) {
  for (uint32_t q : {64u, 256u}) {
    for (int s = 1; s <= 12; ++s) {
      for (int n = 1; n <= std::min(5, s); ++n) {
        const std::string name =
            "Q=" + std::to_string(q) + " S=" + std::to_string(s) + " N=" + std::to_string(n);
        const std::vector<std::string> members = Nodes(s);
        Assignment before;
        ASSERT_TRUE(RoundRobinAssignment(members, q, n, &before).ok());

        // Join: only the new node receives, exactly its share.
        Plan join = MustPlan(before, members, {MembershipChange::Kind::kJoin, "x-new", ""});
        ExpectGoodPlan(before, join, name + " join");
        for (const auto& m : join.moves) EXPECT_EQ(m.to, "x-new") << name;

        // Replace: exactly the old node's slots, in place, nothing else.
        // (Its balance is the assignment's before: the new node inherits.)
        Plan replace = MustPlan(before, members, {MembershipChange::Kind::kReplace, "n01", "r01"});
        EXPECT_EQ(static_cast<int>(replace.moves.size()), SlotCounts(before, members)["n01"]);
        for (uint32_t p = 0; p < q; ++p) {
          for (int k = 0; k < n; ++k) {
            const std::string& was = before[p][k];
            EXPECT_EQ(replace.after[p][k], was == "n01" ? "r01" : was) << name;
          }
        }

        // Leave and remove (while N members remain).
        if (s - 1 >= n) {
          for (auto kind : {MembershipChange::Kind::kLeave, MembershipChange::Kind::kRemove}) {
            Plan leave = MustPlan(before, members, {kind, "n02", ""});
            ExpectGoodPlan(before, leave, name + " leave");
          }
        } else {
          Plan plan;
          EXPECT_EQ(PlanMembershipChange(before, members,
                                         {MembershipChange::Kind::kLeave, "n01", ""}, &plan)
                        .code(),
                    Status::Code::kBadRequest)
              << name;
        }
      }
    }
  }
}

// 3 -> 4 -> 5 -> 4 (a leave) -> replace -> 5: each step from the planner's own
// assignment, as a cluster grows and shrinks.
TEST(PlannerTest, ChainOfChanges) {
  for (uint32_t q : {64u, 256u}) {
    std::vector<std::string> members = Nodes(3);
    Assignment a;
    ASSERT_TRUE(RoundRobinAssignment(members, q, 3, &a).ok());
    const std::vector<MembershipChange> steps = {
        {MembershipChange::Kind::kJoin, "n04", ""},
        {MembershipChange::Kind::kJoin, "n05", ""},
        {MembershipChange::Kind::kLeave, "n02", ""},
        {MembershipChange::Kind::kReplace, "n04", "n06"},
        {MembershipChange::Kind::kJoin, "n07", ""},
        {MembershipChange::Kind::kRemove, "n01", ""},
    };
    for (const auto& step : steps) {
      Plan plan = MustPlan(a, members, step);
      ExpectGoodPlan(a, plan, "Q=" + std::to_string(q) + " step " + step.node);
      a = plan.after;
      members = plan.members_after;
    }
  }
}

TEST(PlannerTest, RefusesImpossibleChanges) {
  const std::vector<std::string> members = Nodes(3);
  Assignment a;
  ASSERT_TRUE(RoundRobinAssignment(members, 64, 3, &a).ok());
  Plan plan;
  auto code = [&](const MembershipChange& c, const Assignment& from,
                  const std::vector<std::string>& m) {
    return PlanMembershipChange(from, m, c, &plan).code();
  };
  using K = MembershipChange::Kind;
  EXPECT_EQ(code({K::kJoin, "n01", ""}, a, members), Status::Code::kBadRequest);
  EXPECT_EQ(code({K::kLeave, "n09", ""}, a, members), Status::Code::kBadRequest);
  EXPECT_EQ(code({K::kLeave, "n01", ""}, a, members), Status::Code::kBadRequest);  // 2 < N
  EXPECT_EQ(code({K::kReplace, "n01", "n02"}, a, members), Status::Code::kBadRequest);
  EXPECT_EQ(code({K::kReplace, "n01", ""}, a, members), Status::Code::kBadRequest);
  EXPECT_EQ(code({K::kJoin, "", ""}, a, members), Status::Code::kBadRequest);
  Assignment broken = a;
  broken[3][1] = broken[3][0];
  EXPECT_EQ(code({K::kJoin, "n04", ""}, broken, members), Status::Code::kBadRequest);
  broken = a;
  broken[5].pop_back();
  EXPECT_EQ(code({K::kJoin, "n04", ""}, broken, members), Status::Code::kBadRequest);
  EXPECT_EQ(code({K::kJoin, "n04", ""}, a, {"n01", "n02"}), Status::Code::kBadRequest);
  EXPECT_EQ(code({K::kJoin, "n04", ""}, {}, members), Status::Code::kBadRequest);
}

}  // namespace
}  // namespace ringkv::cluster
