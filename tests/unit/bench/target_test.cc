#include "bench/target.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "bench/router.h"
#include "bench/workload.h"
#include "server/cluster/ring.h"

namespace ringkv::bench {
namespace {

// Feeds `input` to a fresh parser of `target` in pieces of `step` bytes, the
// way a socket might deliver it, and returns the replies in order.
std::vector<Reply> ParseAll(const Target& target, const std::string& input, size_t step) {
  auto parser = target.NewParser();
  std::vector<Reply> out;
  std::string pending;
  for (size_t at = 0; at < input.size(); at += step) {
    pending += input.substr(at, step);
    while (true) {
      Reply r = parser->Parse(pending);
      pending.erase(0, r.consumed);
      if (r.kind == Reply::kNeedMore) break;
      out.push_back(r);
      if (r.kind == Reply::kBroken) return out;
    }
  }
  return out;
}

// Every split of the input gives the same replies as the whole buffer.
void ExpectSameForEverySplit(const Target& target, const std::string& input,
                             const std::vector<std::pair<Reply::Kind, std::string>>& want) {
  for (size_t step : {input.size(), size_t{1}, size_t{2}, size_t{7}, size_t{64}}) {
    std::vector<Reply> got = ParseAll(target, input, step);
    ASSERT_EQ(got.size(), want.size()) << "step " << step;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].kind, want[i].first) << "step " << step << " reply " << i;
      EXPECT_EQ(got[i].code, want[i].second) << "step " << step << " reply " << i;
    }
  }
}

TEST(TargetTest, UnknownTargetIsNull) { EXPECT_EQ(MakeTarget("mongo", "h:1"), nullptr); }

TEST(TargetTest, RingKvEncodesJsonLines) {
  auto t = MakeTarget("ringkv", "127.0.0.1:7700");
  std::string out;
  t->EncodeRequest(Op::kWrite, "key0000000001", "abc", &out);
  t->EncodeRequest(Op::kRead, "key0000000001", "abc", &out);
  t->EncodeRequest(Op::kPing, "", "", &out);
  EXPECT_EQ(out,
            "{\"op\":\"put\",\"key\":\"key0000000001\",\"value\":\"abc\"}\n"
            "{\"op\":\"get\",\"key\":\"key0000000001\"}\n"
            "{\"op\":\"ping\"}\n");
  out.clear();
  t->EncodeRequest(Op::kWrite, "q\"k", std::string("a\\\n", 3), &out);
  EXPECT_EQ(out, "{\"op\":\"put\",\"key\":\"q\\\"k\",\"value\":\"a\\\\\\u000a\"}\n");
}

TEST(TargetTest, RingKvParsesLinesWhateverTheSplit) {
  auto t = MakeTarget("ringkv", "h:1");
  std::string input =
      "{\"ok\":true,\"version\":\"1-n1\"}\n"
      "{\"ok\":true,\"found\":false}\r\n"
      "\n"  // a blank line is no response
      "{\"ok\":false,\"error\":{\"code\":\"timeout\",\"message\":\"replicas\"}}\n"
      "{\"ok\":true,\"found\":true,\"value\":\"vvvv\",\"version\":\"2-n1\"}\n"
      "{\"id\":7,\"ok\": false,\"error\":{\"code\":\"unavailable\",\"message\":\"x\"}}\n"
      "not json\n";
  ExpectSameForEverySplit(*t, input,
                          {{Reply::kOk, ""},
                           {Reply::kOk, ""},
                           {Reply::kError, "timeout"},
                           {Reply::kOk, ""},
                           {Reply::kError, "unavailable"},
                           {Reply::kError, "malformed"}});
}

TEST(TargetTest, RingKvPartialLineNeedsMoreAndConsumesNothing) {
  auto parser = MakeTarget("ringkv", "h:1")->NewParser();
  Reply r = parser->Parse("{\"ok\":tr");
  EXPECT_EQ(r.kind, Reply::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
  r = parser->Parse("{\"ok\":true}\n{\"ok\"");
  EXPECT_EQ(r.kind, Reply::kOk);
  EXPECT_EQ(r.consumed, 12u);
}

TEST(TargetTest, RedisEncodingMatchesHiredis) {
  auto t = MakeTarget("redis", "h:1");
  std::string value(100, 'x');
  auto expect_same = [](const std::string& got, std::vector<std::string> args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    char* want = nullptr;
    int n = redisFormatCommandArgv(&want, static_cast<int>(args.size()), argv.data(), lens.data());
    ASSERT_GT(n, 0);
    EXPECT_EQ(got, std::string(want, static_cast<size_t>(n)));
    redisFreeCommand(want);
  };
  std::string out;
  t->EncodeRequest(Op::kWrite, "key0000000042", value, &out);
  expect_same(out, {"SET", "key0000000042", value});
  out.clear();
  t->EncodeRequest(Op::kRead, "key0000000042", value, &out);
  expect_same(out, {"GET", "key0000000042"});
  out.clear();
  t->EncodeRequest(Op::kPing, "", "", &out);
  expect_same(out, {"PING"});
}

TEST(TargetTest, RedisParsesRepliesWhateverTheSplit) {
  auto t = MakeTarget("redis", "h:1");
  std::string input =
      "+OK\r\n"
      "$-1\r\n"  // GET of a missing key is a success
      "$5\r\nhello\r\n"
      "-ERR unknown command 'FOO'\r\n"
      "+PONG\r\n"
      "-MISCONF disk\r\n"
      ":12\r\n";
  ExpectSameForEverySplit(*t, input,
                          {{Reply::kOk, ""},
                           {Reply::kOk, ""},
                           {Reply::kOk, ""},
                           {Reply::kError, "err"},
                           {Reply::kOk, ""},
                           {Reply::kError, "misconf"},
                           {Reply::kOk, ""}});
}

TEST(TargetTest, RedisGarbageIsBroken) {
  auto parser = MakeTarget("redis", "h:1")->NewParser();
  Reply r = parser->Parse("?what\r\n");
  EXPECT_EQ(r.kind, Reply::kBroken);
  EXPECT_FALSE(r.code.empty());
}

TEST(TargetTest, EtcdEncodesGatewayRequests) {
  auto t = MakeTarget("etcd", "127.0.0.1:2379");
  std::string out;
  t->EncodeRequest(Op::kWrite, "foo", "bar", &out);
  std::string body = "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}";
  EXPECT_EQ(out,
            "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"
            "Content-Type: application/json\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body);
  out.clear();
  t->EncodeRequest(Op::kRead, "foo", "bar", &out);
  EXPECT_EQ(out,
            "POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"
            "Content-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"key\":\"Zm9v\"}");
}

TEST(TargetTest, HttpParsesResponsesWhateverTheSplit) {
  auto t = MakeTarget("etcd", "h:1");
  std::string ok_body = "{\"header\":{\"revision\":\"5\"}}";
  std::string input = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                      std::to_string(ok_body.size()) + "\r\n\r\n" + ok_body +
                      "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}" +
                      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n" +
                      "HTTP/1.1 204 No Content\r\n\r\n" +
                      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  ExpectSameForEverySplit(*t, input,
                          {{Reply::kOk, ""},
                           {Reply::kError, "http_503"},
                           {Reply::kOk, ""},
                           {Reply::kOk, ""},
                           {Reply::kOk, ""}});
}

TEST(TargetTest, HttpPartialBodyNeedsMore) {
  auto parser = MakeTarget("etcd", "h:1")->NewParser();
  std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
  Reply r = parser->Parse(head + "12345");
  EXPECT_EQ(r.kind, Reply::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
  r = parser->Parse(head + "1234567890HTTP/1.1");
  EXPECT_EQ(r.kind, Reply::kOk);
  EXPECT_EQ(r.consumed, head.size() + 10);
}

TEST(TargetTest, HttpGarbageIsBroken) {
  auto parser = MakeTarget("etcd", "h:1")->NewParser();
  EXPECT_EQ(parser->Parse("SSH-2.0-OpenSSH\r\n\r\n").kind, Reply::kBroken);
  EXPECT_EQ(parser->Parse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").kind, Reply::kBroken);
  EXPECT_EQ(parser->Parse("HTTP/1.1 200 OK\r\n\r\n").kind, Reply::kBroken);  // no length
}

TEST(TargetTest, Base64KnownVectors) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64(std::string("\xff\xfe\x00", 3)), "//4A");
}

TEST(TargetTest, PartitionMatchesTheServersRing) {
  cluster::Ring ring;
  ASSERT_TRUE(cluster::Ring::Make({"n1", "n2", "n3"}, 64, 3, &ring).ok());
  for (uint64_t i = 0; i < 2000; ++i) {
    std::string key = KeyName(i);
    EXPECT_EQ(PartitionOf(key, 64), ring.PartitionOf(key)) << key;
  }
}

}  // namespace
}  // namespace ringkv::bench
