// The cluster map (server/cluster/cluster_map.h), its JSON form
// (server/protocol_membership.h), the replica acceptance rule (router.h
// CheckFence) and the coordinator's two-set write quorum during a change.
#include "server/cluster/cluster_map.h"

#include <gtest/gtest.h>

#include "server/cluster/ring.h"
#include "server/cluster/router.h"
#include "server/protocol_membership.h"

namespace ringkv::cluster {
namespace {

std::vector<std::pair<std::string, std::string>> Members(int n) {
  std::vector<std::pair<std::string, std::string>> out;
  for (int i = 1; i <= n; ++i)
    out.emplace_back("n" + std::to_string(i), "127.0.0.1:" + std::to_string(7700 + i));
  return out;
}

ClusterMap Initial(int n = 3, uint32_t q = 16, int replicas = 3) {
  ClusterMap m;
  EXPECT_TRUE(InitialMap("c1", Members(n), q, replicas, &m).ok());
  return m;
}

StagedChange Join(const std::string& id) {
  StagedChange c;
  c.change.kind = MembershipChange::Kind::kJoin;
  c.change.node = id;
  c.address = "127.0.0.1:7799";
  return c;
}

StagedChange Leave(const std::string& id,
                   MembershipChange::Kind kind = MembershipChange::Kind::kLeave) {
  StagedChange c;
  c.change.kind = kind;
  c.change.node = id;
  return c;
}

TEST(ClusterMapTest, EpochOneIsTodaysRoundRobinRing) {
  ClusterMap m = Initial(3, 16, 2);
  EXPECT_EQ(m.epoch, 1u);
  EXPECT_TRUE(ValidateMap(m).ok());
  Ring old;
  ASSERT_TRUE(Ring::Make({"n1", "n2", "n3"}, 16, 2, &old).ok());
  Ring fresh = Ring::FromMap(m);
  for (uint32_t p = 0; p < 16; ++p) {
    EXPECT_EQ(fresh.PreferenceList(p), old.PreferenceList(p));
    EXPECT_TRUE(fresh.NewWriteSet(p).empty());
  }
  EXPECT_EQ(m.Claimant(), "n1");
}

TEST(ClusterMapTest, JoinGoesThroughCopyReadNewAndStable) {
  ClusterMap m = Initial();
  ClusterMap copy;
  ASSERT_TRUE(PlanChanges(m, {Join("n4")}, &copy).ok());
  EXPECT_EQ(copy.epoch, 2u);
  EXPECT_EQ(copy.phase, MapPhase::kCopy);
  EXPECT_EQ(copy.Find("n4")->state, MemberState::kJoining);
  ASSERT_FALSE(copy.moves.empty());
  for (const MapMove& mv : copy.moves) {
    EXPECT_EQ(mv.to, "n4");
    EXPECT_FALSE(mv.ready);
  }
  // During the copy n4 takes writes of its new partitions, not reads.
  Ring ring = Ring::FromMap(copy);
  const uint32_t p = copy.moves[0].partition;
  EXPECT_TRUE(ring.Replicates("n4", p));
  EXPECT_FALSE(ring.Reads("n4", p));
  EXPECT_TRUE(ring.Replicates(copy.moves[0].from, p));
  // Not ready: no advance.
  ClusterMap next;
  EXPECT_FALSE(AdvanceMap(copy, &next).ok());
  for (MapMove& mv : copy.moves) mv.ready = true;
  ASSERT_TRUE(AdvanceMap(copy, &next).ok());
  EXPECT_EQ(next.phase, MapPhase::kReadNew);
  ring = Ring::FromMap(next);
  EXPECT_TRUE(ring.Reads("n4", p));
  EXPECT_FALSE(ring.Reads(copy.moves[0].from, p));
  EXPECT_TRUE(ring.Replicates(copy.moves[0].from, p));  // still written
  ClusterMap stable;
  ASSERT_TRUE(AdvanceMap(next, &stable).ok());
  EXPECT_EQ(stable.epoch, 4u);
  EXPECT_EQ(stable.phase, MapPhase::kStable);
  EXPECT_EQ(stable.Find("n4")->state, MemberState::kNormal);
  EXPECT_TRUE(ValidateMap(stable).ok());
  ring = Ring::FromMap(stable);
  EXPECT_FALSE(ring.Replicates(copy.moves[0].from, p));
  auto slots = SlotCounts(stable.assignment, {"n1", "n2", "n3", "n4"});
  for (const auto& [node, n] : slots) EXPECT_NEAR(n, 16 * 3 / 4.0, 1.0) << node;
}

TEST(ClusterMapTest, LeaveEndsLeftWithNoSlots) {
  ClusterMap m = Initial(4);
  ClusterMap copy;
  ASSERT_TRUE(PlanChanges(m, {Leave("n2")}, &copy).ok());
  EXPECT_EQ(copy.Find("n2")->state, MemberState::kLeaving);
  EXPECT_EQ(copy.Claimant(), "n1");
  for (MapMove& mv : copy.moves) {
    EXPECT_EQ(mv.from, "n2");
    mv.ready = true;
  }
  ClusterMap read_new, stable;
  ASSERT_TRUE(AdvanceMap(copy, &read_new).ok());
  ASSERT_TRUE(AdvanceMap(read_new, &stable).ok());
  EXPECT_EQ(stable.Find("n2")->state, MemberState::kLeft);
  EXPECT_EQ(SlotCounts(stable.assignment, {"n2"})["n2"], 0);
  EXPECT_EQ(stable.ActiveIds(), (std::vector<std::string>{"n1", "n3", "n4"}));
}

TEST(ClusterMapTest, ReplaceMovesExactlyTheOldNodesSlots) {
  ClusterMap m = Initial(4);
  StagedChange c = Leave("n3", MembershipChange::Kind::kReplace);
  c.change.new_node = "n9";
  c.address = "127.0.0.1:7709";
  ClusterMap copy;
  ASSERT_TRUE(PlanChanges(m, {c}, &copy).ok());
  const int old_slots = SlotCounts(m.assignment, {"n3"})["n3"];
  EXPECT_EQ(static_cast<int>(copy.moves.size()), old_slots);
  for (const MapMove& mv : copy.moves) {
    EXPECT_EQ(mv.from, "n3");
    EXPECT_EQ(mv.to, "n9");
  }
}

TEST(ClusterMapTest, BadChangesAreRefusedWithAReason) {
  ClusterMap m = Initial();
  ClusterMap out;
  Status s = PlanChanges(m, {Join("n2")}, &out);
  EXPECT_NE(s.message().find("already a member"), std::string::npos) << s.ToString();
  s = PlanChanges(m, {Leave("n9")}, &out);
  EXPECT_NE(s.message().find("not a normal member"), std::string::npos) << s.ToString();
  s = PlanChanges(m, {Leave("n1")}, &out);  // 2 members left for N = 3
  EXPECT_FALSE(s.ok());
  s = PlanChanges(m, {}, &out);
  EXPECT_NE(s.message().find("nothing is staged"), std::string::npos);
  ClusterMap copy;
  ASSERT_TRUE(PlanChanges(m, {Join("n4")}, &copy).ok());
  s = PlanChanges(copy, {Join("n5")}, &out);
  EXPECT_NE(s.message().find("in progress"), std::string::npos) << s.ToString();
}

TEST(ClusterMapTest, TwoJoinsStagedTogetherPlanAsOne) {
  ClusterMap m = Initial();
  ClusterMap copy;
  ASSERT_TRUE(PlanChanges(m, {Join("n4"), Join("n5")}, &copy).ok());
  for (MapMove& mv : copy.moves) {
    EXPECT_TRUE(mv.to == "n4" || mv.to == "n5") << mv.to;
    mv.ready = true;
  }
  ClusterMap a, b;
  ASSERT_TRUE(AdvanceMap(copy, &a).ok());
  ASSERT_TRUE(AdvanceMap(a, &b).ok());
  auto slots = SlotCounts(b.assignment, b.ActiveIds());
  for (const auto& [node, n] : slots) EXPECT_NEAR(n, 16 * 3 / 5.0, 1.0) << node;
}

TEST(ClusterMapTest, ValidateRefusesInconsistentMaps) {
  ClusterMap m = Initial();
  ClusterMap bad = m;
  bad.assignment[3][1] = bad.assignment[3][0];  // a repeated replica
  EXPECT_FALSE(ValidateMap(bad).ok());
  bad = m;
  bad.assignment[0][0] = "ghost";
  EXPECT_FALSE(ValidateMap(bad).ok());
  bad = m;
  bad.epoch = 0;
  EXPECT_FALSE(ValidateMap(bad).ok());
  ClusterMap copy;
  ASSERT_TRUE(PlanChanges(m, {Join("n4")}, &copy).ok());
  bad = copy;
  bad.moves.pop_back();
  EXPECT_FALSE(ValidateMap(bad).ok());
}

TEST(ClusterMapTest, JsonRoundTripAndHash) {
  ClusterMap m = Initial();
  ClusterMap copy;
  ASSERT_TRUE(PlanChanges(m, {Join("n4")}, &copy).ok());
  copy.moves[0].ready = true;
  for (const ClusterMap* original : {&m, &copy}) {
    ClusterMap back;
    ASSERT_TRUE(DecodeMap(EncodeMap(*original), &back).ok());
    EXPECT_EQ(back, *original);
    EXPECT_EQ(MapHash(back), MapHash(*original));
  }
  EXPECT_NE(MapHash(m), MapHash(copy));
  ClusterMap out;
  EXPECT_FALSE(DecodeMap("{}", &out).ok());
  EXPECT_FALSE(DecodeMap("not json", &out).ok());
  std::string text = EncodeMap(m);
  text.replace(text.find("\"normal\""), 8, "\"sleepy\"");
  EXPECT_FALSE(DecodeMap(text, &out).ok());
}

TEST(ClusterMapTest, FlagsNamingTheMembersElsewhereMoveThemOneEpochOn) {
  ClusterMap m = Initial(4);
  ClusterMap copy, read_new, grown;
  ASSERT_TRUE(PlanChanges(Initial(3), {Join("n4")}, &copy).ok());
  for (MapMove& mv : copy.moves) mv.ready = true;
  ASSERT_TRUE(AdvanceMap(copy, &read_new).ok());
  ASSERT_TRUE(AdvanceMap(read_new, &grown).ok());  // epoch 4, n1..n4
  auto members = Members(4);
  for (auto& [id, address] : members) address = "10.0.0.9:" + address.substr(address.find(':') + 1);
  ClusterMap flags;
  ASSERT_TRUE(InitialMap("other", members, 16, 3, &flags).ok());
  std::optional<ClusterMap> moved = MovedMembers(grown, flags);
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(moved->epoch, 5u);
  EXPECT_EQ(moved->cluster_id, grown.cluster_id);
  EXPECT_EQ(moved->assignment, grown.assignment);
  EXPECT_EQ(moved->Find("n2")->address, "10.0.0.9:7702");
  // Other ids, or the same addresses: nothing.
  ClusterMap three;
  ASSERT_TRUE(InitialMap("x", Members(3), 16, 3, &three).ok());
  EXPECT_FALSE(MovedMembers(grown, three).has_value());
  EXPECT_FALSE(MovedMembers(m, m).has_value());
}

TEST(FenceTest, ReplicaServesOnlyItsEpochAndItsPartitions) {
  ClusterMap m = Initial(4, 16, 2);
  Ring ring = Ring::FromMap(m);
  uint32_t mine = 0, other = 0;
  for (uint32_t p = 0; p < 16; ++p) (ring.Replicates("n1", p) ? mine : other) = p;
  EXPECT_TRUE(CheckFence(ring, "n1", mine, Epoch{1}, true).ok());
  EXPECT_TRUE(CheckFence(ring, "n1", mine, Epoch{1}, false).ok());
  EXPECT_TRUE(CheckFence(ring, "n1", mine, Epoch{0}, true).ok());  // hints, repairs
  Status s = CheckFence(ring, "n1", mine, Epoch{2}, true);
  EXPECT_TRUE(s.IsStaleEpoch());
  EXPECT_EQ(s.message(), "1");
  EXPECT_TRUE(CheckFence(ring, "n1", other, Epoch{1}, true).IsStaleEpoch());
  EXPECT_TRUE(CheckFence(ring, "n1", other, Epoch{0}, true).IsStaleEpoch());  // never created
  Ring test_ring;
  ASSERT_TRUE(Ring::Make({"a"}, 4, 1, &test_ring).ok());
  EXPECT_TRUE(CheckFence(test_ring, "b", 0, Epoch{7}, true).ok());  // epoch 0 fences nothing
}

}  // namespace
}  // namespace ringkv::cluster
