// Durability and startup checks with real kvd processes: clean shutdown,
// kill -9, restarts on the same data dir, and refusing bad configurations.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringkv::itest {
namespace {

constexpr int kKeys = 2000;

std::string Key(int i) { return "durable-" + std::to_string(i); }
Json Value(int i) { return {{"i", i}, {"text", "value number " + std::to_string(i)}}; }

// Sends every request in one write and reads the responses, stopping early
// after `stop_after` of them. Transport errors become {"harness_error": ...}.
std::vector<Json> Pipeline(Client* client, const std::vector<Json>& requests,
                           size_t stop_after = SIZE_MAX) {
  std::string batch;
  for (const auto& r : requests) batch += r.dump() + "\n";
  std::vector<Json> responses;
  Status st = client->SendRaw(batch);
  if (!st.ok()) return {Json{{"harness_error", st.ToString()}}};
  for (size_t i = 0; i < requests.size() && i < stop_after; ++i) {
    std::string line;
    st = client->ReceiveLine(&line);
    if (!st.ok()) {
      responses.push_back({{"harness_error", st.ToString()}});
      break;
    }
    Json resp = Json::parse(line, nullptr, false);
    responses.push_back(resp.is_discarded() ? Json{{"harness_error", line}} : resp);
  }
  return responses;
}

std::vector<Json> GetAll(KvdProcess* kvd, int count) {
  auto client = kvd->Connect();
  if (client == nullptr) return {};
  std::vector<Json> gets;
  for (int i = 0; i < count; ++i) gets.push_back({{"op", "get"}, {"key", Key(i)}});
  return Pipeline(client.get(), gets);
}

TEST(DurabilityTest, CleanShutdownKeepsEveryWrite) {
  KvdProcess kvd;
  ASSERT_TRUE(kvd.Start());
  auto client = kvd.Connect();
  ASSERT_NE(client, nullptr);
  std::vector<Json> puts;
  for (int i = 0; i < kKeys; ++i)
    puts.push_back({{"op", "put"}, {"key", Key(i)}, {"value", Value(i)}});
  std::vector<Json> acks = Pipeline(client.get(), puts);
  ASSERT_EQ(acks.size(), static_cast<size_t>(kKeys));
  for (const auto& a : acks) ASSERT_TRUE(IsOk(a));
  client.reset();

  EXPECT_EQ(kvd.Terminate(), 0) << "kvd must exit 0 on SIGTERM";
  ASSERT_TRUE(kvd.Restart());
  std::vector<Json> gets = GetAll(&kvd, kKeys);
  ASSERT_EQ(gets.size(), static_cast<size_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(IsOk(gets[i])) << Key(i);
    ASSERT_EQ(gets[i]["found"], true) << Key(i);
    ASSERT_EQ(gets[i]["value"], Value(i)) << Key(i);
    ASSERT_EQ(gets[i]["version"], acks[i]["version"]) << Key(i);
  }
  Json stats = kvd.Call({{"op", "stats"}});
  ASSERT_TRUE(IsOk(stats));
  EXPECT_GT(stats["stats"]["keys_estimate"].get<double>(), 0) << stats.dump();
}

TEST(DurabilityTest, KillNineKeepsAcknowledgedPipelinedWrites) {
  KvdProcess kvd;
  ASSERT_TRUE(kvd.Start());
  auto client = kvd.Connect();
  ASSERT_NE(client, nullptr);
  std::vector<Json> puts;
  for (int i = 0; i < kKeys; ++i)
    puts.push_back({{"op", "put"}, {"key", Key(i)}, {"value", Value(i)}});
  // Kill the node the moment half the writes are acknowledged; the rest may be
  // in flight.
  const size_t kAcked = kKeys / 2;
  std::vector<Json> acks = Pipeline(client.get(), puts, kAcked);
  kvd.Kill(SIGKILL);
  ASSERT_EQ(acks.size(), kAcked);
  for (const auto& a : acks) ASSERT_TRUE(IsOk(a));
  client.reset();

  ASSERT_TRUE(kvd.Restart());
  std::vector<Json> gets = GetAll(&kvd, kKeys);
  ASSERT_EQ(gets.size(), static_cast<size_t>(kKeys));
  int unacked_present = 0;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(IsOk(gets[i])) << Key(i);
    if (static_cast<size_t>(i) < kAcked) {
      ASSERT_EQ(gets[i]["found"], true) << "acknowledged write lost: " << Key(i);
      ASSERT_EQ(gets[i]["value"], Value(i)) << Key(i);
      ASSERT_EQ(gets[i]["version"], acks[i]["version"]) << Key(i);
    } else if (gets[i]["found"] == true) {
      // An unacknowledged write may or may not have landed, but never garbled.
      ASSERT_EQ(gets[i]["value"], Value(i)) << Key(i);
      ++unacked_present;
    }
  }
  RecordProperty("unacknowledged_writes_present", unacked_present);
}

TEST(DurabilityTest, KillNineKeepsOverwritesAndDeletes) {
  constexpr int kCount = 300;
  KvdProcess kvd;
  ASSERT_TRUE(kvd.Start());
  // Expected state after every acknowledged operation: value and version, or
  // deleted (null value).
  std::vector<Json> value(kCount), version(kCount);
  for (int i = 0; i < kCount; ++i) {
    Json v = {{"first", i}};
    Json ack = kvd.Call({{"op", "put"}, {"key", Key(i)}, {"value", v}});
    ASSERT_TRUE(IsOk(ack));
    value[i] = v;
    version[i] = ack["version"];
  }
  for (int i = 0; i < kCount; ++i) {
    Json ack;
    if (i % 3 == 0) {
      ack = kvd.Call({{"op", "delete"}, {"key", Key(i)}});
      value[i] = nullptr;
    } else if (i % 2 == 0) {
      value[i] = {{"second", i}, {"pad", std::string(100, 'p')}};
      ack = kvd.Call({{"op", "put"}, {"key", Key(i)}, {"value", value[i]}});
      version[i] = ack["version"];
    } else {
      continue;
    }
    ASSERT_TRUE(IsOk(ack));
  }
  kvd.Kill(SIGKILL);  // right after the last acknowledgement

  ASSERT_TRUE(kvd.Restart());
  std::vector<Json> gets = GetAll(&kvd, kCount);
  ASSERT_EQ(gets.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(IsOk(gets[i])) << Key(i);
    if (value[i].is_null()) {
      EXPECT_EQ(gets[i]["found"], false) << "delete lost: " << Key(i) << " " << gets[i].dump();
    } else {
      EXPECT_EQ(gets[i]["value"], value[i]) << Key(i) << " " << gets[i].dump();
      EXPECT_EQ(gets[i]["version"], version[i]) << Key(i);
    }
  }
}

TEST(DurabilityTest, DeletesAndTtlsSurviveCleanRestart) {
  KvdProcess kvd;
  ASSERT_TRUE(kvd.Start());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(IsOk(kvd.Call({{"op", "put"}, {"key", Key(i)}, {"value", i}})));
  }
  for (int i = 0; i < 100; i += 2) {
    ASSERT_TRUE(IsOk(kvd.Call({{"op", "delete"}, {"key", Key(i)}})));
  }
  ASSERT_TRUE(
      IsOk(kvd.Call({{"op", "put"}, {"key", "ttl-long"}, {"value", 1}, {"ttl_ms", 600000}})));
  ASSERT_TRUE(IsOk(kvd.Call({{"op", "put"}, {"key", "ttl-short"}, {"value", 1}, {"ttl_ms", 300}})));
  ASSERT_TRUE(WaitFor(
      [&] {
        return kvd.Call({{"op", "get"}, {"key", "ttl-short"}})["found"] == false;
      },
      milliseconds(5000)));

  EXPECT_EQ(kvd.Terminate(), 0);
  ASSERT_TRUE(kvd.Restart());
  std::vector<Json> gets = GetAll(&kvd, 100);
  ASSERT_EQ(gets.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(IsOk(gets[i]));
    if (i % 2 == 0) {
      EXPECT_EQ(gets[i]["found"], false) << "delete lost: " << Key(i);
    } else {
      EXPECT_EQ(gets[i]["value"], i) << Key(i);
    }
  }
  EXPECT_EQ(kvd.Call({{"op", "get"}, {"key", "ttl-long"}})["found"], true);
  EXPECT_EQ(kvd.Call({{"op", "get"}, {"key", "ttl-short"}})["found"], false);
}

// Describes a finished kvd run for assertion messages.
std::string Describe(const ProcessResult& r) {
  return "exit " + std::to_string(r.exit_code) + " signal " + std::to_string(r.term_signal) +
         (r.timed_out ? " TIMED OUT (kvd kept running)" : "") + "\nstderr: " + r.err;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// kvd refused to start: a non-zero exit of its own, not a crash, and one
// clear line on stderr that mentions one of `mentions`.
::testing::AssertionResult RefusedCleanly(const ProcessResult& r,
                                          const std::vector<std::string>& mentions) {
  if (r.timed_out || r.term_signal != 0 || r.exit_code <= 0) {
    return ::testing::AssertionFailure() << "expected a clean non-zero exit: " << Describe(r);
  }
  std::vector<std::string> lines = NonEmptyLines(r.err);
  if (lines.size() != 1) {
    return ::testing::AssertionFailure() << "expected one stderr line: " << Describe(r);
  }
  if (r.err.find("Sanitizer:") != std::string::npos) {
    return ::testing::AssertionFailure() << "sanitizer report: " << Describe(r);
  }
  for (const auto& m : mentions) {
    if (Lower(lines[0]).find(Lower(m)) != std::string::npos) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "message does not say what is wrong: " << Describe(r);
}

// Runs kvd with its own temporary dir for the data and port file, plus `args`.
ProcessResult RunKvd(const std::string& dir, const std::vector<std::string>& args) {
  std::vector<std::string> full = {"--port-file", dir + "/port"};
  bool has_data_dir = std::find(args.begin(), args.end(), "--data-dir") != args.end();
  if (!has_data_dir) full.insert(full.end(), {"--data-dir", dir + "/data"});
  bool has_listen = std::find(args.begin(), args.end(), "--listen") != args.end();
  if (!has_listen) full.insert(full.end(), {"--listen", "127.0.0.1:0"});
  full.insert(full.end(), args.begin(), args.end());
  return RunProgram(KvdPath(), full, "", milliseconds(15000));
}

TEST(StartupTest, DataDirOfAnotherNodeIsRefused) {
  KvdProcess kvd;
  ASSERT_TRUE(kvd.Start());
  ASSERT_TRUE(IsOk(kvd.Call({{"op", "put"}, {"key", "mine"}, {"value", "n1"}})));
  ASSERT_EQ(kvd.Terminate(), 0);

  ProcessResult r = RunKvd(kvd.dir(), {"--node-id", "n2", "--data-dir", kvd.data_dir()});
  EXPECT_TRUE(RefusedCleanly(r, {"n1", "n2", "node"}));

  // The refused start left the data alone.
  ASSERT_TRUE(kvd.Restart());
  EXPECT_EQ(kvd.Call({{"op", "get"}, {"key", "mine"}})["value"], "n1");
}

TEST(StartupTest, BadFlagsAreRefusedWithOneLine) {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {{"--partitions", "3"}, {"partitions", "3"}},
      {{"--partitions", "0"}, {"partitions"}},
      {{"--partitions", "many"}, {"partitions", "many"}},
      {{"--node-id", "bad id!"}, {"node-id", "node id", "bad id!"}},
      {{"--node-id", ""}, {"node-id", "node id"}},
      {{"--node-id", std::string(65, 'a')}, {"node-id", "node id"}},
      {{"--listen", "nonsense"}, {"listen", "nonsense"}},
      {{"--listen", "127.0.0.1:99999"}, {"listen", "99999", "port"}},
      {{"--cache-mb", "lots"}, {"cache-mb", "lots"}},
      {{"--cluster", "garbage"}, {"cluster", "garbage"}},
      {{"--no-such-flag"}, {"no-such-flag"}},
      {{"--request-timeout-ms", "0"}, {"request-timeout-ms", "0"}},
      {{"--max-clock-skew-ms", "soon"}, {"max-clock-skew-ms", "soon"}},
      {{"--hint-window-s", "-1"}, {"hint-window-s"}},
      {{"--slow-request-ms", "x"}, {"slow-request-ms"}},
  };
  for (const auto& c : cases) {
    std::string joined;
    for (const auto& a : c.args) joined += " '" + a + "'";
    SCOPED_TRACE("kvd" + joined);
    std::string dir = MakeTempDir("ringkv-flags");
    ASSERT_FALSE(dir.empty());
    ProcessResult r = RunKvd(dir, c.args);
    EXPECT_TRUE(RefusedCleanly(r, c.mentions));
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
}

TEST(StartupTest, UnusableDataDirOrPortIsRefused) {
  KvdProcess kvd;
  ASSERT_TRUE(kvd.Start());
  // The data dir is a regular file.
  std::string file = kvd.dir() + "/not-a-dir";
  std::ofstream(file) << "x";
  ProcessResult r = RunKvd(kvd.dir(), {"--data-dir", file});
  EXPECT_TRUE(RefusedCleanly(r, {"data", file}));
  // The port is taken by a running node.
  std::string dir = MakeTempDir("ringkv-port");
  r = RunKvd(dir, {"--listen", kvd.address(), "--node-id", "n2"});
  EXPECT_TRUE(RefusedCleanly(r, {"listen", kvd.address(), "address", "in use"}));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  // The running node is unaffected.
  EXPECT_TRUE(IsOk(kvd.Call({{"op", "ping"}})));
}

}  // namespace
}  // namespace ringkv::itest
