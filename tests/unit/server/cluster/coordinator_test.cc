#include "server/cluster/coordinator.h"

#include <gtest/gtest.h>

#include "server/cluster/handoff.h"
#include "tests/fakes/fake_cluster.h"
#include "tests/fakes/manual_timer.h"
#include "tests/util/store_fixture.h"

namespace ringkv::cluster {
namespace {

CoordinatorOptions Options(const std::string& node) {
  CoordinatorOptions o;
  o.node_id = node;
  return o;
}

using testing::FakeCluster;
using Mode = FakeCluster::Mode;

// Three nodes n1..n3, N=3, Q=8: every key's preference list is all three.
// The coordinator is n1; replicas are fakes; hints go to a real store.
class CoordinatorTest : public testutil::StoreFixture {
 protected:
  CoordinatorTest() : StoreFixture("ringkv-coord") {}
  void SetUp() override {
    Ring ring;
    ASSERT_TRUE(Ring::Make({"n1", "n2", "n3"}, 8, 3, &ring).ok());
    rings_ = std::make_unique<RingHolder>(std::move(ring));
    OpenStore(StoreOptionsFor("n1", 8));
    handoff_ = std::make_unique<HintedHandoff>(HandoffOptions{}, store_.get(), &fake_, &membership_,
                                               rings_.get(), &clock_, &counters_);
    ASSERT_TRUE(handoff_->Init().ok());
    CoordinatorOptions co;
    co.node_id = "n1";
    co.timer = &timer_;
    coord_ = std::make_unique<Coordinator>(co, rings_.get(), &membership_, &fake_, &hlc_,
                                           handoff_.get(), &counters_);
  }
  void TearDown() override {
    coord_.reset();
    handoff_.reset();
    StoreFixture::TearDown();
  }

  struct WriteResult {
    bool done = false;
    Status status;
    Version version;
  };
  std::shared_ptr<WriteResult> Put(const std::string& key, const std::string& value, int w,
                                   bool tombstone = false) {
    auto out = std::make_shared<WriteResult>();
    Record r;
    r.value = value;
    r.tombstone = tombstone;
    coord_->Write(key, r, w, 1000, [out](Status s, Version v) {
      EXPECT_FALSE(out->done) << "answered twice";
      out->done = true;
      out->status = s;
      out->version = v;
    });
    return out;
  }
  struct ReadResult {
    bool done = false;
    Status status;
    std::optional<Record> record;
  };
  std::shared_ptr<ReadResult> Get(const std::string& key, int r) {
    auto out = std::make_shared<ReadResult>();
    coord_->Read(key, r, 1000, [out](Status s, std::optional<Record> rec) {
      EXPECT_FALSE(out->done) << "answered twice";
      out->done = true;
      out->status = s;
      out->record = std::move(rec);
    });
    return out;
  }
  Record Rec(uint64_t ms, const std::string& value, const std::string& node = "n9") {
    Record r;
    r.version = {MakeHlc(ms, 0), node};
    r.value = value;
    return r;
  }
  std::vector<Hint> Hints(const std::string& target) {
    std::vector<Hint> out;
    EXPECT_TRUE(store_->ListHints(target, "", 100, &out).ok());
    return out;
  }
  void MarkDown(const std::string& node) { membership_.ReportFailure(node, true); }

  HybridClock hlc_{&clock_};
  testing::ManualTimer timer_;
  std::unique_ptr<RingHolder> rings_;
  Membership membership_{{{"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}}, "n1"};
  FakeCluster fake_;
  Counters counters_;
  std::unique_ptr<HintedHandoff> handoff_;
  std::unique_ptr<Coordinator> coord_;
};

TEST_F(CoordinatorTest, WriteGoesToEveryLiveReplica) {
  auto w = Put("k", "1", 2);
  ASSERT_TRUE(w->done);
  EXPECT_TRUE(w->status.ok()) << w->status.ToString();
  EXPECT_EQ(w->version.node, "n1");
  for (const char* n : {"n1", "n2", "n3"}) {
    ASSERT_TRUE(fake_.Get(n, "k").has_value()) << n;
    EXPECT_EQ(fake_.Get(n, "k")->version, w->version);
  }
  EXPECT_TRUE(Hints("n2").empty());
}

TEST_F(CoordinatorTest, AnswersAfterWAcksNotBefore) {
  fake_.SetMode("n2", Mode::kHold);
  fake_.SetMode("n3", Mode::kHold);
  auto w = Put("k", "1", 2);
  EXPECT_FALSE(w->done);  // only n1 has acknowledged
  fake_.Release("n3");
  ASSERT_TRUE(w->done);
  EXPECT_TRUE(w->status.ok());
  fake_.Release("n2");  // a late ack changes nothing (and must not answer twice)
  EXPECT_TRUE(fake_.Get("n2", "k").has_value());
}

TEST_F(CoordinatorTest, UnavailableUpFrontWritesNothing) {
  MarkDown("n2");
  MarkDown("n3");
  auto w = Put("k", "1", 2);
  ASSERT_TRUE(w->done);
  EXPECT_EQ(w->status.code(), Status::Code::kUnavailable);
  EXPECT_EQ(fake_.writes("n1") + fake_.writes("n2") + fake_.writes("n3"), 0);
  EXPECT_TRUE(Hints("n2").empty());
  EXPECT_TRUE(Hints("n3").empty());
}

TEST_F(CoordinatorTest, DownReplicaGetsHintAndIsNotWaitedFor) {
  MarkDown("n3");
  auto w = Put("k", "1", 2);
  ASSERT_TRUE(w->done);
  EXPECT_TRUE(w->status.ok());
  EXPECT_EQ(fake_.writes("n3"), 0);
  auto hints = Hints("n3");
  ASSERT_EQ(hints.size(), 1u);
  EXPECT_EQ(hints[0].key, "k");
  EXPECT_EQ(hints[0].record.version, w->version);
  EXPECT_EQ(handoff_->pending(), 1u);
  // w=all cannot be met with a replica down: nothing is sent.
  auto all = Put("k2", "1", 3);
  EXPECT_EQ(all->status.code(), Status::Code::kUnavailable);
}

TEST_F(CoordinatorTest, FailedAndSlowReplicasGetHintsAndHintsDoNotCountTowardW) {
  fake_.SetMode("n2", Mode::kUnreachable);
  fake_.SetMode("n3", Mode::kTimeout);
  auto w = Put("k", "1", 2);
  ASSERT_TRUE(w->done);
  EXPECT_EQ(w->status.code(), Status::Code::kTimeout) << w->status.ToString();
  EXPECT_EQ(Hints("n2").size(), 1u);
  EXPECT_EQ(Hints("n3").size(), 1u);
  EXPECT_TRUE(fake_.Get("n1", "k").has_value());  // it may be on some replicas
  // A replica timing out after the quorum was reached still gets a hint.
  fake_.SetMode("n2", Mode::kServe);
  fake_.SetMode("n3", Mode::kHold);
  auto w2 = Put("k2", "1", 2);
  EXPECT_TRUE(w2->status.ok());
  fake_.ExpireHeld("n3");
  EXPECT_EQ(Hints("n3").size(), 2u);
}

TEST_F(CoordinatorTest, ReadReturnsNewestAndRepairsStaleQuorumMembersBeforeAnswering) {
  fake_.Apply("n1", "k", Rec(100, "old"));
  fake_.Apply("n2", "k", Rec(200, "new"));
  fake_.SetMode("n3", Mode::kHold);
  fake_.SetMode("n1", Mode::kHold);
  auto r = Get("k", 2);
  fake_.Release("n1");  // read reply from n1 (stale)
  EXPECT_FALSE(r->done);
  // n2's reply completes the quorum; n1 is then repaired. Hold n1 so that
  // the repair write is pending: the answer must wait for it.
  fake_.Release("n2");
  EXPECT_FALSE(r->done);
  EXPECT_EQ(fake_.held("n1"), 1u);
  fake_.Release("n1");
  ASSERT_TRUE(r->done);
  ASSERT_TRUE(r->status.ok());
  EXPECT_EQ(r->record->value, "new");
  EXPECT_EQ(fake_.Get("n1", "k")->value, "new");
  EXPECT_EQ(counters_.read_repairs.load(), 1u);
}

TEST_F(CoordinatorTest, RepairsExactlyTheStaleReplicas) {
  fake_.Apply("n1", "k", Rec(300, "newest"));
  fake_.Apply("n2", "k", Rec(100, "stale"));  // n3 lacks the key entirely
  auto r = Get("k", 3);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(r->record->value, "newest");
  EXPECT_EQ(fake_.writes("n1"), 0);
  EXPECT_EQ(fake_.writes("n2"), 1);
  EXPECT_EQ(fake_.writes("n3"), 1);
  EXPECT_EQ(fake_.Get("n3", "k")->value, "newest");
  EXPECT_EQ(counters_.read_repairs.load(), 2u);
  // Everyone agrees now: a second read repairs nothing.
  auto again = Get("k", 3);
  EXPECT_EQ(counters_.read_repairs.load(), 2u);
}

TEST_F(CoordinatorTest, LateStaleReplyIsRepairedInTheBackground) {
  fake_.Apply("n1", "k", Rec(200, "new"));
  fake_.Apply("n2", "k", Rec(200, "new"));
  fake_.Apply("n3", "k", Rec(100, "old"));
  fake_.SetMode("n3", Mode::kHold);
  auto r = Get("k", 2);
  ASSERT_TRUE(r->done);  // n1 and n2 agree
  EXPECT_EQ(r->record->value, "new");
  fake_.SetMode("n3", Mode::kServe);
  fake_.Release("n3");  // the late, stale reply
  EXPECT_EQ(fake_.Get("n3", "k")->value, "new");
  EXPECT_EQ(counters_.read_repairs.load(), 1u);
}

TEST_F(CoordinatorTest, LateNewerReplyIsSpreadToTheOthers) {
  fake_.Apply("n1", "k", Rec(100, "old"));
  fake_.Apply("n2", "k", Rec(100, "old"));
  fake_.Apply("n3", "k", Rec(300, "newer"));
  fake_.SetMode("n3", Mode::kHold);
  auto r = Get("k", 2);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(r->record->value, "old");  // what the quorum had
  fake_.SetMode("n3", Mode::kServe);
  fake_.Release("n3");
  EXPECT_EQ(fake_.Get("n1", "k")->value, "newer");
  EXPECT_EQ(fake_.Get("n2", "k")->value, "newer");
}

TEST_F(CoordinatorTest, ReadTimeoutWhenQuorumUnreachable) {
  fake_.SetMode("n2", Mode::kTimeout);
  fake_.SetMode("n3", Mode::kUnreachable);
  auto r = Get("k", 2);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(r->status.code(), Status::Code::kTimeout);
  MarkDown("n2");
  MarkDown("n3");
  auto r2 = Get("k", 2);
  EXPECT_EQ(r2->status.code(), Status::Code::kUnavailable);
  auto r1 = Get("k", 1);  // one is still enough
  EXPECT_TRUE(r1->status.ok());
}

// With one live replica and R = 1 the coordinator skips the round state; the
// answers must be those of a round of one.
TEST_F(CoordinatorTest, ReadOfOneLiveReplicaAnswersLikeARound) {
  MarkDown("n2");
  MarkDown("n3");
  Record ahead;
  ahead.value = "\"v\"";
  ahead.version = {MakeHlc(1'700'000'000'000ULL + 5'000, 0), "n9"};
  fake_.Apply("n1", "k", ahead);
  auto found = Get("k", 1);
  ASSERT_TRUE(found->done);
  ASSERT_TRUE(found->status.ok());
  ASSERT_TRUE(found->record.has_value());
  EXPECT_EQ(found->record->value, "\"v\"");
  EXPECT_GT(hlc_.Now(), ahead.version.hlc);  // the clock observed the version read
  auto missing = Get("nothing", 1);
  ASSERT_TRUE(missing->done);
  EXPECT_TRUE(missing->status.ok());
  EXPECT_FALSE(missing->record.has_value());
  fake_.SetMode("n1", Mode::kUnreachable);
  auto failed = Get("k", 1);
  ASSERT_TRUE(failed->done);
  EXPECT_EQ(failed->status.code(), Status::Code::kTimeout);
  EXPECT_EQ(failed->status.message().rfind("read got 0 of the 1 replies it needs", 0), 0u)
      << failed->status.message();
  EXPECT_EQ(fake_.writes("n1"), 0);  // nothing repaired
}

TEST_F(CoordinatorTest, MissingEverywhereIsFoundFalseWithoutRepairs) {
  auto r = Get("nothing", 3);
  ASSERT_TRUE(r->done);
  EXPECT_TRUE(r->status.ok());
  EXPECT_FALSE(r->record.has_value());
  EXPECT_EQ(fake_.writes("n1") + fake_.writes("n2") + fake_.writes("n3"), 0);
}

TEST_F(CoordinatorTest, TombstoneWinsOverOlderValueAndIsRepaired) {
  fake_.Apply("n1", "k", Rec(100, "v"));
  fake_.Apply("n2", "k", Rec(100, "v"));
  fake_.Apply("n3", "k", Rec(100, "v"));
  fake_.SetMode("n3", Mode::kUnreachable);
  clock_.Set(200);
  auto d = Put("k", "", 2, /*tombstone=*/true);
  ASSERT_TRUE(d->status.ok());
  fake_.SetMode("n3", Mode::kServe);
  // n3 missed the delete; a quorum read that includes it repairs it.
  auto r = Get("k", 3);
  ASSERT_TRUE(r->done);
  ASSERT_TRUE(r->record.has_value());
  EXPECT_TRUE(r->record->tombstone);
  EXPECT_TRUE(fake_.Get("n3", "k")->tombstone);
}

TEST_F(CoordinatorTest, ConcurrentWritersConvergeLastWriterWins) {
  // A second coordinator on n2 with its own clock, a little ahead.
  ManualClock clock2(clock_.NowMs() + 5);
  HybridClock hlc2(&clock2);
  Membership m2({{"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}}, "n2");
  Coordinator c2(Options("n2"), rings_.get(), &m2, &fake_, &hlc2, nullptr, &counters_);
  // Both writes are in flight at once; replies are delivered in opposite orders.
  fake_.SetMode("n1", Mode::kHold);
  fake_.SetMode("n2", Mode::kHold);
  fake_.SetMode("n3", Mode::kHold);
  auto a = Put("k", "from-n1", 2);
  Version vb;
  bool b_done = false;
  Status sb;
  Record rb;
  rb.value = "from-n2";
  c2.Write("k", rb, 2, 1000, [&](Status s, Version v) {
    b_done = true;
    sb = s;
    vb = v;
  });
  // n1 takes n2's newer write first and answers n1's own write stale, which
  // makes n1 re-stamp above it: the writes were concurrent, so either may win,
  // but every replica must end with the same, newest acknowledged record.
  for (int round = 0; round < 10; ++round) {
    fake_.Release("n1", /*newest_first=*/true);
    fake_.Release("n2", /*newest_first=*/false);
    fake_.Release("n3", /*newest_first=*/true);
  }
  ASSERT_TRUE(a->done);
  ASSERT_TRUE(b_done);
  ASSERT_TRUE(a->status.ok()) << a->status.ToString();
  ASSERT_TRUE(sb.ok()) << sb.ToString();
  EXPECT_NE(vb, a->version);
  const Version newest = std::max(vb, a->version);
  const std::string winner = newest == vb ? "from-n2" : "from-n1";
  for (const char* n : {"n1", "n2", "n3"}) {
    EXPECT_EQ(fake_.Get(n, "k")->version, newest) << n;
    EXPECT_EQ(fake_.Get(n, "k")->value, winner) << n;
  }
}

// PROTOCOL.md §8: a write that starts after another was acknowledged wins
// over it even when its coordinator's clock is behind (here by 2 s): the
// replicas holding the first write answer stale, and the coordinator
// re-stamps above it.
TEST_F(CoordinatorTest, AWriteAfterAnAcknowledgedOneWinsDespiteASlowClock) {
  ManualClock slow_clock(clock_.NowMs() - 2000);
  HybridClock slow_hlc(&slow_clock);
  Membership m2({{"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}}, "n2");
  Coordinator slow(Options("n2"), rings_.get(), &m2, &fake_, &slow_hlc, nullptr, &counters_);
  auto first = Put("k", "first", 2);
  ASSERT_TRUE(first->done);
  ASSERT_TRUE(first->status.ok());
  Status s2;
  Version v2;
  Record rec;
  rec.value = "second";
  slow.Write("k", rec, 2, 1000, [&](Status s, Version v) {
    s2 = s;
    v2 = v;
  });
  ASSERT_TRUE(s2.ok()) << s2.ToString();
  EXPECT_GT(v2, first->version);
  EXPECT_EQ(v2.node, "n2");
  EXPECT_GE(counters_.write_restamps.load(), 1u);
  auto r = Get("k", 2);
  ASSERT_TRUE(r->done);
  ASSERT_TRUE(r->record.has_value());
  EXPECT_EQ(r->record->value, "second");
  for (const char* n : {"n1", "n2", "n3"}) EXPECT_EQ(fake_.Get(n, "k")->value, "second") << n;
}

// Two writes in the same millisecond through different coordinators: the
// second must not lose on the node-id tie-break (n1 < n3).
TEST_F(CoordinatorTest, ASameMillisecondTieIsResolvedForTheLaterWrite) {
  ManualClock same(clock_.NowMs());
  HybridClock hlc3(&same);
  Membership m3({{"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}}, "n3");
  Coordinator c3(Options("n3"), rings_.get(), &m3, &fake_, &hlc3, nullptr, &counters_);
  Status s3;
  Record rec;
  rec.value = "from-n3";
  c3.Write("k", rec, 2, 1000, [&](Status s, Version) { s3 = s; });
  ASSERT_TRUE(s3.ok());
  auto later = Put("k", "from-n1", 2);
  ASSERT_TRUE(later->done);
  ASSERT_TRUE(later->status.ok()) << later->status.ToString();
  auto r = Get("k", 2);
  ASSERT_TRUE(r->record.has_value());
  EXPECT_EQ(r->record->value, "from-n1");
}

// A reply that never comes (a lost callback, a malformed reply swallowed
// somewhere) must not hang the request: the round's own deadline answers.
TEST_F(CoordinatorTest, TheRoundDeadlineAnswersWhenRepliesNeverCome) {
  fake_.SetMode("n2", Mode::kSilent);
  fake_.SetMode("n3", Mode::kSilent);
  auto w = Put("k", "v", 2);
  auto r = Get("k", 2);
  EXPECT_FALSE(w->done);
  EXPECT_FALSE(r->done);
  timer_.Advance(999);
  EXPECT_FALSE(w->done);
  EXPECT_FALSE(r->done);
  timer_.Advance(1);
  ASSERT_TRUE(w->done);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(w->status.code(), Status::Code::kTimeout);
  EXPECT_NE(w->status.message().find("within 1000 ms"), std::string::npos) << w->status.message();
  EXPECT_EQ(r->status.code(), Status::Code::kTimeout);
  EXPECT_EQ(counters_.round_deadlines.load(), 2u);
  // A round that answered on time leaves nothing behind for its deadline.
  fake_.SetMode("n2", Mode::kServe);
  auto ok = Put("k2", "v", 2);
  ASSERT_TRUE(ok->done);
  timer_.Advance(1000);
  EXPECT_TRUE(ok->status.ok());
  EXPECT_EQ(counters_.round_deadlines.load(), 2u);
}

// A replica's storage failure (a full disk) is answered as what it is,
// internal with its message, not as a timeout; a node never hints itself.
TEST_F(CoordinatorTest, AStorageFailureIsAnsweredInternalAndNeverHintedToItself) {
  MarkDown("n2");
  MarkDown("n3");
  fake_.SetMode("n1", Mode::kInternal);
  auto w = Put("k", "v", 1);
  ASSERT_TRUE(w->done);
  EXPECT_EQ(w->status.code(), Status::Code::kInternal);
  EXPECT_NE(w->status.message().find("no space"), std::string::npos) << w->status.message();
  EXPECT_TRUE(Hints("n1").empty());
  EXPECT_EQ(Hints("n2").size(), 1u);  // the down replicas still get theirs
  auto r = Get("k", 1);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(r->status.code(), Status::Code::kInternal);
}

// A target that already holds the hinted version, or a newer one, answers
// stale: the hint is done, not retried forever.
TEST_F(CoordinatorTest, AHintTheTargetHasOutgrownIsDeletedAsDelivered) {
  MarkDown("n3");
  ASSERT_TRUE(Put("k", "old", 2)->status.ok());
  ASSERT_EQ(Hints("n3").size(), 1u);
  fake_.Apply("n3", "k", Rec(clock_.NowMs() + 10, "newer"));
  membership_.ReportSuccess("n3");
  handoff_->Tick();
  EXPECT_TRUE(Hints("n3").empty());
  EXPECT_EQ(counters_.hints_delivered.load(), 1u);
  EXPECT_EQ(fake_.Get("n3", "k")->value, "newer");
}

TEST_F(CoordinatorTest, HintsAreDeliveredWhenTheReplicaReturns) {
  MarkDown("n3");
  for (int i = 0; i < 150; ++i) ASSERT_TRUE(Put("k" + std::to_string(i), "v", 2)->status.ok());
  EXPECT_EQ(Hints("n3").size(), 100u);  // ListHints capped at 100 here
  EXPECT_EQ(handoff_->pending(), 150u);
  handoff_->Tick();  // n3 is down: nothing is sent
  EXPECT_EQ(fake_.writes("n3"), 0);
  membership_.ReportSuccess("n3");
  handoff_->Tick();  // batches chain until every hint is delivered
  EXPECT_EQ(fake_.writes("n3"), 150);
  EXPECT_TRUE(Hints("n3").empty());
  EXPECT_EQ(handoff_->pending(), 0u);
  EXPECT_EQ(counters_.hints_delivered.load(), 150u);
  for (int i = 0; i < 150; ++i) EXPECT_TRUE(fake_.Get("n3", "k" + std::to_string(i)).has_value());
}

TEST_F(CoordinatorTest, HintAddedBehindTheCursorIsDeliveredByTheNextPass) {
  MarkDown("n3");
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(Put("k" + std::to_string(100 + i), "v", 2)->status.ok());
  membership_.ReportSuccess("n3");
  fake_.SetMode("n3", Mode::kHold);
  handoff_->Tick();  // the first batch of the pass is in flight
  EXPECT_EQ(fake_.held("n3"), 64u);
  Record late;
  late.version = {hlc_.Now(), "n1"};
  late.value = "late";
  ASSERT_TRUE(handoff_->AddHint("n3", "a-before-the-cursor", late).ok());
  fake_.SetMode("n3", Mode::kServe);
  fake_.Release("n3");  // the pass goes on from its cursor to the end
  EXPECT_EQ(Hints("n3").size(), 1u);
  EXPECT_EQ(handoff_->pending(), 1u);  // exactly the one added during the pass
  handoff_->Tick();                    // a new pass starts from the beginning
  EXPECT_TRUE(Hints("n3").empty());
  EXPECT_EQ(handoff_->pending(), 0u);
  EXPECT_EQ(fake_.Get("n3", "a-before-the-cursor")->value, "late");
  EXPECT_EQ(counters_.hints_delivered.load(), 101u);
}

TEST_F(CoordinatorTest, FailedDeliveryKeepsHintsForTheNextTick) {
  MarkDown("n3");
  ASSERT_TRUE(Put("k", "v", 2)->status.ok());
  membership_.ReportSuccess("n3");
  fake_.SetMode("n3", Mode::kTimeout);
  handoff_->Tick();
  EXPECT_EQ(Hints("n3").size(), 1u);
  EXPECT_EQ(handoff_->pending(), 1u);
  fake_.SetMode("n3", Mode::kServe);
  handoff_->Tick();
  EXPECT_TRUE(Hints("n3").empty());
  EXPECT_EQ(handoff_->pending(), 0u);
}

TEST_F(CoordinatorTest, OldHintsAreDroppedAndCounted) {
  MarkDown("n3");
  ASSERT_TRUE(Put("k", "v", 2)->status.ok());
  clock_.Advance(HandoffOptions().max_age_ms + 1);
  membership_.ReportSuccess("n3");
  handoff_->Tick();
  EXPECT_EQ(fake_.writes("n3"), 0);
  EXPECT_TRUE(Hints("n3").empty());
  EXPECT_EQ(counters_.hints_dropped.load(), 1u);
  EXPECT_EQ(handoff_->pending(), 0u);
}

TEST_F(CoordinatorTest, HintsSurviveRestartOfTheCoordinator) {
  MarkDown("n2");
  ASSERT_TRUE(Put("a", "v", 1)->status.ok());
  ASSERT_TRUE(Put("b", "v", 1)->status.ok());
  HintedHandoff fresh(HandoffOptions{}, store_.get(), &fake_, &membership_, rings_.get(), &clock_,
                      &counters_);
  ASSERT_TRUE(fresh.Init().ok());
  EXPECT_EQ(fresh.pending(), 2u);
}

TEST(MembershipTest, DownAfterMissesOrRefusalUpOnSuccess) {
  Membership m({{"a", "h:1"}, {"b", "h:2"}, {"c", "h:3"}}, "a");
  std::vector<std::pair<std::string, bool>> changes;
  m.SetListener([&](const std::string& n, bool up) { changes.emplace_back(n, up); });
  EXPECT_TRUE(m.IsUp("b"));
  m.ReportFailure("b", false);
  m.ReportFailure("b", false);
  EXPECT_TRUE(m.IsUp("b"));
  m.ReportFailure("b", false);
  EXPECT_FALSE(m.IsUp("b"));
  m.ReportFailure("c", true);
  EXPECT_FALSE(m.IsUp("c"));
  m.ReportSuccess("b");
  EXPECT_TRUE(m.IsUp("b"));
  m.ReportFailure("a", true);  // self is always up
  EXPECT_TRUE(m.IsUp("a"));
  EXPECT_EQ(changes,
            (std::vector<std::pair<std::string, bool>>{{"b", false}, {"c", false}, {"b", true}}));
  EXPECT_EQ(m.Peers(), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(m.AddressOf("c"), "h:3");
}

}  // namespace

}  // namespace ringkv::cluster

namespace ringkv::cluster {
namespace {

// One partition moving n2 -> n4 (phase copy): old set {n1,n2,n3}, new set
// {n1,n4,n3} (the planner's lists may order them otherwise; the sets are
// what counts).
ClusterMap MovingMap() {
  ClusterMap m;
  m.cluster_id = "c";
  m.epoch = 2;
  m.partitions = 1;
  m.replicas = 3;
  m.members = {{"n1", "a:1", MemberState::kNormal},
               {"n2", "a:2", MemberState::kLeaving},
               {"n3", "a:3", MemberState::kNormal},
               {"n4", "a:4", MemberState::kJoining}};
  m.assignment = {{"n1", "n2", "n3"}};
  m.phase = MapPhase::kCopy;
  m.change = "replace n2 n4=a:4";
  m.target = {{"n1", "n4", "n3"}};
  m.moves = {{0, "n2", "n4", false}};
  EXPECT_TRUE(ValidateMap(m).ok());
  return m;
}

}  // namespace

TEST_F(CoordinatorTest, DuringAMoveAWriteNeedsWInTheOldAndTheNewSet) {
  rings_->Set(Ring::FromMap(MovingMap()));
  membership_.SetMembers({{"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}, {"n4", "a:4"}});
  // n3 and n4 fail: the old set has W=2 (n1, n2) but the new one only n1.
  fake_.SetMode("n3", FakeCluster::Mode::kInternal);
  fake_.SetMode("n4", FakeCluster::Mode::kInternal);
  auto w = Put("k", "1", 2);
  ASSERT_TRUE(w->done);
  EXPECT_FALSE(w->status.ok()) << w->status.ToString();
  // n2 and n3 fail instead: n1 and n4 are W=2 of the new set, but the old
  // set has only n1.
  fake_.SetMode("n3", FakeCluster::Mode::kServe);
  fake_.SetMode("n4", FakeCluster::Mode::kServe);
  fake_.SetMode("n2", FakeCluster::Mode::kInternal);
  fake_.SetMode("n3", FakeCluster::Mode::kInternal);
  w = Put("k", "2", 2);
  ASSERT_TRUE(w->done);
  EXPECT_FALSE(w->status.ok());
  // Only n2 fails: n1+n3 in the old set, n1+n3+n4 in the new one.
  fake_.SetMode("n3", FakeCluster::Mode::kServe);
  w = Put("k", "3", 2);
  ASSERT_TRUE(w->done);
  EXPECT_TRUE(w->status.ok()) << w->status.ToString();
  EXPECT_TRUE(fake_.Get("n4", "k").has_value());  // the new replica got it
}

TEST_F(CoordinatorTest, StaleEpochFailsTheRoundWithTheReplicasEpochAndNoHint) {
  rings_->Set(Ring::FromMap(MovingMap()));
  membership_.SetMembers({{"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}, {"n4", "a:4"}});
  fake_.SetStatus("n3", Status::StaleEpoch(3));
  fake_.SetStatus("n4", Status::StaleEpoch(3));
  fake_.SetMode("n3", FakeCluster::Mode::kStatus);
  fake_.SetMode("n4", FakeCluster::Mode::kStatus);
  auto w = Put("k", "1", 2);
  ASSERT_TRUE(w->done);
  EXPECT_TRUE(w->status.IsStaleEpoch()) << w->status.ToString();
  EXPECT_EQ(w->status.message(), "3");
  EXPECT_TRUE(Hints("n3").empty());
  EXPECT_TRUE(Hints("n4").empty());
}

// With catch_up set (kvd), a round that met a fence is routed again by the
// map it caught up to, with its stamp, and answers as if nothing happened.
TEST_F(CoordinatorTest, FencedRoundCatchesUpAndIsRoutedAgain) {
  rings_->Set(Ring::FromMap(MovingMap()));
  membership_.SetMembers({{"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}, {"n4", "a:4"}});
  ClusterMap next = MovingMap();
  next.epoch = 3;
  next.phase = MapPhase::kStable;
  next.assignment = next.target;
  next.target.clear();
  next.moves.clear();
  next.change.clear();
  next.members[1].state = MemberState::kLeft;
  next.members[3].state = MemberState::kNormal;
  ASSERT_TRUE(ValidateMap(next).ok());
  fake_.SetStatus("n3", Status::StaleEpoch(3));
  fake_.SetStatus("n4", Status::StaleEpoch(3));
  fake_.SetMode("n3", FakeCluster::Mode::kStatus);
  fake_.SetMode("n4", FakeCluster::Mode::kStatus);
  int catch_ups = 0;
  CoordinatorOptions co;
  co.node_id = "n1";
  co.catch_up = [&](uint64_t epoch, std::function<void()> then) {
    EXPECT_EQ(epoch, 3u);
    ++catch_ups;
    rings_->Set(Ring::FromMap(next));  // this node fetched epoch 3
    fake_.SetMode("n3", FakeCluster::Mode::kServe);
    fake_.SetMode("n4", FakeCluster::Mode::kServe);
    then();
  };
  Coordinator c(co, rings_.get(), &membership_, &fake_, &hlc_, nullptr, &counters_);
  bool done = false;
  Status status;
  Record rec;
  rec.value = "\"x\"";
  c.Write("k", rec, 2, 1000, [&](Status s, Version) {
    done = true;
    status = s;
  });
  ASSERT_TRUE(done);
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(catch_ups, 1);
  EXPECT_TRUE(fake_.Get("n4", "k").has_value());
  EXPECT_EQ(counters_.stale_epoch_retries.load(), 1u);
  // A read that meets a fence the same way (n2 and n3 moved on).
  fake_.SetStatus("n2", Status::StaleEpoch(3));
  fake_.SetMode("n2", FakeCluster::Mode::kStatus);
  fake_.SetMode("n3", FakeCluster::Mode::kStatus);
  rings_->Set(Ring::FromMap(MovingMap()));
  bool read = false;
  c.Read("k", 2, 1000, [&](Status s, std::optional<Record> got) {
    read = true;
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(got.has_value());
  });
  EXPECT_TRUE(read);
  EXPECT_EQ(catch_ups, 2);
}

// A hint for a node that no longer holds the key's partition (it left, or
// gave the partition away) goes to the partition's replicas instead.
TEST_F(CoordinatorTest, HintForANodeThatGaveThePartitionAwayFollowsIt) {
  Record r = Rec(clock_.NowMs(), "\"v\"");  // within the hint window
  ASSERT_TRUE(handoff_->AddHint("n2", "k", r).ok());
  ClusterMap m;
  m.cluster_id = "c";
  m.epoch = 4;
  m.partitions = 1;
  m.replicas = 3;
  m.members = {{"n1", "a:1", MemberState::kNormal},
               {"n2", "a:2", MemberState::kLeft},
               {"n3", "a:3", MemberState::kNormal},
               {"n4", "a:4", MemberState::kNormal}};
  m.assignment = {{"n1", "n4", "n3"}};
  ASSERT_TRUE(ValidateMap(m).ok());
  rings_->Set(Ring::FromMap(m));
  membership_.SetMembers({{"n1", "a:1"}, {"n3", "a:3"}, {"n4", "a:4"}});
  handoff_->Tick();
  EXPECT_TRUE(Hints("n2").empty());
  ASSERT_EQ(Hints("n3").size(), 1u);
  ASSERT_EQ(Hints("n4").size(), 1u);
  EXPECT_EQ(Hints("n4")[0].record.version, r.version);
  ASSERT_TRUE(fake_.Get("n1", "k").has_value());  // this node's own replica, written
  EXPECT_EQ(counters_.hints_retargeted.load(), 1u);
}

}  // namespace ringkv::cluster
