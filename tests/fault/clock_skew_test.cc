// Clock skew and ties between coordinators (PROTOCOL §8, "Clock skew").
//
// A round: put a key through coordinator A, wait for the acknowledgement, at
// once put the same key through coordinator B, wait, then read it with r=2
// through a third node C. B's write began after A's was acknowledged, so the
// read must return B's value; anything else is an acknowledged write lost to
// last-writer-wins.
//
//   SkewedClock: 5 nodes (N=3, W=2, R=2), n5's wall clock 2 s ahead
//   (libfaketime). Rounds cycle through A=n5 B=n1 (the fast node first: B's
//   version would be ~2 s older), A=n1 B=n5, and A=n2 B=n1 (two normal
//   clocks; n2's HLC may have been pulled ahead by n5's versions).
//   The keys are ones whose replicas exclude n1, so that n1's HLC is not
//   pulled ahead by the fast node's versions through replica writes, only by
//   the HLC in n5's pings, which lags by up to a ping interval: without the
//   coordinator's re-stamping every fast-then-n1 round lost (100 of 100
//   before the fix); the promise holds for every key.
//
//   TiesWithoutSkew: 5 nodes, real clocks, the same rounds as fast as
//   possible through every ordered pair of coordinators: two writes in the
//   same millisecond must not be ordered by the node ids.
//
// The history of every round also goes through the checker.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "engine/version.h"
#include "tests/fault/checker.h"
#include "tests/fault/fault_cluster.h"

namespace ringkv::fault {
namespace {

using itest::Json;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr int kRounds = 300;
constexpr int64_t kSkewMs = 2000;

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

int64_t WallMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Physical milliseconds of a version string, or -1.
int64_t PhysicalMs(const std::string& version) {
  Version v;
  if (!Version::Parse(version, &v).ok()) return -1;
  return static_cast<int64_t>(HlcPhysicalMs(v.hlc));
}

struct RoundTally {
  int rounds = 0;
  int lost = 0;    // the read did not return B's value
  int failed = 0;  // a put or the read was not ok
  std::vector<std::string> examples;
};

// Runs one round on `key`: put via a, put via b, get r=2 via c. Appends the
// three operations to `history` (times relative to t0) and counts into `tally`.
void Round(itest::ClusterProcess& cluster, int a, int b, int c, const std::string& key, int round,
           SteadyClock::time_point t0, std::vector<Op>* history, RoundTally* tally) {
  auto now_ns = [&] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - t0).count();
  };
  auto put = [&](int node, const std::string& value) {
    Op op;
    op.type = OpType::kWrite;
    op.client = 0;
    op.key = key;
    op.value = value;
    op.node = cluster.id(node);
    op.invoke_ns = now_ns();
    Json resp = cluster.Call(node, {{"op", "put"}, {"key", key}, {"value", value}});
    op.complete_ns = now_ns();
    op.outcome = resp.value("ok", false) ? Outcome::kOk : Outcome::kUnknown;
    op.version = resp.value("version", "");
    if (op.outcome != Outcome::kOk) op.code = Dump(resp);
    history->push_back(op);
    return op.outcome == Outcome::kOk;
  };
  std::string va = "r" + std::to_string(round) + "-a", vb = "r" + std::to_string(round) + "-b";
  ++tally->rounds;
  if (!put(a, va) || !put(b, vb)) {
    ++tally->failed;
    return;
  }
  Op get;
  get.type = OpType::kRead;
  get.client = 0;
  get.key = key;
  get.node = cluster.id(c);
  get.invoke_ns = now_ns();
  Json resp = cluster.Call(c, {{"op", "get"}, {"key", key}, {"r", 2}});
  get.complete_ns = now_ns();
  if (!resp.value("ok", false)) {
    ++tally->failed;
    return;
  }
  get.outcome = Outcome::kOk;
  get.found = resp.value("found", false);
  if (get.found) {
    get.value = resp["value"].is_string() ? resp["value"].get<std::string>() : Dump(resp["value"]);
    get.version = resp.value("version", "");
  }
  history->push_back(get);
  if (get.value != vb) {
    ++tally->lost;
    if (tally->examples.size() < 5) {
      const Op& pa = (*history)[history->size() - 3];
      const Op& pb = (*history)[history->size() - 2];
      tally->examples.push_back(key + ": put " + va + " via " + pa.node + " -> " + pa.version +
                                ", then put " + vb + " via " + pb.node + " -> " + pb.version +
                                ", read via " + get.node + ": " + Dump(resp));
    }
  }
}

// The keys' final values for the checker: the last read of each key.
std::map<std::string, FinalState> LastReads(const std::vector<Op>& history) {
  std::map<std::string, FinalState> finals;
  for (const Op& op : history) {
    if (op.type == OpType::kRead && op.outcome == Outcome::kOk) {
      finals[op.key] = {op.found, op.value, op.version};
    }
  }
  return finals;
}

std::string Figures(const RoundTally& t) {
  return "rounds=" + std::to_string(t.rounds) + " lost=" + std::to_string(t.lost) +
         " failed=" + std::to_string(t.failed);
}

TEST(ClockSkewTest, WriteAfterAnAcknowledgedWriteWinsDespiteAFastClock) {
  std::string skip = FaultTestsUnsupportedReason(/*need_faketime=*/true);
  if (!skip.empty()) GTEST_SKIP() << skip;
  FaultClusterOptions options;
  options.cluster.nodes = 5;
  options.cluster.replicas = 3;
  options.clock_offset_ms = {0, 0, 0, 0, kSkewMs};
  FaultCluster fc(options);
  ASSERT_TRUE(fc.Start());
  ClusterProcess& cluster = fc.cluster();
  const int fast = 4, slow = 0, normal = 1;

  // Keys whose replicas exclude the slow coordinator (see the file comment).
  std::vector<std::string> keys;  // the last one is for the probe below
  for (int i = 0; static_cast<int>(keys.size()) < kRounds + 1 && i < kRounds * 20; ++i) {
    std::string key = "skew-" + std::to_string(i);
    Json loc = cluster.Call(0, {{"op", "locate"}, {"key", key}});
    ASSERT_TRUE(itest::IsOk(loc));
    bool has_slow = false;
    for (const Json& id : loc["replicas"]) has_slow |= id == cluster.id(slow);
    if (!has_slow) keys.push_back(key);
  }
  ASSERT_EQ(static_cast<int>(keys.size()), kRounds + 1);

  // libfaketime really moved n5's wall clock, and only n5's: compare the
  // physical time in the versions each one stamps with this process's clock.
  // (n1 first, and n5's probe on a key n1 does not replicate, so that n1's
  // HLC does not observe n5's.)
  Json slow_put = cluster.Call(slow, {{"op", "put"}, {"key", "skew-probe"}, {"value", 1}});
  int64_t slow_ahead = PhysicalMs(slow_put.value("version", "")) - WallMs();
  Json fast_put = cluster.Call(fast, {{"op", "put"}, {"key", keys.back()}, {"value", 1}});
  int64_t fast_ahead = PhysicalMs(fast_put.value("version", "")) - WallMs();
  std::printf("[clock skew] %s stamps %lld ms ahead, %s %lld ms\n", cluster.id(fast).c_str(),
              static_cast<long long>(fast_ahead), cluster.id(slow).c_str(),
              static_cast<long long>(slow_ahead));
  ASSERT_NEAR(fast_ahead, kSkewMs, 500) << Dump(fast_put);
  // n1's wall clock is right, but its hybrid clock follows n5's through the
  // HLC that every _hello carries (architecture.md, "Clock skew"): it stamps
  // up to one ping interval behind n5, never ahead of it. That lag is what
  // the re-stamping below must make harmless.
  ASSERT_LE(slow_ahead, fast_ahead + 50) << Dump(slow_put);

  // Rounds: (A, B, C).
  const int pattern[3][3] = {{fast, slow, 2}, {slow, fast, 3}, {normal, slow, 2}};
  const char* names[3] = {"fast_then_normal", "normal_then_fast", "normal_then_normal"};
  RoundTally tally[3];
  std::vector<Op> history;
  auto t0 = SteadyClock::now();
  for (int r = 0; r < kRounds; ++r) {
    const int* p = pattern[r % 3];
    Round(cluster, p[0], p[1], p[2], keys[r], r, t0, &history, &tally[r % 3]);
  }
  double elapsed = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  CheckResult check = Check(history, LastReads(history));
  int lost = 0, failed = 0;
  for (int i = 0; i < 3; ++i) {
    std::printf("[clock skew] %s: %s\n", names[i], Figures(tally[i]).c_str());
    for (const std::string& e : tally[i].examples) std::printf("[clock skew]   %s\n", e.c_str());
    lost += tally[i].lost;
    failed += tally[i].failed;
  }
  std::printf(
      "[clock skew] total: rounds=%d lost=%d failed=%d in %.2fs; checker: %s "
      "clock_skew_rejections=%lld\n",
      kRounds, lost, failed, elapsed, check.Summary().c_str(),
      static_cast<long long>(cluster.SumStat("clock_skew_rejections")));
  std::printf(
      "[clock skew] write_restamps=%lld (writes re-stamped above a replica's newer version)\n",
      static_cast<long long>(cluster.SumStat("write_restamps")));
  std::fflush(stdout);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(lost, 0) << "acknowledged writes lost to a coordinator whose clock was behind";
  EXPECT_EQ(check.violations(), 0) << ::testing::PrintToString(check.examples);
}

TEST(ClockSkewTest, WritesInOneMillisecondThroughTwoCoordinatorsDoNotTie) {
  // Real clocks, no namespaces needed: loopback.
  itest::ClusterOptions options;
  options.nodes = 5;
  options.replicas = 3;
  itest::ClusterProcess cluster(options);
  ASSERT_TRUE(cluster.Start());

  RoundTally tally;
  std::map<std::string, int> lost_by_pair;  // "n3->n1" -> count
  std::vector<Op> history;
  auto t0 = SteadyClock::now();
  const int n = cluster.size();
  for (int r = 0; r < kRounds; ++r) {
    // Every ordered pair (a, b), a != b, in turn; c is the next node after both.
    int pair = r % (n * (n - 1));
    int a = pair / (n - 1);
    int b = pair % (n - 1);
    if (b >= a) ++b;
    int c = 0;
    while (c == a || c == b) ++c;
    int before = tally.lost;
    Round(cluster, a, b, c, "tie-" + std::to_string(r), r, t0, &history, &tally);
    if (tally.lost > before) ++lost_by_pair[cluster.id(a) + "->" + cluster.id(b)];
  }
  double elapsed = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  CheckResult check = Check(history, LastReads(history));
  std::string pairs;
  for (const auto& [p, count] : lost_by_pair) pairs += " " + p + "=" + std::to_string(count);
  std::printf("[tie] %s in %.2fs; checker: %s; lost by A->B:%s\n", Figures(tally).c_str(), elapsed,
              check.Summary().c_str(), pairs.empty() ? " none" : pairs.c_str());
  for (const std::string& e : tally.examples) std::printf("[tie]   %s\n", e.c_str());
  std::fflush(stdout);
  EXPECT_EQ(tally.failed, 0);
  EXPECT_EQ(tally.lost, 0) << "two writes in one millisecond were ordered by node id";
  EXPECT_EQ(check.violations(), 0) << ::testing::PrintToString(check.examples);
}

}  // namespace
}  // namespace ringkv::fault
