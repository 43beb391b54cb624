// Operator tooling end to end with real processes (PROTOCOL.md §6, §7):
// scripts/kv-backup and scripts/kv-restore on a 3-node cluster (N=3 R=2 W=2),
// restoring a whole cluster and a single lost node, the refusals, and the
// `kvctl cluster` table.
//
// Waiting is polling with deadlines (WaitFor), never sleeping.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/cluster_harness.h"
#include "tests/integration/harness.h"

namespace ringkv::itest {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

// Ring partitions of every cluster here: few, so that starts and backups are
// quick; the restore tests pass the manifest's value on, as an operator would.
constexpr int kPartitions = 16;

// What a key should hold: a value, or nothing (deleted / never written).
using Model = std::map<std::string, std::optional<std::string>>;

std::string Describe(const ProcessResult& r) {
  return "exit " + std::to_string(r.exit_code) + " signal " + std::to_string(r.term_signal) +
         (r.timed_out ? " TIMED OUT" : "") + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

std::string ScriptPath(const std::string& name) {
  return std::string(RINGKV_SCRIPTS_DIR) + "/" + name;
}

// Runs scripts/NAME with the kvctl under test (RINGKV_KVCTL).
ProcessResult RunScript(const std::string& name, const std::vector<std::string>& args) {
  ::setenv("RINGKV_KVCTL", KvctlPath().c_str(), 1);
  return RunProgram(ScriptPath(name), args, "", milliseconds(60000));
}

std::string Key(const std::string& prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s-%05d", prefix.c_str(), i);
  return buf;
}

// A value of about 120 bytes, so that a few thousand keys make real SST files.
std::string Value(const std::string& tag, int i) {
  return tag + "-" + std::to_string(i) + "-" + std::string(100, static_cast<char>('a' + i % 26));
}

// Sends `requests` pipelined over one connection to `address`, in batches,
// and returns the responses in order ({"harness_error":...} on a failure).
std::vector<Json> Pipeline(const std::string& address, const std::vector<Json>& requests) {
  std::vector<Json> out;
  std::unique_ptr<Client> client;
  Status st = Client::Connect(address, &client, 20000);
  for (size_t start = 0; start < requests.size(); start += 64) {
    size_t end = std::min(requests.size(), start + 64);
    for (size_t i = start; st.ok() && i < end; ++i) st = client->SendLine(requests[i].dump());
    for (size_t i = start; i < end; ++i) {
      std::string line;
      if (st.ok()) st = client->ReceiveLine(&line);
      out.push_back(st.ok() ? Json::parse(line, nullptr, false)
                            : Json{{"harness_error", st.ToString()}});
    }
  }
  return out;
}

// Writes (value) or deletes (nullopt) every key of `changes` through
// `address`; records each acknowledged one in *model. Fails the test on any
// write that is not acknowledged.
void Apply(const std::string& address, const Model& changes, Model* model) {
  std::vector<Json> requests;
  std::vector<std::string> keys;
  for (const auto& [key, value] : changes) {
    requests.push_back(value ? Json{{"op", "put"}, {"key", key}, {"value", *value}}
                             : Json{{"op", "delete"}, {"key", key}});
    keys.push_back(key);
  }
  std::vector<Json> responses = Pipeline(address, requests);
  int failures = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (IsOk(responses[i])) {
      (*model)[keys[i]] = changes.at(keys[i]);
    } else if (++failures <= 3) {
      ADD_FAILURE() << "write of " << keys[i] << " via " << address << ": " << responses[i].dump();
    }
  }
  EXPECT_EQ(failures, 0);
}

Model Puts(const std::string& prefix, int from, int to, const std::string& tag) {
  Model m;
  for (int i = from; i < to; ++i) m[Key(prefix, i)] = Value(tag, i);
  return m;
}

// `size` bytes of text that compression cannot shrink much, the same for the
// same `seed`: SST files then grow with the data, as real values do.
std::string RandomText(uint32_t seed, size_t size) {
  static const char kAlphabet[] =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/";
  std::mt19937 rng(seed);
  std::string text(size, ' ');
  for (char& c : text) c = kAlphabet[rng() % 64];
  return text;
}

// Reads every key of `expected` through `address` with `extra` request
// fields and returns how many do not match; the first few are described in
// *why.
int Mismatches(const std::string& address, const Model& expected, const Json& extra,
               std::string* why = nullptr) {
  std::vector<Json> requests;
  for (const auto& [key, value] : expected) {
    Json req = {{"op", "get"}, {"key", key}};
    req.update(extra);
    requests.push_back(std::move(req));
  }
  std::vector<Json> responses = Pipeline(address, requests);
  int bad = 0;
  size_t i = 0;
  for (const auto& [key, value] : expected) {
    const Json& resp = responses[i++];
    bool ok = IsOk(resp) && resp.value("found", false) == value.has_value() &&
              (!value || resp["value"] == *value);
    if (!ok && ++bad <= 3 && why != nullptr) {
      *why += key + " wants " + (value ? value->substr(0, 12) + "..." : "nothing") + ", got " +
              resp.dump().substr(0, 200) + "; ";
    }
  }
  return bad;
}

Json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return Json::parse(text.str(), nullptr, false);
}

// Total size of the files under `dir`.
uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) total += it->file_size();
  }
  return total;
}

// name -> (size, mtime) of every file under `dir`: to show a dir untouched.
std::map<std::string, std::pair<uintmax_t, int64_t>> Snapshot(const std::string& dir) {
  std::map<std::string, std::pair<uintmax_t, int64_t>> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    files[it->path().string()] = {it->file_size(),
                                  it->last_write_time().time_since_epoch().count()};
  }
  return files;
}

// The cluster's manifest checks shared by the tests.
void ExpectValidManifest(const Json& m, ClusterProcess& cluster) {
  ASSERT_TRUE(m.is_object()) << m.dump();
  EXPECT_EQ(m["partitions"], kPartitions) << m.dump();
  EXPECT_EQ(m["replicas"], 3) << m.dump();
  ASSERT_TRUE(m["created_at"].is_string()) << m.dump();
  EXPECT_TRUE(std::regex_match(m["created_at"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
      << m["created_at"];
  // The cluster map the backups hold: its epoch and members.
  EXPECT_EQ(m["epoch"], 1) << m.dump();
  ASSERT_TRUE(m["members"].is_array()) << m.dump();
  ASSERT_EQ(m["members"].size(), 3u) << m.dump();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(m["members"][i],
              (Json{{"id", cluster.id(i)}, {"address", cluster.address(i)}, {"state", "normal"}}))
        << m.dump();
  }
  ASSERT_TRUE(m["nodes"].is_array()) << m.dump();
  ASSERT_EQ(m["nodes"].size(), 3u) << m.dump();
  for (int i = 0; i < 3; ++i) {
    const Json& n = m["nodes"][i];
    EXPECT_EQ(n["id"], cluster.id(i)) << n.dump();
    EXPECT_EQ(n["address"], cluster.address(i)) << n.dump();
    EXPECT_TRUE(n["backup_id"].is_number_integer() && n["backup_id"].get<int64_t>() >= 1)
        << n.dump();
    EXPECT_TRUE(n["bytes"].is_number_integer() && n["bytes"].get<int64_t>() > 0) << n.dump();
  }
}

// Runs kv-backup against node 0 of `cluster` into `dest` and returns the manifest.
Json Backup(ClusterProcess& cluster, const std::string& dest) {
  ProcessResult r = RunScript("kv-backup", {cluster.address(0), dest});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  // Progress: one line per node on stderr.
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_NE(r.err.find("backing up " + cluster.id(i)), std::string::npos) << Describe(r);
  }
  return ReadJsonFile(dest + "/manifest.json");
}

// Three kvd on data dirs filled before they start (ClusterProcess makes its
// data dirs at Start(), too late for a restore).
class RestoredCluster {
 public:
  RestoredCluster(std::vector<std::string> ids, std::vector<std::string> flags)
      : ids_(std::move(ids)), flags_(std::move(flags)) {
    for (const auto& id : ids_) nodes_.push_back(std::make_unique<KvdProcess>(flags_, id));
  }
  KvdProcess& node(size_t i) { return *nodes_[i]; }

  // Starts every node with a --cluster list of fresh ports and waits until
  // every node sees every other one up. Retries once with other ports if one
  // was taken meanwhile.
  ::testing::AssertionResult Start() {
    ::testing::AssertionResult started = ::testing::AssertionFailure();
    for (int attempt = 0; attempt < 2 && !started; ++attempt) {
      for (auto& n : nodes_) {
        if (n->running()) n->Kill(SIGKILL);
      }
      std::set<int> ports;
      while (ports.size() < ids_.size()) ports.insert(UnusedPort());
      std::string members;
      std::vector<std::string> addresses;
      for (int port : ports) addresses.push_back("127.0.0.1:" + std::to_string(port));
      for (size_t i = 0; i < ids_.size(); ++i) {
        members += (i ? "," : "") + ids_[i] + "=" + addresses[i];
      }
      std::vector<std::string> args = flags_;
      args.insert(args.end(), {"--cluster", members});
      started = ::testing::AssertionSuccess();
      for (size_t i = 0; i < ids_.size() && started; ++i) {
        nodes_[i]->set_listen(addresses[i]);
        nodes_[i]->set_extra_args(args);
        started = nodes_[i]->Start();
      }
    }
    if (!started) return started;
    std::string last;
    bool all_up = WaitFor(
        [&] {
          for (auto& n : nodes_) {
            Json resp = n->Call({{"op", "cluster"}});
            int up = 0;
            for (const Json& m : resp.value("nodes", Json::array())) up += m["status"] == "up";
            if (up != static_cast<int>(ids_.size())) {
              last = n->node_id() + " sees " + resp.dump();
              return false;
            }
          }
          return true;
        },
        kClusterDeadline);
    if (!all_up) return ::testing::AssertionFailure() << "not all up: " << last;
    return ::testing::AssertionSuccess();
  }

 private:
  std::vector<std::string> ids_;
  std::vector<std::string> flags_;
  std::vector<std::unique_ptr<KvdProcess>> nodes_;
};

// kv-restore of every node of `manifest` into the matching node of
// `restored`; returns how long the three restores took.
milliseconds RestoreAll(const std::string& dest, RestoredCluster& restored) {
  auto started = SteadyClock::now();
  for (size_t i = 0; i < 3; ++i) {
    ProcessResult r =
        RunScript("kv-restore", {dest, restored.node(i).node_id(), restored.node(i).data_dir()});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_NE(r.out.find("restored " + restored.node(i).node_id()), std::string::npos)
        << Describe(r);
  }
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - started);
}

std::vector<std::string> RestoredFlags(const Json& manifest) {
  return {"--partitions",   manifest["partitions"].dump(),
          "--replicas",     manifest["replicas"].dump(),
          "--read-quorum",  "2",
          "--write-quorum", "2"};
}

ClusterOptions Options() {
  ClusterOptions o;
  o.partitions = kPartitions;
  return o;
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_ = MakeTempDir("ringkv-backup-test");
    ASSERT_FALSE(scratch_.empty());
  }
  void TearDown() override {
    const char* keep = std::getenv("RINGKV_KEEP_TEST_DIRS");
    std::error_code ec;
    if (keep == nullptr || *keep == '\0') fs::remove_all(scratch_, ec);
  }
  std::string Path(const std::string& name) const { return scratch_ + "/" + name; }

  std::string scratch_;
};

// A whole cluster restored into fresh data dirs serves every key the backup
// held, with the values it held, and nothing written after it.
TEST_F(BackupTest, WholeClusterRestoreServesExactlyTheBackup) {
  constexpr int kKeys = 2000;
  Model model;
  std::string dest = Path("backup");
  Json manifest;
  {
    ClusterProcess cluster(Options());
    ASSERT_TRUE(cluster.Start());
    Apply(cluster.address(0), Puts("key", 0, kKeys, "v1"), &model);
    ASSERT_EQ(model.size(), static_cast<size_t>(kKeys));

    auto backup_started = SteadyClock::now();
    manifest = Backup(cluster, dest);
    auto backup_ms = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - backup_started);
    ExpectValidManifest(manifest, cluster);
    std::printf("[backup] kv-backup of 3 nodes with %d keys took %lld ms\n", kKeys,
                static_cast<long long>(backup_ms.count()));
    // After the backup: new keys, overwrites and deletes, all acknowledged.
    Model after;
    Apply(cluster.address(2), Puts("after", 0, 200, "late"), &after);
    Model overwrites = Puts("key", 0, 100, "v2");
    for (int i = 100; i < 120; ++i) overwrites[Key("key", i)] = std::nullopt;
    Model ignored;
    Apply(cluster.address(0), overwrites, &ignored);
    for (const auto& [key, value] : after) model[key] = std::nullopt;  // must not exist
    ASSERT_TRUE(cluster.TerminateAll());
  }

  // Restore every node into fresh data dirs and start a new cluster on them
  // (new ports, same ids, the manifest's Q and N).
  RestoredCluster restored({"n1", "n2", "n3"}, RestoredFlags(manifest));
  milliseconds restore_ms = RestoreAll(dest, restored);
  ASSERT_FALSE(HasFailure());
  std::printf("[backup] restore of 3 nodes with %d keys (%.1f MiB of backups) took %lld ms\n",
              kKeys, manifest.value("total_bytes", 0.0) / (1 << 20),
              static_cast<long long>(restore_ms.count()));
  ASSERT_TRUE(restored.Start());

  // Every key as the backup held it, through every node (quorum reads).
  for (size_t i = 0; i < 3; ++i) {
    std::string why;
    EXPECT_EQ(Mismatches(restored.node(i).address(), model, Json::object(), &why), 0)
        << "via " << restored.node(i).node_id() << ": " << why;
  }
}

// A backup taken while clients keep writing (it is online) restores: every
// key written before it with its value, every write acknowledged during it
// either absent or with its own value.
TEST_F(BackupTest, BackupTakenDuringWritesRestores) {
  std::string dest = Path("backup");
  Model model;
  Json manifest;
  std::vector<std::string> during;  // acknowledged during the backup, in order
  {
    ClusterProcess cluster(Options());
    ASSERT_TRUE(cluster.Start());
    Apply(cluster.address(0), Puts("key", 0, 500, "v1"), &model);
    std::atomic<bool> stop{false};
    std::thread writer([&, address = cluster.address(1)] {
      std::unique_ptr<Client> client;
      if (!Client::Connect(address, &client, 5000).ok()) return;
      for (int i = 0; !stop.load() && i < 1000000; ++i) {
        Json resp;
        Status st = client->Call(
            {{"op", "put"}, {"key", Key("during", i)}, {"value", Value("d", i)}}, &resp);
        if (!st.ok() || !IsOk(resp)) break;
        during.push_back(Key("during", i));
      }
    });
    manifest = Backup(cluster, dest);
    stop = true;
    writer.join();
    ExpectValidManifest(manifest, cluster);
    std::printf("[backup] %zu writes acknowledged during the backup\n", during.size());
    EXPECT_GT(during.size(), 0u) << "writes stopped during the backup";
    ASSERT_TRUE(cluster.TerminateAll());
  }
  RestoredCluster restored({"n1", "n2", "n3"}, RestoredFlags(manifest));
  RestoreAll(dest, restored);
  ASSERT_FALSE(HasFailure()) << "a backup taken during writes does not restore";
  ASSERT_TRUE(restored.Start());
  std::string why;
  EXPECT_EQ(Mismatches(restored.node(0).address(), model, Json::object(), &why), 0) << why;
  std::vector<Json> reads;
  for (const auto& key : during) reads.push_back({{"op", "get"}, {"key", key}, {"r", "all"}});
  std::vector<Json> responses = Pipeline(restored.node(0).address(), reads);
  size_t present = 0;
  for (size_t i = 0; i < during.size(); ++i) {
    ASSERT_TRUE(IsOk(responses[i])) << responses[i].dump();
    if (!responses[i].value("found", false)) continue;
    ++present;
    EXPECT_EQ(responses[i]["value"], Value("d", static_cast<int>(i))) << during[i];
  }
  std::printf("[backup] %zu of them in the restored cluster\n", present);
}

// A second kv-backup into the same DEST is incremental: new backup ids, only
// the new files copied, and both backups restore.
TEST_F(BackupTest, SecondBackupIsIncrementalAndBothRestore) {
  std::string dest = Path("backup");
  ClusterProcess cluster(Options());
  ASSERT_TRUE(cluster.Start());
  Model model;
  Model big;
  for (int i = 0; i < 3000; ++i) big[Key("key", i)] = RandomText(i, 1000);
  Apply(cluster.address(0), big, &model);

  auto t0 = SteadyClock::now();
  Json first = Backup(cluster, dest);
  auto first_ms = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - t0);
  ExpectValidManifest(first, cluster);
  uint64_t size_first = DirBytes(dest + "/n1");

  Model extra;
  Apply(cluster.address(0), Puts("extra", 0, 50, "x"), &extra);
  t0 = SteadyClock::now();
  Json second = Backup(cluster, dest);
  auto second_ms = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - t0);
  ExpectValidManifest(second, cluster);
  uint64_t grown = DirBytes(dest + "/n1") - size_first;
  std::printf(
      "[backup] first backup %lld ms (n1: %llu bytes on disk), second %lld ms (n1: +%llu)\n",
      static_cast<long long>(first_ms.count()), static_cast<unsigned long long>(size_first),
      static_cast<long long>(second_ms.count()), static_cast<unsigned long long>(grown));
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(second["nodes"][i]["backup_id"].get<int64_t>(),
              first["nodes"][i]["backup_id"].get<int64_t>());
  }
  // Each backup counts every file it needs; the second shares the first's.
  EXPECT_LT(grown * 2, size_first) << "the second backup copied about as much as the first";
  EXPECT_TRUE(fs::exists(dest + "/manifest.json.previous"));

  // Both restore: the second (manifest.json), then the first (the previous
  // manifest put back in place), each into a node started alone on it.
  Model with_extra = model;
  for (const auto& [k, v] : extra) with_extra[k] = v;
  Model without_extra = model;
  for (const auto& [k, v] : extra) without_extra[k] = std::nullopt;
  std::vector<std::string> flags = {"--partitions", std::to_string(kPartitions), "--replicas", "3",
                                    "--cluster"};
  std::string members;
  for (int i = 0; i < 3; ++i) members += (i ? "," : "") + cluster.id(i) + "=" + cluster.address(i);
  flags.push_back(members);
  ASSERT_TRUE(cluster.TerminateAll());
  for (const Model* want : {&with_extra, &without_extra}) {
    if (want == &without_extra) {
      fs::rename(dest + "/manifest.json", dest + "/manifest.json.second");
      fs::rename(dest + "/manifest.json.previous", dest + "/manifest.json");
    }
    KvdProcess node(flags, "n1");
    node.set_listen(cluster.address(0));
    ProcessResult r = RunScript("kv-restore", {dest, "n1", node.data_dir()});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    ASSERT_TRUE(node.Start());
    std::string why;
    EXPECT_EQ(Mismatches(node.address(), *want, {{"local", true}}, &why), 0) << why;
  }
}

// A lost node restored from the backup catches up with what was written
// since: hints for what it missed while down, read repair for what it had
// taken after the backup. Afterwards it holds every acknowledged write.
TEST_F(BackupTest, LostNodeRestoredFromBackupCatchesUp) {
  std::string dest = Path("backup");
  ClusterProcess cluster(Options());
  ASSERT_TRUE(cluster.Start());
  Model model;
  Apply(cluster.address(0), Puts("key", 0, 1000, "v1"), &model);
  Json manifest = Backup(cluster, dest);
  ExpectValidManifest(manifest, cluster);

  // After the backup, while n2 is up: n2 takes these, its backup does not.
  Model after = Puts("after", 0, 300, "a");
  for (int i = 0; i < 100; ++i) after[Key("key", i)] = Value("v2", i);
  for (int i = 900; i < 920; ++i) after[Key("key", i)] = std::nullopt;
  Apply(cluster.address(0), after, &model);

  // n2 dies and loses its disk; writes go on (hints for n2).
  cluster.Kill(1);
  ASSERT_TRUE(cluster.WaitUntilSeenDown(1));
  Model down = Puts("down", 0, 300, "d");
  for (int i = 100; i < 200; ++i) down[Key("key", i)] = Value("v3", i);
  for (int i = 920; i < 940; ++i) down[Key("key", i)] = std::nullopt;
  Apply(cluster.address(0), down, &model);
  EXPECT_GT(cluster.Stat(0, "hints_pending") + cluster.Stat(2, "hints_pending"), 0);
  fs::remove_all(cluster.node(1).data_dir());

  // Restore n2 from the backup and start it on the same address.
  ProcessResult r = RunScript("kv-restore", {dest, "n2", cluster.node(1).data_dir()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ASSERT_TRUE(cluster.Restart(1));
  ASSERT_TRUE(cluster.WaitUntilAllUp());
  ASSERT_TRUE(cluster.WaitForHintsDrained());

  // Hints brought what n2 missed while down; what it took after the backup
  // is stale until read repair.
  int stale_before = Mismatches(cluster.address(1), model, {{"local", true}});
  std::printf("[backup] restored n2: %d of %zu keys stale after hints, before read repair\n",
              stale_before, model.size());
  // Quorum reads of every key (r=all through n1) repair n2.
  std::string why;
  EXPECT_EQ(Mismatches(cluster.address(0), model, {{"r", "all"}}, &why), 0) << why;
  bool caught_up = WaitFor(
      [&] {
        why.clear();
        return Mismatches(cluster.address(1), model, {{"local", true}}, &why) == 0;
      },
      milliseconds(15000));
  EXPECT_TRUE(caught_up) << "n2 is missing acknowledged writes: " << why;
  // And so does every other replica (N=3: every node holds every key).
  for (int i : {0, 2}) {
    why.clear();
    EXPECT_EQ(Mismatches(cluster.address(i), model, {{"local", true}}, &why), 0)
        << cluster.id(i) << ": " << why;
  }
}

// kv-restore refuses what it must, kv-backup fails loudly and leaves no
// manifest that could pass for a complete backup.
TEST_F(BackupTest, RefusalsAndFailures) {
  std::string dest = Path("backup");
  ClusterProcess cluster(Options());
  ASSERT_TRUE(cluster.Start());
  Model model;
  Apply(cluster.address(0), Puts("key", 0, 200, "v1"), &model);
  Json manifest = Backup(cluster, dest);
  ExpectValidManifest(manifest, cluster);

  // A data dir that holds a database: refused, and left as it was.
  std::string held = Path("held");
  ProcessResult r = RunScript("kv-restore", {dest, "n1", held});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  auto before = Snapshot(held);
  ASSERT_FALSE(before.empty());
  r = RunScript("kv-restore", {dest, "n1", held});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_NE(r.err.find("already holds a database"), std::string::npos) << Describe(r);
  EXPECT_EQ(NonEmptyLines(r.err).size(), 1u) << Describe(r);
  EXPECT_EQ(Snapshot(held), before);
  // Any other file in it: refused too.
  fs::create_directories(Path("other"));
  std::ofstream(Path("other/notes.txt")) << "mine";
  r = RunScript("kv-restore", {dest, "n1", Path("other")});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << Describe(r);
  EXPECT_EQ(Snapshot(Path("other")).size(), 1u);

  // A node id the backup does not have.
  r = RunScript("kv-restore", {dest, "n9", Path("n9")});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_NE(r.err.find("'n9' is not in the backup"), std::string::npos) << Describe(r);
  EXPECT_FALSE(fs::exists(Path("n9")));
  // Not a backup directory at all; a bad argument count.
  r = RunScript("kv-restore", {Path("nowhere"), "n1", Path("x")});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_NE(r.err.find("manifest.json does not exist"), std::string::npos) << Describe(r);
  EXPECT_EQ(RunScript("kv-restore", {dest, "n1"}).exit_code, 2);
  EXPECT_EQ(RunScript("kv-backup", {cluster.address(0)}).exit_code, 2);

  // A corrupted file: verification fails before anything is restored.
  std::string damaged = Path("damaged");
  fs::copy(dest, damaged, fs::copy_options::recursive);
  std::string victim;
  for (const auto& f : fs::directory_iterator(damaged + "/n1/shared_checksum")) {
    if (f.path().extension() == ".sst") victim = f.path().string();
  }
  ASSERT_FALSE(victim.empty());
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(victim) / 2));
    f.write("CORRUPTED", 9);
  }
  r = RunScript("kv-restore", {damaged, "n1", Path("from-damaged")});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_NE(r.err.find("verification"), std::string::npos) << Describe(r);
  EXPECT_TRUE(!fs::exists(Path("from-damaged")) || fs::is_empty(Path("from-damaged")));

  // kv-backup against a port nobody listens on: one line, no manifest.
  std::string refused = "127.0.0.1:" + std::to_string(UnusedPort());
  r = RunScript("kv-backup", {refused, Path("refused")});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_EQ(NonEmptyLines(r.err).size(), 1u) << Describe(r);
  EXPECT_NE(r.err.find(refused), std::string::npos) << Describe(r);
  EXPECT_NE(r.err.find("connection refused"), std::string::npos) << Describe(r);
  EXPECT_FALSE(fs::exists(Path("refused/manifest.json")));

  // One node down: the backup fails naming it, with no manifest, whether
  // DEST is new or holds an earlier backup (whose manifest is set aside).
  cluster.Kill(2);
  ASSERT_TRUE(cluster.WaitUntilSeenDown(2));
  for (const std::string& d : {Path("partial"), dest}) {
    r = RunScript("kv-backup", {cluster.address(0), d});
    EXPECT_EQ(r.exit_code, 3) << Describe(r);
    std::vector<std::string> lines = NonEmptyLines(r.err);
    ASSERT_FALSE(lines.empty()) << Describe(r);
    EXPECT_NE(lines.back().find("node n3 (" + cluster.address(2) + ")"), std::string::npos)
        << Describe(r);
    EXPECT_EQ(lines.back().rfind("kvctl: backup failed: ", 0), 0u) << Describe(r);
    EXPECT_FALSE(fs::exists(d + "/manifest.json")) << d;
  }
  EXPECT_TRUE(fs::exists(dest + "/manifest.json.previous"));
  r = RunScript("kv-restore", {dest, "n1", Path("after-failure")});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_NE(r.err.find("manifest.json.previous"), std::string::npos) << Describe(r);
}

// The row of `id` in `kvctl cluster` output, split on spaces; empty if none.
std::vector<std::string> Row(const std::string& out, const std::string& id) {
  for (const auto& line : NonEmptyLines(out)) {
    std::istringstream in(line);
    std::vector<std::string> cells;
    for (std::string cell; in >> cell;) cells.push_back(cell);
    if (!cells.empty() && cells[0] == id) return cells;
  }
  return {};
}

// `kvctl cluster` shows the whole cluster in one table; `kvctl stats` reads
// for a person; failures are one line with exit status 3.
TEST_F(BackupTest, KvctlClusterTableStatsAndFailures) {
  ClusterProcess cluster(Options());
  ASSERT_TRUE(cluster.Start());
  Model model;
  Apply(cluster.address(0), Puts("key", 0, 300, "v1"), &model);

  ProcessResult r = RunKvctl({"--host", cluster.address(1), "cluster"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::printf("%s", r.out.c_str());
  for (const char* column : {"ID", "ADDRESS", "STATUS", "SEEN DOWN BY", "PARTITIONS", "KEYS",
                             "HINTS", "DISK", "STATE"}) {
    EXPECT_NE(r.out.find(column), std::string::npos) << column << "\n" << Describe(r);
  }
  EXPECT_NE(r.out.find("epoch 1 (stable), claimant n1"), std::string::npos) << Describe(r);
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> row = Row(r.out, cluster.id(i));
    // ID ADDRESS STATUS SEEN-DOWN-BY PARTITIONS KEYS HINTS DISK (e.g. "1.2 KiB")
    ASSERT_GE(row.size(), 9u) << cluster.id(i) << "\n" << Describe(r);
    EXPECT_EQ(row[1], cluster.address(i));
    EXPECT_EQ(row[2], "up");
    EXPECT_EQ(row[3], "-");
    EXPECT_EQ(row[4], std::to_string(cluster.Stat(i, "partitions_replicated")));
    EXPECT_GE(std::stoll(row[5]), 300);  // every node holds every key (N=3)
    EXPECT_EQ(row[6], "0");
    EXPECT_GT(std::stod(row[7]), 0);
    EXPECT_EQ(row.back(), "normal");
  }

  // A killed node: unreachable, and seen down by the others.
  cluster.Kill(2);
  ASSERT_TRUE(cluster.WaitUntilSeenDown(2));
  Apply(cluster.address(0), Puts("down", 0, 20, "d"), &model);  // hints for n3
  r = RunKvctl({"--host", cluster.address(0), "cluster"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::printf("%s", r.out.c_str());
  std::vector<std::string> row = Row(r.out, "n3");
  ASSERT_GE(row.size(), 8u) << Describe(r);
  EXPECT_EQ(row[2], "unreachable") << Describe(r);
  EXPECT_EQ(row[3], "n1,n2") << Describe(r);
  EXPECT_EQ(row[4], "-") << Describe(r);
  row = Row(r.out, "n1");
  ASSERT_GE(row.size(), 7u) << Describe(r);
  EXPECT_GT(std::stoll(row[6]), 0) << "n1 should hold hints for n3\n" << Describe(r);
  EXPECT_NE(r.out.find("n3 (" + cluster.address(2) + ") is unreachable"), std::string::npos)
      << Describe(r);
  // -o json is still the node's whole response.
  r = RunKvctl({"--host", cluster.address(0), "-o", "json", "cluster"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  Json resp = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(IsOk(resp)) << Describe(r);
  EXPECT_EQ(resp["nodes"].size(), 3u);
  EXPECT_EQ(resp["node"], "n1");

  // stats: sections with units for a person; -o json for scripts.
  r = RunKvctl({"--host", cluster.address(0), "stats"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  for (const char* text :
       {"node", "uptime", "storage", "keys (estimate)", "disk", "record cache", "replication",
        "hints pending", "n3 down", "requests", "P99", "put", "errors", "MiB", "µs"}) {
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << Describe(r);
  }
  r = RunKvctl({"--host", cluster.address(0), "-o", "json", "stats"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  resp = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(IsOk(resp)) << Describe(r);
  EXPECT_TRUE(resp["stats"]["hints_pending"].is_number());

  // Friendly failures: one line on stderr, exit 3.
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::string refused = "127.0.0.1:" + std::to_string(UnusedPort());
  for (const Case& c : std::vector<Case>{
           {{"--host", refused, "cluster"}, "connection refused"},
           {{"--host", "no-such-host.invalid:7700", "stats"}, "cannot connect to no-such-host"},
           {{"--host", cluster.address(2), "backup", Path("b")}, "connection refused"},
           {{"--host", cluster.address(0), "backup", "/proc/no-backup-here"}, "kvctl: internal: "},
       }) {
    r = RunKvctl(c.args);
    EXPECT_EQ(r.exit_code, 3) << Describe(r);
    EXPECT_EQ(NonEmptyLines(r.err).size(), 1u) << Describe(r);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << Describe(r);
    EXPECT_EQ(r.out, "") << Describe(r);
  }
  // kvctl backup DIR: one node.
  r = RunKvctl({"--host", cluster.address(1), "backup", Path("one")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_NE(r.out.find("backup 1 written to " + Path("one")), std::string::npos) << Describe(r);
}

}  // namespace
}  // namespace ringkv::itest
