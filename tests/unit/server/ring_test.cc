#include "server/cluster/ring.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace ringkv::cluster {
namespace {

TEST(RingTest, KeyHashIsStableXxHash64) {
  // Known XXH64 values (seed 0): the placement of keys must never change.
  EXPECT_EQ(KeyHash(""), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(KeyHash("a"), 0xD24EC4F1A98C6E5BULL);
  EXPECT_NE(KeyHash(std::string("a\0", 2)), KeyHash("a"));
}

TEST(RingTest, BalancedDistinctAndDeterministic) {
  for (int s = 1; s <= 7; ++s) {
    std::vector<std::string> members;
    for (int i = 0; i < s; ++i) members.push_back("n" + std::to_string(i));
    int n = std::min(3, s);
    Ring a, b;
    ASSERT_TRUE(Ring::Make(members, 64, n, &a).ok());
    std::vector<std::string> shuffled(members.rbegin(), members.rend());
    ASSERT_TRUE(Ring::Make(shuffled, 64, n, &b).ok());
    std::map<std::string, int> owned;
    for (uint32_t p = 0; p < 64; ++p) {
      const auto& pref = a.PreferenceList(p);
      ASSERT_EQ(pref.size(), static_cast<size_t>(n));
      EXPECT_EQ(std::set<std::string>(pref.begin(), pref.end()).size(), pref.size());
      EXPECT_EQ(pref, b.PreferenceList(p));  // member order does not matter
      owned[pref[0]]++;
    }
    for (const auto& [node, count] : owned) {
      EXPECT_GE(count, 64 / s) << node;
      EXPECT_LE(count, 64 / s + 1) << node;
    }
    EXPECT_EQ(owned.size(), static_cast<size_t>(s));
  }
}

TEST(RingTest, KeysSpreadOverPartitions) {
  Ring r;
  ASSERT_TRUE(Ring::Make({"n1"}, 16, 1, &r).ok());
  std::vector<int> counts(16);
  for (int i = 0; i < 16000; ++i) counts[r.PartitionOf("key" + std::to_string(i))]++;
  for (int c : counts) {
    EXPECT_GT(c, 800);
    EXPECT_LT(c, 1200);
  }
}

TEST(RingTest, RejectsBadShapes) {
  Ring r;
  EXPECT_FALSE(Ring::Make({}, 64, 1, &r).ok());
  EXPECT_FALSE(Ring::Make({"a", "a"}, 64, 1, &r).ok());
  EXPECT_FALSE(Ring::Make({"a", "b"}, 48, 1, &r).ok());
  EXPECT_FALSE(Ring::Make({"a", "b"}, 64, 3, &r).ok());
  EXPECT_FALSE(Ring::Make({"a", "b"}, 64, 0, &r).ok());
  ASSERT_TRUE(Ring::Make({"b", "a", "c"}, 8, 2, &r).ok());
  EXPECT_TRUE(r.Replicates(r.PreferenceList(5)[1], 5));
}

}  // namespace
}  // namespace ringkv::cluster
