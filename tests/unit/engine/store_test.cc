#include "engine/store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/utilities/backup_engine.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "engine/lww.h"
#include "tests/util/store_fixture.h"

namespace ringkv {
namespace {

namespace fs = std::filesystem;

class StoreTest : public testutil::StoreFixture {
 protected:
  StoreOptions Options(std::string node = "n1", uint32_t partitions = 8) {
    StoreOptions o = StoreOptionsFor(std::move(node), partitions);
    o.wal_sync_interval_ms = 50;
    return o;
  }
  void OpenStore() { ASSERT_TRUE(Store::Open(Options(), &store_).ok()); }

  Record Rec(uint64_t ms, std::string value, std::string node = "n1") {
    Record r;
    r.version = {MakeHlc(ms, 0), std::move(node)};
    r.value = std::move(value);
    return r;
  }
  Record Tomb(uint64_t ms) {
    Record r = Rec(ms, "");
    r.tombstone = true;
    return r;
  }
  Record MustGet(uint32_t p, std::string_view key) {
    Record r;
    Status s = store_->Get(p, key, &r);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return r;
  }
};

TEST_F(StoreTest, WriteThenGet) {
  OpenStore();
  ASSERT_TRUE(store_->Write(3, "k", Rec(10, "\"v\"")).ok());
  EXPECT_EQ(MustGet(3, "k").value, "\"v\"");
  Record r;
  EXPECT_TRUE(store_->Get(3, "other", &r).IsNotFound());
  EXPECT_TRUE(store_->Get(5, "k", &r).IsNotFound());  // partition never written
}

TEST_F(StoreTest, GetMetaReadsTheVersionWithoutTheValue) {
  OpenStore();
  Record r = Rec(clock_.NowMs(), "\"a value\"");
  r.expires_at_ms = clock_.NowMs() + 5;
  ASSERT_TRUE(store_->Write(3, "k", r).ok());
  Record meta;
  meta.value = "untouched";
  ASSERT_TRUE(store_->GetMeta(3, "k", &meta).ok());
  EXPECT_EQ(meta.version, r.version);
  EXPECT_EQ(meta.expires_at_ms, r.expires_at_ms);
  EXPECT_FALSE(meta.tombstone);
  EXPECT_EQ(meta.value, "untouched");
  EXPECT_TRUE(store_->GetMeta(3, "missing", &meta).IsNotFound());
}

TEST_F(StoreTest, EnsurePartitionsCreatesFamiliesUpFront) {
  OpenStore();
  ASSERT_TRUE(store_->EnsurePartitions({1, 3, 5}).ok());
  ASSERT_TRUE(store_->EnsurePartitions({3, 5, 6}).ok());  // idempotent, adds 6
  EXPECT_FALSE(store_->EnsurePartitions({8}).ok());       // beyond Q = 8
  EXPECT_EQ(store_->Properties().partition_keys.size(), 4u);
  store_.reset();
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir() + "/db", &families).ok());
  for (const char* f : {"p0001", "p0003", "p0005", "p0006"}) {
    EXPECT_NE(std::find(families.begin(), families.end(), f), families.end()) << f;
  }
  OpenStore();
  ASSERT_TRUE(store_->Write(6, "k", Rec(1, "v")).ok());
  EXPECT_EQ(MustGet(6, "k").value, "v");
}

TEST_F(StoreTest, KeysMayHoldAnyBytes) {
  OpenStore();
  std::string key("a\0b", 3);
  ASSERT_TRUE(store_->Write(0, key, Rec(10, "1")).ok());
  EXPECT_EQ(MustGet(0, key).value, "1");
  Record r;
  EXPECT_TRUE(store_->Get(0, "a", &r).IsNotFound());
}

TEST_F(StoreTest, LastWriterWinsInAnyOrderAndAcrossFlushes) {
  OpenStore();
  // Older write arriving second, both in the memtable.
  ASSERT_TRUE(store_->Write(0, "a", Rec(20, "new")).ok());
  ASSERT_TRUE(store_->Write(0, "a", Rec(10, "old")).ok());
  EXPECT_EQ(MustGet(0, "a").value, "new");
  // Newer in an SST, older in the memtable.
  ASSERT_TRUE(store_->Write(0, "b", Rec(20, "new")).ok());
  ASSERT_TRUE(store_->TEST_FlushAll().ok());
  ASSERT_TRUE(store_->Write(0, "b", Rec(10, "old")).ok());
  EXPECT_EQ(MustGet(0, "b").value, "new");
  // Older compacted to the bottom, newer on top.
  ASSERT_TRUE(store_->Write(0, "c", Rec(10, "old")).ok());
  ASSERT_TRUE(store_->TEST_FlushAll().ok());
  ASSERT_TRUE(store_->TEST_CompactAll().ok());
  ASSERT_TRUE(store_->Write(0, "c", Rec(20, "new")).ok());
  EXPECT_EQ(MustGet(0, "c").value, "new");
  ASSERT_TRUE(store_->TEST_FlushAll().ok());
  ASSERT_TRUE(store_->TEST_CompactAll().ok());
  EXPECT_EQ(MustGet(0, "a").value, "new");
  EXPECT_EQ(MustGet(0, "b").value, "new");
  EXPECT_EQ(MustGet(0, "c").value, "new");
  // Equal HLCs: the greater node id wins.
  ASSERT_TRUE(store_->Write(0, "d", Rec(30, "from-n2", "n2")).ok());
  ASSERT_TRUE(store_->Write(0, "d", Rec(30, "from-n1", "n1")).ok());
  EXPECT_EQ(MustGet(0, "d").value, "from-n2");
}

TEST_F(StoreTest, TombstoneWinsOverOlderValue) {
  OpenStore();
  ASSERT_TRUE(store_->Write(1, "k", Rec(10, "v")).ok());
  ASSERT_TRUE(store_->Write(1, "k", Tomb(11)).ok());
  ASSERT_TRUE(store_->Write(1, "k", Rec(9, "older")).ok());
  EXPECT_TRUE(MustGet(1, "k").tombstone);
}

TEST_F(StoreTest, DataSurvivesReopen) {
  OpenStore();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(store_->Write(i % 8, "k" + std::to_string(i), Rec(10 + i, std::to_string(i))).ok());
  }
  store_.reset();
  OpenStore();
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(MustGet(i % 8, "k" + std::to_string(i)).value, std::to_string(i));
  EXPECT_GT(store_->KeysEstimate(), 0u);
}

// The greatest version written is kept with the records (LWW-merged, so the
// order in which batches land does not matter) and read back by Open().
TEST_F(StoreTest, RecordWatermarkIsTheNewestVersionWritten) {
  OpenStore();
  ASSERT_TRUE(store_->created());
  EXPECT_EQ(store_->RecordHlcWatermark(), 0u);
  Record a = Rec(30, "a"), b = Rec(20, "b"), c = Rec(25, "c");
  ASSERT_TRUE(store_->WriteMany({{1, "a", &a}, {2, "b", &b}}).ok());
  ASSERT_TRUE(store_->Write(3, "c", c).ok());  // older than the watermark: unchanged
  EXPECT_EQ(store_->RecordHlcWatermark(), MakeHlc(30, 0));
  store_.reset();
  OpenStore();
  EXPECT_EQ(store_->RecordHlcWatermark(), MakeHlc(30, 0));
  ASSERT_TRUE(store_->RaiseRecordHlcWatermark(MakeHlc(40, 0)).ok());
  ASSERT_TRUE(store_->RaiseRecordHlcWatermark(MakeHlc(35, 0)).ok());  // never lowered
  store_.reset();
  OpenStore();
  EXPECT_EQ(store_->RecordHlcWatermark(), MakeHlc(40, 0));
}

// A data dir written before the watermark was kept has none: it stays
// unknown (writes alone would make it too low) until a floor is raised.
TEST_F(StoreTest, RecordWatermarkIsUnknownForOlderDataUntilRaised) {
  OpenStore();
  Record a = Rec(50, "a");
  ASSERT_TRUE(store_->Write(1, "a", a).ok());
  store_.reset();
  {  // remove it, as a data dir of an older kvd lacks it
    rocksdb::DBOptions db_opts;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(db_opts, Options().path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    for (const std::string& n : names) {
      rocksdb::ColumnFamilyOptions cf;
      cf.merge_operator = NewLwwMergeOperator();
      descs.emplace_back(n, cf);
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(db_opts, Options().path, descs, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    auto meta = std::find(names.begin(), names.end(), "meta") - names.begin();
    ASSERT_LT(static_cast<size_t>(meta), names.size());
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), handles[meta], "record_hlc").ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
  }
  OpenStore();
  EXPECT_FALSE(store_->RecordHlcWatermark().has_value());
  Record b = Rec(20, "b");
  ASSERT_TRUE(store_->Write(2, "b", b).ok());
  EXPECT_FALSE(store_->RecordHlcWatermark().has_value());
  store_.reset();
  OpenStore();
  EXPECT_FALSE(store_->RecordHlcWatermark().has_value());
  ASSERT_TRUE(store_->RaiseRecordHlcWatermark(MakeHlc(60, 0)).ok());
  EXPECT_EQ(store_->RecordHlcWatermark(), MakeHlc(60, 0));
  Record c = Rec(70, "c");
  ASSERT_TRUE(store_->Write(3, "c", c).ok());
  store_.reset();
  OpenStore();
  EXPECT_EQ(store_->RecordHlcWatermark(), MakeHlc(70, 0));
}

TEST_F(StoreTest, RefusesDataDirOfAnotherNode) {
  OpenStore();
  store_.reset();
  Status s = Store::Open(Options("n2"), &store_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("belongs to node 'n1', not 'n2'"), std::string::npos) << s.message();
  s = Store::Open(Options("n1", 16), &store_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("8 partitions, not 16"), std::string::npos) << s.message();
  EXPECT_TRUE(Store::Open(Options("n1", 8), &store_).ok());
}

TEST_F(StoreTest, UnusableDataDirIsAClearError) {
  std::ofstream(dir() + "/file") << "x";
  StoreOptions o = Options();
  o.path = dir() + "/file/db";
  Status s = Store::Open(o, &store_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(o.path), std::string::npos) << s.message();
}

TEST_F(StoreTest, TombstonePurgedOnlyBelowTheWatermarkWithoutResurrection) {
  OpenStore();
  uint64_t now = clock_.NowMs();
  // An old value compacted to the bottom level, then a tombstone above it.
  ASSERT_TRUE(store_->Write(2, "k", Rec(now - 10, "old")).ok());
  ASSERT_TRUE(store_->TEST_FlushAll().ok());
  ASSERT_TRUE(store_->TEST_CompactAll().ok());
  ASSERT_TRUE(store_->Write(2, "k", Tomb(now)).ok());
  ASSERT_TRUE(store_->TEST_FlushAll().ok());
  // However much time passes, the tombstone stays while the watermark is not
  // above its version (equal is not above).
  clock_.Advance(365ULL * 24 * 3600 * 1000);
  ASSERT_TRUE(store_->CompactPartitions().ok());
  EXPECT_TRUE(MustGet(2, "k").tombstone);
  ASSERT_TRUE(store_->RaiseGcWatermark(2, MakeHlc(now, 0)).ok());
  ASSERT_TRUE(store_->CompactPartitions().ok());
  EXPECT_TRUE(MustGet(2, "k").tombstone);
  // Another partition's watermark does not purge it.
  ASSERT_TRUE(store_->RaiseGcWatermark(3, MakeHlc(now + 1, 0)).ok());
  ASSERT_TRUE(store_->CompactPartitions().ok());
  EXPECT_TRUE(MustGet(2, "k").tombstone);
  // Above it, the tombstone goes and the old value must not come back.
  ASSERT_TRUE(store_->RaiseGcWatermark(2, MakeHlc(now, 1)).ok());
  ASSERT_TRUE(store_->CompactPartitions().ok());
  Record r;
  Status s = store_->Get(2, "k", &r);
  EXPECT_TRUE(s.IsNotFound()) << (s.ok() ? r.value : s.ToString());
}

TEST_F(StoreTest, ExpiredRecordPurgedOnlyBelowTheWatermark) {
  OpenStore();
  const uint64_t expiry = clock_.NowMs() + 1000;
  Record r = Rec(clock_.NowMs(), "v");
  r.expires_at_ms = expiry;
  ASSERT_TRUE(store_->Write(0, "ttl", r).ok());
  ASSERT_TRUE(store_->TEST_FlushAll().ok());
  clock_.Advance(365ULL * 24 * 3600 * 1000);  // long expired: the clock alone purges nothing
  ASSERT_TRUE(store_->CompactPartitions().ok());
  EXPECT_EQ(MustGet(0, "ttl").value, "v");
  ASSERT_TRUE(store_->RaiseGcWatermark(0, MakeHlc(expiry, 0xffff)).ok());  // ms(W) == expiry
  ASSERT_TRUE(store_->CompactPartitions().ok());
  EXPECT_EQ(MustGet(0, "ttl").value, "v");
  ASSERT_TRUE(store_->RaiseGcWatermark(0, MakeHlc(expiry + 1, 0)).ok());
  ASSERT_TRUE(store_->CompactPartitions().ok());
  Record out;
  EXPECT_TRUE(store_->Get(0, "ttl", &out).IsNotFound());
}

TEST(PurgeTest, IsPurgeableRules) {
  Record live;
  live.version = {MakeHlc(1000, 5), "n1"};
  live.value = "1";
  EXPECT_FALSE(IsPurgeable(EncodeRecord(live), MakeHlc(1'000'000, 0)));
  Record tomb = live;
  tomb.tombstone = true;
  EXPECT_FALSE(IsPurgeable(EncodeRecord(tomb), 0));
  EXPECT_FALSE(IsPurgeable(EncodeRecord(tomb), MakeHlc(1000, 5)));
  EXPECT_TRUE(IsPurgeable(EncodeRecord(tomb), MakeHlc(1000, 6)));
  Record ttl = live;
  ttl.expires_at_ms = 2000;
  EXPECT_FALSE(IsPurgeable(EncodeRecord(ttl), MakeHlc(2000, 9)));
  EXPECT_TRUE(IsPurgeable(EncodeRecord(ttl), MakeHlc(2001, 0)));
  EXPECT_FALSE(IsPurgeable("corrupt", ~0ULL));
}

TEST_F(StoreTest, BackupIsConsistentAndRestorable) {
  OpenStore();
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(store_->Write(i % 8, "k" + std::to_string(i), Rec(10, std::to_string(i))).ok());
  }
  BackupResult first;
  ASSERT_TRUE(store_->Backup(dir() + "/bk", &first).ok());
  EXPECT_GT(first.bytes, 0u);
  ASSERT_TRUE(store_->Write(0, "after", Rec(11, "x")).ok());
  BackupResult second;
  ASSERT_TRUE(store_->Backup(dir() + "/bk", &second).ok());
  EXPECT_GT(second.backup_id, first.backup_id);

  // Restore the first backup elsewhere with RocksDB's own engine and open it.
  rocksdb::BackupEngineReadOnly* raw = nullptr;
  ASSERT_TRUE(rocksdb::BackupEngineReadOnly::Open(rocksdb::Env::Default(),
                                                  rocksdb::BackupEngineOptions(dir() + "/bk"), &raw)
                  .ok());
  std::unique_ptr<rocksdb::BackupEngineReadOnly> engine(raw);
  ASSERT_TRUE(
      engine->RestoreDBFromBackup(first.backup_id, dir() + "/restored", dir() + "/restored").ok());
  StoreOptions o = Options();
  o.path = dir() + "/restored";
  std::unique_ptr<Store> restored;
  ASSERT_TRUE(Store::Open(o, &restored).ok());
  for (int i = 0; i < 200; ++i) {
    Record r;
    ASSERT_TRUE(restored->Get(i % 8, "k" + std::to_string(i), &r).ok());
    EXPECT_EQ(r.value, std::to_string(i));
  }
  Record r;
  EXPECT_TRUE(restored->Get(0, "after", &r).IsNotFound());
}

TEST_F(StoreTest, HintsKeepNewestPerTargetAndKey) {
  OpenStore();
  ASSERT_TRUE(store_->PutHint("n2", "a", Rec(10, "old")).ok());
  ASSERT_TRUE(store_->PutHint("n2", "a", Rec(20, "new")).ok());
  ASSERT_TRUE(store_->PutHint("n2", "a", Rec(15, "middle")).ok());
  ASSERT_TRUE(store_->PutHint("n2", std::string("b\0c", 3), Rec(5, "x")).ok());
  ASSERT_TRUE(store_->PutHint("n3", "a", Rec(7, "for-n3")).ok());
  ASSERT_TRUE(store_->PutHint("n", "z", Rec(7, "prefix-of-n2")).ok());
  std::vector<Hint> hints;
  ASSERT_TRUE(store_->ListHints("n2", "", 10, &hints).ok());
  ASSERT_EQ(hints.size(), 2u);
  EXPECT_EQ(hints[0].key, "a");
  EXPECT_EQ(hints[0].record.value, "new");
  EXPECT_EQ(hints[1].key, std::string("b\0c", 3));
  EXPECT_EQ(hints[0].target, "n2");
  // Paging: after "a" comes only the second key.
  ASSERT_TRUE(store_->ListHints("n2", "a", 10, &hints).ok());
  ASSERT_EQ(hints.size(), 1u);
  EXPECT_EQ(hints[0].key, std::string("b\0c", 3));
  ASSERT_TRUE(store_->ListHints("n2", "", 1, &hints).ok());
  EXPECT_EQ(hints.size(), 1u);
  std::map<std::string, uint64_t> counts;
  ASSERT_TRUE(store_->CountHints(&counts).ok());
  EXPECT_EQ(counts, (std::map<std::string, uint64_t>{{"n", 1}, {"n2", 2}, {"n3", 1}}));
}

TEST_F(StoreTest, DeleteHintKeepsANewerHint) {
  OpenStore();
  ASSERT_TRUE(store_->PutHint("n2", "k", Rec(10, "v1")).ok());
  std::vector<Hint> hints;
  ASSERT_TRUE(store_->ListHints("n2", "", 10, &hints).ok());
  ASSERT_EQ(hints.size(), 1u);
  // While v1 is being delivered, a newer write for the same replica arrives.
  ASSERT_TRUE(store_->PutHint("n2", "k", Rec(11, "v2")).ok());
  bool removed = true;
  ASSERT_TRUE(store_->DeleteHint(hints[0], &removed).ok());
  EXPECT_FALSE(removed);
  ASSERT_TRUE(store_->ListHints("n2", "", 10, &hints).ok());
  ASSERT_EQ(hints.size(), 1u);
  EXPECT_EQ(hints[0].record.value, "v2");
  ASSERT_TRUE(store_->DeleteHint(hints[0], &removed).ok());
  EXPECT_TRUE(removed);
  ASSERT_TRUE(store_->ListHints("n2", "", 10, &hints).ok());
  EXPECT_TRUE(hints.empty());
  // Hints survive a restart.
  ASSERT_TRUE(store_->PutHint("n3", "q", Rec(12, "v")).ok());
  store_.reset();
  OpenStore();
  ASSERT_TRUE(store_->ListHints("n3", "", 10, &hints).ok());
  EXPECT_EQ(hints.size(), 1u);
}

TEST_F(StoreTest, RestoreVerifiesAndRefusesExistingData) {
  OpenStore();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(store_->Write(i % 8, "k" + std::to_string(i), Rec(10, std::to_string(i))).ok());
  }
  BackupResult first;
  ASSERT_TRUE(store_->Backup(dir() + "/bk", &first).ok());
  ASSERT_TRUE(store_->Write(0, "later", Rec(11, "x")).ok());
  BackupResult second;
  ASSERT_TRUE(store_->Backup(dir() + "/bk", &second).ok());

  RestoreResult r;
  // Into an existing database: refused.
  Status s = Store::Restore(dir() + "/bk", 0, dir() + "/db", "n1", &r);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest) << s.ToString();
  // As another node: refused, and nothing is left behind.
  s = Store::Restore(dir() + "/bk", 0, dir() + "/as-n2", "n2", &r);
  EXPECT_NE(s.message().find("belongs to node 'n1', not 'n2'"), std::string::npos) << s.ToString();
  EXPECT_FALSE(std::filesystem::exists(dir() + "/as-n2/CURRENT"));
  // A named backup restores exactly that backup.
  ASSERT_TRUE(Store::Restore(dir() + "/bk", first.backup_id, dir() + "/r1", "n1", &r).ok());
  EXPECT_EQ(r.backup_id, first.backup_id);
  StoreOptions o = Options();
  o.path = dir() + "/r1";
  std::unique_ptr<Store> restored;
  ASSERT_TRUE(Store::Open(o, &restored).ok());
  Record rec;
  EXPECT_TRUE(restored->Get(3, "k3", &rec).ok());
  EXPECT_TRUE(restored->Get(0, "later", &rec).IsNotFound());
  // A corrupted backup file fails verification.
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(dir() + "/bk/shared_checksum")) {
    if (e.path().extension() == ".sst") {
      std::ofstream(e.path(), std::ios::binary | std::ios::in) << "garbage!";
      break;
    }
  }
  s = Store::Restore(dir() + "/bk", second.backup_id, dir() + "/r2", "n1", &r);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("verification"), std::string::npos) << s.ToString();
}

// Backups of a live node flush the partitions one after another while writes
// continue; such a backup must restore, and hold every write acknowledged
// before it began.
TEST_F(StoreTest, BackupTakenDuringWritesRestores) {
  StoreOptions so = Options("n1", 16);
  ASSERT_TRUE(Store::Open(so, &store_).ok());
  // Only 4 of the 16 partitions exist before the writers start: the others'
  // families are created while backups run, which is what made RocksDB's
  // read-only open refuse the restored data.
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(store_->Write(i % 4, "before" + std::to_string(i), Rec(10, "v")).ok());
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (uint64_t i = 0; !stop.load() && i < 2'000'000; ++i) {
        ASSERT_TRUE(store_
                        ->Write(rng() % 16, "k" + std::to_string(rng() % 100000),
                                Rec(20 + i, std::string(100, 'x')))
                        .ok());
        writes.fetch_add(1);
      }
    });
  }
  std::vector<uint32_t> ids;
  for (int b = 0; b < 4; ++b) {
    // Let a few thousand writes land in the memtables before each backup.
    uint64_t target = writes.load() + 5000;
    for (int spin = 0; writes.load() < target && spin < 10'000'000; ++spin) {
      std::this_thread::yield();
    }
    BackupResult result;
    ASSERT_TRUE(store_->Backup(dir() + "/bk", &result).ok());
    ids.push_back(result.backup_id);
  }
  stop = true;
  for (auto& w : writers) w.join();
  for (uint32_t id : ids) {
    std::string target = dir() + "/restored-" + std::to_string(id);
    RestoreResult r;
    Status s = Store::Restore(dir() + "/bk", id, target, "n1", &r);
    ASSERT_TRUE(s.ok()) << "backup " << id << ": " << s.ToString();
    so.path = target;
    std::unique_ptr<Store> restored;
    ASSERT_TRUE(Store::Open(so, &restored).ok());
    for (int i = 0; i < 400; ++i) {
      Record rec;
      ASSERT_TRUE(restored->Get(i % 4, "before" + std::to_string(i), &rec).ok()) << i;
    }
  }
}

TEST_F(StoreTest, PropertiesReportRocksDbFigures) {
  OpenStore();
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(store_->Write(i % 2, "k" + std::to_string(i), Rec(10, std::string(100, 'v'))).ok());
  }
  StoreProperties before = store_->Properties();
  EXPECT_GT(before.memtable_bytes, 0u);
  EXPECT_GT(before.wal_bytes, 0u);
  EXPECT_EQ(before.block_cache_capacity_bytes, Options().block_cache_bytes);
  ASSERT_TRUE(store_->TEST_FlushAll().ok());
  StoreProperties after = store_->Properties();
  EXPECT_GT(after.sst_bytes, 0u);
  EXPECT_EQ(after.partition_keys.size(), 2u);
  EXPECT_EQ(after.partition_keys[0] + after.partition_keys[1], 500u);
}

TEST_F(StoreTest, WriteManyAppliesEveryWriteWithLastWriterWins) {
  OpenStore();
  Record a_new = Rec(20, "a-new"), a_old = Rec(10, "a-old"), b = Rec(5, "b"), c = Rec(7, "c");
  // Two writes of "a" in one batch, the newer first: the merge keeps it.
  ASSERT_TRUE(
      store_->WriteMany({{1, "a", &a_new}, {1, "a", &a_old}, {2, "b", &b}, {7, "c", &c}}).ok());
  EXPECT_EQ(MustGet(1, "a").value, "a-new");
  EXPECT_EQ(MustGet(2, "b").value, "b");
  EXPECT_EQ(MustGet(7, "c").value, "c");
  // All or nothing: a partition out of range refuses the whole batch.
  Record d = Rec(30, "d");
  EXPECT_FALSE(store_->WriteMany({{3, "d", &d}, {8, "e", &d}}).ok());
  Record r;
  EXPECT_TRUE(store_->Get(3, "d", &r).IsNotFound());
  EXPECT_TRUE(store_->WriteMany({}).ok());
}

// With 64 partitions, RocksDB's default memtable arena block (1 MiB each)
// charged the write-buffer budget in full after one write per partition, and
// every later write triggered a flush of a tiny memtable. A few thousand
// small writes (well under the 64 MiB budget) must not flush anything.
TEST_F(StoreTest, SmallWritesAcrossManyPartitionsDoNotFlush) {
  StoreOptions o = Options("n1", 64);
  o.write_buffer_bytes = 64ULL << 20;
  ASSERT_TRUE(Store::Open(o, &store_).ok());
  std::vector<uint32_t> all(64);
  for (uint32_t p = 0; p < 64; ++p) all[p] = p;
  ASSERT_TRUE(store_->EnsurePartitions(all).ok());
  for (int i = 0; i < 6400; ++i) {
    ASSERT_TRUE(
        store_->Write(i % 64, "k" + std::to_string(i), Rec(10, std::string(100, 'v'))).ok());
  }
  store_.reset();  // waits for any flush that was scheduled
  int ssts = 0;
  for (const auto& e : fs::directory_iterator(dir() + "/db")) {
    if (e.path().extension() == ".sst") ++ssts;
  }
  EXPECT_EQ(ssts, 0);
}

}  // namespace
}  // namespace ringkv
