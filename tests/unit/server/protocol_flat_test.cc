// The flat-request scanner must answer exactly as the full JSON parser does:
// it takes only lines it understands whole, and leaves the rest to the full
// parser. Differential tests over hand-picked edge cases and many mutated
// lines hold the two to the same Request and the same error.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "server/protocol.h"

namespace ringkv {
namespace {

using protocol_internal::ParseFlatRequest;
using protocol_internal::ParseRequestFull;

const Limits kLimits{16, 64};

std::string Describe(const Request& r) {
  std::string s = "op=" + std::string(OpName(r.op)) + " id=" + r.id_json + " key=" + r.key +
                  " value=" + r.value_json + " ttl=" + std::to_string(r.ttl_ms) +
                  " r=" + std::to_string(static_cast<int>(r.r.kind)) + "/" +
                  std::to_string(r.r.number) + " w=" + std::to_string(static_cast<int>(r.w.kind)) +
                  "/" + std::to_string(r.w.number) + " local=" + std::to_string(r.local) +
                  " timeout=" + std::to_string(r.timeout_ms) + " dir=" + r.dir +
                  " rec=" + r.record.version.ToString() + "/" + std::to_string(r.record.tombstone) +
                  "/" + std::to_string(r.record.expires_at_ms) + "/" + r.record.value +
                  " from=" + r.from + " fp=" + r.fingerprint;
  return s;
}

// Returns whether the scanner took the line; fails the test if it took it
// and disagrees with the full parser.
bool ExpectSameAnswer(const std::string& line) {
  Request flat, full;
  bool taken = ParseFlatRequest(line, kLimits, &flat);
  Status s = ParseRequestFull(line, kLimits, &full);
  if (taken) {
    EXPECT_TRUE(s.ok()) << "scanner took a line the full parser refuses (" << s.ToString()
                        << "): " << line;
    EXPECT_EQ(Describe(flat), Describe(full)) << line;
  } else {
    EXPECT_EQ(Describe(flat), Describe(Request())) << "a refused line left fields behind: " << line;
  }
  // ParseRequest() as a whole answers like the full parser either way.
  Request both;
  Status sb = ParseRequest(line, kLimits, &both);
  EXPECT_EQ(sb.code(), s.code()) << line;
  EXPECT_EQ(sb.message(), s.message()) << line;
  if (s.ok()) {
    EXPECT_EQ(Describe(both), Describe(full)) << line;
  }
  return taken;
}

TEST(ProtocolFlatTest, TakesTheCommonRequests) {
  for (
      const char* line : {
          R"({"op":"put","key":"k1","value":"hello","id":7})",
          R"({"op":"put","key":"k1","value":12,"ttl_ms":5000,"w":"quorum","timeout_ms":100})",
          R"({"op":"put","key":"k1","value":true})",
          R"({"op":"put","key":"k1","value":null,"w":2})",
          R"(  { "op" : "get" , "key" : "k1" , "r" : "all" , "local" : false }  )",
          R"({"op":"get","key":"k1","id":"abc"})",
          R"({"op":"delete","key":"k1","w":-3})",
          R"({"op":"ping"})",
          R"({"op":"ping","id":-12,"extra":"ignored","n":null})",
          R"({"op":"_read","key":"k"})",
          R"({"op":"_write","key":"k","version":"0000018bcfe56800.n1","tombstone":false,"expires_ms":0,"value":"v"})",
          R"({"op":"_write","key":"k","version":"0000018bcfe56800.n1","tombstone":true,"expires_ms":5})",
      }) {
    EXPECT_TRUE(ExpectSameAnswer(line)) << "not taken: " << line;
  }
}

TEST(ProtocolFlatTest, LeavesEverythingElseToTheFullParser) {
  for (
      const char* line : {
          R"({"op":"put","key":"k","value":{"a":1}})",               // nested value
          R"({"op":"put","key":"k","value":[1]})",                   // array
          R"({"op":"put","key":"k","value":1.5})",                   // fraction
          R"({"op":"put","key":"k","value":1e3})",                   // exponent
          R"({"op":"put","key":"k","value":-0})",                    // -0 dumps as 0
          R"({"op":"put","key":"k","value":007})",                   // invalid number
          R"({"op":"put","key":"k","value":1234567890123456789})",   // 19 digits
          R"({"op":"put","key":"k\u0041","value":"v"})",             // escape in key
          R"({"op":"put","key":"k","value":"a\"b"})",                // escape in value
          "{\"op\":\"put\",\"key\":\"k\xc3\xa9\",\"value\":\"v\"}",  // non-ASCII
          "{\"op\":\"put\",\"key\":\"k\xff\",\"value\":\"v\"}",      // invalid UTF-8
          R"({"op":"put","key":"k","key":"j","value":"v"})",         // duplicate name
          R"({"op":"put","key":"","value":"v"})",                    // empty key
          R"({"op":"put","key":"0123456789abcdefg","value":"v"})",   // key over 16
          R"({"op":"put","key":"k","value":"0123456789012345678901234567890123456789012345678901234567890123"})",
          R"({"op":"put","key":"k"})",  // no value
          R"({"op":"put","key":"k","value":"v","ttl_ms":0})",
          R"({"op":"put","key":"k","value":"v","ttl_ms":-5})",
          R"({"op":"put","key":"k","value":"v","w":"most"})",
          R"({"op":"put","key":"k","value":"v","w":true})",
          R"({"op":"get","key":"k","local":"yes"})",
          R"({"op":"get","key":5})",
          R"({"op":"get","key":"k","timeout_ms":3600001})",
          R"({"op":"get","key":"k","id":true})",
          R"({"op":"get","key":"k"} x)",  // trailing garbage
          R"({"op":"get","key":"k",})",   // trailing comma
          R"({"op":"stats"})",            // rare op
          R"({"op":"nope"})",
          R"({"op":7})",
          R"({})",
          R"([])",
          R"("op")",
          "",
          R"({"op":"_write","key":"k","version":"bad","value":"v"})",
          R"({"op":"_write","key":"k","version":"0000018bcfe56800.n1","tombstone":1,"value":"v"})",
          R"({"op":"_write","key":"k","version":"0000018bcfe56800.n1","expires_ms":-1,"value":"v"})",
          R"({"op":"_write","key":"k","version":"0000018bcfe56800.n1"})",
      }) {
    EXPECT_FALSE(ExpectSameAnswer(line)) << "taken: " << line;
  }
}

// Random edits of valid lines: whatever the scanner takes, it takes right.
TEST(ProtocolFlatTest, MutatedLinesGetTheSameAnswer) {
  const std::vector<std::string> seeds = {
      R"({"op":"put","key":"k1","value":"hello","id":7,"ttl_ms":100,"w":2})",
      R"({"op":"get","key":"k1","r":"quorum","local":true,"timeout_ms":50})",
      R"({"op":"delete","key":"abc","w":"one","id":"x"})",
      R"({"op":"_write","key":"k","version":"0000018bcfe56800.n1","tombstone":false,"expires_ms":9,"value":12})",
      R"({ "op" : "ping" , "id" : 0 })",
  };
  const std::string alphabet = "{}[]\":,0123456789-.eE tfnrulasekyopvw\\_\x01\x7f\xc3\xa9";
  std::mt19937 rng(20261121);
  int taken = 0, total = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string line = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !line.empty(); ++e) {
      size_t at = rng() % line.size();
      char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          line[at] = c;
          break;
        case 1:
          line.insert(line.begin() + static_cast<long>(at), c);
          break;
        default:
          line.erase(at, 1);
          break;
      }
    }
    ++total;
    if (ExpectSameAnswer(line)) ++taken;
    if (HasFailure()) break;
  }
  // Some mutants stay valid (a changed digit or letter): the scanner must
  // have been exercised on them, not only refused everything.
  EXPECT_GT(taken, total / 20) << taken << " of " << total;
}

}  // namespace
}  // namespace ringkv
