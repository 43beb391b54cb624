// Replication with real kvd processes: quorum reads and writes across nodes,
// `cluster` and `locate` on every node, failure detection, hinted handoff,
// read repair, tombstones, a 5-node ring with N=3, and a paused node.
//
// Every cluster here runs N=3 R=2 W=2 unless a test says otherwise.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/cluster_harness.h"

namespace ringkv::itest {
namespace {

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Keys of several shapes: ASCII, non-ASCII, and one with a NUL byte.
std::string Key(const std::string& prefix, int i) {
  if (i % 10 == 3) return prefix + "-ключ-" + std::to_string(i);
  if (i % 10 == 7) return prefix + std::string("-nul\0-", 6) + std::to_string(i);
  return prefix + "-" + std::to_string(i);
}

std::vector<std::string> Keys(const std::string& prefix, int count) {
  std::vector<std::string> keys;
  for (int i = 0; i < count; ++i) keys.push_back(Key(prefix, i));
  return keys;
}

// A value of every JSON type in turn.
Json ValueOf(int i) {
  switch (i % 12) {
    case 0:
      return "string " + std::to_string(i) + " ünïcødé ✓";
    case 1:
      return std::numeric_limits<int64_t>::min() + i;
    case 2:
      return std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(i);
    case 3:
      return 0.5 + i;
    case 4:
      return 3.14159 * i;
    case 5:
      return i % 24 == 5;
    case 6:
      return nullptr;
    case 7:
      return Json::array({i, "x", nullptr, 1.25, Json::object(), Json::array()});
    case 8:
      return Json{{"i", i}, {"nested", {{"flags", Json::array({true, false})}, {"s", "ö"}}}};
    case 9:
      return std::string("nul\0inside ", 11) + std::to_string(i);
    case 10:
      return -static_cast<int64_t>(i);
    default:
      return i % 2 == 0 ? Json::object() : Json(std::string());
  }
}

Json Put(const std::string& key, const Json& value, const Json& extra = Json::object()) {
  Json req = {{"op", "put"}, {"key", key}, {"value", value}};
  req.update(extra);
  return req;
}
Json Get(const std::string& key, const Json& extra = Json::object()) {
  Json req = {{"op", "get"}, {"key", key}};
  req.update(extra);
  return req;
}
Json Del(const std::string& key) { return {{"op", "delete"}, {"key", key}}; }
Json LocalGet(const std::string& key) { return Get(key, {{"local", true}}); }

// Checks a get response: found with this value (and this version, if given).
::testing::AssertionResult Holds(const Json& resp, const Json& value,
                                 const std::string& version = "") {
  if (!IsOk(resp) || resp.value("found", false) != true || !resp.contains("value") ||
      resp["value"] != value || (!version.empty() && resp.value("version", "") != version)) {
    return ::testing::AssertionFailure() << "expected value " << Dump(value) << " version '"
                                         << version << "', got " << Dump(resp);
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult NotFound(const Json& resp) {
  if (!IsOk(resp) || resp.value("found", true) != false) {
    return ::testing::AssertionFailure() << "expected found:false, got " << Dump(resp);
  }
  return ::testing::AssertionSuccess();
}

// Either of the two codes that a request needing more replicas than are alive
// may answer with.
::testing::AssertionResult IsUnavailableOrTimeout(const Json& resp) {
  if (IsError(resp, "unavailable") || IsError(resp, "timeout")) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "expected unavailable or timeout, got " << Dump(resp);
}

// Waits until node i's own replica of every key satisfies `want` (polling
// local gets). On failure names the first keys that did not, with the answer.
::testing::AssertionResult WaitForLocal(
    ClusterProcess* cluster, int i, const std::vector<std::string>& keys,
    const std::function<::testing::AssertionResult(size_t, const Json&)>& want,
    milliseconds timeout = kClusterDeadline) {
  std::vector<size_t> left;
  for (size_t k = 0; k < keys.size(); ++k) left.push_back(k);
  std::string last;
  WaitFor(
      [&] {
        std::vector<size_t> still;
        for (size_t k : left) {
          ::testing::AssertionResult ok = want(k, cluster->Call(i, LocalGet(keys[k])));
          if (!ok) {
            if (still.empty()) last = "key '" + keys[k] + "': " + ok.message();
            still.push_back(k);
          }
        }
        left = std::move(still);
        return left.empty();
      },
      timeout);
  if (left.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << left.size() << " of " << keys.size() << " keys on "
                                       << cluster->id(i) << " never matched; first: " << last;
}

class ClusterTest : public ::testing::Test {
 protected:
  // Puts keys[k] = values[k] through node `via(k)`, recording the versions.
  void PutAll(ClusterProcess* cluster, const std::vector<std::string>& keys,
              const std::vector<Json>& values, const std::function<int(size_t)>& via,
              std::vector<std::string>* versions) {
    versions->assign(keys.size(), "");
    for (size_t k = 0; k < keys.size(); ++k) {
      Json resp = cluster->Call(via(k), Put(keys[k], values[k]));
      ASSERT_TRUE(IsOk(resp)) << "put '" << keys[k] << "' through " << cluster->id(via(k));
      ASSERT_TRUE(resp.contains("version") && resp["version"].is_string()) << Dump(resp);
      (*versions)[k] = resp["version"].get<std::string>();
    }
  }
};

TEST_F(ClusterTest, EveryNodeSeesEveryNodeUp) {
  ClusterProcess cluster;
  ASSERT_TRUE(cluster.Start());
  for (int i = 0; i < cluster.size(); ++i) {
    Json resp = cluster.Call(i, {{"op", "cluster"}});
    ASSERT_TRUE(IsOk(resp));
    EXPECT_EQ(resp["node"], cluster.id(i)) << Dump(resp);
    EXPECT_EQ(resp["replicas"], 3) << Dump(resp);
    EXPECT_EQ(resp["partitions"], 64) << Dump(resp);
    ASSERT_TRUE(resp["nodes"].is_array()) << Dump(resp);
    ASSERT_EQ(resp["nodes"].size(), 3u) << Dump(resp);
    std::set<std::string> seen;
    for (const Json& n : resp["nodes"]) {
      std::string id = n.value("id", "");
      int at = cluster.IndexOf(id);
      ASSERT_GE(at, 0) << "unknown node in " << Dump(resp);
      EXPECT_EQ(n.value("address", ""), cluster.address(at)) << Dump(resp);
      EXPECT_EQ(n.value("status", ""), "up") << Dump(resp);
      seen.insert(id);
    }
    EXPECT_EQ(seen.size(), 3u) << Dump(resp);
  }
  EXPECT_TRUE(cluster.TerminateAll()) << "every member must exit 0 on SIGTERM";
}

TEST_F(ClusterTest, WritesThroughOneNodeReadThroughEveryOther) {
  ClusterProcess cluster;
  ASSERT_TRUE(cluster.Start());
  constexpr int kCount = 100;
  std::vector<std::string> keys = Keys("rw", kCount);
  std::vector<Json> values;
  for (int i = 0; i < kCount; ++i) values.push_back(ValueOf(i));
  std::vector<std::string> versions;
  auto via = [](size_t k) { return static_cast<int>(k % 3); };
  ASSERT_NO_FATAL_FAILURE(PutAll(&cluster, keys, values, via, &versions));

  for (size_t k = 0; k < keys.size(); ++k) {
    for (int i = 0; i < cluster.size(); ++i) {
      if (i == via(k)) continue;
      ASSERT_TRUE(Holds(cluster.Call(i, Get(keys[k])), values[k], versions[k]))
          << "key '" << keys[k] << "' written through " << cluster.id(via(k)) << ", read through "
          << cluster.id(i);
    }
  }
  // r:"all" sees the same, and overwrites and deletes travel the same way.
  for (size_t k = 0; k < 10; ++k) {
    ASSERT_TRUE(Holds(cluster.Call(2, Get(keys[k], {{"r", "all"}})), values[k], versions[k]));
    Json resp = cluster.Call(1, Put(keys[k], "second"));
    ASSERT_TRUE(IsOk(resp));
    ASSERT_TRUE(Holds(cluster.Call(0, Get(keys[k])), "second", resp.value("version", "")));
    ASSERT_TRUE(IsOk(cluster.Call(2, Del(keys[k]))));
    ASSERT_TRUE(NotFound(cluster.Call(1, Get(keys[k]))));
    ASSERT_TRUE(NotFound(cluster.Call(0, Get(keys[k], {{"r", 3}}))));
  }
}

TEST_F(ClusterTest, LocateAgreesOnEveryNode) {
  ClusterProcess cluster;
  ASSERT_TRUE(cluster.Start());
  for (const std::string& key : Keys("locate", 50)) {
    Json first = cluster.Call(0, {{"op", "locate"}, {"key", key}});
    ASSERT_TRUE(IsOk(first));
    ASSERT_TRUE(first["partition"].is_number_integer()) << Dump(first);
    EXPECT_GE(first["partition"].get<int64_t>(), 0);
    EXPECT_LT(first["partition"].get<int64_t>(), 64);
    ASSERT_TRUE(first["replicas"].is_array()) << Dump(first);
    std::set<std::string> distinct;
    for (const Json& r : first["replicas"]) {
      ASSERT_TRUE(r.is_string()) << Dump(first);
      EXPECT_GE(cluster.IndexOf(r.get<std::string>()), 0) << Dump(first);
      distinct.insert(r.get<std::string>());
    }
    EXPECT_EQ(distinct.size(), 3u) << "key '" << key << "': " << Dump(first);
    for (int i = 1; i < cluster.size(); ++i) {
      Json other = cluster.Call(i, {{"op", "locate"}, {"key", key}});
      ASSERT_TRUE(IsOk(other));
      EXPECT_EQ(other["partition"], first["partition"]) << cluster.id(i) << ": " << Dump(other);
      EXPECT_EQ(other["replicas"], first["replicas"]) << cluster.id(i) << ": " << Dump(other);
    }
  }
}

// kill -9 one node: quorum traffic through the other two goes on without
// errors, "all" cannot be met, and after a restart hinted handoff brings every
// write it missed to its own replica.
TEST_F(ClusterTest, KilledNodeMissesNothingThanksToHints) {
  ClusterProcess cluster;
  ASSERT_TRUE(cluster.Start());
  std::vector<std::string> before = Keys("before", 20);
  std::vector<Json> before_values(before.size(), "before");
  std::vector<std::string> versions;
  ASSERT_NO_FATAL_FAILURE(PutAll(
      &cluster, before, before_values, [](size_t k) { return static_cast<int>(k % 3); },
      &versions));

  constexpr int kDown = 2;
  cluster.Kill(kDown);
  ASSERT_TRUE(cluster.WaitUntilSeenDown(kDown));

  // Overwrite the old keys and write new ones through the two live nodes.
  std::vector<std::string> keys = before;
  for (const std::string& k : Keys("while-down", 40)) keys.push_back(k);
  std::vector<Json> values;
  for (size_t k = 0; k < keys.size(); ++k) values.push_back(ValueOf(static_cast<int>(k)));
  ASSERT_NO_FATAL_FAILURE(PutAll(
      &cluster, keys, values, [](size_t k) { return static_cast<int>(k % 2); }, &versions));
  for (size_t k = 0; k < keys.size(); ++k) {
    int via = 1 - static_cast<int>(k % 2);
    ASSERT_TRUE(Holds(cluster.Call(via, Get(keys[k])), values[k], versions[k]))
        << "quorum read of '" << keys[k] << "' through " << cluster.id(via);
  }
  EXPECT_TRUE(IsUnavailableOrTimeout(
      cluster.Call(0, Put("needs-all", 1, {{"w", "all"}, {"timeout_ms", 2000}}))));
  EXPECT_TRUE(
      IsUnavailableOrTimeout(cluster.Call(1, Get(keys[0], {{"r", "all"}, {"timeout_ms", 2000}}))));
  EXPECT_GT(cluster.Stat(0, "hints_pending") + cluster.Stat(1, "hints_pending"), 0)
      << "writes to a down replica must leave hints";

  ASSERT_TRUE(cluster.Restart(kDown));
  ASSERT_TRUE(cluster.WaitUntilAllUp(kClusterDeadline, milliseconds(0)));
  EXPECT_TRUE(cluster.StaysAllUp(milliseconds(1500)))
      << "once every node sees the restarted node up, it must stay up";
  // Only local reads on the restarted node, so read repair cannot help.
  EXPECT_TRUE(WaitForLocal(&cluster, kDown, keys, [&](size_t k, const Json& resp) {
    return Holds(resp, values[k], versions[k]);
  }));
  EXPECT_TRUE(cluster.WaitForHintsDrained());
  EXPECT_GT(cluster.SumStat("hints_delivered"), 0);
}

// Without hints a restarted replica stays stale until a quorum read repairs it.
TEST_F(ClusterTest, ReadRepairFixesAStaleReplicaWithoutHints) {
  ClusterOptions options;
  options.hinted_handoff = false;
  ClusterProcess cluster(options);
  ASSERT_TRUE(cluster.Start());
  constexpr int kDown = 2;
  std::vector<std::string> old_keys = Keys("repair-old", 20);
  std::vector<Json> old_values(old_keys.size(), "old");
  std::vector<std::string> old_versions;
  ASSERT_NO_FATAL_FAILURE(PutAll(
      &cluster, old_keys, old_values, [](size_t) { return 0; }, &old_versions));
  ASSERT_TRUE(WaitForLocal(&cluster, kDown, old_keys, [&](size_t k, const Json& resp) {
    return Holds(resp, "old", old_versions[k]);
  }));

  cluster.Kill(kDown);
  ASSERT_TRUE(cluster.WaitUntilSeenDown(kDown));
  std::vector<std::string> keys = old_keys;
  for (const std::string& k : Keys("repair-new", 20)) keys.push_back(k);
  std::vector<Json> values;
  for (size_t k = 0; k < keys.size(); ++k) values.push_back(ValueOf(static_cast<int>(k) + 1));
  std::vector<std::string> versions;
  ASSERT_NO_FATAL_FAILURE(PutAll(
      &cluster, keys, values, [](size_t k) { return static_cast<int>(k % 2); }, &versions));
  EXPECT_EQ(cluster.SumStat("hints_pending"), 0) << "--no-hinted-handoff must store no hints";

  ASSERT_TRUE(cluster.Restart(kDown));
  ASSERT_TRUE(cluster.WaitUntilAllUp());
  for (size_t k = 0; k < keys.size(); ++k) {
    Json resp = cluster.Call(kDown, LocalGet(keys[k]));
    if (k < old_keys.size()) {
      EXPECT_TRUE(Holds(resp, "old", old_versions[k])) << "'" << keys[k] << "' should be stale";
    } else {
      EXPECT_TRUE(NotFound(resp)) << "'" << keys[k] << "' should be missing";
    }
  }

  // Quorum reads: r:"all" through a healthy node for half the keys, r:2
  // through the stale node itself for the other half.
  int64_t repairs_before = cluster.SumStat("read_repairs");
  for (size_t k = 0; k < keys.size(); ++k) {
    bool all = k % 2 == 0;
    Json resp = all ? cluster.Call(0, Get(keys[k], {{"r", "all"}}))
                    : cluster.Call(kDown, Get(keys[k], {{"r", 2}}));
    ASSERT_TRUE(Holds(resp, values[k], versions[k]))
        << "quorum read of '" << keys[k] << "' " << (all ? "r:all via n1" : "r:2 via n3");
  }
  EXPECT_TRUE(WaitForLocal(&cluster, kDown, keys, [&](size_t k, const Json& resp) {
    return Holds(resp, values[k], versions[k]);
  })) << "read repair must bring the stale replica up to date";
  int64_t repairs = cluster.SumStat("read_repairs") - repairs_before;
  EXPECT_GT(repairs, 0);
  std::printf("[cluster] read_repairs=%lld for %zu stale keys\n", static_cast<long long>(repairs),
              keys.size());
}

TEST_F(ClusterTest, DeleteReachesAReplicaThatMissedIt) {
  ClusterProcess cluster;
  ASSERT_TRUE(cluster.Start());
  constexpr int kDown = 2;
  std::vector<std::string> keys = Keys("deleted", 30);
  std::vector<Json> values;
  for (size_t k = 0; k < keys.size(); ++k) values.push_back(ValueOf(static_cast<int>(k)));
  std::vector<std::string> versions;
  ASSERT_NO_FATAL_FAILURE(PutAll(
      &cluster, keys, values, [](size_t k) { return static_cast<int>(k % 3); }, &versions));
  ASSERT_TRUE(WaitForLocal(&cluster, kDown, keys, [&](size_t k, const Json& resp) {
    return Holds(resp, values[k], versions[k]);
  }));

  cluster.Kill(kDown);
  ASSERT_TRUE(cluster.WaitUntilSeenDown(kDown));
  for (size_t k = 0; k < keys.size(); ++k) {
    Json resp = cluster.Call(static_cast<int>(k % 2), Del(keys[k]));
    ASSERT_TRUE(IsOk(resp)) << "delete '" << keys[k] << "'";
    EXPECT_TRUE(resp.contains("version")) << Dump(resp);
    ASSERT_TRUE(NotFound(cluster.Call(static_cast<int>(1 - k % 2), Get(keys[k]))));
  }

  ASSERT_TRUE(cluster.Restart(kDown));
  ASSERT_TRUE(cluster.WaitUntilAllUp());
  EXPECT_TRUE(WaitForLocal(&cluster, kDown, keys, [&](size_t, const Json& resp) {
    return NotFound(resp);
  })) << "the tombstones must reach the replica that missed the deletes";
  EXPECT_TRUE(cluster.WaitForHintsDrained());
  for (size_t k = 0; k < keys.size(); ++k) {
    EXPECT_TRUE(NotFound(cluster.Call(kDown, Get(keys[k], {{"r", "all"}})))) << keys[k];
  }
}

TEST_F(ClusterTest, FiveNodesKeepThreeReplicasOfEachKey) {
  ClusterOptions options;
  options.nodes = 5;
  ClusterProcess cluster(options);
  ASSERT_TRUE(cluster.Start());
  constexpr int kCount = 60;
  std::vector<std::string> keys = Keys("five", kCount);
  std::vector<std::vector<int>> owners(kCount);
  for (int k = 0; k < kCount; ++k) {
    Json first;
    for (int i = 0; i < cluster.size(); ++i) {
      Json resp = cluster.Call(i, {{"op", "locate"}, {"key", keys[k]}});
      ASSERT_TRUE(IsOk(resp));
      if (i == 0) first = resp;
      EXPECT_EQ(resp["replicas"], first["replicas"])
          << cluster.id(i) << " disagrees on '" << keys[k] << "': " << Dump(resp);
      EXPECT_EQ(resp["partition"], first["partition"]) << Dump(resp);
    }
    ASSERT_TRUE(first["replicas"].is_array()) << Dump(first);
    std::set<int> distinct;
    for (const Json& r : first["replicas"]) {
      int at = cluster.IndexOf(r.is_string() ? r.get<std::string>() : "");
      ASSERT_GE(at, 0) << Dump(first);
      distinct.insert(at);
    }
    ASSERT_EQ(distinct.size(), 3u) << "'" << keys[k] << "': " << Dump(first);
    owners[k].assign(distinct.begin(), distinct.end());
  }

  std::vector<Json> values;
  for (int k = 0; k < kCount; ++k) values.push_back(ValueOf(k));
  std::vector<std::string> versions;
  ASSERT_NO_FATAL_FAILURE(PutAll(
      &cluster, keys, values, [](size_t k) { return static_cast<int>(k % 5); }, &versions));
  for (int k = 0; k < kCount; ++k) {
    for (int i = 0; i < cluster.size(); ++i) {
      ASSERT_TRUE(Holds(cluster.Call(i, Get(keys[k])), values[k], versions[k]))
          << "'" << keys[k] << "' written through " << cluster.id(k % 5) << ", read through "
          << cluster.id(i);
    }
  }
  // The local copy lives on exactly the preference list.
  for (int i = 0; i < cluster.size(); ++i) {
    std::vector<std::string> mine;
    std::vector<size_t> index;
    for (int k = 0; k < kCount; ++k) {
      if (std::count(owners[k].begin(), owners[k].end(), i) > 0) {
        mine.push_back(keys[k]);
        index.push_back(k);
      }
    }
    EXPECT_TRUE(WaitForLocal(&cluster, i, mine, [&](size_t m, const Json& resp) {
      return Holds(resp, values[index[m]], versions[index[m]]);
    }));
    for (int k = 0; k < kCount; ++k) {
      if (std::count(owners[k].begin(), owners[k].end(), i) > 0) continue;
      EXPECT_TRUE(NotFound(cluster.Call(i, LocalGet(keys[k]))))
          << cluster.id(i) << " is not a replica of '" << keys[k] << "'";
    }
  }
}

// A paused (SIGSTOPped) replica must not hold up quorum requests.
TEST_F(ClusterTest, StoppedNodeDoesNotBlockQuorum) {
  ClusterProcess cluster;
  ASSERT_TRUE(cluster.Start());
  constexpr int kPaused = 2;
  cluster.Stop(kPaused);
  std::vector<std::string> keys = Keys("paused", 30);
  std::vector<std::string> versions(keys.size());
  const Json fast = {{"timeout_ms", 500}};
  for (size_t k = 0; k < keys.size(); ++k) {
    int via = static_cast<int>(k % 2);
    Json resp = cluster.Call(via, Put(keys[k], static_cast<int>(k), fast));
    ASSERT_TRUE(IsOk(resp)) << "put '" << keys[k] << "' through " << cluster.id(via)
                            << " with n3 paused";
    versions[k] = resp.value("version", "");
    ASSERT_TRUE(Holds(cluster.Call(1 - via, Get(keys[k], fast)), static_cast<int>(k), versions[k]))
        << "get '" << keys[k] << "' through " << cluster.id(1 - via) << " with n3 paused";
  }
  cluster.Cont(kPaused);
  ASSERT_TRUE(cluster.WaitUntilAllUp());
  EXPECT_TRUE(WaitForLocal(&cluster, kPaused, keys, [&](size_t k, const Json& resp) {
    return Holds(resp, static_cast<int>(k), versions[k]);
  })) << "the paused replica must catch up (hints or the late writes themselves)";
  EXPECT_TRUE(cluster.WaitForHintsDrained());
}

}  // namespace
}  // namespace ringkv::itest
