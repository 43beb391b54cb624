#include "engine/record_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "engine/store.h"
#include "tests/util/store_fixture.h"

namespace ringkv {
namespace {

Record Rec(uint64_t hlc, std::string value) {
  Record r;
  r.version = {hlc, "n1"};
  r.value = std::move(value);
  return r;
}

void Put(RecordCache& c, const std::string& key, const Record& r) {
  c.Fill(key, r, c.BeginFill(key));
}

TEST(RecordCacheTest, HitAndMissAreCounted) {
  RecordCache c(1 << 20, 0);
  EXPECT_EQ(c.Lookup("a"), nullptr);
  Put(c, "a", Rec(1, "x"));
  auto r = c.Lookup("a");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->value, "x");
  EXPECT_EQ(c.hits(), 1u);
  EXPECT_EQ(c.misses(), 1u);
}

TEST(RecordCacheTest, EvictsLeastRecentlyUsedByBytes) {
  std::string v(100, 'v');
  size_t per = RecordCache::Charge("k0", Rec(1, v));
  RecordCache c(per * 3, 0);  // room for exactly three entries
  Put(c, "k0", Rec(1, v));
  Put(c, "k1", Rec(1, v));
  Put(c, "k2", Rec(1, v));
  ASSERT_NE(c.Lookup("k0"), nullptr);  // k0 becomes most recent; k1 is now the oldest
  Put(c, "k3", Rec(1, v));
  EXPECT_EQ(c.Lookup("k1"), nullptr);
  EXPECT_NE(c.Lookup("k0"), nullptr);
  EXPECT_NE(c.Lookup("k2"), nullptr);
  EXPECT_NE(c.Lookup("k3"), nullptr);
  EXPECT_EQ(c.bytes(), per * 3);
  EXPECT_LE(c.bytes(), c.capacity_bytes());
}

TEST(RecordCacheTest, OversizedRecordIsNotCached) {
  RecordCache c(200, 0);
  Put(c, "big", Rec(1, std::string(500, 'x')));
  EXPECT_EQ(c.Lookup("big"), nullptr);
  EXPECT_EQ(c.bytes(), 0u);
}

TEST(RecordCacheTest, ZeroCapacityCachesNothing) {
  RecordCache c(0);
  Put(c, "a", Rec(1, "x"));
  c.OnWrite("a", Rec(2, "y"));
  EXPECT_EQ(c.Lookup("a"), nullptr);
}

TEST(RecordCacheTest, WritesOnlyRaiseCachedVersions) {
  RecordCache c(1 << 20, 0);
  c.OnWrite("absent", Rec(5, "x"));  // never inserts: the store may hold newer
  EXPECT_EQ(c.Lookup("absent"), nullptr);
  Put(c, "k", Rec(5, "five"));
  c.OnWrite("k", Rec(3, "three"));
  EXPECT_EQ(c.Lookup("k")->value, "five");
  c.OnWrite("k", Rec(7, "seven"));
  EXPECT_EQ(c.Lookup("k")->value, "seven");
}

TEST(RecordCacheTest, FillRacingWithWriteIsDropped) {
  RecordCache c(1 << 20, 0);
  uint64_t token = c.BeginFill("k");  // reader misses and reads the store: sees v1
  c.OnWrite("k", Rec(2, "v2"));       // meanwhile a writer stores v2
  c.Fill("k", Rec(1, "v1"), token);   // the reader's stale fill must not land
  EXPECT_EQ(c.Lookup("k"), nullptr);
  Put(c, "k", Rec(2, "v2"));
  EXPECT_EQ(c.Lookup("k")->value, "v2");
}

TEST(RecordCacheTest, ManyKeysStayFindableAsTheTableGrows) {
  RecordCache c(64 << 20, 2);
  constexpr int kKeys = 20000;
  for (int i = 0; i < kKeys; ++i) Put(c, "key" + std::to_string(i), Rec(1, std::to_string(i)));
  EXPECT_EQ(c.entries(), size_t{kKeys});
  for (int i = 0; i < kKeys; i += 2) c.Erase("key" + std::to_string(i));
  EXPECT_EQ(c.entries(), size_t{kKeys / 2});
  size_t bytes = 0;
  for (int i = 0; i < kKeys; ++i) {
    std::string key = "key" + std::to_string(i);
    auto r = c.Lookup(key);
    if (i % 2 == 0) {
      EXPECT_EQ(r, nullptr) << key;
    } else {
      ASSERT_NE(r, nullptr) << key;
      EXPECT_EQ(r->value, std::to_string(i));
      bytes += RecordCache::Charge(key, *r);
    }
  }
  EXPECT_EQ(c.bytes(), bytes);
}

TEST(RecordCacheTest, ReadKeysGetASecondChanceOverAStreamOfNewOnes) {
  std::string v(100, 'v');
  // Room for "hot" and seven of the last (two-digit) cold keys.
  RecordCache c(
      RecordCache::Charge("hot", Rec(1, v)) + 7 * RecordCache::Charge("cold00", Rec(1, v)), 0);
  Put(c, "hot", Rec(1, v));
  for (int i = 0; i < 100; ++i) {
    ASSERT_NE(c.Lookup("hot"), nullptr) << "evicted after " << i << " inserts";
    Put(c, "cold" + std::to_string(i), Rec(1, v));
    EXPECT_LE(c.bytes(), c.capacity_bytes());
  }
  // A key that is not read again is evicted within one turn of the ring.
  EXPECT_EQ(c.Lookup("cold0"), nullptr);
  EXPECT_EQ(c.entries(), 8u);
}

TEST(RecordCacheTest, ARecordHeldByAReaderOutlivesItsRemoval) {
  RecordCache c(1 << 20, 0);
  Put(c, "k0", Rec(1, "first"));
  Put(c, "k1", Rec(1, "one"));
  std::shared_ptr<const Record> erased = c.Lookup("k0");
  std::shared_ptr<const Record> replaced = c.Lookup("k1");
  ASSERT_NE(erased, nullptr);
  ASSERT_NE(replaced, nullptr);
  c.Erase("k0");
  c.OnWrite("k1", Rec(2, "two"));  // a new node takes the old one's place
  EXPECT_EQ(c.Lookup("k0"), nullptr);
  EXPECT_EQ(c.Lookup("k1")->value, "two");
  EXPECT_EQ(erased->value, "first");
  EXPECT_EQ(replaced->value, "one");
  EXPECT_EQ(replaced->version.hlc, 1u);
}

TEST(RecordCacheTest, EraseRemoves) {
  RecordCache c(1 << 20);
  Put(c, "k", Rec(1, "x"));
  c.Erase("k");
  EXPECT_EQ(c.Lookup("k"), nullptr);
  EXPECT_EQ(c.entries(), 0u);
}

// A record source with last-writer-wins semantics: the real Store, or (for
// ThreadSanitizer runs, which cannot see inside the uninstrumented librocksdb)
// an in-memory model of it.
struct Backing {
  std::function<void(const std::string&, const Record&)> write;
  std::function<bool(const std::string&, Record*)> read;
};

// Many threads write out-of-order versions of a few keys through `backing`
// and the cache, as the node does, while readers check that a lookup never
// returns a version older than one whose write had already completed.
void RunCoherenceStress(const Backing& backing) {
  // Tiny capacity so that entries are evicted and refilled all the time.
  RecordCache cache(RecordCache::Charge("key0", Rec(1, "123456")) * 3, 1);
  constexpr int kKeys = 4, kWriters = 4, kReaders = 4, kWritesPerThread = 1500;
  std::atomic<uint64_t> next_version{1};
  std::vector<std::atomic<uint64_t>> completed(kKeys);  // newest version whose write returned
  std::atomic<int> violations{0};
  std::atomic<bool> done{false};

  auto read = [&](const std::string& key) -> uint64_t {
    if (auto r = cache.Lookup(key)) return r->version.hlc;
    uint64_t token = cache.BeginFill(key);
    Record r;
    if (!backing.read(key, &r)) return 0;
    cache.Fill(key, r, token);
    return r.version.hlc;
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(w);
      for (int i = 0; i < kWritesPerThread; ++i) {
        int k = rng() % kKeys;
        std::string key = "key" + std::to_string(k);
        // Take a version, then maybe let others overtake it: writes land out of order.
        uint64_t v = next_version.fetch_add(1);
        if (rng() % 4 == 0) std::this_thread::yield();
        Record rec = Rec(v, std::to_string(v));
        backing.write(key, rec);
        cache.OnWrite(key, rec);
        uint64_t prev = completed[k].load();
        while (prev < v && !completed[k].compare_exchange_weak(prev, v)) {
        }
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(100 + r);
      while (!done.load()) {
        int k = rng() % kKeys;
        uint64_t floor = completed[k].load();
        uint64_t got = read("key" + std::to_string(k));
        if (got < floor) violations.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < kWriters; ++i) threads[i].join();
  done = true;
  for (size_t i = kWriters; i < threads.size(); ++i) threads[i].join();

  EXPECT_EQ(violations.load(), 0);
  for (int k = 0; k < kKeys; ++k) {
    std::string key = "key" + std::to_string(k);
    Record stored;
    ASSERT_TRUE(backing.read(key, &stored));
    EXPECT_EQ(stored.version.hlc, completed[k].load());
    if (auto cached = cache.Lookup(key)) {
      EXPECT_EQ(cached->version, stored.version);
    }
  }
  EXPECT_GT(cache.hits(), 0u);
}

TEST(RecordCacheTest, NeverOlderThanStoreUnderConcurrentWriters) {
  testutil::ScopedTempDir dir("ringkv-cache");
  StoreOptions so = testutil::SmallStoreOptions(dir.path(), "n1", 1);
  std::unique_ptr<Store> store;
  ASSERT_TRUE(Store::Open(so, &store).ok());
  RunCoherenceStress(
      {[&](const std::string& k, const Record& r) { ASSERT_TRUE(store->Write(0, k, r).ok()); },
       [&](const std::string& k, Record* r) { return store->Get(0, k, r).ok(); }});
  store.reset();
}

TEST(RecordCacheTest, NeverOlderThanModelUnderConcurrentWriters) {
  std::mutex mu;
  std::map<std::string, Record> model;  // guarded by mu; keeps the newest version
  RunCoherenceStress({[&](const std::string& k, const Record& r) {
                        std::lock_guard<std::mutex> l(mu);
                        Record& cur = model[k];
                        if (cur.version < r.version) cur = r;
                      },
                      [&](const std::string& k, Record* r) {
                        std::lock_guard<std::mutex> l(mu);
                        auto it = model.find(k);
                        if (it == model.end()) return false;
                        *r = it->second;
                        return true;
                      }});
}

}  // namespace
}  // namespace ringkv
