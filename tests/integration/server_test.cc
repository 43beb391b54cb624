// End-to-end tests of one kvd node over the wire protocol (PROTOCOL.md §3, §5).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace ringkv::itest {
namespace {

// Sends one raw line and parses the one response line. Transport failures come
// back as {"harness_error": ...} so that the assertion shows them.
Json RawCall(Client* client, std::string_view line) {
  Status st = client->SendLine(line);
  std::string reply;
  if (st.ok()) st = client->ReceiveLine(&reply);
  if (!st.ok()) return {{"harness_error", st.ToString()}};
  Json resp = Json::parse(reply, nullptr, false);
  if (resp.is_discarded()) return {{"harness_error", "unparsable response: " + reply}};
  return resp;
}

// The connection still serves requests: a ping with an id comes back right.
::testing::AssertionResult PingWorks(Client* client, const std::string& id) {
  Json resp;
  Status st = client->Call({{"op", "ping"}, {"id", id}}, &resp);
  if (!st.ok()) return ::testing::AssertionFailure() << "ping failed: " << st.ToString();
  if (!IsOk(resp) || resp["id"] != id || resp["node"] != "n1") {
    return ::testing::AssertionFailure() << "bad ping answer: " << resp.dump();
  }
  return ::testing::AssertionSuccess();
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(kvd_.Start()); }
  Json Call(const Json& request) { return kvd_.Call(request); }
  KvdProcess kvd_;
};

TEST_F(ServerTest, PutGetDeleteRoundTrip) {
  Json put = Call({{"op", "put"}, {"key", "alpha"}, {"value", "one"}});
  ASSERT_TRUE(IsOk(put));
  ASSERT_TRUE(put["version"].is_string());
  ASSERT_FALSE(put["version"].get<std::string>().empty());

  Json get = Call({{"op", "get"}, {"key", "alpha"}});
  ASSERT_TRUE(IsOk(get));
  EXPECT_EQ(get["found"], true);
  EXPECT_EQ(get["value"], "one");
  EXPECT_EQ(get["version"], put["version"]);

  Json put2 = Call({{"op", "put"}, {"key", "alpha"}, {"value", {{"n", 2}}}});
  ASSERT_TRUE(IsOk(put2));
  EXPECT_NE(put2["version"], put["version"]);
  get = Call({{"op", "get"}, {"key", "alpha"}});
  EXPECT_EQ(get["value"], Json({{"n", 2}}));
  EXPECT_EQ(get["version"], put2["version"]);

  Json del = Call({{"op", "delete"}, {"key", "alpha"}});
  ASSERT_TRUE(IsOk(del));
  ASSERT_TRUE(del["version"].is_string());
  EXPECT_NE(del["version"], put2["version"]);
  get = Call({{"op", "get"}, {"key", "alpha"}});
  ASSERT_TRUE(IsOk(get));
  EXPECT_EQ(get["found"], false);
  EXPECT_FALSE(get.contains("value"));

  // Deleting a key that never existed succeeds; reading it finds nothing.
  EXPECT_TRUE(IsOk(Call({{"op", "delete"}, {"key", "never-written"}})));
  EXPECT_EQ(Call({{"op", "get"}, {"key", "never-written"}})["found"], false);

  // A key can be written again after a delete.
  ASSERT_TRUE(IsOk(Call({{"op", "put"}, {"key", "alpha"}, {"value", 3}})));
  EXPECT_EQ(Call({{"op", "get"}, {"key", "alpha"}})["value"], 3);
}

TEST_F(ServerTest, ClientRefusesInvalidUtf8WithoutThrowing) {
  auto client = kvd_.Connect();
  ASSERT_NE(client, nullptr);
  Json resp;
  Status st =
      client->Call({{"op", "put"}, {"key", "k"}, {"value", std::string("\xff\xfe")}}, &resp);
  EXPECT_EQ(st.code(), Status::Code::kBadRequest) << st.ToString();
  EXPECT_TRUE(PingWorks(client.get(), "after-invalid-utf8"));
  EXPECT_EQ(Call({{"op", "get"}, {"key", "k"}})["found"], false);
}

TEST_F(ServerTest, QuorumNamesAndLocalReadsAreAccepted) {
  for (const Json& w : {Json("one"), Json("quorum"), Json("all"), Json(1)}) {
    EXPECT_TRUE(IsOk(Call({{"op", "put"}, {"key", "q"}, {"value", w}, {"w", w}})));
  }
  for (const Json& r : {Json("one"), Json("quorum"), Json("all"), Json(1)}) {
    Json get = Call({{"op", "get"}, {"key", "q"}, {"r", r}});
    ASSERT_TRUE(IsOk(get));
    EXPECT_EQ(get["value"], 1);
  }
  EXPECT_TRUE(IsOk(Call({{"op", "delete"}, {"key", "q"}, {"w", "all"}})));
  ASSERT_TRUE(IsOk(Call({{"op", "put"}, {"key", "loc"}, {"value", "here"}, {"timeout_ms", 500}})));
  Json local = Call({{"op", "get"}, {"key", "loc"}, {"local", true}});
  ASSERT_TRUE(IsOk(local));
  EXPECT_EQ(local["value"], "here");
}

TEST(ServerStatsTest, PingAndStatsHaveEveryField) {
  KvdProcess kvd({"--cache-mb", "8"});
  ASSERT_TRUE(kvd.Start());
  Json ping = kvd.Call({{"op", "ping"}, {"id", 1}});
  ASSERT_TRUE(IsOk(ping));
  EXPECT_EQ(ping["node"], "n1");
  EXPECT_EQ(ping["id"], 1);

  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(IsOk(kvd.Call({{"op", "put"}, {"key", "s" + std::to_string(i)}, {"value", i}})));
    ASSERT_TRUE(IsOk(kvd.Call({{"op", "get"}, {"key", "s" + std::to_string(i)}})));
    ASSERT_TRUE(IsOk(kvd.Call({{"op", "get"}, {"key", "s" + std::to_string(i)}})));
  }
  ASSERT_TRUE(IsError(kvd.Call({{"op", "no-such-op"}}), "unknown_op"));
  ASSERT_TRUE(IsError(kvd.Call({{"op", "get"}, {"key", ""}}), "bad_request"));

  Json resp = kvd.Call({{"op", "stats"}});
  ASSERT_TRUE(IsOk(resp));
  ASSERT_TRUE(resp["stats"].is_object()) << resp.dump();
  Json s = resp["stats"];  // a copy: operator[] on a missing field then yields null
  for (const char* field :
       {"uptime_s", "keys_estimate", "hints_pending", "hints_delivered", "read_repairs"}) {
    ASSERT_TRUE(s.contains(field)) << field << " missing in " << s.dump();
    EXPECT_TRUE(s[field].is_number()) << field << " in " << s.dump();
    EXPECT_GE(s[field].get<double>(), 0) << field;
  }
  EXPECT_EQ(s["hints_pending"], 0);

  ASSERT_TRUE(s["ops"].is_object()) << s.dump();
  EXPECT_GE(s["ops"].value("put", 0), 3) << s["ops"].dump();
  EXPECT_GE(s["ops"].value("get", 0), 6) << s["ops"].dump();

  ASSERT_TRUE(s["latency_us"].is_object()) << s.dump();
  for (const char* op : {"put", "get"}) {
    ASSERT_TRUE(s["latency_us"].contains(op)) << s["latency_us"].dump();
    Json l = s["latency_us"][op];
    for (const char* p : {"p50", "p99", "p999"}) {
      ASSERT_TRUE(l.contains(p) && l[p].is_number()) << op << " " << l.dump();
    }
    EXPECT_LE(l["p50"].get<double>(), l["p99"].get<double>()) << l.dump();
    EXPECT_LE(l["p99"].get<double>(), l["p999"].get<double>()) << l.dump();
  }

  ASSERT_TRUE(s["cache"].is_object()) << s.dump();
  for (const char* field : {"hits", "misses", "bytes", "capacity_bytes"}) {
    ASSERT_TRUE(s["cache"].contains(field) && s["cache"][field].is_number())
        << field << " in " << s["cache"].dump();
  }
  EXPECT_EQ(s["cache"]["capacity_bytes"], 8u << 20);
  EXPECT_GE(s["cache"]["hits"].get<double>() + s["cache"]["misses"].get<double>(), 1);

  ASSERT_TRUE(s["errors"].is_object()) << s.dump();
  EXPECT_GE(s["errors"].value("unknown_op", 0), 1) << s["errors"].dump();
  EXPECT_GE(s["errors"].value("bad_request", 0), 1) << s["errors"].dump();
}

TEST_F(ServerTest, TwoThousandPipelinedRequestsAnswerInOrder) {
  constexpr int kPuts = 1000;
  std::string batch;
  for (int i = 0; i < kPuts; ++i) {
    batch +=
        Json({{"op", "put"}, {"id", i}, {"key", "pipe-" + std::to_string(i)}, {"value", i * 7}})
            .dump() +
        "\n";
  }
  for (int i = 0; i < kPuts; ++i) {
    batch += Json({{"op", "get"}, {"id", kPuts + i}, {"key", "pipe-" + std::to_string(i)}}).dump() +
             "\n";
  }
  auto client = kvd_.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendRaw(batch).ok());  // one write, all 2000 requests
  std::vector<std::string> versions(kPuts);
  for (int i = 0; i < 2 * kPuts; ++i) {
    std::string line;
    ASSERT_TRUE(client->ReceiveLine(&line).ok()) << "response " << i;
    Json resp = Json::parse(line, nullptr, false);
    ASSERT_TRUE(IsOk(resp)) << "response " << i;
    ASSERT_EQ(resp["id"], i) << "responses out of order: " << line;
    if (i < kPuts) {
      versions[i] = resp["version"].get<std::string>();
    } else {
      ASSERT_EQ(resp["found"], true) << line;
      ASSERT_EQ(resp["value"], (i - kPuts) * 7) << line;
      ASSERT_EQ(resp["version"], versions[i - kPuts]) << line;
    }
  }
  EXPECT_TRUE(PingWorks(client.get(), "after-pipeline"));
}

// Writes are group committed at the end of each I/O wake-up; a get pipelined
// right behind a put of the same key must still see that put (and a delete).
TEST_F(ServerTest, PipelinedGetSeesThePutBeforeIt) {
  constexpr int kRounds = 200;
  std::string batch;
  for (int i = 0; i < kRounds; ++i) {
    batch += Json({{"op", "put"}, {"key", "rw"}, {"value", i}}).dump() + "\n";
    batch += Json({{"op", "get"}, {"key", "rw"}}).dump() + "\n";
  }
  batch += Json({{"op", "delete"}, {"key", "rw"}}).dump() + "\n";
  batch += Json({{"op", "get"}, {"key", "rw"}}).dump() + "\n";
  auto client = kvd_.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendRaw(batch).ok());
  for (int i = 0; i < kRounds; ++i) {
    std::string put_line, get_line;
    ASSERT_TRUE(client->ReceiveLine(&put_line).ok());
    ASSERT_TRUE(client->ReceiveLine(&get_line).ok());
    Json put = Json::parse(put_line), get = Json::parse(get_line);
    ASSERT_TRUE(IsOk(put)) << put_line;
    ASSERT_EQ(get["value"], i) << "round " << i << ": " << get_line;
    ASSERT_EQ(get["version"], put["version"]) << get_line;
  }
  std::string del_line, get_line;
  ASSERT_TRUE(client->ReceiveLine(&del_line).ok());
  ASSERT_TRUE(client->ReceiveLine(&get_line).ok());
  EXPECT_TRUE(IsOk(Json::parse(del_line))) << del_line;
  EXPECT_EQ(Json::parse(get_line)["found"], false) << get_line;
}

TEST_F(ServerTest, FiftyConcurrentConnections) {
  constexpr int kThreads = 50;
  constexpr int kOpsPerThread = 200;
  std::mutex mu;
  std::vector<std::string> failures;
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    failures.push_back(what);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::unique_ptr<Client> client;
      Status st = Client::Connect(kvd_.address(), &client, 20000);
      if (!st.ok()) return fail("connect: " + st.ToString());
      for (int i = 0; i < kOpsPerThread; ++i) {
        std::string key = "conc-" + std::to_string(t) + "-" + std::to_string(i);
        Json value = {{"t", t}, {"i", i}, {"pad", std::string(i % 50, 'x')}};
        Json put, get;
        st = client->Call({{"op", "put"}, {"key", key}, {"value", value}}, &put);
        if (!st.ok() || !put.contains("ok") || put["ok"] != true) {
          return fail(key + " put: " + st.ToString() + " " + put.dump());
        }
        st = client->Call({{"op", "get"}, {"key", key}}, &get);
        if (!st.ok() || !get.contains("found") || get["found"] != true || get["value"] != value ||
            get["version"] != put["version"]) {
          return fail(key + " get: " + st.ToString() + " " + get.dump());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(failures.empty()) << failures.size() << " failures, first: " << failures[0];

  // Afterwards every thread's last key holds that thread's value.
  for (int t = 0; t < kThreads; ++t) {
    std::string key = "conc-" + std::to_string(t) + "-" + std::to_string(kOpsPerThread - 1);
    Json get = Call({{"op", "get"}, {"key", key}});
    ASSERT_TRUE(IsOk(get));
    EXPECT_EQ(get["value"]["t"], t) << get.dump();
  }
}

struct BadLine {
  std::string line;
  std::string code;
  Json id;  // expected echo, or null when the id cannot be found
};

TEST_F(ServerTest, MalformedRequestsGetTheRightErrorAndTheConnectionSurvives) {
  const std::string kInvalidUtf8 = "\xff\xfe";
  const std::vector<BadLine> cases = {
      {"this is not json", "bad_request", nullptr},
      {"{\"op\":\"get\",", "bad_request", nullptr},
      {"[1,2,3]", "bad_request", nullptr},
      {"[{\"op\":\"ping\"}]", "bad_request", nullptr},
      {"null", "bad_request", nullptr},
      {"42", "bad_request", nullptr},
      {"\"ping\"", "bad_request", nullptr},
      {R"({"op":"get","key":"k"} trailing)", "bad_request", nullptr},
      {R"({"id":1})", "bad_request", 1},
      {R"({"id":2,"op":5})", "bad_request", 2},
      {R"({"id":3,"op":null})", "bad_request", 3},
      {R"({"id":4,"op":["get"]})", "bad_request", 4},
      {R"({"id":5,"op":"frobnicate"})", "unknown_op", 5},
      {R"({"id":6,"op":""})", "unknown_op", 6},
      {R"({"id":7,"op":"get","key":5})", "bad_request", 7},
      {R"({"id":8,"op":"get","key":""})", "bad_request", 8},
      {R"({"id":9,"op":"get"})", "bad_request", 9},
      {R"({"id":10,"op":"put","key":"k"})", "bad_request", 10},
      {R"({"id":11,"op":"put","value":1})", "bad_request", 11},
      {R"({"id":12,"op":"delete","key":{"a":1}})", "bad_request", 12},
      {R"({"id":13,"op":"get","key":"k","r":0})", "bad_request", 13},
      {R"({"id":14,"op":"get","key":"k","r":2})", "bad_request", 14},  // N is 1
      {R"({"id":15,"op":"get","key":"k","r":-1})", "bad_request", 15},
      {R"({"id":16,"op":"get","key":"k","r":"most"})", "bad_request", 16},
      {R"({"id":17,"op":"get","key":"k","r":1.5})", "bad_request", 17},
      {R"({"id":18,"op":"get","key":"k","r":true})", "bad_request", 18},
      {R"({"id":19,"op":"put","key":"k","value":1,"w":0})", "bad_request", 19},
      {R"({"id":20,"op":"put","key":"k","value":1,"w":"everyone"})", "bad_request", 20},
      {R"({"id":21,"op":"get","key":"k","r":18446744073709551615})", "bad_request", 21},
      {R"({"id":22,"op":"get","key":"k","r":-9223372036854775808})", "bad_request", 22},
      {R"({"id":23,"op":"get","key":"k","r":123456789012345678901234567890})", "bad_request", 23},
      {R"({"id":24,"op":"put","key":"k","value":1,"ttl_ms":0})", "bad_request", 24},
      {R"({"id":25,"op":"put","key":"k","value":1,"ttl_ms":-5})", "bad_request", 25},
      {R"({"id":26,"op":"put","key":"k","value":1,"ttl_ms":"100"})", "bad_request", 26},
      {R"({"id":27,"op":"put","key":"k","value":1,"ttl_ms":1.5})", "bad_request", 27},
      {R"({"id":28,"op":"ping","timeout_ms":0})", "bad_request", 28},
      {R"({"id":29,"op":"ping","timeout_ms":-1})", "bad_request", 29},
      {R"({"id":30,"op":"get","key":"k","local":"yes"})", "bad_request", 30},
      {R"({"op":"get","key":"k","r":1e400})", "bad_request", nullptr},
      {R"({"op":"put","key":"k","value":1e999})", "bad_request", nullptr},
      {"{\"op\":\"put\",\"key\":\"" + kInvalidUtf8 + "\",\"value\":1}", "bad_request", nullptr},
      {"{\"op\":\"put\",\"key\":\"k\",\"value\":\"\xc0\xaf\"}", "bad_request", nullptr},
      {R"({"op":"put","key":"k","value":"\ud800"})", "bad_request", nullptr},
      {"\xff\xff\xff", "bad_request", nullptr},
      {std::string(100000, '['), "bad_request", nullptr},
      {R"({"op":"put","key":"k","value":)" + std::string(100000, '['), "bad_request", nullptr},
      {std::string(100000, '{'), "bad_request", nullptr},
  };
  auto client = kvd_.Connect();
  ASSERT_NE(client, nullptr);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": " + cases[i].line.substr(0, 80));
    Json resp = RawCall(client.get(), cases[i].line);
    EXPECT_TRUE(IsError(resp, cases[i].code));
    if (!cases[i].id.is_null()) {
      EXPECT_EQ(resp.value("id", Json()), cases[i].id) << resp.dump();
    }
    ASSERT_TRUE(PingWorks(client.get(), "after-" + std::to_string(i)));
  }
  // None of the bad puts stored anything.
  EXPECT_EQ(Call({{"op", "get"}, {"key", "k"}})["found"], false);
}

TEST_F(ServerTest, BlankLinesAndCrLf) {
  auto client = kvd_.Connect();
  ASSERT_NE(client, nullptr);
  // A blank line is ignored or answered with bad_request; either way the next
  // request is answered normally.
  ASSERT_TRUE(client->SendRaw("\n{\"op\":\"ping\",\"id\":\"after-blank\"}\n").ok());
  std::string line;
  ASSERT_TRUE(client->ReceiveLine(&line).ok());
  Json resp = Json::parse(line, nullptr, false);
  if (IsError(resp, "bad_request")) {
    ASSERT_TRUE(client->ReceiveLine(&line).ok());
    resp = Json::parse(line, nullptr, false);
  }
  ASSERT_TRUE(IsOk(resp));
  EXPECT_EQ(resp["id"], "after-blank");

  ASSERT_TRUE(client->SendRaw("{\"op\":\"put\",\"id\":7,\"key\":\"crlf\",\"value\":1}\r\n").ok());
  ASSERT_TRUE(client->ReceiveLine(&line).ok());
  resp = Json::parse(line, nullptr, false);
  ASSERT_TRUE(IsOk(resp)) << line;
  EXPECT_EQ(resp["id"], 7);
  EXPECT_EQ(Call({{"op", "get"}, {"key", "crlf"}})["value"], 1);
}

TEST_F(ServerTest, ExtremeButValidFieldsDoNotBreakTheNode) {
  auto client = kvd_.Connect();
  ASSERT_NE(client, nullptr);
  // A TTL far in the future must not wrap around into the past.
  for (const char* ttl : {"9223372036854775807", "18446744073709551615"}) {
    SCOPED_TRACE(ttl);
    Json resp =
        RawCall(client.get(),
                std::string(R"({"op":"put","key":"ttl-huge","value":1,"ttl_ms":)") + ttl + "}");
    if (IsOk(resp)) {
      EXPECT_EQ(Call({{"op", "get"}, {"key", "ttl-huge"}})["found"], true);
    } else {
      EXPECT_TRUE(IsError(resp, "bad_request"));
    }
    ASSERT_TRUE(PingWorks(client.get(), "after-ttl"));
  }
  // A complete, deeply nested value is valid JSON: stored and returned intact,
  // or refused with bad_request; never a crash.
  constexpr int kDepth = 100000;
  std::string nested = std::string(kDepth, '[') + std::string(kDepth, ']');
  Json resp = RawCall(client.get(), R"({"op":"put","key":"deep","value":)" + nested + "}");
  if (IsOk(resp)) {
    ASSERT_TRUE(client->SendLine(R"({"op":"get","key":"deep"})").ok());
    std::string line;
    ASSERT_TRUE(client->ReceiveLine(&line).ok());
    EXPECT_NE(line.find("\"value\":" + nested), std::string::npos) << line.substr(0, 200);
  } else {
    EXPECT_TRUE(IsError(resp, "bad_request"));
  }
  ASSERT_TRUE(PingWorks(client.get(), "after-deep"));
}

TEST(ServerLimitsTest, SmallKeyAndValueLimits) {
  KvdProcess kvd({"--max-key-bytes", "16", "--max-value-bytes", "64"});
  ASSERT_TRUE(kvd.Start());
  std::string key16(16, 'k'), key17(17, 'k');
  EXPECT_TRUE(IsOk(kvd.Call({{"op", "put"}, {"key", key16}, {"value", 1}})));
  EXPECT_TRUE(IsError(kvd.Call({{"op", "put"}, {"key", key17}, {"value", 1}}), "key_too_large"));
  EXPECT_TRUE(IsError(kvd.Call({{"op", "get"}, {"key", key17}}), "key_too_large"));
  EXPECT_TRUE(IsError(kvd.Call({{"op", "delete"}, {"key", key17}}), "key_too_large"));
  // Keys are measured in UTF-8 bytes: 8 x "é" is 16 bytes, 9 x is 18.
  std::string e8, e9;
  for (int i = 0; i < 8; ++i) e8 += "\xc3\xa9";
  e9 = e8 + "\xc3\xa9";
  EXPECT_TRUE(IsOk(kvd.Call({{"op", "put"}, {"key", e8}, {"value", 1}})));
  EXPECT_TRUE(IsError(kvd.Call({{"op", "put"}, {"key", e9}, {"value", 1}}), "key_too_large"));

  // A value is measured as its compact JSON text: a 62-char string is 64 bytes.
  EXPECT_TRUE(IsOk(kvd.Call({{"op", "put"}, {"key", "v"}, {"value", std::string(62, 'x')}})));
  EXPECT_TRUE(IsError(kvd.Call({{"op", "put"}, {"key", "v2"}, {"value", std::string(63, 'x')}}),
                      "value_too_large"));
  Json arr = Json::array();
  for (int i = 0; i < 40; ++i) arr.push_back(i);  // 111 bytes compact
  EXPECT_TRUE(IsError(kvd.Call({{"op", "put"}, {"key", "v3"}, {"value", arr}}), "value_too_large"));
  Json get = kvd.Call({{"op", "get"}, {"key", "v"}});
  EXPECT_EQ(get["value"], std::string(62, 'x'));
  EXPECT_EQ(kvd.Call({{"op", "get"}, {"key", "v2"}})["found"], false);
  EXPECT_EQ(kvd.Call({{"op", "get"}, {"key", "v3"}})["found"], false);
  EXPECT_EQ(kvd.Call({{"op", "get"}, {"key", key16}})["value"], 1);
}

TEST_F(ServerTest, DefaultLimitBoundaries) {
  std::string key1024(1024, 'a'), key1025(1025, 'a');
  EXPECT_TRUE(IsOk(Call({{"op", "put"}, {"key", key1024}, {"value", "fits"}})));
  EXPECT_EQ(Call({{"op", "get"}, {"key", key1024}})["value"], "fits");
  EXPECT_TRUE(IsError(Call({{"op", "put"}, {"key", key1025}, {"value", 1}}), "key_too_large"));

  // 1048576 bytes of compact JSON: a string of 1048574 chars plus two quotes.
  std::string fits(1048574, 'v'), over(1048575, 'v');
  Json put = Call({{"op", "put"}, {"key", "big-value"}, {"value", fits}});
  EXPECT_TRUE(IsOk(put));
  Json get = Call({{"op", "get"}, {"key", "big-value"}});
  EXPECT_TRUE(get.value("value", Json()) == fits);
  EXPECT_TRUE(
      IsError(Call({{"op", "put"}, {"key", "too-big"}, {"value", over}}), "value_too_large"));
  EXPECT_EQ(Call({{"op", "get"}, {"key", "too-big"}})["found"], false);
}

// A blocking TCP connection whose sends can run on another thread and be cut
// off with Shutdown() (Client keeps its socket to itself), bounded by 10 s.
using RawSocket = testutil::LoopbackConn;

TEST(ServerRequestSizeTest, HugeLineIsRefusedWithoutGrowingMemory) {
  KvdProcess kvd({"--cache-mb", "8"});
  ASSERT_TRUE(kvd.Start());
  int64_t rss_before = kvd.RssKiB();
  ASSERT_GT(rss_before, 0);

  std::string line = R"({"op":"put","key":"huge","value":")";
  line += std::string(20u << 20, 'x');
  line += "\"}\n";
  RawSocket sock(testutil::PortOf(kvd.address()), milliseconds(10000));
  ASSERT_TRUE(sock.connected());
  // Send from another thread: the node may answer (and close) before it has
  // read the whole line.
  std::thread sender([&] { sock.SendAll(line); });
  std::string reply;
  sock.ReadLine(&reply);  // "" on end of stream or timeout
  int64_t rss_during = kvd.RssKiB();
  sock.Shutdown();
  sender.join();

  Json resp = Json::parse(reply, nullptr, false);
  EXPECT_TRUE(IsError(resp, "request_too_large")) << "reply: " << reply.substr(0, 200);
  // New connections are still served, and nothing was stored.
  auto client = kvd.Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(PingWorks(client.get(), "after-huge"));
  EXPECT_EQ(kvd.Call({{"op", "get"}, {"key", "huge"}})["found"], false);
  int64_t rss_after = kvd.RssKiB();
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in its quarantine, so RSS grows with every read
  // buffer freed and says little here; the exact property (the line is never
  // held whole) is checked in net_test's OversizedLineIsRefusedWithoutBeingBuffered.
  constexpr int64_t kMaxGrowthKiB = 64 * 1024;
#else
  constexpr int64_t kMaxGrowthKiB = 10 * 1024;  // the line alone is 20 MiB
#endif
  EXPECT_LT(rss_during - rss_before, kMaxGrowthKiB) << "RSS before " << rss_before << " KiB";
  EXPECT_LT(rss_after - rss_before, kMaxGrowthKiB) << "RSS before " << rss_before << " KiB";
}

TEST_F(ServerTest, IdIsEchoedVerbatim) {
  auto client = kvd_.Connect();
  ASSERT_NE(client, nullptr);
  for (const char* id : {R"("abc")", R"("")", R"("ünï ✓")", "42", "0", "-7", "9007199254740993",
                         "18446744073709551615", "-9223372036854775808"}) {
    SCOPED_TRACE(id);
    std::string line = std::string(R"({"op":"ping","id":)") + id + "}";
    ASSERT_TRUE(client->SendLine(line).ok());
    std::string reply;
    ASSERT_TRUE(client->ReceiveLine(&reply).ok());
    Json resp = Json::parse(reply, nullptr, false);
    ASSERT_TRUE(IsOk(resp));
    EXPECT_EQ(resp["id"].dump(), Json::parse(id).dump()) << reply;
  }
  // Errors echo the id too.
  Json err = RawCall(client.get(), R"({"op":"nope","id":"e-1"})");
  EXPECT_TRUE(IsError(err, "unknown_op"));
  EXPECT_EQ(err.value("id", Json()), "e-1");
  err = RawCall(client.get(), R"({"op":"get","id":99})");
  EXPECT_TRUE(IsError(err, "bad_request"));
  EXPECT_EQ(err.value("id", Json()), 99);
  // Without an id, none is invented.
  Json plain = RawCall(client.get(), R"({"op":"ping"})");
  ASSERT_TRUE(IsOk(plain));
  EXPECT_TRUE(!plain.contains("id") || plain["id"].is_null()) << plain.dump();
}

TEST_F(ServerTest, TtlExpiresEndToEnd) {
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(IsOk(Call({{"op", "put"}, {"key", "ttl-a"}, {"value", "a"}, {"ttl_ms", 300}})));
  ASSERT_TRUE(IsOk(Call({{"op", "put"}, {"key", "ttl-b"}, {"value", "b"}, {"ttl_ms", 300}})));
  // A put without ttl_ms makes the key permanent again.
  ASSERT_TRUE(IsOk(Call({{"op", "put"}, {"key", "ttl-b"}, {"value", "b2"}})));
  Json get = Call({{"op", "get"}, {"key", "ttl-a"}});
  if (std::chrono::steady_clock::now() - start < milliseconds(250)) {
    EXPECT_EQ(get["found"], true) << get.dump();
    EXPECT_EQ(get["value"], "a");
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        return Call({{"op", "get"}, {"key", "ttl-a"}})["found"] == false;
      },
      milliseconds(5000)));
  // Expiry is in whole wall-clock milliseconds (like Redis's PX): the key can
  // go up to 1 ms before 300 ms have passed on the test's own clock.
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(299));
  Json b = Call({{"op", "get"}, {"key", "ttl-b"}});
  EXPECT_EQ(b["found"], true) << b.dump();
  EXPECT_EQ(b["value"], "b2");
  Json expired = Call({{"op", "get"}, {"key", "ttl-a"}});
  ASSERT_TRUE(IsOk(expired));
  EXPECT_FALSE(expired.contains("value"));
}

TEST_F(ServerTest, EveryJsonValueTypeRoundTripsExactly) {
  Json nested = Json::parse(R"({"a":[1,{"b":null,"c":[true,false,-0.5]}],"d":{"e":{"f":"g"}},
                                "empty_obj":{},"empty_arr":[]})");
  Json long_array = Json::array();
  for (int i = 0; i < 1000; ++i) long_array.push_back(i * i);
  const std::vector<Json> values = {
      Json(std::numeric_limits<int64_t>::min()),
      Json(std::numeric_limits<int64_t>::max()),
      Json(std::numeric_limits<uint64_t>::max()),
      Json(0),
      Json(-1),
      Json(3.5),
      Json(0.1),
      Json(-2.5e-300),
      Json(1.7976931348623157e308),
      Json(-0.0),
      Json(""),
      Json("plain"),
      Json("h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"),
      Json(std::string("nul\0inside", 10)),
      Json("quote\" backslash\\ newline\n tab\t ctrl\x01"),
      nested,
      Json::array(),
      Json::object(),
      Json(nullptr),
      Json(true),
      Json(false),
      long_array,
  };
  for (size_t i = 0; i < values.size(); ++i) {
    SCOPED_TRACE("value " + values[i].dump());
    std::string key = "type-" + std::to_string(i);
    ASSERT_TRUE(IsOk(Call({{"op", "put"}, {"key", key}, {"value", values[i]}})));
    Json get = Call({{"op", "get"}, {"key", key}});
    ASSERT_TRUE(IsOk(get));
    ASSERT_EQ(get["found"], true);
    // dump() tells 1 from 1.0 and keeps every digit of a double.
    EXPECT_EQ(get["value"].dump(), values[i].dump());
  }
  // uint64 max comes back as an integer, digit for digit.
  auto client = kvd_.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->SendLine(R"({"op":"get","key":"type-2"})").ok());
  std::string line;
  ASSERT_TRUE(client->ReceiveLine(&line).ok());
  EXPECT_NE(line.find("18446744073709551615"), std::string::npos) << line;

  // Keys: any Unicode, NUL included, are distinct byte strings.
  const std::vector<std::string> keys = {std::string("k\0z", 3), "k",
                                         std::string("\0", 1),   "\xe2\x9c\x93",
                                         "\xf0\x9f\x98\x80 key", "K"};
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(IsOk(Call({{"op", "put"}, {"key", keys[i]}, {"value", static_cast<int>(i)}})));
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    Json get = Call({{"op", "get"}, {"key", keys[i]}});
    EXPECT_EQ(get["value"], static_cast<int>(i)) << "key #" << i << ": " << get.dump();
  }
  // The same through raw escapes on the wire.
  Json resp = RawCall(client.get(), R"({"op":"put","key":"a\u0000b","value":"x\u0000y"})");
  ASSERT_TRUE(IsOk(resp));
  Json get = RawCall(client.get(), R"({"op":"get","key":"a\u0000b"})");
  EXPECT_EQ(get["value"], std::string("x\0y", 3));
  EXPECT_EQ(RawCall(client.get(), R"({"op":"get","key":"a"})")["found"], false);
}

TEST_F(ServerTest, ClusterAndLocateForOneMember) {
  Json cluster = Call({{"op", "cluster"}});
  ASSERT_TRUE(IsOk(cluster));
  EXPECT_EQ(cluster["node"], "n1");
  EXPECT_EQ(cluster["replicas"], 1);
  EXPECT_EQ(cluster["partitions"], 64);
  ASSERT_TRUE(cluster["nodes"].is_array());
  ASSERT_EQ(cluster["nodes"].size(), 1u) << cluster.dump();
  EXPECT_EQ(cluster["nodes"][0]["id"], "n1");
  EXPECT_EQ(cluster["nodes"][0]["address"], kvd_.address());
  EXPECT_EQ(cluster["nodes"][0]["status"], "up");

  std::set<int64_t> partitions;
  for (int i = 0; i < 200; ++i) {
    std::string key = "locate-" + std::to_string(i);
    Json loc = Call({{"op", "locate"}, {"key", key}});
    ASSERT_TRUE(IsOk(loc));
    ASSERT_TRUE(loc["partition"].is_number_integer()) << loc.dump();
    int64_t p = loc["partition"].get<int64_t>();
    EXPECT_GE(p, 0);
    EXPECT_LT(p, 64);
    EXPECT_EQ(loc["replicas"], Json::array({"n1"}));
    // Stable: asking again gives the same partition.
    EXPECT_EQ(Call({{"op", "locate"}, {"key", key}})["partition"], p);
    partitions.insert(p);
  }
  // The hash spreads keys over the ring.
  EXPECT_GT(partitions.size(), 32u);
  EXPECT_TRUE(IsError(Call({{"op", "locate"}, {"key", ""}}), "bad_request"));
}

TEST(ServerPartitionsTest, LocateHonoursPartitionCount) {
  KvdProcess kvd({"--partitions", "8"});
  ASSERT_TRUE(kvd.Start());
  EXPECT_EQ(kvd.Call({{"op", "cluster"}})["partitions"], 8);
  std::set<int64_t> seen;
  for (int i = 0; i < 100; ++i) {
    Json loc = kvd.Call({{"op", "locate"}, {"key", "p" + std::to_string(i)}});
    ASSERT_TRUE(IsOk(loc));
    int64_t p = loc["partition"].get<int64_t>();
    EXPECT_GE(p, 0);
    EXPECT_LT(p, 8);
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 8u);
}

TEST_F(ServerTest, BackupWritesADirectory) {
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(IsOk(Call({{"op", "put"}, {"key", "bk" + std::to_string(i)}, {"value", i}})));
  }
  std::string dir = kvd_.dir() + "/backup";
  Json resp = Call({{"op", "backup"}, {"dir", dir}});
  ASSERT_TRUE(IsOk(resp));
  EXPECT_EQ(resp["dir"], dir);
  ASSERT_TRUE(resp["bytes"].is_number_integer()) << resp.dump();
  EXPECT_GT(resp["bytes"].get<int64_t>(), 0);
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  EXPECT_FALSE(std::filesystem::is_empty(dir));
  // The node keeps serving after a backup.
  EXPECT_EQ(Call({{"op", "get"}, {"key", "bk3"}})["value"], 3);
  EXPECT_TRUE(IsError(Call({{"op", "backup"}}), "bad_request"));
}

}  // namespace
}  // namespace ringkv::itest
