#include "server/background.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace ringkv {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct Flag final : cluster::Expirable {
  std::atomic<int> expired{0};
  void Expire() override { expired.fetch_add(1); }
};

// Polls `pred` until it holds or `limit` passes.
template <typename Pred>
bool Eventually(Pred pred, milliseconds limit = milliseconds(5000)) {
  auto deadline = steady_clock::now() + limit;
  while (!pred()) {
    if (steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

TEST(BackgroundTest, DeadlinesExpireInOrderAndNotEarly) {
  Background bg;
  auto slow = std::make_shared<Flag>();
  auto fast = std::make_shared<Flag>();
  auto start = steady_clock::now();
  bg.ExpireAfter(200, slow);
  bg.ExpireAfter(20, fast);  // a shorter delay armed later still comes first
  ASSERT_TRUE(Eventually([&] { return fast->expired.load() == 1; }));
  EXPECT_EQ(slow->expired.load(), 0);
  ASSERT_TRUE(Eventually([&] { return slow->expired.load() == 1; }));
  EXPECT_GE(steady_clock::now() - start, milliseconds(200));
  EXPECT_TRUE(Eventually([&] { return bg.pending_deadlines() == 0; }));
}

TEST(BackgroundTest, ATargetGoneBeforeItsDeadlineIsNotCalled) {
  Background bg;
  auto kept = std::make_shared<Flag>();
  std::weak_ptr<Flag> gone;
  {
    auto f = std::make_shared<Flag>();
    gone = f;
    bg.ExpireAfter(10, f);
  }
  bg.ExpireAfter(30, kept);
  ASSERT_TRUE(Eventually([&] { return kept->expired.load() == 1; }));
  EXPECT_TRUE(gone.expired());
  EXPECT_EQ(bg.pending_deadlines(), 0u);
}

TEST(BackgroundTest, WorkRunsInOrderOffTheCallersThreadAndStopDrainsIt) {
  std::vector<int> order;
  std::atomic<bool> other_thread{true};
  const auto caller = std::this_thread::get_id();
  {
    Background bg;
    for (int i = 0; i < 100; ++i) {
      bg.Run([&, i] {
        if (std::this_thread::get_id() == caller) other_thread = false;
        order.push_back(i);
      });
    }
    bg.Stop();  // runs what is queued, then joins
    EXPECT_EQ(order.size(), 100u);
    bg.Run([&] { order.push_back(100); });  // after Stop: inline
  }
  ASSERT_EQ(order.size(), 101u);
  for (int i = 0; i <= 100; ++i) EXPECT_EQ(order[i], i);
  EXPECT_TRUE(other_thread.load());
}

}  // namespace
}  // namespace ringkv
