// The exchange and pull state machines (server/cluster/aae_exchange.h)
// against in-memory replicas that diverge, fail, drop and delay.
#include "server/cluster/aae_exchange.h"

#include <gtest/gtest.h>

#include <set>

#include "tests/fakes/fake_aae.h"
#include "tests/fakes/manual_timer.h"

namespace ringkv::cluster {
namespace {

using testing::FakeAaeReplica;
using testing::MakeRec;
using testing::ManualTimer;
using Outcome = ExchangeResult::Outcome;

constexpr uint32_t kP = 3;
constexpr uint64_t kT = 1'700'000'000'000ULL;  // a physical time for versions

std::string Key(int i) { return "k" + std::to_string(i); }

// A key whose branch is not in `avoid`.
std::string KeyOutside(const std::set<uint32_t>& avoid_branches, int from) {
  for (int i = from;; ++i) {
    std::string k = "x" + std::to_string(i);
    if (avoid_branches.count(aae::BranchOf(aae::SegmentOfKey(k))) == 0) return k;
  }
}

class ExchangeTest : public ::testing::Test {
 protected:
  void Start(RepairBudget* budget = nullptr) {
    running_ = RunExchange(
        &a_, &b_, kP, opts_, &timer_, budget ? budget : &unlimited_, [this] { return now_ms_; },
        [this](ExchangeResult r) { results_.push_back(std::move(r)); });
  }
  void Advance(uint64_t ms) {
    now_ms_ += ms;
    timer_.Advance(ms);
  }
  // Runs one exchange to its end (advancing through its pauses).
  ExchangeResult Exchange() {
    results_.clear();
    Start();
    for (int i = 0; i < 20 && results_.empty(); ++i) Advance(opts_.pause_ms);
    EXPECT_EQ(results_.size(), 1u);
    return results_.empty() ? ExchangeResult() : results_.back();
  }
  // Both replicas hold keys k0..k(n-1) at the same versions.
  void Same(int n) {
    for (int i = 0; i < n; ++i) {
      Record r = MakeRec(kT + i, "n1", "v" + std::to_string(i));
      a_.Apply(kP, Key(i), r);
      b_.Apply(kP, Key(i), r);
    }
  }

  ManualTimer timer_;
  uint64_t now_ms_ = kT + 1'000'000;
  FakeAaeReplica a_{"a", &timer_}, b_{"b", &timer_};
  RepairBudget unlimited_{0, 0};
  ExchangeOptions opts_;
  std::vector<ExchangeResult> results_;
  std::shared_ptr<void> running_;  // the exchange Start() began
};

TEST_F(ExchangeTest, InSyncTreesRepairNothing) {
  Same(200);
  ExchangeResult r = Exchange();
  EXPECT_EQ(r.outcome, Outcome::kInSync);
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(r.segments_differing, 0u);
  EXPECT_EQ(r.keys_listed, 0u);
  EXPECT_EQ(r.oldest_difference_hlc, UINT64_MAX);
  EXPECT_FALSE(r.incomplete);
  EXPECT_EQ(a_.calls("Branches") + b_.calls("Keys") + b_.calls("Put") + a_.calls("Put"), 0);
  EXPECT_EQ(timer_.armed(), 0u);  // equal roots: no pause
}

// Nothing holds a pausing exchange but its caller: dropped (a node shutting
// down, its timer gone), it is freed, not kept alive by itself.
TEST_F(ExchangeTest, AbandonedExchangeIsFreedNotLeaked) {
  Same(10);
  a_.Apply(kP, "only-a", MakeRec(kT, "n1", "x"));
  Start();
  ASSERT_GT(timer_.armed(), 0u) << "the exchange should be pausing before its confirmation";
  std::weak_ptr<void> watch = running_;
  running_.reset();
  EXPECT_TRUE(watch.expired());
  for (int i = 0; i < 10; ++i) Advance(opts_.pause_ms);
  EXPECT_TRUE(results_.empty()) << "an abandoned exchange does not report";
}

TEST_F(ExchangeTest, RepairsBothDirectionsUntilEqual) {
  Same(200);
  std::set<uint32_t> segs;
  auto differs = [&](const std::string& k) { segs.insert(aae::SegmentOfKey(k)); };
  for (int i = 0; i < 20; ++i) {  // only on a
    a_.Apply(kP, "a" + std::to_string(i), MakeRec(kT + 500 + i, "n1", "va"));
    differs("a" + std::to_string(i));
  }
  for (int i = 0; i < 5; ++i) {  // only on b
    b_.Apply(kP, "b" + std::to_string(i), MakeRec(kT + 600 + i, "n2", "vb"));
    differs("b" + std::to_string(i));
  }
  for (int i = 0; i < 10; ++i) {  // b older
    b_.Set(kP, Key(i), MakeRec(kT - 100, "n2", "old"));
    differs(Key(i));
  }
  for (int i = 10; i < 15; ++i) {  // deleted on a after b's value
    a_.Apply(kP, Key(i), MakeRec(kT + 700, "n1", "", true));
    differs(Key(i));
  }
  for (int i = 15; i < 18; ++i) {  // deleted on b
    b_.Apply(kP, Key(i), MakeRec(kT + 800, "n2", "", true));
    differs(Key(i));
  }
  // Keys equal on both sides in the differing segments: false deltas.
  uint64_t equal_listed = 0;
  for (int i = 18; i < 200; ++i) equal_listed += segs.count(aae::SegmentOfKey(Key(i)));

  ExchangeResult r = Exchange();
  EXPECT_EQ(r.outcome, Outcome::kRepaired);
  EXPECT_EQ(r.keys_pushed, 20u + 10u + 5u);
  EXPECT_EQ(r.keys_pulled, 5u + 3u);
  EXPECT_EQ(r.segments_differing, segs.size());
  EXPECT_EQ(r.false_deltas, equal_listed);
  EXPECT_FALSE(r.incomplete);
  EXPECT_EQ(r.oldest_difference_hlc, MakeHlc(kT, 0));       // k0: a's newer version
  EXPECT_EQ(r.bytes_repaired, 20u * 2 + 10u * 2 + 5u * 2);  // "va", "v0".."v9", "vb"
  EXPECT_EQ(a_.Visible(kP), b_.Visible(kP));
  EXPECT_EQ(a_.Tree(kP), b_.Tree(kP));
  EXPECT_TRUE(b_.Get(kP, Key(12))->tombstone);
  EXPECT_TRUE(a_.Get(kP, Key(16))->tombstone);
  EXPECT_EQ(Exchange().outcome, Outcome::kInSync);
}

TEST_F(ExchangeTest, RepairsTheOlderSideOnly) {
  // The side that is behind gets the record; the other side sees no Put.
  Same(50);
  b_.Set(kP, Key(7), MakeRec(kT - 5, "n2", "old"));
  ExchangeResult r = Exchange();
  EXPECT_EQ(r.outcome, Outcome::kRepaired);
  EXPECT_EQ(r.keys_pushed, 1u);
  EXPECT_EQ(r.keys_pulled, 0u);
  EXPECT_EQ(a_.calls("Put"), 0);
  EXPECT_EQ(b_.Get(kP, Key(7))->value, "v7");
}

// A write that lands on one side during the pause differs at the confirm
// only: not repaired, while the real difference is.
TEST_F(ExchangeTest, WriteDuringPauseIsNotRepaired) {
  Same(50);
  const std::string real = "only-on-a";
  a_.Apply(kP, real, MakeRec(kT, "n1", "r"));
  std::string late = KeyOutside({aae::BranchOf(aae::SegmentOfKey(real))}, 0);
  Start();
  ASSERT_TRUE(results_.empty());                   // paused after the first compare
  a_.Apply(kP, late, MakeRec(kT + 5, "n1", "w"));  // in flight: b gets it later
  Advance(opts_.pause_ms);
  Advance(opts_.pause_ms);
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].outcome, Outcome::kRepaired);
  EXPECT_EQ(results_[0].keys_pushed, 1u);
  EXPECT_NE(b_.Get(kP, real), nullptr);
  EXPECT_EQ(b_.Get(kP, late), nullptr);
}

// The usual in-flight write: on a before the compare, on b before the
// confirm. Nothing differs twice.
TEST_F(ExchangeTest, WriteReachingBothSidesIsFilteredByTheConfirm) {
  Same(50);
  a_.Apply(kP, "w", MakeRec(kT + 9, "n1", "w"));
  Start();
  ASSERT_TRUE(results_.empty());
  b_.Apply(kP, "w", MakeRec(kT + 9, "n1", "w"));
  Advance(opts_.pause_ms);
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].outcome, Outcome::kInSync);
  EXPECT_EQ(results_[0].segments_differing, 0u);
  EXPECT_EQ(a_.calls("Branches"), 0);
}

// The same at the segment level, landed by the fake's hook: a write reaches
// b just before b answers the branch confirmation.
TEST_F(ExchangeTest, WriteBeforeTheBranchConfirmIsFiltered) {
  Same(50);
  const std::string real = "only-on-a";
  a_.Apply(kP, real, MakeRec(kT, "n1", "r"));
  uint32_t branch = aae::BranchOf(aae::SegmentOfKey(real));
  // Another key of the same branch, another segment: a has it, b gets it late.
  std::string late;
  for (int i = 0; late.empty(); ++i) {
    std::string k = "y" + std::to_string(i);
    uint32_t s = aae::SegmentOfKey(k);
    if (aae::BranchOf(s) == branch && s != aae::SegmentOfKey(real)) late = k;
  }
  Record w = MakeRec(kT + 3, "n1", "w");
  a_.Apply(kP, late, w);
  b_.before_call = [&](const std::string& method) {
    if (method == "Branches" && b_.calls("Branches") == 2) b_.Apply(kP, late, w);
  };
  ExchangeResult r = Exchange();
  EXPECT_EQ(r.outcome, Outcome::kRepaired);
  EXPECT_EQ(r.segments_differing, 1u);
  EXPECT_EQ(r.keys_pushed, 1u);
  EXPECT_EQ(r.keys_listed, 1u);  // the late key's segment was not listed
}

TEST_F(ExchangeTest, MoreSegmentsThanMaxConvergeOverExchanges) {
  opts_.max_segments = 4;
  Same(20);
  std::set<uint32_t> segs;
  for (int i = 0; segs.size() < 20; ++i) {
    std::string k = "m" + std::to_string(i);
    if (segs.insert(aae::SegmentOfKey(k)).second) a_.Apply(kP, k, MakeRec(kT, "n1", "v"));
  }
  ExchangeResult r = Exchange();
  EXPECT_EQ(r.outcome, Outcome::kRepaired);
  EXPECT_TRUE(r.incomplete);
  EXPECT_EQ(r.segments_differing, 20u);
  EXPECT_EQ(r.keys_pushed, 4u);
  int exchanges = 1;
  while (Exchange().outcome != Outcome::kInSync && exchanges < 10) ++exchanges;
  EXPECT_EQ(exchanges, 5);
  EXPECT_EQ(a_.Visible(kP), b_.Visible(kP));
}

TEST_F(ExchangeTest, TruncatedListingIsIncompleteAndConverges) {
  opts_.max_keys = 5;
  for (int i = 0; i < 23; ++i) a_.Apply(kP, Key(i), MakeRec(kT, "n1", "v"));
  ExchangeResult r = Exchange();
  EXPECT_EQ(r.outcome, Outcome::kRepaired);
  EXPECT_TRUE(r.incomplete);
  EXPECT_EQ(r.keys_pushed, 5u);
  int exchanges = 1;
  while (Exchange().outcome != Outcome::kInSync && exchanges < 10) ++exchanges;
  EXPECT_EQ(exchanges, 5);  // 5 + 5 + 5 + 5 + 3
  EXPECT_EQ(a_.Visible(kP), b_.Visible(kP));
}

// A replica failing at any stage ends the exchange kFailed, once, with its
// status.
TEST_F(ExchangeTest, FailingReplicaFailsOnceAtEveryStage) {
  for (const char* method : {"Root", "Branches", "Keys", "Fetch", "Put"}) {
    SCOPED_TRACE(method);
    FakeAaeReplica a("a", &timer_), b("b", &timer_);
    for (int i = 0; i < 10; ++i) a.Apply(kP, Key(i), MakeRec(kT, "n1", "v"));
    b.Apply(kP, "z", MakeRec(kT, "n2", "z"));
    // Fetch and Put fail on the side they are made to.
    (std::string(method) == "Fetch" ? a : b).SetMode(FakeAaeReplica::Mode::kFail, {method});
    results_.clear();
    auto running = RunExchange(
        &a, &b, kP, opts_, &timer_, &unlimited_, [this] { return now_ms_; },
        [this](ExchangeResult r) { results_.push_back(std::move(r)); });
    for (int i = 0; i < 10; ++i) Advance(opts_.pause_ms);
    ASSERT_EQ(results_.size(), 1u);
    EXPECT_EQ(results_[0].outcome, Outcome::kFailed);
    EXPECT_EQ(results_[0].status.code(), Status::Code::kInternal);
    EXPECT_NE(results_[0].status.message().find("fake: disk error"), std::string::npos);
    EXPECT_EQ(timer_.armed(), 0u);
  }
}

TEST_F(ExchangeTest, DroppedCallTimesOutAndFailsOnce) {
  for (int i = 0; i < 10; ++i) a_.Apply(kP, Key(i), MakeRec(kT, "n1", "v"));
  b_.SetMode(FakeAaeReplica::Mode::kDrop, {"Keys"});
  b_.timeout_ms = 3000;
  Start();
  Advance(opts_.pause_ms);
  Advance(opts_.pause_ms);  // both pauses passed: waiting for b's Keys
  EXPECT_TRUE(results_.empty());
  Advance(3000);
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].outcome, Outcome::kFailed);
  EXPECT_EQ(results_[0].status.code(), Status::Code::kTimeout);
  EXPECT_EQ(results_[0].status.message().rfind("b: ", 0), 0u) << results_[0].status.message();
  Advance(10000);
  EXPECT_EQ(results_.size(), 1u);
  EXPECT_EQ(b_.Visible(kP).size(), 0u);
}

TEST_F(ExchangeTest, DelayedRepliesHoldTheExchange) {
  a_.Apply(kP, "k", MakeRec(kT, "n1", "v"));
  b_.SetMode(FakeAaeReplica::Mode::kHold);
  Start();
  Advance(10000);
  EXPECT_TRUE(results_.empty());
  EXPECT_EQ(b_.held(), 1u);
  // Each release lets one stage through; stages then wait on b again.
  for (int i = 0; i < 20 && results_.empty(); ++i) {
    b_.Release();
    Advance(opts_.pause_ms);
  }
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].outcome, Outcome::kRepaired);
  EXPECT_NE(b_.Get(kP, "k"), nullptr);
}

TEST_F(ExchangeTest, WatermarkMismatchRaisesTheLowerSide) {
  Same(10);
  a_.part(kP).watermark = MakeHlc(kT - 50, 0);
  ExchangeResult r = Exchange();
  EXPECT_EQ(r.outcome, Outcome::kWatermarkRaised);
  EXPECT_EQ(b_.watermark(kP), MakeHlc(kT - 50, 0));
  EXPECT_EQ(a_.calls("RaiseWatermark"), 0);
  EXPECT_EQ(b_.calls("Branches"), 0);
  b_.part(kP).watermark = MakeHlc(kT - 10, 0);
  EXPECT_EQ(Exchange().outcome, Outcome::kWatermarkRaised);
  EXPECT_EQ(a_.watermark(kP), MakeHlc(kT - 10, 0));
  EXPECT_EQ(Exchange().outcome, Outcome::kInSync);
}

TEST_F(ExchangeTest, GcEligibleRecordsNeverDiffer) {
  // A tombstone below the shared watermark is purged on one side only.
  Same(10);
  a_.Apply(kP, "gone", MakeRec(kT - 100, "n1", "", true));
  a_.part(kP).watermark = b_.part(kP).watermark = MakeHlc(kT - 50, 0);
  EXPECT_EQ(Exchange().outcome, Outcome::kInSync);
  EXPECT_EQ(b_.Get(kP, "gone"), nullptr);
}

TEST(RepairBudgetTest, TokensRefillAtTheRate) {
  RepairBudget budget(100, 1000);
  EXPECT_EQ(budget.TryTake(0, 60, 0), 0u);    // starts full
  EXPECT_EQ(budget.TryTake(0, 60, 0), 200u);  // 40 left: 20 more take 200 ms
  EXPECT_EQ(budget.TryTake(200, 60, 0), 0u);
  EXPECT_EQ(budget.TryTake(200, 1, 1000), 10u);  // no keys left; bytes would do
}

TEST(RepairBudgetTest, LargerThanASecondIsGrantedWhenFull) {
  RepairBudget budget(10, 0);
  EXPECT_EQ(budget.TryTake(0, 25, 0), 0u);  // full: granted, 15 in debt
  EXPECT_EQ(budget.TryTake(0, 1, 0), 1600u);
  EXPECT_EQ(budget.TryTake(1600, 1, 0), 0u);
  RepairBudget unlimited(0, 0);
  EXPECT_EQ(unlimited.TryTake(0, 1'000'000, 1'000'000'000), 0u);
}

TEST_F(ExchangeTest, BudgetLimitsKeysPerSecond) {
  opts_.batch_keys = 10;
  opts_.max_segments = aae::kSegments;
  for (int i = 0; i < 600; ++i) a_.Apply(kP, Key(i), MakeRec(kT, "n1", "v"));
  RepairBudget budget(100, 0);
  Start(&budget);
  Advance(opts_.pause_ms);
  Advance(opts_.pause_ms);  // compared and confirmed: repairing
  uint64_t start = now_ms_;
  // A full bucket (100 keys) at once, then 100 keys a second.
  EXPECT_EQ(b_.records_put(), 100);
  while (results_.empty() && now_ms_ - start < 20000) {
    Advance(100);
    uint64_t allowed = 100 + (now_ms_ - start) / 10;
    ASSERT_LE(static_cast<uint64_t>(b_.records_put()), allowed);
  }
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].keys_pushed, 600u);
  EXPECT_GE(now_ms_ - start, 4900u);
  EXPECT_LE(now_ms_ - start, 5200u);
}

TEST_F(ExchangeTest, BudgetLimitsBytesPerSecond) {
  opts_.batch_keys = 1;
  opts_.max_segments = aae::kSegments;
  std::string value(1000, 'x');
  for (int i = 0; i < 30; ++i) a_.Apply(kP, Key(i), MakeRec(kT, "n1", value));
  RepairBudget budget(0, 10'000);  // 10 records a second
  Start(&budget);
  Advance(opts_.pause_ms);
  Advance(opts_.pause_ms);
  uint64_t start = now_ms_;
  EXPECT_EQ(b_.records_put(), 10);
  while (results_.empty() && now_ms_ - start < 20000) Advance(100);
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].bytes_repaired, 30'000u);
  EXPECT_GE(now_ms_ - start, 1900u);
  EXPECT_LE(now_ms_ - start, 2200u);
}

class PullTest : public ExchangeTest {
 protected:
  PullResult Pull(RepairBudget* budget = nullptr) {
    std::vector<PullResult> out;
    auto running = RunPull(
        &a_, &b_, kP, opts_, &timer_, budget ? budget : &unlimited_, [this] { return now_ms_; },
        [&](PullResult r) { out.push_back(std::move(r)); });
    for (int i = 0; i < 1000 && out.empty(); ++i) Advance(100);
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? PullResult() : out[0];
  }
};

TEST_F(PullTest, CopiesEverythingInPages) {
  for (int i = 0; i < 2500; ++i) a_.Apply(kP, Key(i), MakeRec(kT + i, "n1", "0123456789"));
  for (int i = 0; i < 10; ++i) a_.Apply(kP, "t" + std::to_string(i), MakeRec(kT, "n1", "", true));
  b_.Apply(kP, Key(5), MakeRec(kT + 100'000, "n2", "newer"));  // not overwritten
  opts_.page_keys = 1000;
  PullResult r = Pull();
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.records, 2510u);
  EXPECT_EQ(r.bytes, 25000u);
  EXPECT_EQ(a_.calls("Scan"), 3);
  EXPECT_EQ(b_.calls("Put"), 3);
  EXPECT_EQ(b_.Visible(kP).size(), 2510u);
  EXPECT_EQ(b_.Get(kP, Key(5))->value, "newer");
  EXPECT_TRUE(b_.Get(kP, "t3")->tombstone);
}

TEST_F(PullTest, PagesStopAtTheByteLimit) {
  for (int i = 0; i < 100; ++i) a_.Apply(kP, Key(i), MakeRec(kT, "n1", std::string(100, 'v')));
  opts_.page_bytes = 1000;
  PullResult r = Pull();
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(r.records, 100u);
  EXPECT_EQ(a_.calls("Scan"), 10);
  EXPECT_EQ(a_.Visible(kP), b_.Visible(kP));
}

TEST_F(PullTest, EmptySourceAndFailures) {
  PullResult r = Pull();
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(r.records, 0u);
  for (int i = 0; i < 10; ++i) a_.Apply(kP, Key(i), MakeRec(kT, "n1", "v"));
  b_.SetMode(FakeAaeReplica::Mode::kFail, {"Put"});
  r = Pull();
  EXPECT_EQ(r.status.code(), Status::Code::kInternal);
  EXPECT_EQ(r.status.message().rfind("b: ", 0), 0u);
  b_.SetMode(FakeAaeReplica::Mode::kServe);
  a_.SetMode(FakeAaeReplica::Mode::kDrop, {"Scan"});
  r = Pull();
  EXPECT_EQ(r.status.code(), Status::Code::kTimeout);
}

TEST_F(PullTest, BudgetPacesPages) {
  opts_.page_keys = 50;
  for (int i = 0; i < 300; ++i) a_.Apply(kP, Key(i), MakeRec(kT, "n1", "v"));
  RepairBudget budget(100, 0);
  uint64_t start = now_ms_;
  PullResult r = Pull(&budget);
  EXPECT_EQ(r.records, 300u);
  // 100 at once, then 200 at 100 a second.
  EXPECT_GE(now_ms_ - start, 1900u);
  EXPECT_LE(now_ms_ - start, 2200u);
}

}  // namespace
}  // namespace ringkv::cluster
