#include "engine/aae_tree.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>
#include <set>

namespace ringkv::aae {
namespace {

Record Meta(uint64_t hlc, std::string node, bool tombstone = false, uint64_t expiry = 0) {
  Record r;
  r.version = {hlc, std::move(node)};
  r.tombstone = tombstone;
  r.expires_at_ms = expiry;
  return r;
}

// Every branch is the XOR of its segments.
void ExpectConsistent(const Tree& t) {
  for (uint32_t b = 0; b < kBranches; ++b) {
    uint64_t x = 0;
    for (uint64_t s : t.BranchSegments(b)) x ^= s;
    ASSERT_EQ(t.branch(b), x) << "branch " << b;
  }
}

TEST(AaeTreeTest, SegmentIsTheTopBitsOfTheRingHash) {
  // The ring's known XXH64 values (tests/unit/server/ring_test.cc).
  EXPECT_EQ(SegmentOfKey(""), 0xEF46DB3751D8E999ULL >> 52);
  EXPECT_EQ(SegmentOfKey("a"), 0xD24EC4F1A98C6E5BULL >> 52);
  EXPECT_LT(SegmentOfKey("anything"), kSegments);
  EXPECT_EQ(BranchOf(kSegments - 1), kBranches - 1);
}

TEST(AaeTreeTest, SegmentsAreIndependentOfThePartition) {
  // The keys of one partition of 64 (low hash bits 0) still spread over the
  // segments as random keys would: 5000 keys into 4096 segments fill ~71%.
  std::set<uint32_t> segments;
  int taken = 0;
  for (int i = 0; taken < 5000; ++i) {
    std::string key = "key-" + std::to_string(i);
    if ((XXH64(key.data(), key.size(), 0) & 63) != 0) continue;
    ++taken;
    segments.insert(SegmentOfKey(key));
  }
  EXPECT_GT(segments.size(), 2600u);
  EXPECT_LT(segments.size(), 3200u);
}

TEST(AaeTreeTest, EntryHashCoversEveryField) {
  const Record base = Meta(100, "n1");
  const uint64_t h = EntryHash("k", base);
  EXPECT_EQ(h, EntryHash("k", Meta(100, "n1")));
  EXPECT_NE(h, 0u);
  EXPECT_NE(h, EntryHash("k2", base));
  EXPECT_NE(h, EntryHash("k", Meta(101, "n1")));
  EXPECT_NE(h, EntryHash("k", Meta(100, "n2")));
  EXPECT_NE(h, EntryHash("k", Meta(100, "n1", /*tombstone=*/true)));
  EXPECT_NE(h, EntryHash("k", Meta(100, "n1", false, /*expiry=*/7)));
  // Lengths keep bytes from moving between fields.
  EXPECT_NE(EntryHash("ab", Meta(1, "c")), EntryHash("a", Meta(1, "bc")));
  // The value is not hashed.
  Record with_value = base;
  with_value.value = "\"v\"";
  EXPECT_EQ(h, EntryHash("k", with_value));
}

TEST(AaeTreeTest, GcEligibility) {
  const uint64_t w = MakeHlc(1000, 3);
  EXPECT_FALSE(IsGcEligible(Meta(MakeHlc(1, 0), "n1", true), 0));               // no watermark
  EXPECT_TRUE(IsGcEligible(Meta(MakeHlc(1000, 2), "n1", true), w));             // below
  EXPECT_FALSE(IsGcEligible(Meta(MakeHlc(1000, 3), "n1", true), w));            // equal
  EXPECT_FALSE(IsGcEligible(Meta(MakeHlc(1000, 2), "n1", false), w));           // not a tombstone
  EXPECT_TRUE(IsGcEligible(Meta(MakeHlc(5000, 0), "n1", false, 999), w));       // expired before
  EXPECT_FALSE(IsGcEligible(Meta(MakeHlc(1, 0), "n1", false, 1000), w));        // at ms(W)
  EXPECT_FALSE(IsGcEligible(Meta(MakeHlc(1, 0), "n1", false, 0), ~0ULL >> 1));  // never expires
}

TEST(AaeTreeTest, ToggleTwiceIsIdentity) {
  Tree t;
  const Tree empty;
  std::mt19937_64 rng(1);
  std::vector<std::pair<uint32_t, uint64_t>> entries;
  for (int i = 0; i < 1000; ++i) entries.emplace_back(rng() % kSegments, rng());
  for (auto [s, h] : entries) t.Toggle(s, h);
  ExpectConsistent(t);
  EXPECT_FALSE(t == empty);
  // Order does not matter.
  Tree u;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) u.Toggle(it->first, it->second);
  EXPECT_TRUE(t == u);
  EXPECT_EQ(t.Root(), u.Root());
  for (auto [s, h] : entries) t.Toggle(s, h);
  EXPECT_TRUE(t == empty);
  EXPECT_EQ(t.Root(), 0u);
  for (uint32_t b = 0; b < kBranches; ++b) EXPECT_EQ(t.branch(b), 0u);
}

TEST(AaeTreeTest, SetSegmentKeepsBranchesConsistent) {
  Tree t;
  std::mt19937_64 rng(2);
  for (int i = 0; i < 500; ++i) t.Toggle(rng() % kSegments, rng());
  for (int i = 0; i < 500; ++i) {
    uint32_t s = rng() % kSegments;
    uint64_t h = i % 3 == 0 ? 0 : rng();
    t.SetSegment(s, h);
    EXPECT_EQ(t.segment(s), h);
  }
  ExpectConsistent(t);
  uint64_t root = 0;
  for (uint32_t s = 0; s < kSegments; ++s) root ^= t.segment(s);
  EXPECT_EQ(t.Root(), root);
}

TEST(AaeTreeTest, EncodeDecodeRoundTrip) {
  Tree t;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 3000; ++i) t.Toggle(rng() % kSegments, rng());
  std::string data = t.Encode();
  EXPECT_EQ(data.size(), kSegments * 8);
  Tree u;
  u.Toggle(5, 5);
  ASSERT_TRUE(u.Decode(data).ok());
  EXPECT_TRUE(u == t);
  EXPECT_EQ(u.branches(), t.branches());
  // Little-endian, fixed layout: segment 0's low byte comes first.
  Tree one;
  one.SetSegment(0, 0x0102030405060708ULL);
  EXPECT_EQ(one.Encode().substr(0, 8), std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  EXPECT_FALSE(u.Decode(data.substr(1)).ok());
  EXPECT_FALSE(u.Decode("").ok());
}

TEST(DirtySetTest, MarkTakeAndPutBack) {
  DirtySet d;  // starts all dirty
  EXPECT_TRUE(d.Any());
  EXPECT_EQ(d.Count(), kSegments);
  auto all = d.TakeAll();
  for (uint64_t w : all) EXPECT_EQ(w, ~0ULL);
  EXPECT_FALSE(d.Any());
  EXPECT_EQ(d.Count(), 0u);
  d.Mark(0);
  d.Mark(4095);
  d.Mark(4095);
  d.Mark(700);
  EXPECT_EQ(d.Count(), 3u);
  auto bits = d.TakeAll();
  EXPECT_EQ(bits[0], 1u);
  EXPECT_EQ(bits[700 / 64], 1ULL << (700 % 64));
  EXPECT_EQ(bits[63], 1ULL << 63);
  EXPECT_EQ(d.Count(), 0u);
  d.Mark(1);
  d.MarkBitmap(bits);
  EXPECT_EQ(d.Count(), 4u);
  d.MarkAll();
  EXPECT_EQ(d.Count(), kSegments);
}

}  // namespace
}  // namespace ringkv::aae
