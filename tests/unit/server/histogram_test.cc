#include "server/histogram.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

namespace ringkv {
namespace {

TEST(HistogramTest, EmptyIsZero) {
  Histogram h;
  EXPECT_EQ(h.Percentile(0.5), 0u);
  EXPECT_EQ(h.count(), 0u);
}

TEST(HistogramTest, BucketsCoverEveryValueWithinOneSixteenth) {
  for (uint64_t v :
       {0ULL, 1ULL, 15ULL, 16ULL, 17ULL, 31ULL, 32ULL, 1000ULL, 123456ULL, (1ULL << 40) + 12345}) {
    int b = Histogram::BucketOf(v);
    uint64_t upper = Histogram::BucketUpperBound(b);
    EXPECT_GE(upper, v);
    EXPECT_LE(upper - v, v / 16 + 1) << v;
    if (b > 0) {
      EXPECT_LT(Histogram::BucketUpperBound(b - 1), v);
    }
  }
}

TEST(HistogramTest, PercentilesOfKnownData) {
  Histogram h;
  for (uint64_t v = 1; v <= 10000; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 10000u);
  EXPECT_EQ(h.max(), 10000u);
  auto near = [](uint64_t got, double want) {
    EXPECT_GE(static_cast<double>(got), want);
    EXPECT_LE(static_cast<double>(got), want * 1.0625 + 1) << want;
  };
  near(h.Percentile(0.5), 5000);
  near(h.Percentile(0.99), 9900);
  near(h.Percentile(0.999), 9990);
  EXPECT_EQ(h.Percentile(1.0), 10000u);
  EXPECT_EQ(h.Percentile(0.0), 1u);
}

TEST(HistogramTest, HugeValuesLandInLastBucket) {
  Histogram h;
  h.Record(~0ULL);
  EXPECT_EQ(Histogram::BucketOf(~0ULL), Histogram::kBuckets - 1);
  EXPECT_EQ(h.Percentile(0.5), ~0ULL);
}

TEST(HistogramTest, ConcurrentRecordsAllCounted) {
  Histogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000; ++i) h.Record(rng() % 100000);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(h.count(), 80000u);
  uint64_t total = 0;
  for (int b = 0; b < Histogram::kBuckets; ++b) total += h.BucketCount(b);
  EXPECT_EQ(total, 80000u);
}

TEST(HistogramTest, MergeAddsCounts) {
  Histogram a, b;
  a.Record(10);
  b.Record(1000);
  b.Record(2000);
  a.Merge(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.max(), 2000u);
  EXPECT_EQ(a.Percentile(0.34), Histogram::BucketUpperBound(Histogram::BucketOf(1000)));
}

}  // namespace
}  // namespace ringkv
