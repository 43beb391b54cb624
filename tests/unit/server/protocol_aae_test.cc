// The anti-entropy peer messages: what a node sends parses into the request
// the replica's handler expects, what the replica renders parses back into
// the same values, and malformed replies are errors, never exceptions.
#include "server/protocol_aae.h"

#include <gtest/gtest.h>

#include "server/protocol.h"

namespace ringkv {
namespace {

Request MustParse(const std::string& line) {
  Request req;
  Status s = ParseRequest(line, Limits{}, &req);
  EXPECT_TRUE(s.ok()) << line << ": " << s.ToString();
  return req;
}

Status ParseError(const std::string& line) {
  Request req;
  return ParseRequest(line, Limits{}, &req);
}

Record MakeRecord(uint64_t hlc, std::string node, bool tombstone, uint64_t expires,
                  std::string value) {
  Record r;
  r.version = {hlc, std::move(node)};
  r.tombstone = tombstone;
  r.expires_at_ms = expires;
  r.value = tombstone ? "" : std::move(value);
  return r;
}

TEST(ProtocolAaeTest, RequestsRoundTrip) {
  Request root = MustParse(EncodeAaeRoot(7));
  EXPECT_EQ(root.op, Op::kAaeTree);
  EXPECT_EQ(root.partition, 7u);
  EXPECT_FALSE(root.has_ids);

  Request branches = MustParse(EncodeAaeBranches(3, {0, 5, 63}));
  EXPECT_EQ(branches.op, Op::kAaeTree);
  EXPECT_TRUE(branches.has_ids);
  EXPECT_EQ(branches.ids, (std::vector<uint32_t>{0, 5, 63}));

  Request keys = MustParse(EncodeAaeKeys(1, {4095, 2}, 500));
  EXPECT_EQ(keys.op, Op::kAaeKeys);
  EXPECT_EQ(keys.ids, (std::vector<uint32_t>{4095, 2}));
  EXPECT_EQ(keys.limit, 500u);

  std::string nul_key("a\0b", 3);
  Request fetch = MustParse(EncodeAaeFetch(2, {"x", "ключ", nul_key}));
  EXPECT_EQ(fetch.op, Op::kAaeFetch);
  EXPECT_EQ(fetch.keys, (std::vector<std::string>{"x", "ключ", nul_key}));

  Request scan = MustParse(EncodeAaeScan(9, "after\"key", 100, 4096));
  EXPECT_EQ(scan.op, Op::kAaeScan);
  EXPECT_EQ(scan.after, "after\"key");
  EXPECT_EQ(scan.limit, 100u);
  EXPECT_EQ(scan.bytes, 4096u);

  Request gc = MustParse(EncodeAaeGc(4, 0xfedcba9876543210ULL));
  EXPECT_EQ(gc.op, Op::kAaeGc);
  EXPECT_EQ(gc.watermark, 0xfedcba9876543210ULL);

  EXPECT_EQ(MustParse(R"({"op":"aae"})").op, Op::kAae);
  EXPECT_EQ(MustParse(R"({"op":"compact"})").op, Op::kCompact);
}

TEST(ProtocolAaeTest, BadRequestsAreRefused) {
  for (const char* line : {
           R"({"op":"_aae_tree"})",
           R"({"op":"_aae_tree","partition":-1})",
           R"({"op":"_aae_tree","partition":"1"})",
           R"({"op":"_aae_tree","partition":1,"branches":"all"})",
           R"({"op":"_aae_tree","partition":1,"branches":[-3]})",
           R"({"op":"_aae_keys","partition":1})",
           R"({"op":"_aae_keys","partition":1,"segments":[1],"limit":-5})",
           R"({"op":"_aae_fetch","partition":1,"keys":[1]})",
           R"({"op":"_aae_fetch","partition":1,"keys":[""]})",
           R"({"op":"_aae_scan","partition":1,"after":5})",
           R"({"op":"_aae_gc","partition":1})",
           R"({"op":"_aae_gc","partition":1,"watermark":1.5})",
       }) {
    Status s = ParseError(line);
    EXPECT_EQ(s.code(), Status::Code::kBadRequest) << line << ": " << s.ToString();
  }
}

TEST(ProtocolAaeTest, RepliesRoundTrip) {
  cluster::AaeRoot root;
  root.watermark = 0x123456789abcdef0ULL;
  for (uint32_t b = 0; b < aae::kBranches; ++b) root.branches[b] = UINT64_MAX - b;
  cluster::AaeRoot root_back;
  ASSERT_TRUE(ParseAaeRootReply(RenderAaeRoot("\"7\"", root), &root_back).ok());
  EXPECT_EQ(root_back.watermark, root.watermark);
  EXPECT_EQ(root_back.branches, root.branches);

  std::vector<cluster::AaeSegments> branches(2);
  for (uint32_t s = 0; s < aae::kSegmentsPerBranch; ++s) {
    branches[0][s] = s * 0x9e3779b97f4a7c15ULL;
    branches[1][s] = ~branches[0][s];
  }
  std::vector<cluster::AaeSegments> branches_back;
  ASSERT_TRUE(ParseAaeBranchesReply(RenderAaeBranches("", branches), &branches_back).ok());
  EXPECT_EQ(branches_back, branches);

  std::vector<aae::KeyVersion> keys = {
      {"k1", MakeRecord(5, "n1", false, 0, "")},
      {"ключ", MakeRecord(9, "n2", true, 0, "")},
      {std::string("z\0", 2), MakeRecord(11, "n3", false, 1700000000000ULL, "")},
  };
  std::vector<aae::KeyVersion> keys_back;
  bool truncated = false;
  ASSERT_TRUE(ParseAaeKeysReply(RenderAaeKeys("", keys, true), &keys_back, &truncated).ok());
  EXPECT_TRUE(truncated);
  EXPECT_EQ(keys_back, keys);

  cluster::AaeRecords records = {
      {"a", MakeRecord(1, "n1", false, 0, R"({"x":[1,2,"ü"]})")},
      {"b", MakeRecord(2, "n2", true, 0, "")},
      {"c", MakeRecord(3, "n1", false, 99, "18446744073709551615")},
  };
  cluster::AaeRecords records_back;
  std::string next;
  ASSERT_TRUE(
      ParseAaeRecordsReply(RenderAaeRecords("", records, true, "c"), &records_back, &next).ok());
  EXPECT_EQ(records_back, records);
  EXPECT_EQ(next, "c");
  records_back.clear();
  ASSERT_TRUE(
      ParseAaeRecordsReply(RenderAaeRecords("", records, false, ""), &records_back, nullptr).ok());
  EXPECT_EQ(records_back, records);
}

TEST(ProtocolAaeTest, MalformedRepliesAreInternalNotThrown) {
  cluster::AaeRoot root;
  std::vector<cluster::AaeSegments> branches;
  std::vector<aae::KeyVersion> keys;
  cluster::AaeRecords records;
  bool truncated;
  std::string next;
  for (
      const char* line :
      {"", "not json", "[]", R"({"ok":true})", R"({"ok":true,"watermark":1,"branches":[1]})",
       R"({"ok":true,"watermark":-1,"branches":[]})", R"({"ok":true,"segments":[[1,2]]})",
       R"({"ok":true,"keys":[{"key":1}],"truncated":false})",
       R"({"ok":true,"keys":[{"key":"a","version":"zz","tombstone":false,"expires_ms":0}],"truncated":false})",
       R"({"ok":true,"records":[{"key":"a"}],"next":""})", R"({"ok":true,"records":{}})",
       R"({"ok":false})", R"({"ok":false,"error":{"code":"nonsense"}})"}) {
    EXPECT_FALSE(ParseAaeRootReply(line, &root).ok()) << line;
    EXPECT_FALSE(ParseAaeBranchesReply(line, &branches).ok()) << line;
    EXPECT_FALSE(ParseAaeKeysReply(line, &keys, &truncated).ok()) << line;
    EXPECT_FALSE(ParseAaeRecordsReply(line, &records, &next).ok()) << line;
  }
  // A peer's error comes back as that error.
  Status s = ParseOkReply(R"({"ok":false,"error":{"code":"unavailable","message":"rebuilding"}})");
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_EQ(s.message(), "rebuilding");
}

}  // namespace
}  // namespace ringkv
