// The anti-entropy ops of one node, driven with request lines: the replica's
// side of an exchange (_aae_tree, _aae_keys, _aae_fetch, _aae_scan, _aae_gc),
// the operator's `aae` and `compact`, and the watermark of a node that
// replicates alone.
#include <gtest/gtest.h>

#include <set>

#include "engine/aae_tree.h"
#include "engine/version.h"
#include "server/cluster/ring.h"
#include "server/protocol.h"
#include "tests/unit/server/node_fixture.h"
#include "tests/util/wait_for.h"

namespace ringkv {
namespace {

using json = nlohmann::json;

class NodeAaeTest : public NodeFixture {
 protected:
  void SetUp() override {
    NodeFixture::SetUp();
    options_.partitions = 8;
    options_.aae_interval_ms = 5;
    options_.tombstone_grace_s = 60;
    OpenNode();
  }
  uint32_t PartitionOf(const std::string& key) {
    return static_cast<uint32_t>(cluster::KeyHash(key) & 7);
  }
};

TEST_F(NodeAaeTest, TreeKeysFetchAndScanDescribeWhatIsStored) {
  json root = Call({{"op", "_aae_tree"}, {"partition", 0}});
  ASSERT_TRUE(root.value("ok", false)) << root.dump();
  ASSERT_EQ(root["branches"].size(), aae::kBranches);
  for (const json& h : root["branches"]) EXPECT_EQ(h.get<uint64_t>(), 0u);

  // Keys of partition 0 only.
  std::vector<std::string> keys;
  std::map<std::string, std::string> versions;
  for (int i = 0; keys.size() < 20; ++i) {
    std::string key = "k" + std::to_string(i);
    if (PartitionOf(key) != 0) continue;
    json put = Call({{"op", "put"}, {"key", key}, {"value", i}});
    ASSERT_TRUE(put.value("ok", false)) << put.dump();
    keys.push_back(key);
    versions[key] = put["version"];
  }
  root = Call({{"op", "_aae_tree"}, {"partition", 0}});
  std::set<uint32_t> segments, branches;
  for (const std::string& k : keys) {
    segments.insert(aae::SegmentOfKey(k));
    branches.insert(aae::BranchOf(aae::SegmentOfKey(k)));
  }
  for (uint32_t b = 0; b < aae::kBranches; ++b) {
    EXPECT_EQ(root["branches"][b].get<uint64_t>() != 0, branches.count(b) > 0) << "branch " << b;
  }
  json seg = Call({{"op", "_aae_tree"}, {"partition", 0}, {"branches", {*branches.begin()}}});
  ASSERT_EQ(seg["segments"].size(), 1u);

  json listed = Call({{"op", "_aae_keys"},
                      {"partition", 0},
                      {"segments", std::vector<uint32_t>(segments.begin(), segments.end())}});
  ASSERT_TRUE(listed.value("ok", false)) << listed.dump();
  EXPECT_FALSE(listed["truncated"].get<bool>());
  ASSERT_EQ(listed["keys"].size(), keys.size());
  for (const json& e : listed["keys"]) {
    EXPECT_EQ(e["version"], versions[e["key"].get<std::string>()]);
  }

  json fetched = Call({{"op", "_aae_fetch"}, {"partition", 0}, {"keys", {keys[0], "absent"}}});
  ASSERT_EQ(fetched["records"].size(), 1u) << fetched.dump();
  EXPECT_EQ(fetched["records"][0]["key"], keys[0]);

  std::set<std::string> scanned;
  std::string after;
  for (int page = 0; page < 50; ++page) {
    json s = Call({{"op", "_aae_scan"}, {"partition", 0}, {"after", after}, {"limit", 3}});
    ASSERT_TRUE(s.value("ok", false)) << s.dump();
    for (const json& r : s["records"]) scanned.insert(r["key"].get<std::string>());
    after = s["next"].get<std::string>();
    if (after.empty()) break;
  }
  EXPECT_EQ(scanned, std::set<std::string>(keys.begin(), keys.end()));

  EXPECT_EQ(ErrorCode(Call({{"op", "_aae_tree"}, {"partition", 8}})), "bad_request");
  EXPECT_EQ(ErrorCode(Call({{"op", "_aae_keys"}, {"partition", 0}, {"segments", {4096}}})),
            "bad_request");
}

// A peer learns from _hello whether this node knew it with another data dir
// (its disk was lost): not on first sight, not again with the same dir, and
// the memory survives a restart.
TEST_F(NodeAaeTest, HelloSaysWhenAPeersDataDirChanged) {
  auto hello = [&](const std::string& dir) {
    bool changed = true;
    Status s = ParsePeerHelloReply(
        CallRaw(EncodePeerHello("n2", node_->cluster_fingerprint(), 0, dir)), &changed);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return changed;
  };
  EXPECT_FALSE(hello("aaaa")) << "first sight";
  EXPECT_FALSE(hello("aaaa"));
  EXPECT_TRUE(hello("bbbb")) << "a new dir under a known id";
  EXPECT_FALSE(hello("bbbb"));
  node_.reset();
  OpenNode();
  EXPECT_TRUE(hello("cccc")) << "remembered across a restart";
  EXPECT_FALSE(node_->data_dir_id().empty());
}

TEST_F(NodeAaeTest, WatermarkFromTheFutureIsRefused) {
  uint64_t future = MakeHlc(clock_.NowMs() + 60'000, 0);
  EXPECT_EQ(ErrorCode(Call({{"op", "_aae_gc"}, {"partition", 1}, {"watermark", future}})),
            "bad_request");
  uint64_t past = MakeHlc(clock_.NowMs() - 1, 0);
  EXPECT_EQ(ErrorCode(Call({{"op", "_aae_gc"}, {"partition", 1}, {"watermark", past}})), "ok");
  json root = Call({{"op", "_aae_tree"}, {"partition", 1}});
  EXPECT_EQ(root["watermark"].get<uint64_t>(), past);
}

// Alone, a node confirms its own tombstones: the watermark follows the
// clock, a grace period behind; `aae` and stats show it, `compact` answers.
TEST_F(NodeAaeTest, LoneNodeWatermarkFollowsTheGracePeriod) {
  json del = Call({{"op", "delete"}, {"key", "gone"}});
  ASSERT_TRUE(del.value("ok", false));
  uint64_t tombstone = std::stoull(del["version"].get<std::string>().substr(0, 16), nullptr, 16);
  uint32_t p = PartitionOf("gone");
  auto watermark = [&] {
    json a = Call({{"op", "aae"}});
    for (const json& e : a["aae"]["partitions"]) {
      if (e["partition"] == p) return e["watermark"].get<uint64_t>();
    }
    return uint64_t{0};
  };
  EXPECT_TRUE(testutil::WaitFor([&] { return watermark() != 0; }, std::chrono::seconds(10)));
  EXPECT_LT(watermark(), tombstone) << "younger than the grace period";
  clock_.Advance(61'000 + options_.max_clock_skew_ms + options_.hint_window_s * 1000);
  EXPECT_TRUE(testutil::WaitFor([&] { return watermark() > tombstone; }, std::chrono::seconds(10)));
  json compact = Call({{"op", "compact"}});
  EXPECT_TRUE(compact.value("ok", false)) << compact.dump();
  EXPECT_FALSE(Call({{"op", "get"}, {"key", "gone"}})["found"].get<bool>());
  json stats = Call({{"op", "stats"}})["stats"];
  ASSERT_TRUE(stats.contains("aae")) << stats.dump();
  for (const char* f : {"exchanges", "keys_repaired", "partitions_in_sync", "partitions_total"}) {
    EXPECT_TRUE(stats["aae"].contains(f)) << f;
  }
  EXPECT_EQ(stats["aae"]["partitions_total"], 8);
  EXPECT_EQ(stats["aae"]["partitions_in_sync"], 8) << "a lone replica is in sync with itself";
}

}  // namespace
}  // namespace ringkv
