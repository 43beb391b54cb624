#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

#include "engine/version.h"

namespace ringkv {
namespace {

TEST(HybridClockTest, FollowsPhysicalTime) {
  ManualClock clock(1000);
  HybridClock hlc(&clock);
  uint64_t a = hlc.Now();
  EXPECT_EQ(HlcPhysicalMs(a), 1000u);
  EXPECT_EQ(HlcLogical(a), 0u);
  clock.Advance(5);
  uint64_t b = hlc.Now();
  EXPECT_EQ(HlcPhysicalMs(b), 1005u);
  EXPECT_EQ(HlcLogical(b), 0u);
}

TEST(HybridClockTest, MonotonicWhenClockStandsStillOrGoesBack) {
  ManualClock clock(5000);
  HybridClock hlc(&clock);
  uint64_t prev = hlc.Now();
  uint64_t first = prev;
  for (int i = 0; i < 100; ++i) {
    if (i == 50) clock.Set(1000);  // NTP step backwards
    uint64_t next = hlc.Now();
    EXPECT_GT(next, prev);
    prev = next;
  }
  // While physical time is behind, timestamps keep the old ms and tick the counter.
  EXPECT_EQ(HlcPhysicalMs(prev), HlcPhysicalMs(first));
  EXPECT_EQ(HlcLogical(prev), 100u);
}

TEST(HybridClockTest, ObserveMovesPastRemoteTimestamps) {
  ManualClock clock(1000);
  HybridClock hlc(&clock);
  uint64_t remote = MakeHlc(9000, 3);
  hlc.Observe(remote);
  EXPECT_GT(hlc.Now(), remote);
  hlc.Observe(MakeHlc(10, 0));  // an older one changes nothing
  EXPECT_GT(hlc.Now(), remote + 1);
}

TEST(HybridClockTest, UniqueAcrossThreads) {
  ManualClock clock(1000);
  HybridClock hlc(&clock);
  constexpr int kThreads = 4, kPerThread = 5000;
  std::vector<std::vector<uint64_t>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) seen[t].push_back(hlc.Now());
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> all;
  for (auto& v : seen) {
    for (size_t i = 1; i < v.size(); ++i) EXPECT_GT(v[i], v[i - 1]);
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace ringkv
