// The Store's anti-entropy side: trees kept current by dirty marks and
// settles, the GC watermark and the purge it allows, the exchange's listings,
// persistence across clean and crash-like restarts, and node values.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/aae_tree.h"
#include "engine/store.h"
#include "tests/util/store_fixture.h"

namespace ringkv {
namespace {

constexpr uint32_t kPartitions = 4;

class StoreAaeTest : public testutil::StoreFixture {
 protected:
  StoreOptions Options() { return StoreOptionsFor("n1", kPartitions); }
  void Open() { OpenStore(Options()); }
  void Reopen(bool clean) {
    if (!clean) store_->TEST_SkipCleanClose();
    store_.reset();
    Open();
  }

  Record Rec(uint64_t hlc, std::string value, std::string node = "n1") {
    Record r;
    r.version = {hlc, std::move(node)};
    r.value = std::move(value);
    return r;
  }
  Record Tomb(uint64_t hlc) {
    Record r = Rec(hlc, "");
    r.tombstone = true;
    return r;
  }
  uint64_t Now() { return MakeHlc(clock_.NowMs(), 0); }

  aae::Tree MustTree(uint32_t p) {
    aae::Tree t;
    Status s = store_->AaeTree(p, &t);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return t;
  }
};

// A tree built from scratch: every record of `records` but the GC-eligible.
aae::Tree TreeOf(const std::map<std::string, Record>& records, uint64_t watermark) {
  aae::Tree t;
  for (const auto& [key, r] : records) {
    if (!aae::IsGcEligible(r, watermark)) t.Toggle(aae::SegmentOfKey(key), aae::EntryHash(key, r));
  }
  return t;
}

TEST_F(StoreAaeTest, EmptyAndUnwrittenPartitionsHaveTheEmptyTree) {
  Open();
  EXPECT_TRUE(store_->created());
  EXPECT_TRUE(MustTree(2) == aae::Tree());
  EXPECT_EQ(store_->AaeDirtySegments(2), 0u);
  ASSERT_TRUE(store_->EnsurePartitions({1}).ok());
  EXPECT_TRUE(MustTree(1) == aae::Tree());
  aae::Tree t;
  EXPECT_FALSE(store_->AaeTree(kPartitions, &t).ok());
}

TEST_F(StoreAaeTest, WritesMarkTheirSegmentAndSettleRecomputesOnlyThose) {
  Open();
  std::map<std::string, Record> model;
  for (int i = 0; i < 50; ++i) {
    std::string key = "k" + std::to_string(i);
    model[key] = Rec(Now() + i, "\"v\"");
    ASSERT_TRUE(store_->Write(0, key, model[key]).ok());
  }
  EXPECT_TRUE(MustTree(0) == TreeOf(model, 0));
  EXPECT_EQ(store_->AaeDirtySegments(0), 0u);
  model["k7"] = Rec(Now() + 100, "\"w\"");
  ASSERT_TRUE(store_->Write(0, "k7", model["k7"]).ok());
  EXPECT_EQ(store_->AaeDirtySegments(0), 1u);
  EXPECT_EQ(store_->AaeDirtySegments(1), 0u);
  EXPECT_TRUE(MustTree(0) == TreeOf(model, 0));
  // A write that loses its merge changes nothing, but still settles cleanly.
  ASSERT_TRUE(store_->Write(0, "k7", Rec(Now(), "\"old\"")).ok());
  EXPECT_TRUE(MustTree(0) == TreeOf(model, 0));
}

TEST_F(StoreAaeTest, WatermarkIsMonotonicPersistedAndMarksDirty) {
  Open();
  EXPECT_EQ(store_->GcWatermark(1), 0u);
  ASSERT_TRUE(store_->Write(1, "k", Rec(Now(), "1")).ok());
  MustTree(1);
  ASSERT_TRUE(store_->RaiseGcWatermark(1, 500).ok());
  EXPECT_EQ(store_->GcWatermark(1), 500u);
  EXPECT_EQ(store_->AaeDirtySegments(1), aae::kSegments);
  MustTree(1);
  ASSERT_TRUE(store_->RaiseGcWatermark(1, 400).ok());  // lower: ignored
  EXPECT_EQ(store_->GcWatermark(1), 500u);
  EXPECT_EQ(store_->AaeDirtySegments(1), 0u);
  EXPECT_EQ(store_->GcWatermark(2), 0u);
  EXPECT_FALSE(store_->RaiseGcWatermark(kPartitions, 1).ok());
  Reopen(/*clean=*/false);
  EXPECT_EQ(store_->GcWatermark(1), 500u);
  EXPECT_EQ(store_->GcWatermark(0), 0u);
}

TEST_F(StoreAaeTest, PurgeFollowsTheWatermarkAndLeavesTreesEqual) {
  Open();
  const uint64_t t0 = Now();
  std::map<std::string, Record> model;
  model["old-tomb"] = Tomb(t0 + 1);
  model["new-tomb"] = Tomb(t0 + 10);
  model["live"] = Rec(t0 + 2, "1");
  Record ttl = Rec(t0 + 3, "2");
  ttl.expires_at_ms = clock_.NowMs() + 5;
  model["ttl"] = ttl;
  // The old tombstone hides a value compacted below it.
  ASSERT_TRUE(store_->Write(0, "old-tomb", Rec(t0, "hidden")).ok());
  ASSERT_TRUE(store_->CompactPartitions().ok());
  for (const auto& [k, r] : model) ASSERT_TRUE(store_->Write(0, k, r).ok());
  const uint64_t w = t0 + 5;  // above old-tomb, below new-tomb; ms(w) is before the expiry
  ASSERT_TRUE(store_->RaiseGcWatermark(0, w).ok());
  const aae::Tree before = MustTree(0);
  EXPECT_TRUE(before == TreeOf(model, w));
  ASSERT_TRUE(store_->CompactPartitions().ok());
  Record r;
  EXPECT_TRUE(store_->Get(0, "old-tomb", &r).IsNotFound());
  ASSERT_TRUE(store_->Get(0, "new-tomb", &r).ok());
  EXPECT_TRUE(r.tombstone);
  EXPECT_TRUE(store_->Get(0, "live", &r).ok());
  EXPECT_TRUE(store_->Get(0, "ttl", &r).ok());  // expired by the clock, not by the watermark
  ASSERT_TRUE(store_->RaiseGcWatermark(0, w + 1).ok());  // re-settles the whole partition
  EXPECT_TRUE(MustTree(0) == before);
  // The watermark passes the expiry: the TTL record leaves the tree, then the disk.
  const uint64_t w2 = MakeHlc(ttl.expires_at_ms + 1, 0);
  ASSERT_TRUE(store_->RaiseGcWatermark(0, w2).ok());
  const aae::Tree after_ttl = MustTree(0);
  EXPECT_TRUE(after_ttl == TreeOf(model, w2));
  EXPECT_FALSE(after_ttl == before);
  ASSERT_TRUE(store_->CompactPartitions().ok());
  EXPECT_TRUE(store_->Get(0, "ttl", &r).IsNotFound());
  ASSERT_TRUE(store_->RaiseGcWatermark(0, w2 + 1).ok());
  EXPECT_TRUE(MustTree(0) == after_ttl);
}

TEST_F(StoreAaeTest, ListKeysBySegmentWithLimit) {
  Open();
  std::map<std::string, Record> model;
  for (int i = 0; i < 300; ++i) {
    std::string key = "key-" + std::to_string(i);
    model[key] = i % 10 == 0 ? Tomb(Now() + i) : Rec(Now() + 1000 + i, "\"x\"");
    ASSERT_TRUE(store_->Write(3, key, model[key]).ok());
  }
  const uint64_t w = Now() + 150;  // tombstones of i < 150 are GC-eligible
  ASSERT_TRUE(store_->RaiseGcWatermark(3, w).ok());
  std::vector<uint32_t> segments;
  for (const auto& [k, r] : model) {
    if (segments.size() < 40) segments.push_back(aae::SegmentOfKey(k));
  }
  std::vector<aae::KeyVersion> want;
  for (const auto& [k, r] : model) {
    if (std::find(segments.begin(), segments.end(), aae::SegmentOfKey(k)) == segments.end()) {
      continue;
    }
    if (aae::IsGcEligible(r, w)) continue;
    Record meta = r;
    meta.value.clear();
    want.push_back({k, meta});
  }
  ASSERT_GT(want.size(), 10u);
  std::vector<aae::KeyVersion> got;
  bool truncated = true;
  ASSERT_TRUE(store_->AaeListKeys(3, segments, 1000, &got, &truncated).ok());
  EXPECT_FALSE(truncated);
  EXPECT_EQ(got, want);
  ASSERT_TRUE(store_->AaeListKeys(3, segments, want.size(), &got, &truncated).ok());
  EXPECT_FALSE(truncated);
  EXPECT_EQ(got, want);
  ASSERT_TRUE(store_->AaeListKeys(3, segments, 5, &got, &truncated).ok());
  EXPECT_TRUE(truncated);
  EXPECT_EQ(got, std::vector<aae::KeyVersion>(want.begin(), want.begin() + 5));
  ASSERT_TRUE(store_->AaeListKeys(3, {}, 10, &got, &truncated).ok());
  EXPECT_TRUE(got.empty());
  ASSERT_TRUE(store_->AaeListKeys(2, segments, 10, &got, &truncated).ok());  // no family
  EXPECT_TRUE(got.empty());
  EXPECT_FALSE(store_->AaeListKeys(3, {aae::kSegments}, 10, &got, &truncated).ok());
}

TEST_F(StoreAaeTest, ScanRecordsPagesByKeysAndBytes) {
  Open();
  std::map<std::string, Record> model;
  for (int i = 0; i < 100; ++i) {
    std::string key = "key-" + std::to_string(1000 + i);
    model[key] =
        i % 7 == 0 ? Tomb(Now() + i) : Rec(Now() + 1000 + i, std::string(10, 'a' + i % 26));
    ASSERT_TRUE(store_->Write(1, key, model[key]).ok());
  }
  const uint64_t w = Now() + 50;
  ASSERT_TRUE(store_->RaiseGcWatermark(1, w).ok());
  std::vector<std::pair<std::string, Record>> want;
  for (const auto& [k, r] : model) {
    if (!aae::IsGcEligible(r, w)) want.emplace_back(k, r);
  }
  for (auto [keys, bytes] : {std::pair<size_t, size_t>{7, 1 << 20}, {1000, 35}, {1, 0}}) {
    std::vector<std::pair<std::string, Record>> all, page;
    std::string after, next;
    int calls = 0;
    do {
      ASSERT_TRUE(store_->AaeScanRecords(1, after, keys, bytes, &page, &next).ok());
      ASSERT_LE(page.size(), keys);
      if (!next.empty()) {
        ASSERT_EQ(next, page.back().first);
      }
      all.insert(all.end(), page.begin(), page.end());
      after = next;
      ASSERT_LT(++calls, 200);
    } while (!next.empty());
    EXPECT_EQ(all, want) << keys << " keys, " << bytes << " bytes";
  }
  std::vector<std::pair<std::string, Record>> page;
  std::string next = "x";
  ASSERT_TRUE(store_->AaeScanRecords(1, "", 1000, 1 << 20, &page, &next).ok());
  EXPECT_EQ(page.size(), want.size());
  EXPECT_EQ(next, "");  // reached the end
  ASSERT_TRUE(store_->AaeScanRecords(1, "", 10, 25, &page, &next).ok());
  EXPECT_EQ(page.size(), 3u);  // 10-byte values: stops once 25 bytes were taken
  ASSERT_TRUE(store_->AaeScanRecords(2, "", 10, 25, &page, &next).ok());  // no family
  EXPECT_TRUE(page.empty());
}

TEST_F(StoreAaeTest, CleanCloseKeepsTreesAndCrashMarksAllDirty) {
  Open();
  std::map<std::string, Record> model;
  for (int i = 0; i < 40; ++i) {
    std::string key = "k" + std::to_string(i);
    model[key] = Rec(Now() + i, "1");
    ASSERT_TRUE(store_->Write(0, key, model[key]).ok());
  }
  const aae::Tree settled = MustTree(0);
  model["late"] = Rec(Now() + 99, "2");
  ASSERT_TRUE(store_->Write(0, "late", model["late"]).ok());  // dirty at close
  Reopen(/*clean=*/true);
  EXPECT_FALSE(store_->created());
  EXPECT_EQ(store_->AaeDirtySegments(0), 1u);
  EXPECT_TRUE(MustTree(0) == TreeOf(model, 0));
  EXPECT_FALSE(MustTree(0) == settled);
  // The marker was consumed: a crash now must not reuse the saved trees.
  Reopen(/*clean=*/false);
  EXPECT_EQ(store_->AaeDirtySegments(0), aae::kSegments);
  EXPECT_TRUE(MustTree(0) == TreeOf(model, 0));
  Reopen(/*clean=*/false);
  EXPECT_EQ(store_->AaeDirtySegments(0), aae::kSegments);
}

TEST_F(StoreAaeTest, NodeValuesRoundTripAndSurviveReopen) {
  Open();
  std::string v;
  EXPECT_TRUE(store_->GetNodeValue("epoch", &v).IsNotFound());
  ASSERT_TRUE(store_->PutNodeValue("epoch", "7").ok());
  ASSERT_TRUE(store_->PutNodeValue("map", std::string("a\0b", 3)).ok());
  ASSERT_TRUE(store_->GetNodeValue("epoch", &v).ok());
  EXPECT_EQ(v, "7");
  Reopen(/*clean=*/false);
  EXPECT_FALSE(store_->created());
  ASSERT_TRUE(store_->GetNodeValue("map", &v).ok());
  EXPECT_EQ(v, std::string("a\0b", 3));
  ASSERT_TRUE(store_->DeleteNodeValue("epoch").ok());
  EXPECT_TRUE(store_->GetNodeValue("epoch", &v).IsNotFound());
  // Not confused with the store's own meta keys.
  EXPECT_TRUE(store_->GetNodeValue("node_id", &v).IsNotFound());
  Reopen(/*clean=*/true);
  EXPECT_TRUE(store_->GetNodeValue("epoch", &v).IsNotFound());
  ASSERT_TRUE(store_->GetNodeValue("map", &v).ok());
}

// The property the exchange depends on: after any sequence of writes,
// overwrites (older and newer), deletes, expiries, watermark raises,
// compactions (purges) and restarts (clean or crash-like), each partition's
// settled tree equals one built from scratch from what the partition holds.
// A store that skips a dirty mark, or persists or loads trees or dirty bits
// wrongly, fails it.
class StoreAaePropertyTest : public StoreAaeTest, public ::testing::WithParamInterface<uint32_t> {};

TEST_P(StoreAaePropertyTest, TreeMatchesAReferenceModel) {
  Open();
  std::mt19937_64 rng(GetParam());
  auto pick = [&](uint64_t n) { return rng() % n; };
  // model[p][key]: the newest record written (GC-eligible ones included).
  std::vector<std::map<std::string, Record>> model(kPartitions);
  std::vector<uint64_t> watermark(kPartitions, 0);
  uint64_t logical = 0;
  auto fresh = [&] { return MakeHlc(clock_.NowMs(), ++logical & kHlcLogicalMask); };
  const char* nodes[] = {"n1", "n2", "n3"};
  constexpr int kKeys = 80;
  constexpr int kOps = 300;

  auto write = [&](std::vector<std::pair<uint32_t, std::pair<std::string, Record>>> batch) {
    std::vector<PartitionWrite> writes;
    for (auto& [p, kr] : batch) writes.push_back({p, kr.first, &kr.second});
    ASSERT_TRUE(store_->WriteMany(writes).ok());
    for (auto& [p, kr] : batch) {
      auto it = model[p].find(kr.first);
      if (it == model[p].end() || kr.second.version > it->second.version) {
        model[p][kr.first] = kr.second;
      }
    }
  };

  for (int op = 0; op < kOps; ++op) {
    clock_.Advance(pick(30));
    const uint64_t kind = pick(100);
    std::string what;
    if (kind < 64) {
      what = "write";
      std::vector<std::pair<uint32_t, std::pair<std::string, Record>>> batch;
      const uint64_t n = 1 + pick(3);
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t k = pick(kKeys);
        const uint32_t p = static_cast<uint32_t>(k % kPartitions);
        std::string key = "key-" + std::to_string(k);
        Record r;
        r.version = {fresh(), nodes[pick(3)]};
        auto cur = model[p].find(key);
        // Older than what the key holds: it must lose. Only while that
        // record cannot have been purged (a purge lets an older write in,
        // which is exactly what the watermark protocol rules out).
        if (cur != model[p].end() && pick(4) == 0 &&
            !aae::IsGcEligible(cur->second, watermark[p]) && cur->second.version.hlc > 1) {
          r.version.hlc = cur->second.version.hlc - 1 - pick(cur->second.version.hlc - 1);
        }
        const uint64_t shape = pick(10);
        if (shape < 2) {
          r.tombstone = true;
        } else {
          r.value = "\"" + std::to_string(rng()) + "\"";
          if (shape < 4) r.expires_at_ms = clock_.NowMs() + 1 + pick(300);
        }
        batch.push_back({p, {key, r}});
      }
      write(std::move(batch));
    } else if (kind < 76) {
      what = "raise";
      const uint32_t p = static_cast<uint32_t>(pick(kPartitions));
      const uint64_t w = MakeHlc(clock_.NowMs() - std::min<uint64_t>(clock_.NowMs(), pick(400)), 0);
      ASSERT_TRUE(store_->RaiseGcWatermark(p, w).ok());
      watermark[p] = std::max(watermark[p], w);
      ASSERT_EQ(store_->GcWatermark(p), watermark[p]);
    } else if (kind < 82) {
      what = "compact";
      ASSERT_TRUE(store_->CompactPartitions().ok());
    } else if (kind < 86) {
      what = "flush";
      ASSERT_TRUE(store_->TEST_FlushAll().ok());
    } else if (kind < 92) {
      what = "settle one";  // a settle between writes, then more writes
      MustTree(static_cast<uint32_t>(pick(kPartitions)));
    } else if (kind < 96) {
      what = "clean restart";
      std::vector<size_t> dirty;
      for (uint32_t p = 0; p < kPartitions; ++p) dirty.push_back(store_->AaeDirtySegments(p));
      Reopen(/*clean=*/true);
      // The trees and the dirty bits come back as they were.
      for (uint32_t p = 0; p < kPartitions; ++p)
        ASSERT_EQ(store_->AaeDirtySegments(p), dirty[p]) << p;
    } else {
      what = "crash restart";
      Reopen(/*clean=*/false);
      for (uint32_t p = 0; p < kPartitions; ++p) {
        // All dirty, but for a partition never written (it has no family).
        ASSERT_EQ(store_->AaeDirtySegments(p), model[p].empty() ? 0 : aae::kSegments) << p;
      }
    }
    // Most steps end with a check (which settles every tree); the others
    // leave dirty segments for the next steps (and restarts) to carry.
    if (pick(3) == 0 && op + 1 < kOps) continue;
    for (uint32_t p = 0; p < kPartitions; ++p) {
      for (uint32_t p2 = 0; p2 < kPartitions; ++p2)
        ASSERT_EQ(store_->GcWatermark(p2), watermark[p2]);
      ASSERT_TRUE(MustTree(p) == TreeOf(model[p], watermark[p]))
          << "seed " << GetParam() << " op " << op << " (" << what << ") partition " << p;
    }
  }
  // Purged records are really gone and the rest are there.
  ASSERT_TRUE(store_->CompactPartitions().ok());
  for (uint32_t p = 0; p < kPartitions; ++p) {
    for (const auto& [key, r] : model[p]) {
      Record got;
      Status s = store_->GetMeta(p, key, &got);
      if (aae::IsGcEligible(r, watermark[p])) {
        EXPECT_TRUE(s.IsNotFound()) << key;
      } else {
        ASSERT_TRUE(s.ok()) << key;
        EXPECT_EQ(got.version, r.version) << key;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, StoreAaePropertyTest, ::testing::Values(1u, 2u, 3u, 4u));

}  // namespace
}  // namespace ringkv
