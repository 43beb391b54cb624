// Anti-entropy with real kvd processes (PROTOCOL.md §9): replicas that missed
// writes converge with no client reads; a member restarted on an empty data
// dir is rebuilt and does not count toward read quorums until it is; a key
// deleted while a replica was down stays deleted after purges; concurrent
// writes cause no repair storm; SIGKILL during a rebuild and during exchanges
// loses nothing.
//
// Every cluster here runs N=3 R=2 W=2 on 8 partitions (so that an exchange
// cycle over every (partition, peer) pair takes about a second at
// --aae-interval-ms 100) with hinted handoff off: anti-entropy is then the
// only way a replica that missed a write gets it without a read.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cli/client.h"
#include "tests/integration/cluster_harness.h"

namespace ringkv::itest {
namespace {

constexpr milliseconds kConverge{90000};

std::vector<std::string> AaeFlags(std::vector<std::string> more = {}) {
  std::vector<std::string> flags = {"--partitions", "8", "--aae-interval-ms", "100"};
  flags.insert(flags.end(), more.begin(), more.end());
  return flags;
}

ClusterOptions AaeCluster(std::vector<std::string> more = {}) {
  ClusterOptions o;
  o.partitions = 0;  // in AaeFlags
  o.hinted_handoff = false;
  o.extra_args = AaeFlags(std::move(more));
  return o;
}

std::string Key(const std::string& prefix, int i) {
  if (i % 10 == 3) return prefix + "-ключ-" + std::to_string(i);
  return prefix + "-" + std::to_string(i);
}

Json Value(int i) { return Json{{"i", i}, {"pad", std::string(100, 'v')}}; }

Json Aae(ClusterProcess& c, int i) {
  Json r = c.Call(i, {{"op", "aae"}});
  return r.is_object() && r.contains("aae") ? r["aae"] : Json::object();
}

uint64_t U64(const Json& j, const char* field) {
  return j.is_object() && j.contains(field) && j[field].is_number_unsigned()
             ? j[field].get<uint64_t>()
             : 0;
}

// The HLC of a version string "<16 hex digits>.<node>".
uint64_t HlcOf(const std::string& version) {
  return std::stoull(version.substr(0, 16), nullptr, 16);
}

bool LocalFound(ClusterProcess& c, int i, const std::string& key, Json* value = nullptr) {
  Json r = c.Call(i, {{"op", "get"}, {"key", key}, {"local", true}});
  bool found = r.value("ok", false) && r.value("found", false);
  if (found && value != nullptr) *value = r["value"];
  return found;
}

// Waits until node i's own replica holds every key with its value, polling
// from the first key not yet seen.
::testing::AssertionResult WaitForLocalCopy(ClusterProcess& c, int i,
                                            const std::vector<std::string>& keys,
                                            const std::vector<Json>& values,
                                            milliseconds timeout = kConverge) {
  size_t next = 0;
  bool ok = WaitFor(
      [&] {
        while (next < keys.size()) {
          Json v;
          if (!LocalFound(c, i, keys[next], &v) || v != values[next]) return false;
          ++next;
        }
        return true;
      },
      timeout);
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "node " << c.id(i) << " holds only " << next << " of " << keys.size() << " keys after "
         << timeout.count() << " ms; aae: " << Aae(c, i).dump();
}

std::vector<std::string> WriteKeys(ClusterProcess& c, int via, const std::string& prefix, int n,
                                   std::vector<Json>* values) {
  std::vector<std::string> keys;
  for (int k = 0; k < n; ++k) {
    keys.push_back(Key(prefix, k));
    values->push_back(Value(k));
    Json r = c.Call(via, {{"op", "put"}, {"key", keys.back()}, {"value", values->back()}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
  }
  return keys;
}

// A node missed writes while it was down (no hints): exchanges bring every one
// of them back without a single client read, and a SIGKILL of another node
// in the middle of the repairs loses nothing.
TEST(AntiEntropyTest, MissedWritesConvergeWithoutReads) {
  ClusterProcess c(AaeCluster());
  ASSERT_TRUE(c.Start());
  c.Kill(2);
  ASSERT_TRUE(c.WaitUntilSeenDown(2));
  std::vector<Json> values;
  std::vector<std::string> keys = WriteKeys(c, 0, "missed", 2000, &values);
  ASSERT_TRUE(c.Restart(2));
  ASSERT_TRUE(c.WaitUntilAllUp());
  // Some repairs are under way: kill one of the sources mid-stream.
  ASSERT_TRUE(
      WaitFor([&] { return U64(Aae(c, 0), "keys_repaired") + U64(Aae(c, 2), "keys_repaired") > 0; },
              kConverge));
  c.Kill(1);
  ASSERT_TRUE(c.Restart(1));
  ASSERT_TRUE(c.WaitUntilAllUp());
  ASSERT_TRUE(WaitForLocalCopy(c, 2, keys, values));
  // Hints are off and only local reads were made: anti-entropy alone brought
  // the keys (node 1's count restarted with it, so the sum is a lower bound).
  EXPECT_EQ(c.SumStat("read_repairs"), 0) << "only local reads were made";
  EXPECT_EQ(c.SumStat("hints_delivered"), 0);
  uint64_t repaired = 0;
  for (int i = 0; i < c.size(); ++i) repaired += U64(Aae(c, i), "keys_repaired");
  EXPECT_GT(repaired, 0u);
  // Nothing acknowledged was lost on the killed node either.
  for (size_t k = 0; k < keys.size(); k += 7) {
    Json r = c.Call(1, {{"op", "get"}, {"key", keys[k]}, {"r", "all"}});
    ASSERT_TRUE(r.value("found", false)) << keys[k] << ": " << r.dump();
    EXPECT_EQ(r["value"], values[k]);
  }
}

// A member restarted under its old id on an empty data dir gets every key
// back, and until then its replica does not count toward a read quorum. The
// keys were written while node 1 was down, so only nodes 0 and 2 had them:
// a quorum of {1, 2} would read nothing if the empty node 2 counted.
TEST(AntiEntropyTest, LostDiskIsRebuiltAndDoesNotCountUntilDone) {
  ClusterProcess c(AaeCluster({"--aae-repair-keys-per-s", "300"}));
  ASSERT_TRUE(c.Start());
  c.Kill(1);
  ASSERT_TRUE(c.WaitUntilSeenDown(1));
  std::vector<Json> values;
  std::vector<std::string> keys = WriteKeys(c, 0, "lost", 900, &values);
  c.Kill(2);
  std::filesystem::remove_all(c.node(2).data_dir());
  ASSERT_TRUE(c.Restart(1));
  ASSERT_TRUE(c.Restart(2));
  ASSERT_TRUE(c.WaitUntilAllUp(kClusterDeadline, milliseconds(0)));
  // Quorum reads through every node while node 2 rebuilds: never a miss.
  bool saw_rebuilding = false;
  int passes = 0;
  while (passes < 2 || U64(Aae(c, 2), "rebuild_partitions_pending") > 0) {
    ASSERT_LT(passes, 200) << "rebuild does not finish: " << Aae(c, 2).dump();
    saw_rebuilding = saw_rebuilding || Aae(c, 2).value("rebuilding", false);
    for (size_t k = passes % 3; k < keys.size(); k += 3) {
      int via = static_cast<int>((k + passes) % 3);
      Json r = c.Call(via, {{"op", "get"}, {"key", keys[k]}, {"r", 2}});
      ASSERT_TRUE(r.value("ok", false)) << r.dump();
      ASSERT_TRUE(r.value("found", false)) << keys[k] << " via " << c.id(via) << ": " << r.dump();
      ASSERT_EQ(r["value"], values[k]);
    }
    ++passes;
  }
  EXPECT_TRUE(saw_rebuilding) << "node 2 never reported a rebuild";
  EXPECT_TRUE(c.node(2).ReadLog().find("rebuilding every partition") != std::string::npos);
  ASSERT_TRUE(WaitForLocalCopy(c, 2, keys, values));
}

// A SIGKILL in the middle of a rebuild: the restarted node (its data dir no
// longer empty) still knows it is rebuilding and finishes.
TEST(AntiEntropyTest, SigkillDuringRebuildResumes) {
  ClusterProcess c(AaeCluster({"--aae-repair-keys-per-s", "400"}));
  ASSERT_TRUE(c.Start());
  std::vector<Json> values;
  std::vector<std::string> keys = WriteKeys(c, 0, "resume", 1500, &values);
  c.Kill(2);
  std::filesystem::remove_all(c.node(2).data_dir());
  ASSERT_TRUE(c.Restart(2));
  ASSERT_TRUE(WaitFor([&] { return U64(Aae(c, 2), "rebuild_records") >= 200; }, kConverge))
      << Aae(c, 2).dump();
  c.Kill(2);
  ASSERT_TRUE(c.Restart(2));
  Json after = Aae(c, 2);
  EXPECT_TRUE(after.value("rebuilding", false)) << after.dump();
  ASSERT_TRUE(WaitForLocalCopy(c, 2, keys, values));
  ASSERT_TRUE(WaitFor([&] { return !Aae(c, 2).value("rebuilding", true); }, kConverge));
}

// Deleted while a replica was down for longer than the grace period: the
// watermark does not pass the tombstones while the replica is away, so
// compaction keeps them; when it returns, exchanges push the tombstones to it
// (not its old values to the others); then the watermark passes them, they are
// purged everywhere, and the keys stay deleted, the returning node's own copy
// included.
TEST(AntiEntropyTest, KeyDeletedWhileReplicaDownStaysDeleted) {
  ClusterProcess c(AaeCluster({"--tombstone-grace-s", "1", "--max-clock-skew-ms", "200"}));
  ASSERT_TRUE(c.Start());
  std::vector<std::string> keys;
  for (int k = 0; k < 40; ++k) {
    keys.push_back(Key("gone", k));
    Json r = c.Call(0, {{"op", "put"}, {"key", keys.back()}, {"value", k}, {"w", "all"}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
  }
  c.Kill(2);
  ASSERT_TRUE(c.WaitUntilSeenDown(2));
  uint64_t newest_tombstone = 0, oldest_tombstone = UINT64_MAX;
  for (const std::string& k : keys) {
    Json r = c.Call(0, {{"op", "delete"}, {"key", k}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
    uint64_t hlc = HlcOf(r["version"].get<std::string>());
    newest_tombstone = std::max(newest_tombstone, hlc);
    oldest_tombstone = std::min(oldest_tombstone, hlc);
  }
  // Longer than grace + skew (1.2 s) passes with node 2 away.
  const auto wall_ms = [] {
    return static_cast<uint64_t>(std::chrono::duration_cast<milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  };
  const uint64_t past = (newest_tombstone >> 16) + 3000;
  ASSERT_TRUE(WaitFor([&] { return wall_ms() > past; }, milliseconds(10000)));
  for (int i : {0, 1}) {
    const Json aae = Aae(c, i);  // the loop below must not range over a temporary's member
    ASSERT_EQ(aae["partitions"].size(), 8u) << aae.dump();
    for (const Json& p : aae["partitions"]) {
      EXPECT_LT(U64(p, "watermark"), oldest_tombstone)
          << "the watermark passed a tombstone that node 2 has not confirmed: " << p.dump();
    }
    Json r = c.Call(i, {{"op", "compact"}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
  }
  ASSERT_TRUE(c.Restart(2));
  ASSERT_TRUE(c.WaitUntilAllUp());
  // The tombstones reach node 2.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& k : keys) {
          if (LocalFound(c, 2, k)) return false;
        }
        return true;
      },
      kConverge));
  // Once every replica has confirmed them, the watermark passes them.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < c.size(); ++i) {
          const Json aae = Aae(c, i);
          if (aae["partitions"].size() != 8) return false;
          for (const Json& p : aae["partitions"]) {
            if (U64(p, "watermark") <= newest_tombstone) return false;
          }
        }
        return true;
      },
      kConverge))
      << Aae(c, 0).dump();
  for (int i = 0; i < c.size(); ++i) {
    Json r = c.Call(i, {{"op", "compact"}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
  }
  // More exchanges after the purge bring nothing back.
  uint64_t before = 0;
  for (int i = 0; i < c.size(); ++i) before += U64(Aae(c, i), "exchanges");
  ASSERT_TRUE(WaitFor(
      [&] {
        uint64_t now = 0;
        for (int i = 0; i < c.size(); ++i) now += U64(Aae(c, i), "exchanges");
        return now >= before + 30;
      },
      kConverge));
  for (int i = 0; i < c.size(); ++i) {
    for (const std::string& k : keys) {
      EXPECT_FALSE(LocalFound(c, i, k)) << k << " resurrected on " << c.id(i);
    }
  }
  for (const std::string& k : keys) {
    Json r = c.Call(0, {{"op", "get"}, {"key", k}, {"r", "all"}});
    EXPECT_FALSE(r.value("found", true)) << k << ": " << r.dump();
  }
}

// Exchanges while clients write: the confirmation pass filters writes in
// flight, so repairs stay near zero in a healthy cluster.
TEST(AntiEntropyTest, ConcurrentWritesCauseNoRepairStorm) {
  ClusterOptions o;
  o.extra_args = AaeFlags({"--aae-interval-ms", "50"});
  ClusterProcess c(o);
  ASSERT_TRUE(c.Start());
  std::atomic<uint64_t> acked{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      std::unique_ptr<Client> client;
      if (!Client::Connect(c.address(t), &client, 5000).ok()) return;
      auto end = std::chrono::steady_clock::now() + std::chrono::seconds(4);
      for (int n = 0; n < 40000 && std::chrono::steady_clock::now() < end; ++n) {
        Json resp;
        Json req = {{"op", "put"}, {"key", Key("hot", (n * 7 + t) % 3000)}, {"value", n}};
        if (client->Call(req, &resp).ok() && resp.value("ok", false)) acked.fetch_add(1);
      }
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_GT(acked.load(), 1000u);
  uint64_t repaired = 0, exchanges = 0, false_deltas = 0;
  for (int i = 0; i < c.size(); ++i) {
    Json a = Aae(c, i);
    repaired += U64(a, "keys_repaired");
    exchanges += U64(a, "exchanges");
    false_deltas += U64(a, "false_deltas");
  }
  EXPECT_GT(exchanges, 20u) << "exchanges did not run during the writes";
  EXPECT_LE(repaired, acked.load() / 200 + 5)
      << "anti-entropy repaired writes that were only in flight (" << false_deltas
      << " false deltas)";
  EXPECT_LE(false_deltas, acked.load() / 100 + 20);
  // A brand-new cluster is not mistaken for one whose disks were lost.
  for (int i = 0; i < c.size(); ++i) {
    EXPECT_EQ(c.node(i).ReadLog().find("rebuilding every partition"), std::string::npos)
        << c.id(i) << " started a rebuild in a new cluster";
    EXPECT_FALSE(Aae(c, i).value("rebuilding", true));
  }
}

}  // namespace
}  // namespace ringkv::itest
