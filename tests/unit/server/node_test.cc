#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "engine/version.h"
#include "server/protocol.h"
#include "tests/unit/server/node_fixture.h"

namespace ringkv {
namespace {

using json = nlohmann::json;

class NodeTest : public NodeFixture {
 protected:
  void SetUp() override {
    NodeFixture::SetUp();
    OpenNode();
  }
};

TEST_F(NodeTest, PutGetDelete) {
  json put = Call({{"op", "put"}, {"key", "k"}, {"value", "hello"}, {"id", 1}});
  ASSERT_EQ(put["ok"], true) << put;
  EXPECT_EQ(put["id"], 1);
  ASSERT_TRUE(put["version"].is_string());
  json get = Call({{"op", "get"}, {"key", "k"}});
  EXPECT_EQ(get["found"], true);
  EXPECT_EQ(get["value"], "hello");
  EXPECT_EQ(get["version"], put["version"]);
  EXPECT_FALSE(get.contains("id"));
  json del = Call({{"op", "delete"}, {"key", "k"}});
  ASSERT_EQ(del["ok"], true);
  EXPECT_GT(del["version"].get<std::string>(), put["version"].get<std::string>());
  EXPECT_EQ(Call({{"op", "get"}, {"key", "k"}}), (json{{"ok", true}, {"found", false}}));
  // Deleting what does not exist succeeds.
  EXPECT_EQ(Call({{"op", "delete"}, {"key", "never"}})["ok"], true);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "never"}})["found"], false);
}

TEST_F(NodeTest, EveryJsonValueRoundTripsExactly) {
  const json values[] = {
      nullptr,
      true,
      false,
      0,
      -1,
      std::numeric_limits<int64_t>::min(),
      std::numeric_limits<int64_t>::max(),
      std::numeric_limits<uint64_t>::max(),
      3.141592653589793,
      -0.0,
      1e300,
      5e-324,
      "",
      "plain",
      "üñíçødé 😀 中文",
      std::string("nul\0inside", 10),
      "quote\" back\\slash\n",
      json::array(),
      json::object(),
      json{1, "two", nullptr, json{{"deep", json{{"er", 1}}}}},
      json{{"a", 1}, {"b", json::array({json::array({json::array()})})}},
  };
  int i = 0;
  for (const json& v : values) {
    std::string key = std::string("key\0", 4) + std::to_string(i++);
    json put = Call({{"op", "put"}, {"key", key}, {"value", v}});
    ASSERT_EQ(put["ok"], true) << put;
    json get = Call({{"op", "get"}, {"key", key}});
    ASSERT_EQ(get["found"], true) << v;
    EXPECT_EQ(get["value"], v) << v.dump();
    // Integers stay integers and floats stay floats (nlohmann reads a
    // non-negative integer as unsigned, which compares equal to the signed one).
    EXPECT_EQ(get["value"].is_number_integer(), v.is_number_integer()) << v.dump();
    EXPECT_EQ(get["value"].is_number_float(), v.is_number_float()) << v.dump();
    if (v.is_number_float()) {
      EXPECT_EQ(get["value"].dump(), v.dump());
    }
  }
  // Full-range integers are returned as integers, not floats.
  std::string raw = CallRaw(R"({"op":"put","key":"u","value":18446744073709551615})");
  EXPECT_NE(raw.find("\"ok\":true"), std::string::npos);
  raw = CallRaw(R"({"op":"get","key":"u"})");
  EXPECT_NE(raw.find("\"value\":18446744073709551615"), std::string::npos) << raw;
}

TEST_F(NodeTest, IdIsEchoedVerbatim) {
  EXPECT_EQ(Call({{"op", "ping"}, {"id", "abc"}})["id"], "abc");
  EXPECT_EQ(Call({{"op", "ping"}, {"id", -42}})["id"], -42);
  EXPECT_EQ(Call({{"op", "nope"}, {"id", 9}})["id"], 9);
  EXPECT_EQ(Call({{"op", "get"}, {"id", "x"}})["id"], "x");
  EXPECT_EQ(Call({{"op", "ping"}})["node"], "n1");
}

TEST_F(NodeTest, ErrorCodesAndStatsCountThem) {
  EXPECT_EQ(ErrorCode(Parse(CallRaw("garbage"))), "bad_request");
  EXPECT_EQ(ErrorCode(Call({{"op", "teleport"}})), "unknown_op");
  EXPECT_EQ(ErrorCode(Call({{"op", "get"}, {"key", std::string(1025, 'k')}})), "key_too_large");
  EXPECT_TRUE(Call({{"op", "get"}, {"key", std::string(1024, 'k')}})["ok"]);
  EXPECT_EQ(ErrorCode(Call({{"op", "put"}, {"key", "k"}, {"value", std::string(1048577, 'v')}})),
            "value_too_large");
  EXPECT_EQ(ErrorCode(Call({{"op", "get"}, {"key", "k"}, {"r", 2}})), "bad_request");
  EXPECT_EQ(ErrorCode(Call({{"op", "put"}, {"key", "k"}, {"value", 1}, {"w", 0}})), "bad_request");
  EXPECT_TRUE(Call({{"op", "put"}, {"key", "k"}, {"value", 1}, {"w", "all"}})["ok"]);
  EXPECT_TRUE(Call({{"op", "get"}, {"key", "k"}, {"r", 1}, {"local", true}})["ok"]);
  json big = Parse(node_->RequestTooLargeResponse());
  EXPECT_EQ(ErrorCode(big), "request_too_large");
  json stats = Call({{"op", "stats"}})["stats"];
  EXPECT_EQ(stats["errors"]["bad_request"], 3);
  EXPECT_EQ(stats["errors"]["unknown_op"], 1);
  EXPECT_EQ(stats["errors"]["key_too_large"], 1);
  EXPECT_EQ(stats["errors"]["value_too_large"], 1);
  EXPECT_EQ(stats["errors"]["request_too_large"], 1);
  // Requests that parsed count under their op even if they then fail (w=0,
  // r=2); requests rejected while parsing count only as errors.
  EXPECT_EQ(stats["ops"]["put"], 2);
  EXPECT_EQ(stats["ops"]["get"], 3);
}

TEST_F(NodeTest, StatsHasEveryField) {
  Call({{"op", "put"}, {"key", "a"}, {"value", 1}});
  Call({{"op", "get"}, {"key", "a"}});
  Call({{"op", "get"}, {"key", "a"}});
  json s = Call({{"op", "stats"}})["stats"];
  for (const char* f : {"uptime_s", "keys_estimate", "ops", "latency_us", "cache", "hints_pending",
                        "hints_delivered", "read_repairs", "errors"}) {
    EXPECT_TRUE(s.contains(f)) << f;
  }
  for (const char* op : {"put", "get", "delete", "ping", "stats", "cluster", "locate", "backup"}) {
    EXPECT_TRUE(s["ops"].contains(op)) << op;
    for (const char* p : {"p50", "p99", "p999"}) EXPECT_TRUE(s["latency_us"][op].contains(p));
  }
  EXPECT_EQ(s["cache"]["hits"], 1);  // the second get
  EXPECT_EQ(s["cache"]["misses"], 1);
  EXPECT_GT(s["cache"]["bytes"].get<int>(), 0);
  EXPECT_EQ(s["cache"]["capacity_bytes"], 1 << 20);
  EXPECT_GE(s["latency_us"]["get"]["p99"].get<uint64_t>(),
            s["latency_us"]["get"]["p50"].get<uint64_t>());
}

TEST_F(NodeTest, TtlExpiresAndPutWithoutTtlMakesPermanent) {
  ASSERT_TRUE(Call({{"op", "put"}, {"key", "t"}, {"value", 1}, {"ttl_ms", 1000}})["ok"]);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "t"}})["found"], true);
  clock_.Advance(999);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "t"}})["found"], true);
  clock_.Advance(1);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "t"}})["found"], false);
  ASSERT_TRUE(Call({{"op", "put"}, {"key", "p"}, {"value", 1}, {"ttl_ms", 10}})["ok"]);
  ASSERT_TRUE(Call({{"op", "put"}, {"key", "p"}, {"value", 2}})["ok"]);
  clock_.Advance(1'000'000);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "p"}})["value"], 2);
}

TEST_F(NodeTest, VersionsIncreaseEvenWhenTheClockGoesBack) {
  std::string v1 = Call({{"op", "put"}, {"key", "k"}, {"value", 1}})["version"];
  clock_.Set(clock_.NowMs() - 60'000);
  std::string v2 = Call({{"op", "put"}, {"key", "k"}, {"value", 2}})["version"];
  EXPECT_GT(v2, v1);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "k"}})["value"], 2);
}

TEST_F(NodeTest, ClusterAndLocateForOneMember) {
  node_->SetAdvertisedAddress("127.0.0.1:12345");
  json c = Call({{"op", "cluster"}});
  EXPECT_EQ(c["node"], "n1");
  EXPECT_EQ(c["replicas"], 1);
  EXPECT_EQ(c["partitions"], 64);
  ASSERT_EQ(c["nodes"].size(), 1u);
  EXPECT_EQ(c["epoch"], 1);
  EXPECT_EQ(c["claimant"], "n1");
  EXPECT_EQ(
      c["nodes"][0],
      (json{{"id", "n1"}, {"address", "127.0.0.1:12345"}, {"status", "up"}, {"state", "normal"}}));
  json l = Call({{"op", "locate"}, {"key", "some-key"}});
  EXPECT_GE(l["partition"].get<int>(), 0);
  EXPECT_LT(l["partition"].get<int>(), 64);
  EXPECT_EQ(l["replicas"], json::array({"n1"}));
}

TEST_F(NodeTest, BackupAnswersWithSize) {
  for (int i = 0; i < 50; ++i)
    Call({{"op", "put"}, {"key", "k" + std::to_string(i)}, {"value", i}});
  json b = Call({{"op", "backup"}, {"dir", dir_ + "/bk"}, {"id", 3}});
  ASSERT_EQ(b["ok"], true) << b;
  EXPECT_EQ(b["id"], 3);
  EXPECT_EQ(b["dir"], dir_ + "/bk");
  EXPECT_GT(b["bytes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/bk/meta"));
  json bad = Call({{"op", "backup"}, {"dir", "/proc/forbidden/bk"}});
  EXPECT_EQ(ErrorCode(bad), "internal");
}

TEST_F(NodeTest, DataSurvivesReopen) {
  ASSERT_TRUE(Call({{"op", "put"}, {"key", "a"}, {"value", {1, 2}}})["ok"]);
  ASSERT_TRUE(Call({{"op", "delete"}, {"key", "a"}})["ok"]);
  ASSERT_TRUE(Call({{"op", "put"}, {"key", "b"}, {"value", "x"}})["ok"]);
  node_.reset();
  OpenNode();
  EXPECT_EQ(Call({{"op", "get"}, {"key", "a"}})["found"], false);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "b"}})["value"], "x");
}

TEST_F(NodeTest, PeerWriteAndReadCarryWholeRecords) {
  Version v{MakeHlc(clock_.NowMs(), 3), "n7"};
  Record rec;
  rec.version = v;
  rec.value = R"({"a":[1,2]})";
  rec.expires_at_ms = clock_.NowMs() + 5000;
  json w = Parse(CallRaw(EncodePeerWrite("pk", rec)));
  ASSERT_EQ(w["ok"], true) << w;
  Record back;
  ASSERT_TRUE(ParsePeerReadReply(CallRaw(EncodePeerRead("pk")), &back).ok());
  EXPECT_EQ(back, rec);
  // An older record is not written and is answered stale with the version
  // the replica holds (the coordinator re-stamps above it); the same version
  // again is OK (the replica has it); a tombstone with a newer version wins.
  Record older = rec;
  older.version.hlc -= 1;
  older.value = "1";
  Status stale = ParsePeerWriteReply(CallRaw(EncodePeerWrite("pk", older)));
  ASSERT_TRUE(stale.IsStale()) << stale.ToString();
  EXPECT_EQ(stale.message(), v.ToString());
  EXPECT_TRUE(ParsePeerWriteReply(CallRaw(EncodePeerWrite("pk", rec))).ok());
  ASSERT_TRUE(ParsePeerReadReply(CallRaw(EncodePeerRead("pk")), &back).ok());
  EXPECT_EQ(back.value, rec.value);
  Record tomb;
  tomb.version = {v.hlc + 1, "n7"};
  tomb.tombstone = true;
  ASSERT_TRUE(ParsePeerWriteReply(CallRaw(EncodePeerWrite("pk", tomb))).ok());
  ASSERT_TRUE(ParsePeerReadReply(CallRaw(EncodePeerRead("pk")), &back).ok());
  EXPECT_TRUE(back.tombstone);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "pk"}})["found"], false);
  EXPECT_TRUE(ParsePeerReadReply(CallRaw(EncodePeerRead("none")), &back).IsNotFound());
  // The node's own next write stamps past the version it observed.
  json put = Call({{"op", "put"}, {"key", "pk"}, {"value", 2}});
  EXPECT_GT(put["version"].get<std::string>(), tomb.version.ToString());
}

TEST_F(NodeTest, FarFutureVersionsAreRefusedAndCounted) {
  Record rec;
  rec.value = "1";
  rec.version = {MakeHlc(clock_.NowMs() + 60'000, 0), "skewed"};  // exactly at the bound: fine
  EXPECT_TRUE(ParsePeerWriteReply(CallRaw(EncodePeerWrite("a", rec))).ok());
  rec.version = {MakeHlc(clock_.NowMs() + 60'001, 0), "skewed"};
  Status s = ParsePeerWriteReply(CallRaw(EncodePeerWrite("b", rec)));
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_NE(s.message().find("ahead"), std::string::npos) << s.message();
  Record back;
  EXPECT_TRUE(ParsePeerReadReply(CallRaw(EncodePeerRead("b")), &back).IsNotFound());
  EXPECT_EQ(Call({{"op", "stats"}})["stats"]["clock_skew_rejections"], 1);
}

// A replica checks a write against the version it holds only when the write
// is not above every version it has taken (the applied watermark), and that
// watermark is persisted with the records: after a restart, writes stamped
// now pay no lookup, while a record accepted from a clock 60 s ahead still
// makes an older write of its key stale.
TEST_F(NodeTest, TheAppliedWatermarkSurvivesARestart) {
  auto checks = [this] { return Call({{"op", "stats"}})["stats"]["write_version_checks"]; };
  ASSERT_TRUE(Call({{"op", "put"}, {"key", "a"}, {"value", 1}})["ok"]);
  EXPECT_EQ(checks(), 0);  // a new store holds nothing newer
  Record ahead;
  ahead.value = "2";
  ahead.version = {MakeHlc(clock_.NowMs() + 60'000, 0), "fast"};
  ASSERT_TRUE(ParsePeerWriteReply(CallRaw(EncodePeerWrite("b", ahead))).ok());
  EXPECT_EQ(checks(), 0);
  node_.reset();
  OpenNode();
  clock_.Advance(1000);
  ASSERT_TRUE(Call({{"op", "put"}, {"key", "c"}, {"value", 3}})["ok"]);
  EXPECT_EQ(checks(), 1);  // below b's version: checked (c is not held: written)
  Record older = ahead;
  older.version.hlc = MakeHlc(clock_.NowMs(), 0);
  older.value = "0";
  Status stale = ParsePeerWriteReply(CallRaw(EncodePeerWrite("b", older)));
  ASSERT_TRUE(stale.IsStale()) << stale.ToString();
  EXPECT_EQ(stale.message(), ahead.version.ToString());
  EXPECT_EQ(checks(), 2);
}

TEST_F(NodeTest, HelloChecksTheClusterFingerprint) {
  EXPECT_TRUE(
      ParsePeerHelloReply(CallRaw(EncodePeerHello("n2", node_->cluster_fingerprint(), 0))).ok());
  Status s = ParsePeerHelloReply(CallRaw(EncodePeerHello("n2", "Q=32;N=1;n1@x:1,", 0)));
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_NE(s.message().find("cluster mismatch"), std::string::npos);
}

// A peer's ping carries its hybrid clock: this node's next version is stamped
// past it (a peer whose clock runs ahead cannot make this node's later writes
// lose), unless the peer is further ahead than --max-clock-skew-ms allows.
TEST_F(NodeTest, HelloCarriesTheCallersClockWithinTheSkewBound) {
  const std::string fp = node_->cluster_fingerprint();
  uint64_t ahead = MakeHlc(clock_.NowMs() + 2000, 5);
  ASSERT_TRUE(ParsePeerHelloReply(CallRaw(EncodePeerHello("n2", fp, ahead))).ok());
  json put = Call({{"op", "put"}, {"key", "h"}, {"value", 1}});
  Version v;
  ASSERT_TRUE(Version::Parse(put["version"].get<std::string>(), &v).ok());
  EXPECT_GT(v.hlc, ahead);
  uint64_t too_far = MakeHlc(clock_.NowMs() + 3'600'000, 0);
  ASSERT_TRUE(ParsePeerHelloReply(CallRaw(EncodePeerHello("n2", fp, too_far))).ok());
  put = Call({{"op", "put"}, {"key", "h"}, {"value", 2}});
  ASSERT_TRUE(Version::Parse(put["version"].get<std::string>(), &v).ok());
  EXPECT_LT(v.hlc, too_far);
}

TEST_F(NodeTest, MalformedPeerMessagesAreBadRequests) {
  EXPECT_EQ(ErrorCode(Call({{"op", "_write"}, {"key", "k"}, {"value", 1}})), "bad_request");
  EXPECT_EQ(ErrorCode(Call({{"op", "_write"}, {"key", "k"}, {"version", "zz"}, {"value", 1}})),
            "bad_request");
  EXPECT_EQ(ErrorCode(Call({{"op", "_read"}})), "bad_request");
  EXPECT_EQ(ErrorCode(Call({{"op", "_hello"}, {"from", 1}})), "bad_request");
}

// Parses the Prometheus text format strictly enough to catch malformed lines:
// every sample is `name{labels} value` or `name value`, every family has HELP
// and TYPE first, histogram buckets are cumulative and end at +Inf == _count.
TEST_F(NodeTest, MetricsAreValidPrometheusText) {
  for (int i = 0; i < 5; ++i) Call({{"op", "put"}, {"key", "m" + std::to_string(i)}, {"value", i}});
  Call({{"op", "get"}, {"key", "m1"}});
  Call({{"op", "nope"}});
  std::string text = node_->MetricsText();
  std::regex sample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$)re");
  std::set<std::string> typed;
  std::map<std::string, double> values;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      typed.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) continue;
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << "bad line: " << line;
    std::string family = m[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!typed.count(family) && family.size() > strlen(suffix) &&
          family.compare(family.size() - strlen(suffix), strlen(suffix), suffix) == 0) {
        family = family.substr(0, family.size() - strlen(suffix));
      }
    }
    EXPECT_TRUE(typed.count(family)) << "sample before its TYPE: " << line;
    values[line.substr(0, line.rfind(' '))] = std::stod(line.substr(line.rfind(' ') + 1));
    ++samples;
  }
  EXPECT_GT(samples, 100);
  EXPECT_EQ(values["ringkv_requests_total{op=\"put\"}"], 5);
  EXPECT_EQ(values["ringkv_request_errors_total{code=\"unknown_op\"}"], 1);
  EXPECT_EQ(values["ringkv_request_duration_seconds_count{op=\"put\"}"], 5);
  EXPECT_EQ(values["ringkv_request_duration_seconds_bucket{op=\"put\",le=\"+Inf\"}"], 5);
  double prev = 0;
  for (int k = 4; k <= 26; ++k) {
    char le[32];
    std::snprintf(le, sizeof(le), "%g", static_cast<double>(1u << k) / 1e6);
    std::string key =
        std::string("ringkv_request_duration_seconds_bucket{op=\"put\",le=\"") + le + "\"}";
    ASSERT_TRUE(values.count(key)) << key;
    EXPECT_GE(values[key], prev);
    prev = values[key];
  }
  EXPECT_LE(prev, 5);
  EXPECT_EQ(values["ringkv_node_info{node=\"n1\"}"], 1);
  EXPECT_EQ(values["ringkv_peer_up{peer=\"n1\"}"], 1);
  EXPECT_EQ(values["ringkv_cache_capacity_bytes"], 1 << 20);
  EXPECT_TRUE(values.count("ringkv_rocksdb_memtable_bytes"));
}

TEST_F(NodeTest, StatsHaveOperatorFigures) {
  Call({{"op", "put"}, {"key", "a"}, {"value", 1}});
  json s = Call({{"op", "stats"}})["stats"];
  EXPECT_EQ(s["partitions_replicated"], 64);
  EXPECT_GT(s["rocksdb"]["memtable_bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(s["rocksdb"]["wal_bytes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(s["rocksdb"].contains("pending_compaction_bytes"));
  EXPECT_EQ(s["disk"]["write_error"], false);
  EXPECT_EQ(s["disk"]["write_error_message"], "");
  EXPECT_EQ(s["disk"]["resumes"], 0);
  EXPECT_TRUE(s["rocksdb"].contains("block_cache_usage_bytes"));
  EXPECT_GE(s["disk_bytes"].get<uint64_t>(), s["rocksdb"]["wal_bytes"].get<uint64_t>());
  EXPECT_EQ(s["partition_keys"].size(), 64u);  // every replicated partition exists from start
  EXPECT_TRUE(s["peers"].empty());
}

}  // namespace
}  // namespace ringkv
