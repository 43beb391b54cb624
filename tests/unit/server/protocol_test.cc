#include "server/protocol.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/version.h"

namespace ringkv {
namespace {

Status Parse(std::string_view line, Request* out = nullptr) {
  Request tmp;
  return ParseRequest(line, Limits{16, 64}, out ? out : &tmp);
}
Status::Code CodeOf(std::string_view line) { return Parse(line).code(); }

using C = Status::Code;

TEST(ProtocolTest, ParsesEachOp) {
  Request r;
  ASSERT_TRUE(
      Parse(R"({"op":"put","key":"k","value":{"a":[1,2]},"ttl_ms":5,"w":"all","id":7})", &r).ok());
  EXPECT_EQ(r.op, Op::kPut);
  EXPECT_EQ(r.key, "k");
  EXPECT_EQ(r.value_json, R"({"a":[1,2]})");
  EXPECT_EQ(r.ttl_ms, 5u);
  EXPECT_EQ(r.w.kind, QuorumSpec::Kind::kAll);
  EXPECT_EQ(r.id_json, "7");
  ASSERT_TRUE(Parse(R"({"op":"get","key":"k","r":2,"local":true})", &r).ok());
  EXPECT_EQ(r.op, Op::kGet);
  EXPECT_TRUE(r.local);
  EXPECT_EQ(r.r.kind, QuorumSpec::Kind::kNumber);
  EXPECT_EQ(r.r.number, 2);
  ASSERT_TRUE(Parse(R"({"op":"delete","key":"k","id":"abc"})", &r).ok());
  EXPECT_EQ(r.op, Op::kDelete);
  EXPECT_EQ(r.id_json, R"("abc")");
  for (const char* op : {"ping", "stats", "cluster"}) {
    EXPECT_TRUE(Parse(std::string(R"({"op":")") + op + "\"}").ok()) << op;
  }
  ASSERT_TRUE(Parse(R"({"op":"locate","key":"x"})", &r).ok());
  ASSERT_TRUE(Parse(R"({"op":"backup","dir":"/tmp/b"})", &r).ok());
  EXPECT_EQ(r.dir, "/tmp/b");
}

TEST(ProtocolTest, ValueIsCompacted) {
  Request r;
  ASSERT_TRUE(Parse("{\"op\":\"put\",\"key\":\"k\",\"value\": [ 1 ,\n 2 ] }", &r).ok());
  EXPECT_EQ(r.value_json, "[1,2]");
}

TEST(ProtocolTest, BadRequests) {
  for (const char* line : {"",
                           " ",
                           "not json",
                           "[1,2]",
                           "\"str\"",
                           "{}",
                           R"({"op":5})",
                           R"({"op":null})",
                           R"({"op":"get"})",
                           R"({"op":"get","key":5})",
                           R"({"op":"get","key":""})",
                           R"({"op":"put","key":"k"})",
                           R"({"op":"put","key":"k","value":1,"ttl_ms":0})",
                           R"({"op":"put","key":"k","value":1,"ttl_ms":-5})",
                           R"({"op":"put","key":"k","value":1,"ttl_ms":1.5})",
                           R"({"op":"put","key":"k","value":1,"ttl_ms":"10"})",
                           R"({"op":"put","key":"k","value":1,"ttl_ms":99999999999999999})",
                           R"({"op":"get","key":"k","r":"most"})",
                           R"({"op":"get","key":"k","r":1.0})",
                           R"({"op":"get","key":"k","r":true})",
                           R"({"op":"get","key":"k","local":1})",
                           R"({"op":"ping","timeout_ms":0})",
                           R"({"op":"backup"})",
                           R"({"op":"backup","dir":""})",
                           R"({"op":"backup","dir":"rel/dir"})",
                           R"({"op":"backup","dir":"/a/../etc"})",
                           R"({"op":"backup","dir":"/.."})",
                           R"({"op":"backup","dir":"/a/b/.."})",
                           R"({"op":"auth","user":"u"})",
                           R"({"op":"auth","password":"p"})",
                           R"({"op":"auth","user":1,"password":"p"})",
                           R"({"op":"_peer_auth","from":"n1","nonce":"x"})",
                           R"({"op":"ping","id":[1]})",
                           R"({"op":"ping","id":1.5})",
                           "{\"op\":\"ping\"} trailing",
                           "{\"op\":\"ping\",\"key\":\"\xff\"}"}) {
    EXPECT_EQ(CodeOf(line), C::kBadRequest) << line;
  }
}

TEST(ProtocolTest, BackupDirMayHoldDotsInNames) {
  Request r;
  ASSERT_TRUE(Parse(R"({"op":"backup","dir":"/b/..x/a..b/.c"})", &r).ok());
  EXPECT_EQ(r.dir, "/b/..x/a..b/.c");
}

TEST(ProtocolTest, FieldErrorsStillNameTheOp) {
  Request r;
  EXPECT_EQ(Parse(R"({"op":"put","id":1})", &r).code(), Status::Code::kBadRequest);
  EXPECT_TRUE(r.op_known);
  EXPECT_EQ(r.op, Op::kPut);
  Request u;
  EXPECT_EQ(Parse(R"({"op":"nope"})", &u).code(), Status::Code::kUnknownOp);
  EXPECT_FALSE(u.op_known);
}

TEST(ProtocolTest, UnknownOp) {
  EXPECT_EQ(CodeOf(R"({"op":"frobnicate"})"), C::kUnknownOp);
  EXPECT_EQ(CodeOf(R"({"op":"PUT","key":"k","value":1})"), C::kUnknownOp);
}

TEST(ProtocolTest, LimitsAreMeasuredInBytes) {
  // Limits{16, 64}: a 16-byte key is fine, 17 is not; a key is measured in UTF-8 bytes.
  EXPECT_TRUE(Parse(R"({"op":"get","key":"0123456789abcdef"})").ok());
  EXPECT_EQ(CodeOf(R"({"op":"get","key":"0123456789abcdefg"})"), C::kKeyTooLarge);
  EXPECT_EQ(CodeOf(R"({"op":"get","key":"ééééééééé"})"), C::kKeyTooLarge);  // 9 chars, 18 bytes
  EXPECT_EQ(CodeOf(R"({"op":"locate","key":"0123456789abcdefg"})"), C::kKeyTooLarge);
  // The value is measured as its compact JSON text: spaces do not count.
  std::string v62 = "\"" + std::string(60, 'x') + "\"";
  EXPECT_TRUE(Parse(R"({"op":"put","key":"k","value":)" + v62 + "}").ok());
  std::string v65 = "\"" + std::string(63, 'x') + "\"";
  EXPECT_EQ(CodeOf(R"({"op":"put","key":"k","value":)" + v65 + "}"), C::kValueTooLarge);
  EXPECT_TRUE(
      Parse(
          R"({"op":"put","key":"k","value":[1,    2,    3,    4,    5,    6,    7,    8,    9,    10,   11]})")
          .ok());
}

TEST(ProtocolTest, IdIsFoundEvenWhenTheRequestFails) {
  Request r;
  EXPECT_EQ(Parse(R"({"id":"x1","op":"nope"})", &r).code(), C::kUnknownOp);
  EXPECT_EQ(r.id_json, R"("x1")");
  Request r2;
  EXPECT_EQ(Parse(R"({"id":18446744073709551615,"op":"get"})", &r2).code(), C::kBadRequest);
  EXPECT_EQ(r2.id_json, "18446744073709551615");
  Request r3;
  EXPECT_EQ(Parse(R"({"id":-9223372036854775808,"op":5})", &r3).code(), C::kBadRequest);
  EXPECT_EQ(r3.id_json, "-9223372036854775808");
}

TEST(ProtocolTest, DeepNestingIsRefusedBeforeParsing) {
  std::string deep(100000, '[');
  EXPECT_EQ(CodeOf(R"({"op":"put","key":"k","value":)" + deep), C::kBadRequest);
  std::string ok_depth =
      R"({"op":"put","key":"k","value":)" + std::string(400, '[') + std::string(400, ']') + "}";
  Request r;
  EXPECT_TRUE(ParseRequest(ok_depth, Limits{16, 1 << 20}, &r).ok());
  // Brackets inside strings are not nesting.
  EXPECT_TRUE(Parse(R"({"op":"put","key":"k","value":")" + std::string(40, '[') + "\"}").ok());
}

TEST(ProtocolTest, QuorumResolution) {
  int n = 0;
  EXPECT_TRUE(QuorumSpec{}.Resolve(3, 2, "r", &n).ok());
  EXPECT_EQ(n, 2);
  EXPECT_TRUE((QuorumSpec{QuorumSpec::Kind::kOne, 0}).Resolve(3, 2, "r", &n).ok());
  EXPECT_EQ(n, 1);
  EXPECT_TRUE((QuorumSpec{QuorumSpec::Kind::kQuorum, 0}).Resolve(5, 1, "r", &n).ok());
  EXPECT_EQ(n, 3);
  EXPECT_TRUE((QuorumSpec{QuorumSpec::Kind::kAll, 0}).Resolve(3, 2, "r", &n).ok());
  EXPECT_EQ(n, 3);
  EXPECT_TRUE((QuorumSpec{QuorumSpec::Kind::kNumber, 3}).Resolve(3, 2, "w", &n).ok());
  Status s = QuorumSpec{QuorumSpec::Kind::kNumber, 4}.Resolve(3, 2, "w", &n);
  EXPECT_EQ(s.code(), C::kBadRequest);
  EXPECT_NE(s.message().find("'w'"), std::string::npos);
  EXPECT_FALSE((QuorumSpec{QuorumSpec::Kind::kNumber, 0}).Resolve(3, 2, "w", &n).ok());
  Request r;
  // A number beyond uint64 parses as a float, which is not an integer.
  EXPECT_EQ(CodeOf(R"({"op":"get","key":"k","r":99999999999999999999})"), C::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"op":"get","key":"k","r":1e30})"), C::kBadRequest);
  ASSERT_TRUE(Parse(R"({"op":"get","key":"k","r":18446744073709551615})", &r).ok());
  EXPECT_FALSE(r.r.Resolve(3, 2, "r", &n).ok());
  ASSERT_TRUE(Parse(R"({"op":"get","key":"k","r":-1})", &r).ok());
  EXPECT_FALSE(r.r.Resolve(3, 2, "r", &n).ok());
}

TEST(ProtocolTest, Rendering) {
  EXPECT_EQ(ResponseBuilder("").AddBool("found", false).Finish(), R"({"ok":true,"found":false})");
  EXPECT_EQ(ResponseBuilder("\"a\"").AddInt("n", -3).AddRaw("v", "[1]").Finish(),
            R"({"id":"a","ok":true,"n":-3,"v":[1]})");
  EXPECT_EQ(ResponseBuilder("1").AddStringArray("r", {"n1", "n\"2"}).Finish(),
            R"({"id":1,"ok":true,"r":["n1","n\"2"]})");
  std::string err = RenderError("5", Status::Timeout("too \"slow\"\n"));
  auto j = nlohmann::json::parse(err);
  EXPECT_EQ(j["id"], 5);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["code"], "timeout");
  EXPECT_EQ(j["error"]["message"], "too \"slow\"\n");
  EXPECT_EQ(JsonQuote(std::string("\xff", 1)).front(), '"');  // invalid UTF-8 never throws
}

// A peer's reply of any shape is parsed into a Status and never throws
// (a throw there once swallowed the coordinator's callback and hung the
// client's connection).
TEST(PeerReplyTest, MalformedRepliesAreInternalAndNeverThrow) {
  const char* bad[] = {
      "",
      "nope",
      "[]",
      "{}",
      R"({"ok":1})",
      R"({"ok":false})",
      R"({"ok":false,"error":"x"})",
      R"({"ok":false,"error":{}})",
      R"({"ok":false,"error":{"code":5}})",
      R"({"ok":false,"error":{"code":null,"message":"m"}})",
      R"({"ok":false,"error":{"code":"stale"}})",
      R"({"ok":false,"error":{"code":"stale"},"version":7})",
      R"({"ok":false,"error":{"code":"ok"}})",
  };
  for (const char* line : bad) {
    Status s;
    ASSERT_NO_THROW(s = ParsePeerWriteReply(line)) << line;
    EXPECT_EQ(s.code(), Status::Code::kInternal) << line << " -> " << s.ToString();
    Record r;
    ASSERT_NO_THROW(s = ParsePeerReadReply(line, &r)) << line;
    EXPECT_EQ(s.code(), Status::Code::kInternal) << line;
    ASSERT_NO_THROW(s = ParsePeerHelloReply(line)) << line;
    EXPECT_EQ(s.code(), Status::Code::kInternal) << line;
  }
  // A message of the wrong type is dropped, the code kept.
  Status s = ParsePeerWriteReply(R"({"ok":false,"error":{"code":"timeout","message":[1]}})");
  EXPECT_EQ(s.code(), Status::Code::kTimeout);
  // Every wire code comes back as itself.
  EXPECT_EQ(ParsePeerWriteReply(RenderError("", Status::Overloaded("busy"))).code(),
            Status::Code::kOverloaded);
  s = ParsePeerWriteReply(RenderError("", Status::RequestTooLarge("big")));
  EXPECT_EQ(s.code(), Status::Code::kRequestTooLarge);
  EXPECT_EQ(s.message(), "big");
  // An unknown code is internal and says which.
  s = ParsePeerWriteReply(R"({"ok":false,"error":{"code":"martian","message":"m"}})");
  EXPECT_EQ(s.code(), Status::Code::kInternal);
  EXPECT_EQ(s.message(), "martian: m");
}

TEST(PeerReplyTest, StaleCarriesTheHeldVersion) {
  Version held{MakeHlc(1'700'000'000'123ULL, 4), "n3"};
  Status s = ParsePeerWriteReply(RenderStale("7", Status::Stale(held.ToString())));
  ASSERT_TRUE(s.IsStale()) << s.ToString();
  EXPECT_EQ(s.message(), held.ToString());
}

}  // namespace
}  // namespace ringkv
