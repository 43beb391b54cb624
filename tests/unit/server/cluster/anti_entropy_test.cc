// The anti-entropy scheduler (server/cluster/anti_entropy.h): ticks, the
// rebuild of a lost disk, and the watermark rounds, over in-memory replicas.
#include "server/cluster/anti_entropy.h"

#include <gtest/gtest.h>

#include "tests/fakes/fake_aae.h"
#include "tests/fakes/manual_timer.h"

namespace ringkv::cluster {
namespace {

using testing::FakeAaeReplica;
using testing::MakeRec;
using testing::ManualTimer;
using Outcome = ExchangeResult::Outcome;

constexpr uint32_t kQ = 4;
constexpr uint64_t kStart = 1'700'000'000'000ULL;

class MemState final : public AaeStateStore {
 public:
  Status Get(const std::string& name, std::string* value) override {
    auto it = values.find(name);
    if (it == values.end()) return Status::NotFound();
    *value = it->second;
    return Status::OK();
  }
  Status Put(const std::string& name, const std::string& value) override {
    values[name] = value;
    return Status::OK();
  }
  std::map<std::string, std::string> values;
};

// Three replicas a, b, c of every partition (a first: a leads), seen from a.
class AntiEntropyTest : public ::testing::Test {
 protected:
  AntiEntropyTest() {
    for (const char* id : {"a", "b", "c"}) {
      replicas_[id] = std::make_unique<FakeAaeReplica>(id, &timer_);
    }
    opts_.self = "a";
    opts_.interval_ms = 1000;
    opts_.floor_ms = 10'000;
    opts_.exchange.pause_ms = 100;
    opts_.seed = 7;
    for (uint32_t p = 0; p < kQ; ++p) prefs_[p] = {"a", "b", "c"};
  }

  std::unique_ptr<AntiEntropy> Make() {
    return std::make_unique<AntiEntropy>(
        opts_, kQ, [this](uint32_t p) { return prefs_[p]; },
        [this](const std::string& n) { return down_.count(n) == 0; },
        [this](const std::string& n) -> AaeReplica* {
          auto it = replicas_.find(n);
          return it == replicas_.end() ? nullptr : it->second.get();
        },
        &timer_, [this] { return clock_.NowMs(); }, &hlc_, &state_, [this] { return busy_; });
  }
  void Advance(uint64_t ms) {
    clock_.Advance(ms);
    timer_.Advance(ms);
  }
  // Advances in small steps (ticks, pauses and kicks all fire).
  void Run(uint64_t ms) {
    for (uint64_t t = 0; t < ms; t += 50) Advance(50);
  }
  FakeAaeReplica& R(const std::string& id) { return *replicas_[id]; }
  // Writes `rec` to the given replicas.
  void Write(uint32_t p, const std::string& key, const Record& rec,
             std::initializer_list<const char*> on) {
    for (const char* id : on) R(id).Apply(p, key, rec);
  }
  // k0..k(n-1) of every partition on every replica.
  void Fill(int n) {
    for (uint32_t p = 0; p < kQ; ++p) {
      for (int i = 0; i < n; ++i) {
        Write(p, "k" + std::to_string(i), MakeRec(kStart - 100'000 + i, "a", "v"), {"a", "b", "c"});
      }
    }
  }
  int RootCalls(const std::string& id) { return R(id).calls("Root"); }

  ManualTimer timer_;
  ManualClock clock_{kStart};
  HybridClock hlc_{&clock_};
  MemState state_;
  AntiEntropyOptions opts_;
  std::map<std::string, std::unique_ptr<FakeAaeReplica>> replicas_;
  std::map<uint32_t, std::vector<std::string>> prefs_;
  std::set<std::string> down_;
  bool busy_ = false;
};

TEST_F(AntiEntropyTest, OneJobPerTickWithJitter) {
  Fill(10);
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Advance(899);  // the first tick comes 900..1100 ms after Start
  EXPECT_EQ(RootCalls("b") + RootCalls("c"), 0);
  Advance(201);
  EXPECT_EQ(RootCalls("b") + RootCalls("c"), 1);
  EXPECT_EQ(ae->Snapshot().exchanges, 1u);
  Run(10'000);  // about nine more ticks
  uint64_t n = ae->Snapshot().exchanges;
  EXPECT_GE(n, 9u);
  EXPECT_LE(n, 12u);
  EXPECT_EQ(RootCalls("a"), static_cast<int>(n));
}

TEST_F(AntiEntropyTest, RunningJobMakesTicksSkip) {
  Fill(10);
  R("b").SetMode(FakeAaeReplica::Mode::kHold);
  R("c").SetMode(FakeAaeReplica::Mode::kHold);
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Run(5000);
  EXPECT_EQ(R("b").held() + R("c").held(), 1u);  // one job, waiting
  EXPECT_GE(ae->Snapshot().ticks_skipped, 3u);
  EXPECT_FALSE(ae->TickNow());
  EXPECT_EQ(ae->Snapshot().exchanges, 0u);
  R("b").SetMode(FakeAaeReplica::Mode::kServe);
  R("c").SetMode(FakeAaeReplica::Mode::kServe);
  R("b").Release();
  R("c").Release();
  EXPECT_EQ(ae->Snapshot().exchanges, 1u);
  EXPECT_TRUE(ae->TickNow());
  EXPECT_EQ(ae->Snapshot().exchanges, 2u);
}

TEST_F(AntiEntropyTest, BusyNodeSkipsTicks) {
  Fill(10);
  busy_ = true;
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Run(5000);
  EXPECT_EQ(RootCalls("a"), 0);
  EXPECT_GE(ae->Snapshot().ticks_skipped, 4u);
  busy_ = false;
  Run(2000);
  EXPECT_GE(ae->Snapshot().exchanges, 1u);
}

TEST_F(AntiEntropyTest, CycleVisitsEveryPairAndSkipsDownPeers) {
  Fill(10);
  down_ = {"c"};
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  for (int i = 0; i < 2 * static_cast<int>(kQ); ++i) ae->TickNow();
  AaeStatus st = ae->Snapshot();
  EXPECT_EQ(st.exchanges, 2 * kQ);
  EXPECT_EQ(RootCalls("c"), 0);
  EXPECT_EQ(st.partitions_total, kQ);
  EXPECT_EQ(st.partitions_in_sync, 0u);  // never exchanged with c
  for (const auto& p : st.partitions) {
    EXPECT_TRUE(p.leader);
    EXPECT_EQ(p.peers.count("c"), 0u);
    ASSERT_EQ(p.peers.count("b"), 1u);
    EXPECT_EQ(p.peers.at("b").outcome, Outcome::kInSync);
  }
  down_.clear();
  // Two whole cycles' worth: every pair, c's included.
  for (int i = 0; i < 4 * static_cast<int>(kQ); ++i) ae->TickNow();
  st = ae->Snapshot();
  EXPECT_EQ(st.partitions_in_sync, kQ);
  EXPECT_EQ(st.exchanges_by_outcome["in_sync"], 6 * kQ);
  for (const auto& p : st.partitions) EXPECT_NE(p.peers.at("c").last_ms, 0u);
}

TEST_F(AntiEntropyTest, ExchangesRepairAndCount) {
  Fill(20);
  for (uint32_t p = 0; p < kQ; ++p) {
    R("b").Erase(p, "k3");
    R("c").Set(p, "k4", MakeRec(kStart - 200'000, "c", "old"));
  }
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Run(20'000);
  for (uint32_t p = 0; p < kQ; ++p) {
    EXPECT_EQ(R("a").Visible(p), R("b").Visible(p));
    EXPECT_EQ(R("a").Visible(p), R("c").Visible(p));
  }
  AaeStatus st = ae->Snapshot();
  EXPECT_EQ(st.keys_repaired, 2 * kQ);
  EXPECT_EQ(st.exchanges_by_outcome["repaired"], 2 * kQ);
  EXPECT_EQ(st.partitions_in_sync, kQ);
  EXPECT_GE(st.segments_differing, 2 * kQ);
  for (const auto& p : st.partitions) EXPECT_EQ(p.peers.at("b").total_repaired, 1u);
}

// A diverged pair is exchanged again at once while differences remain, and
// the next job follows at once after a repair: convergence does not wait
// for ticks (here 20 exchanges in about 8 ticks' time).
TEST_F(AntiEntropyTest, DivergedNodeConvergesWithoutWaitingForTicks) {
  opts_.exchange.max_segments = 2;
  down_ = {"c"};
  for (uint32_t p = 0; p < kQ; ++p) {
    std::set<uint32_t> segs;
    for (int i = 0; segs.size() < 10; ++i) {
      std::string k = "d" + std::to_string(i);
      if (segs.insert(aae::SegmentOfKey(k)).second) {
        Write(p, k, MakeRec(kStart - 1000, "a", "v"), {"a"});
      }
    }
  }
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Run(8000);
  for (uint32_t p = 0; p < kQ; ++p) EXPECT_EQ(R("a").Visible(p), R("b").Visible(p));
  AaeStatus st = ae->Snapshot();
  EXPECT_EQ(st.keys_repaired, 10 * kQ);
  EXPECT_EQ(st.exchanges_by_outcome["repaired"], 5 * kQ);
  EXPECT_EQ(st.partitions_in_sync, 0u);  // c is down
}

// A peer found behind in one partition is exchanged with in every partition
// it shares, back to back, even though in-sync pairs with another peer come
// between them in the cycle: a node that was away catches up in one burst.
TEST_F(AntiEntropyTest, PeerFoundBehindIsCaughtUpInEveryPartitionAtOnce) {
  Fill(5);
  for (uint32_t p = 0; p < kQ; ++p)
    Write(p, "missed", MakeRec(kStart - 1000, "a", "v"), {"a", "c"});
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  uint64_t waited = 0;
  while (ae->Snapshot().keys_repaired == 0 && waited < 20'000) {
    Advance(50);
    waited += 50;
  }
  ASSERT_GT(ae->Snapshot().keys_repaired, 0u);
  Run(800);  // less than one tick
  for (uint32_t p = 0; p < kQ; ++p) {
    EXPECT_EQ(R("b").Visible(p), R("a").Visible(p)) << "partition " << p;
  }
  EXPECT_EQ(ae->Snapshot().keys_repaired, kQ);
}

TEST_F(AntiEntropyTest, RebuildPullsEveryPartitionFromEveryPeer) {
  // a lost its disk; b and c hold everything (c one key more per partition).
  for (uint32_t p = 0; p < kQ; ++p) {
    for (int i = 0; i < 50; ++i) {
      Write(p, "k" + std::to_string(i), MakeRec(kStart - 100'000, "b", "v"), {"b", "c"});
    }
    Write(p, "only-c", MakeRec(kStart - 50'000, "c", "c"), {"c"});
  }
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  ASSERT_TRUE(ae->BeginRebuild().ok());
  for (uint32_t p = 0; p < kQ; ++p) EXPECT_TRUE(ae->IsRebuilding(p));
  AaeStatus st = ae->Snapshot();
  EXPECT_TRUE(st.rebuilding);
  EXPECT_EQ(st.rebuild_partitions_pending, kQ);
  EXPECT_EQ(st.partitions[0].rebuild_pending, (std::vector<std::string>{"b", "c"}));
  // Jobs run back to back: well within one tick interval.
  Run(900);
  for (uint32_t p = 0; p < kQ; ++p) {
    EXPECT_FALSE(ae->IsRebuilding(p));
    EXPECT_EQ(R("a").Visible(p).size(), 51u);
    EXPECT_EQ(R("a").Visible(p), R("c").Visible(p));
  }
  st = ae->Snapshot();
  EXPECT_FALSE(st.rebuilding);
  EXPECT_EQ(st.rebuild_partitions_total, kQ);
  EXPECT_EQ(st.rebuild_records, kQ * (50 + 51));
  EXPECT_EQ(state_.values["aae_rebuild"], "");
  EXPECT_TRUE(ae->BeginRebuild().ok());  // a new loss: everything pending again
  EXPECT_TRUE(ae->IsRebuilding(0));
}

TEST_F(AntiEntropyTest, RebuildStateSurvivesARestartAndWaitsForDownPeers) {
  for (uint32_t p = 0; p < kQ; ++p) {
    Write(p, "k", MakeRec(kStart - 100'000, "b", "v"), {"b", "c"});
  }
  down_ = {"c"};
  {
    auto ae = Make();
    ASSERT_TRUE(ae->Start().ok());
    ASSERT_TRUE(ae->BeginRebuild().ok());
    Run(3000);
    // Pulled from b; c is down, so every partition still waits for it.
    for (uint32_t p = 0; p < kQ; ++p) {
      EXPECT_TRUE(ae->IsRebuilding(p));
      EXPECT_NE(R("a").Get(p, "k"), nullptr);
      EXPECT_EQ(ae->Snapshot().partitions[p].rebuild_pending, std::vector<std::string>{"c"});
    }
    EXPECT_EQ(RootCalls("c"), 0);
    ae->Stop();
  }
  EXPECT_EQ(state_.values["aae_rebuild/0"], "c");
  auto ae = Make();
  for (uint32_t p = 0; p < kQ; ++p) EXPECT_FALSE(ae->IsRebuilding(p));  // not loaded yet
  ASSERT_TRUE(ae->Start().ok());
  for (uint32_t p = 0; p < kQ; ++p) EXPECT_TRUE(ae->IsRebuilding(p));
  EXPECT_EQ(ae->Snapshot().rebuild_partitions_total, kQ);
  Run(3000);
  EXPECT_TRUE(ae->IsRebuilding(0));  // c still down
  down_.clear();
  Run(3000);
  for (uint32_t p = 0; p < kQ; ++p) EXPECT_FALSE(ae->IsRebuilding(p));
  EXPECT_EQ(state_.values["aae_rebuild/0"], "");
}

TEST_F(AntiEntropyTest, RebuildIsIdempotentWhilePending) {
  down_ = {"b", "c"};
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  ASSERT_TRUE(ae->BeginRebuild().ok());
  down_ = {"c"};
  Run(2000);
  EXPECT_EQ(ae->Snapshot().partitions[0].rebuild_pending, std::vector<std::string>{"c"});
  ASSERT_TRUE(ae->BeginRebuild().ok());  // still under way: unchanged
  EXPECT_EQ(ae->Snapshot().partitions[0].rebuild_pending, std::vector<std::string>{"c"});
}

// The rule of research D5: a key deleted while a replica was down stays
// deleted. The tombstone is on a and b; c is down with the old value.
TEST_F(AntiEntropyTest, WatermarkNeverPassesATombstoneADownReplicaLacks) {
  const Record value = MakeRec(kStart - 60'000, "a", "v");
  const Record tomb = MakeRec(kStart - 30'000, "a", "", true);
  for (uint32_t p = 0; p < kQ; ++p) {
    Write(p, "gone", value, {"a", "b", "c"});
    Write(p, "gone", tomb, {"a", "b"});
  }
  down_ = {"c"};
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Run(60'000);  // far past the floor (10 s): only the missing confirmation holds W
  for (uint32_t p = 0; p < kQ; ++p) {
    for (const char* id : {"a", "b", "c"}) EXPECT_EQ(R(id).watermark(p), 0u) << id;
  }
  EXPECT_EQ(ae->Snapshot().watermark_raises, 0u);
  down_.clear();
  // From here on, whenever a watermark has passed the tombstone, c holds it.
  bool raised = false;
  for (int step = 0; step < 1200; ++step) {
    Advance(50);
    for (uint32_t p = 0; p < kQ; ++p) {
      uint64_t w = std::max({R("a").watermark(p), R("b").watermark(p), R("c").watermark(p)});
      if (w > tomb.version.hlc) {
        raised = true;
        ASSERT_TRUE(R("c").Get(p, "gone")->tombstone) << "partition " << p;
      }
    }
  }
  EXPECT_TRUE(raised);
  AaeStatus st = ae->Snapshot();
  EXPECT_GE(st.watermark_raises, kQ);
  for (uint32_t p = 0; p < kQ; ++p) {
    // Raised on every replica alike, to at most now - floor.
    EXPECT_EQ(R("a").watermark(p), R("b").watermark(p));
    EXPECT_EQ(R("a").watermark(p), R("c").watermark(p));
    EXPECT_LE(R("a").watermark(p), MakeHlc(clock_.NowMs() - opts_.floor_ms, 0));
    EXPECT_EQ(st.partitions[p].watermark, R("a").watermark(p));
  }
}

// A repair that does not take (c answers OK and keeps nothing) leaves a
// difference older than T0 at every exchange: c is never confirmed.
TEST_F(AntiEntropyTest, RepairThatDoesNotTakeHoldsTheWatermark) {
  const Record tomb = MakeRec(kStart - 30'000, "a", "", true);
  for (uint32_t p = 0; p < kQ; ++p) {
    Write(p, "gone", MakeRec(kStart - 60'000, "a", "v"), {"a", "b", "c"});
    Write(p, "gone", tomb, {"a", "b"});
  }
  R("c").lose_puts = true;
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Run(40'000);
  EXPECT_GE(ae->Snapshot().exchanges_by_outcome["repaired"], kQ);
  for (uint32_t p = 0; p < kQ; ++p) {
    for (const char* id : {"a", "b", "c"}) EXPECT_EQ(R(id).watermark(p), 0u) << id;
  }
  R("c").lose_puts = false;
  Run(40'000);
  for (uint32_t p = 0; p < kQ; ++p) {
    EXPECT_GT(R("c").watermark(p), tomb.version.hlc);
    EXPECT_TRUE(R("c").Get(p, "gone")->tombstone);
  }
}

TEST_F(AntiEntropyTest, OnlyTheLeaderRaises) {
  Fill(5);
  for (uint32_t p = 0; p < kQ; ++p) prefs_[p] = {"b", "a", "c"};  // b leads
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Run(60'000);
  EXPECT_GE(ae->Snapshot().exchanges, 40u);
  EXPECT_EQ(ae->Snapshot().watermark_raises, 0u);
  EXPECT_EQ(R("a").calls("RaiseWatermark") + R("b").calls("RaiseWatermark"), 0);
}

TEST_F(AntiEntropyTest, AloneOrExchangesOffRaisesToTheFloor) {
  for (uint32_t p = 0; p < kQ; ++p) prefs_[p] = {"a"};
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  Advance(1100);
  EXPECT_EQ(R("a").watermark(0), MakeHlc(clock_.NowMs() - opts_.floor_ms, 0));
  AaeStatus st = ae->Snapshot();
  EXPECT_EQ(st.partitions_in_sync, kQ);
  EXPECT_EQ(st.exchanges, 0u);
  EXPECT_GE(st.watermark_raises, kQ);
  ae->Stop();

  opts_.exchanges = false;
  for (uint32_t p = 0; p < kQ; ++p) prefs_[p] = {"b", "a", "c"};
  auto off = Make();
  ASSERT_TRUE(off->Start().ok());
  ASSERT_TRUE(off->BeginRebuild().ok());  // nothing would pull: not started
  EXPECT_FALSE(off->IsRebuilding(0));
  Run(3000);
  for (uint32_t p = 0; p < kQ; ++p) {
    // Raised at the last tick, at most 1.1 s ago.
    EXPECT_LE(R("a").watermark(p), MakeHlc(clock_.NowMs() - opts_.floor_ms, 0));
    EXPECT_GE(R("a").watermark(p), MakeHlc(clock_.NowMs() - opts_.floor_ms - 1100, 0));
  }
  EXPECT_EQ(RootCalls("b") + RootCalls("c"), 0);
  EXPECT_EQ(R("b").calls("RaiseWatermark") + R("c").calls("RaiseWatermark"), 0);
  EXPECT_FALSE(off->Snapshot().enabled);
}

TEST_F(AntiEntropyTest, StopWithAJobInFlightDropsItsResult) {
  Fill(10);
  for (uint32_t p = 0; p < kQ; ++p) R("b").Erase(p, "k1");
  R("b").SetMode(FakeAaeReplica::Mode::kHold);
  R("c").SetMode(FakeAaeReplica::Mode::kHold);
  auto ae = Make();
  ASSERT_TRUE(ae->Start().ok());
  ASSERT_TRUE(ae->TickNow());
  ASSERT_EQ(R("b").held() + R("c").held(), 1u);
  int calls_b = R("b").calls("Root") + R("b").calls("Branches");
  int calls_c = R("c").calls("Root") + R("c").calls("Branches");
  ae->Stop();
  ae.reset();
  R("b").SetMode(FakeAaeReplica::Mode::kServe);
  R("c").SetMode(FakeAaeReplica::Mode::kServe);
  R("b").Release();
  R("c").Release();
  Run(5000);
  // The job ended at its next call, which the stopped scheduler refused.
  EXPECT_EQ(R("b").calls("Root") + R("b").calls("Branches"), calls_b);
  EXPECT_EQ(R("c").calls("Root") + R("c").calls("Branches"), calls_c);
  EXPECT_EQ(timer_.armed(), 0u);
}

}  // namespace
}  // namespace ringkv::cluster
