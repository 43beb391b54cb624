#include "bench/workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

namespace ringkv::bench {
namespace {

TEST(WorkloadTest, UniformCoversTheKeySpaceEvenly) {
  KeyChooser keys(100, Distribution::kUniform);
  std::mt19937_64 rng(1);
  std::vector<int> counts(100);
  for (int i = 0; i < 100000; ++i) counts[keys.Next(rng)]++;
  for (int c : counts) {
    EXPECT_GT(c, 800);
    EXPECT_LT(c, 1200);
  }
}

TEST(WorkloadTest, ZipfianIsSkewedLikeYcsb) {
  constexpr uint64_t kN = 10000;
  KeyChooser keys(kN, Distribution::kZipfian);
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<int> rank_counts(kN);
  constexpr int kDraws = 200000;
  for (int i = 0; i < kDraws; ++i) rank_counts[keys.Rank(u(rng))]++;
  // With theta 0.99 over 10k keys, rank 0 takes about 1/zeta(n) ~ 10 % of draws,
  // rank 1 about half of rank 0, and the top 1 % of keys well over a third.
  double p0 = rank_counts[0] / static_cast<double>(kDraws);
  EXPECT_GT(p0, 0.08);
  EXPECT_LT(p0, 0.12);
  EXPECT_NEAR(rank_counts[1] / static_cast<double>(rank_counts[0]), 0.5, 0.06);
  int top = 0;
  for (uint64_t r = 0; r < kN / 100; ++r) top += rank_counts[r];
  EXPECT_GT(top, kDraws / 3);
  // Every index drawn is in range, and popular ranks are scattered, not 0..k.
  std::set<uint64_t> hot;
  for (uint64_t r = 0; r < 10; ++r) hot.insert(keys.Scatter(r));
  EXPECT_EQ(hot.size(), 10u);
  EXPECT_GT(*hot.rbegin(), 10u);
  for (int i = 0; i < 10000; ++i) EXPECT_LT(keys.Next(rng), kN);
}

TEST(WorkloadTest, KeyNamesAreFixedWidth) {
  EXPECT_EQ(KeyName(0), "key0000000000");
  EXPECT_EQ(KeyName(1234567890), "key1234567890");
  EXPECT_EQ(KeyName(7).size(), KeyName(99999).size());
}

}  // namespace
}  // namespace ringkv::bench
