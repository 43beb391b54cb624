// Network partitions with real network namespaces (PROTOCOL §8).
//
// A 3-node cluster (N=3, W=2, R=2), each node in its own namespace; 4 writers
// and 2 readers (the test's threads, in the client namespace) spread their
// requests over all nodes while the nemesis cuts one node off for
// kFaultPhase, then heals. Modes:
//   peers     the node and its peers drop each other's packets (blackhole
//             routes on both sides); clients still reach it.
//   all       the node's link is down: it reaches nothing, nothing reaches it
//             (clients stop using it while it is cut off).
//   one_way   its peers' packets to it are dropped by blackhole routes at the
//             peers (their sends fail at once); its own packets reach them,
//             so its requests arrive but their answers do not.
//   one_way_silent  the same direction, but the peers' packets vanish on the
//             wire (a bogus neighbour entry): their sends succeed and they
//             wait for answers that never come, i.e. their timeouts are what
//             ends each request.
// Checks:
//   - no request is answered later than its timeout_ms plus kHangMargin, or
//     not at all, unless the node was cut off from the clients meanwhile;
//   - the cut-off node acknowledges no write sent to it during the cut;
//   - after healing, every key's final value (r:"all") is in every replica's
//     local copy within kConvergeDeadline;
//   - the history checker finds no lost write, stale, non-monotonic or
//     phantom read.
// Each mode takes about 25 s.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/version.h"
#include "tests/fault/checker.h"
#include "tests/fault/fault_cluster.h"

namespace ringkv::fault {
namespace {

using itest::Json;
using itest::WaitFor;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr int kWriters = 4;
constexpr int kKeysPerWriter = 12;
constexpr int kReaders = 2;
constexpr milliseconds kBeforeFault{2000};
constexpr milliseconds kFaultPhase{16000};
constexpr milliseconds kAfterHeal{3000};
constexpr int kRequestTimeoutMs = 1000;
// A request answered later than its timeout_ms plus this has hung.
constexpr int64_t kHangMarginMs = 1000;
// The client gives up on an answer after this (a hang, unless cut off).
constexpr int kClientTimeoutMs = 4000;
constexpr milliseconds kConvergeDeadline{30000};
// How long a writer waits after the answer to a key's previous write before
// writing the key again. None: a write that starts after another was
// acknowledged wins over it even in the same millisecond through another
// coordinator (the coordinator re-stamps; clock_skew_test.cc tests the ties
// on their own). chaos_test keeps a gap from before that fix.
constexpr milliseconds kSameKeyGap{0};

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

enum class Mode { kPeers, kAll, kOneWay, kOneWaySilent };

std::string ModeName(Mode m) {
  switch (m) {
    case Mode::kPeers:
      return "peers";
    case Mode::kAll:
      return "all";
    case Mode::kOneWay:
      return "one_way";
    case Mode::kOneWaySilent:
      return "one_way_silent";
  }
  return "?";
}

// What the nemesis tells the workers, and what they count.
struct Shared {
  std::vector<std::string> addresses;
  std::vector<std::string> ids;
  SteadyClock::time_point t0 = SteadyClock::now();
  std::atomic<bool> stop{false};
  // Bit i: node i cannot be reached by clients (link down); do not send to it.
  std::atomic<uint32_t> cut_mask{0};
  // Bumped whenever cut_mask changes.
  std::atomic<uint64_t> cut_epoch{0};
  History history;
  std::atomic<int64_t> ops{0};
  std::atomic<int64_t> hangs{0};
  std::atomic<int64_t> cut_in_flight{0};  // no answer from a node being cut off
  std::mutex mu;
  std::map<std::string, int64_t> outcomes;  // "put:unavailable" -> count
  std::vector<std::string> hang_examples;

  int64_t NowNs() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - t0).count();
  }
  void Count(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    ++outcomes[what];
  }
};

// One connection per node for one worker thread.
class Connections {
 public:
  explicit Connections(const std::vector<std::string>& addresses)
      : addresses_(addresses), clients_(addresses.size()) {}

  // The answer, or {"harness_error": ...} on a transport failure (connection
  // refused, broken, or no answer within kClientTimeoutMs).
  Json Call(size_t i, const Json& request) {
    if (clients_[i] == nullptr) {
      Status st = Client::Connect(addresses_[i], &clients_[i], kClientTimeoutMs);
      if (!st.ok()) {
        clients_[i].reset();
        return {{"harness_error", "connect: " + st.ToString()}};
      }
    }
    Json resp;
    Status st = clients_[i]->Call(request, &resp);
    if (!st.ok()) {
      clients_[i].reset();
      return {{"harness_error", st.ToString()}};
    }
    return resp;
  }

 private:
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<Client>> clients_;
};

std::string CodeOf(const Json& resp) {
  if (resp.contains("harness_error")) return "transport";
  if (resp.value("ok", false)) return "ok";
  if (resp.contains("error") && resp["error"].is_object() && resp["error"].contains("code") &&
      resp["error"]["code"].is_string()) {
    return resp["error"]["code"].get<std::string>();
  }
  return "malformed";
}

Outcome OutcomeOf(const std::string& code) {
  if (code == "ok") return Outcome::kOk;
  if (code == "unavailable" || code == "bad_request") return Outcome::kFail;
  return Outcome::kUnknown;
}

// A random node the clients may use, or -1.
int PickNode(const Shared& s, std::mt19937* rng) {
  uint32_t mask = s.cut_mask.load();
  std::vector<int> usable;
  for (int i = 0; i < static_cast<int>(s.addresses.size()); ++i) {
    if (!(mask & (1u << i))) usable.push_back(i);
  }
  if (usable.empty()) return -1;
  return usable[(*rng)() % usable.size()];
}

// Sends one request to node `node`, records it as `op` (times, outcome,
// version) and counts hangs.
Json Issue(Shared* s, Connections* conns, int node, const Json& request, Op* op) {
  uint64_t epoch = s->cut_epoch.load();
  op->node = s->ids[node];
  op->invoke_ns = s->NowNs();
  Json resp = conns->Call(node, request);
  op->complete_ns = s->NowNs();
  std::string code = CodeOf(resp);
  op->code = code == "ok" ? "" : code;
  op->outcome = OutcomeOf(code);
  if (code != "ok") s->Count(op->type == OpType::kWrite ? "put:" + code : "get:" + code);
  int64_t elapsed_ms = (op->complete_ns - op->invoke_ns) / 1000000;
  // No answer from a node that clients were cut off from meanwhile is the
  // fault, not a hang; any other answer later than the limit, or none, is.
  bool cut = s->cut_epoch.load() != epoch || (s->cut_mask.load() & (1u << node));
  if (resp.contains("harness_error") && cut) {
    s->cut_in_flight.fetch_add(1);
  } else if (elapsed_ms > kRequestTimeoutMs + kHangMarginMs) {
    s->hangs.fetch_add(1);
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->hang_examples.size() < 10) {
      s->hang_examples.push_back(Dump(request) + " via " + s->ids[node] + " took " +
                                 std::to_string(elapsed_ms) + " ms: " + Dump(resp));
    }
  }
  s->ops.fetch_add(1);
  return resp;
}

void Writer(int w, std::vector<std::string> keys, const FaultCluster* fc, Shared* s) {
  auto scope = fc->EnterClients();
  if (!scope->ok()) {
    ADD_FAILURE() << scope->error();
    return;
  }
  Connections conns(s->addresses);
  std::mt19937 rng(100 + w);
  std::vector<SteadyClock::time_point> last_answer(keys.size());
  int64_t seq = 0;
  size_t next = 0;
  while (!s->stop.load()) {
    size_t k = next++ % keys.size();
    if (SteadyClock::now() - last_answer[k] < kSameKeyGap) {
      std::this_thread::yield();
      continue;
    }
    int node = PickNode(*s, &rng);
    if (node < 0) {
      std::this_thread::sleep_for(milliseconds(1));
      continue;
    }
    Op op;
    op.type = OpType::kWrite;
    op.client = w;
    op.key = keys[k];
    op.value = "w" + std::to_string(w) + "-" + std::to_string(++seq);
    Json resp = Issue(
        s, &conns, node,
        {{"op", "put"}, {"key", op.key}, {"value", op.value}, {"timeout_ms", kRequestTimeoutMs}},
        &op);
    last_answer[k] = SteadyClock::now();
    if (op.outcome == Outcome::kOk) op.version = resp.value("version", "");
    s->history.Add(std::move(op));
  }
}

void Reader(int r, std::vector<std::string> keys, const FaultCluster* fc, Shared* s) {
  auto scope = fc->EnterClients();
  if (!scope->ok()) {
    ADD_FAILURE() << scope->error();
    return;
  }
  Connections conns(s->addresses);
  std::mt19937 rng(200 + r);
  while (!s->stop.load()) {
    int node = PickNode(*s, &rng);
    if (node < 0) {
      std::this_thread::sleep_for(milliseconds(1));
      continue;
    }
    Op op;
    op.type = OpType::kRead;
    op.client = kWriters + r;
    op.key = keys[rng() % keys.size()];
    Json resp = Issue(s, &conns, node,
                      {{"op", "get"}, {"key", op.key}, {"timeout_ms", kRequestTimeoutMs}}, &op);
    if (op.outcome == Outcome::kOk && resp.value("found", false)) {
      op.found = true;
      op.value = resp["value"].is_string() ? resp["value"].get<std::string>() : Dump(resp["value"]);
      op.version = resp.value("version", "");
    }
    s->history.Add(std::move(op));
  }
}

// Joins the workers on every way out (an ASSERT included).
struct Workers {
  Shared* shared;
  std::vector<std::thread> threads;
  void StopAndJoin() {
    shared->stop.store(true);
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  }
  ~Workers() { StopAndJoin(); }
};

// Lets a phase of the test (traffic before the fault, the fault itself) last
// `period`: a chosen duration, not a wait for some condition.
void Hold(milliseconds period) {
  if (period > milliseconds(0)) std::this_thread::sleep_for(period);
}

// The newest of some version strings ("" = none, the oldest).
std::string Newest(const std::vector<std::string>& versions) {
  std::string best;
  Version best_v;
  for (const std::string& text : versions) {
    Version v;
    if (!text.empty() && Version::Parse(text, &v).ok() && (best.empty() || best_v < v)) {
      best = text;
      best_v = v;
    }
  }
  return best;
}

// The whole test for one mode (see the file comment).
void RunPartition(Mode mode) {
  const auto began = SteadyClock::now();

  FaultClusterOptions options;
  options.cluster.nodes = 3;
  FaultCluster fc(options);
  ASSERT_TRUE(fc.Start());
  ClusterProcess& cluster = fc.cluster();
  const int victim = static_cast<int>(mode) % cluster.size();

  Shared s;
  s.addresses = fc.addresses();
  for (int i = 0; i < cluster.size(); ++i) s.ids.push_back(cluster.id(i));
  std::vector<std::string> all_keys;
  int64_t fault_start_ns = 0, heal_start_ns = 0;
  double detect_s = -1;
  int64_t hints_at_heal = 0;  // hints_pending on the other nodes just before healing
  {
    Workers workers{&s, {}};
    for (int w = 0; w < kWriters; ++w) {
      std::vector<std::string> mine;
      for (int j = 0; j < kKeysPerWriter; ++j) {
        mine.push_back("part-" + ModeName(mode) + "-w" + std::to_string(w) + "-k" +
                       std::to_string(j));
      }
      all_keys.insert(all_keys.end(), mine.begin(), mine.end());
      workers.threads.emplace_back(Writer, w, mine, &fc, &s);
    }
    for (int r = 0; r < kReaders; ++r) workers.threads.emplace_back(Reader, r, all_keys, &fc, &s);

    Hold(kBeforeFault);
    std::printf("[partition %s] cutting off %s\n", ModeName(mode).c_str(),
                cluster.id(victim).c_str());
    auto fault_at = SteadyClock::now();
    switch (mode) {
      case Mode::kPeers:
        ASSERT_TRUE(fc.net().IsolateFromPeers(victim));
        break;
      case Mode::kAll:
        s.cut_mask.store(1u << victim);
        s.cut_epoch.fetch_add(1);
        ASSERT_TRUE(fc.net().LinkDown(victim));
        break;
      case Mode::kOneWay:
        ASSERT_TRUE(fc.net().CutPeersToNode(victim));
        break;
      case Mode::kOneWaySilent:
        ASSERT_TRUE(fc.net().DropPeersToNode(victim));
        break;
    }
    fault_start_ns = s.NowNs();
    EXPECT_TRUE(cluster.WaitUntilSeenDown(victim));
    detect_s = std::chrono::duration<double>(SteadyClock::now() - fault_at).count();
    if (mode != Mode::kAll) {
      // The cut-off node, still reachable by clients, sees its peers down.
      std::string view;
      bool alone = WaitFor(
          [&] {
            auto v = cluster.View(victim);
            view.clear();
            int down = 0;
            for (const auto& [id, status] : v) {
              view += id + "=" + status + " ";
              down += status == "down";
            }
            return down == cluster.size() - 1;
          },
          itest::kClusterDeadline);
      EXPECT_TRUE(alone) << cluster.id(victim) << " sees " << view;
    }
    Hold(kFaultPhase - std::chrono::duration_cast<milliseconds>(SteadyClock::now() - fault_at));

    // What an operator would see: hints kept for the cut-off node.
    for (int i = 0; i < cluster.size(); ++i) {
      if (i != victim) hints_at_heal += std::max<int64_t>(0, cluster.Stat(i, "hints_pending"));
    }
    heal_start_ns = s.NowNs();
    ASSERT_TRUE(fc.net().Heal());
    s.cut_mask.store(0);
    s.cut_epoch.fetch_add(1);
    std::printf("[partition %s] healed\n", ModeName(mode).c_str());
    EXPECT_TRUE(cluster.WaitUntilAllUp());
    Hold(kAfterHeal);
    workers.StopAndJoin();
  }
  const std::vector<Op>& history = s.history.ops();

  // The cut-off node acknowledged no write that it received during the cut.
  int64_t isolated_acks = 0, isolated_writes = 0;
  if (mode != Mode::kAll) {
    for (const Op& op : history) {
      if (op.type != OpType::kWrite || op.node != cluster.id(victim)) continue;
      if (op.invoke_ns < fault_start_ns || op.complete_ns > heal_start_ns) continue;
      ++isolated_writes;
      if (op.outcome == Outcome::kOk) {
        ++isolated_acks;
        if (isolated_acks <= 5) ADD_FAILURE() << "acknowledged while cut off: " << op.value;
      }
    }
  }

  // Convergence: hints delivered, then every key's final value in every
  // replica's local copy.
  EXPECT_TRUE(cluster.WaitForHintsDrained(kConvergeDeadline));
  std::map<std::string, FinalState> finals;
  std::map<std::string, std::vector<int>> replicas;
  int64_t behind_before_read = 0;
  auto local_of = [&](int node, const std::string& key) {
    Json resp = cluster.Call(node, {{"op", "get"}, {"key", key}, {"local", true}});
    return resp.value("found", false) ? resp.value("version", "") : std::string();
  };
  for (const std::string& key : all_keys) {
    Json loc = cluster.Call(0, {{"op", "locate"}, {"key", key}});
    ASSERT_TRUE(itest::IsOk(loc));
    for (const Json& id : loc["replicas"]) replicas[key].push_back(cluster.IndexOf(id));
  }
  // Informational: replicas behind the others before any r:"all" read
  // repairs them (what hints alone did not bring).
  for (const std::string& key : all_keys) {
    std::vector<std::string> versions;
    for (int node : replicas[key]) versions.push_back(local_of(node, key));
    std::string newest = Newest(versions);
    for (const std::string& v : versions) behind_before_read += v != newest;
  }
  auto converge_deadline = SteadyClock::now() + kConvergeDeadline;
  int64_t unconverged = 0;
  for (const std::string& key : all_keys) {
    Json resp;
    bool read = WaitFor(
        [&] {
          resp = cluster.Call(victim, {{"op", "get"}, {"key", key}, {"r", "all"}});
          return resp.value("ok", false);
        },
        std::chrono::duration_cast<milliseconds>(converge_deadline - SteadyClock::now()));
    ASSERT_TRUE(read) << "r:all read of " << key << ": " << Dump(resp);
    FinalState f;
    f.found = resp.value("found", false);
    if (f.found) {
      f.value = resp["value"].get<std::string>();
      f.version = resp.value("version", "");
    }
    finals[key] = f;
    for (int node : replicas[key]) {
      std::string local;
      bool same = WaitFor(
          [&] {
            local = local_of(node, key);
            return local == f.version;
          },
          std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(converge_deadline -
                                                                             SteadyClock::now())));
      if (!same) {
        ++unconverged;
        ADD_FAILURE() << key << ": " << cluster.id(node) << " holds " << local << ", r:all read "
                      << f.version;
      }
    }
  }

  CheckResult check = Check(history, finals);
  std::string outcomes;
  for (const auto& [what, count] : s.outcomes) outcomes += " " + what + "=" + std::to_string(count);
  std::printf(
      "[partition %s] victim=%s detected_in=%.1fs ops=%lld %s hangs=%lld cut_in_flight=%lld "
      "isolated_writes=%lld isolated_acks=%lld hints_pending_at_heal=%lld "
      "replicas_behind_before_read=%lld "
      "unconverged=%lld violations=%lld elapsed=%.1fs failures:%s\n",
      ModeName(mode).c_str(), cluster.id(victim).c_str(), detect_s,
      static_cast<long long>(s.ops.load()), check.Summary().c_str(),
      static_cast<long long>(s.hangs.load()), static_cast<long long>(s.cut_in_flight.load()),
      static_cast<long long>(isolated_writes), static_cast<long long>(isolated_acks),
      static_cast<long long>(hints_at_heal), static_cast<long long>(behind_before_read),
      static_cast<long long>(unconverged), static_cast<long long>(check.violations()),
      std::chrono::duration<double>(SteadyClock::now() - began).count(),
      outcomes.empty() ? " none" : outcomes.c_str());
  for (const std::string& e : check.examples) std::printf("[partition] anomaly: %s\n", e.c_str());
  for (const std::string& e : s.hang_examples) std::printf("[partition] hang: %s\n", e.c_str());
  std::fflush(stdout);

  EXPECT_EQ(s.hangs.load(), 0);
  EXPECT_EQ(isolated_acks, 0);
  EXPECT_EQ(check.lost, 0);
  EXPECT_EQ(check.stale, 0);
  EXPECT_EQ(check.nonmonotonic, 0);
  EXPECT_EQ(check.phantom, 0);
  EXPECT_EQ(unconverged, 0);
  EXPECT_GT(check.acknowledged, 500);
  EXPECT_GT(check.reads, 500);
  if (mode != Mode::kAll) {
    EXPECT_GT(isolated_writes, 0) << "no write reached the cut-off node";
  }
}

TEST(PartitionTest, IsolatedFromPeers) {
  std::string skip = FaultTestsUnsupportedReason(/*need_faketime=*/false);
  if (!skip.empty()) GTEST_SKIP() << skip;
  RunPartition(Mode::kPeers);
}

TEST(PartitionTest, IsolatedFromEverything) {
  std::string skip = FaultTestsUnsupportedReason(/*need_faketime=*/false);
  if (!skip.empty()) GTEST_SKIP() << skip;
  RunPartition(Mode::kAll);
}

TEST(PartitionTest, PeersCannotReachIt) {
  std::string skip = FaultTestsUnsupportedReason(/*need_faketime=*/false);
  if (!skip.empty()) GTEST_SKIP() << skip;
  RunPartition(Mode::kOneWay);
}

TEST(PartitionTest, PeersPacketsVanish) {
  std::string skip = FaultTestsUnsupportedReason(/*need_faketime=*/false);
  if (!skip.empty()) GTEST_SKIP() << skip;
  RunPartition(Mode::kOneWaySilent);
}

// Membership (PROTOCOL.md §10) across a real partition: n4 is cut off from
// its peers (clients still reach it) while n3's leave is committed. n4 takes
// some of n3's slots, so the change waits for it; it keeps routing by the old
// map meanwhile. After the heal it catches up (its requests are fenced and
// retried), copies its partitions and the change completes, with no lost
// write, stale, non-monotonic or phantom read under 4 writers and 2 readers.
TEST(PartitionTest, LeaveCommittedWhileANodeIsCutOffFromItsPeers) {
  const std::string skip = FaultTestsUnsupportedReason(false);
  if (!skip.empty()) GTEST_SKIP() << skip;
  FaultClusterOptions options;
  options.cluster.nodes = 4;
  options.cluster.partitions = 16;
  FaultCluster fc(options);
  ASSERT_TRUE(fc.Start());
  ClusterProcess& cluster = fc.cluster();
  const int victim = 3, leaving = 2;
  Shared s;
  s.addresses = fc.addresses();
  for (int i = 0; i < cluster.size(); ++i) s.ids.push_back(cluster.id(i));
  std::vector<std::string> all_keys;
  auto change_done = [&](int via) {
    Json t = cluster.Call(via, {{"op", "membership"}, {"action", "transfers"}});
    return t.value("ok", false) && t.value("moves_pending", -1) == 0 &&
           t.value("phase", "") == "stable";
  };
  {
    Workers workers{&s, {}};
    for (int w = 0; w < kWriters; ++w) {
      std::vector<std::string> mine;
      for (int j = 0; j < kKeysPerWriter; ++j) {
        mine.push_back("member-w" + std::to_string(w) + "-k" + std::to_string(j));
      }
      all_keys.insert(all_keys.end(), mine.begin(), mine.end());
      workers.threads.emplace_back(Writer, w, mine, &fc, &s);
    }
    for (int r = 0; r < kReaders; ++r) workers.threads.emplace_back(Reader, r, all_keys, &fc, &s);
    Hold(kBeforeFault);
    ASSERT_TRUE(fc.net().IsolateFromPeers(victim));
    EXPECT_TRUE(cluster.WaitUntilSeenDown(victim));
    Json staged = cluster.Call(0, {{"op", "membership"}, {"action", "leave"}, {"node", "n3"}});
    ASSERT_TRUE(itest::IsOk(staged)) << Dump(staged);
    Json committed = cluster.Call(0, {{"op", "membership"}, {"action", "commit"}});
    ASSERT_TRUE(itest::IsOk(committed)) << Dump(committed);
    const int64_t epoch_during = cluster.Call(0, {{"op", "cluster"}}).value("epoch", 0);
    // Cut off, n4 still has the map of before the commit.
    EXPECT_LT(cluster.Call(victim, {{"op", "cluster"}}).value("epoch", 0), epoch_during);
    Hold(milliseconds(4000));
    ASSERT_TRUE(fc.net().Heal());
    EXPECT_TRUE(WaitFor([&] { return change_done(0); }, kConvergeDeadline))
        << Dump(cluster.Call(0, {{"op", "membership"}, {"action", "transfers"}}));
    Hold(kAfterHeal);
    workers.StopAndJoin();
  }
  const int64_t epoch = cluster.Call(0, {{"op", "cluster"}}).value("epoch", 0);
  for (int i : {0, 1, 3}) {
    EXPECT_TRUE(WaitFor(
        [&] {
          return cluster.Call(i, {{"op", "cluster"}}).value("epoch", 0) == epoch;
        },
        kConvergeDeadline))
        << cluster.id(i);
  }
  EXPECT_EQ(cluster.Stat(leaving, "partitions_replicated"), 0);
  // Whether n4's first requests after the heal met a fence or its hellos
  // caught it up first is a race: reported, not asserted.
  std::printf("[partition membership] fenced_requests=%lld stale_epoch_retries=%lld\n",
              static_cast<long long>(cluster.SumStat("fenced_requests")),
              static_cast<long long>(cluster.SumStat("stale_epoch_retries")));
  std::map<std::string, FinalState> finals;
  for (const std::string& key : all_keys) {
    Json resp;
    ASSERT_TRUE(WaitFor(
        [&] {
          resp = cluster.Call(victim, {{"op", "get"}, {"key", key}, {"r", "all"}});
          return resp.value("ok", false);
        },
        kConvergeDeadline))
        << Dump(resp);
    Json loc = cluster.Call(victim, {{"op", "locate"}, {"key", key}});
    for (const Json& id : loc["replicas"]) EXPECT_NE(id.get<std::string>(), "n3") << key;
    FinalState f;
    f.found = resp.value("found", false);
    if (f.found) {
      f.value = resp["value"].get<std::string>();
      f.version = resp.value("version", "");
    }
    finals[key] = f;
  }
  CheckResult check = Check(s.history.ops(), finals);
  std::printf("[partition membership] ops=%lld %s\n", static_cast<long long>(s.ops.load()),
              check.Summary().c_str());
  for (const std::string& e : check.examples) std::printf("[partition] anomaly: %s\n", e.c_str());
  EXPECT_EQ(check.lost, 0);
  EXPECT_EQ(check.stale, 0);
  EXPECT_EQ(check.nonmonotonic, 0);
  EXPECT_EQ(check.phantom, 0);
  EXPECT_GT(check.acknowledged, 200);
}

}  // namespace
}  // namespace ringkv::fault
