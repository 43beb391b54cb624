// Store on a disk that fills up, without root: a RocksDB FileSystem wrapper
// whose writes fail with NoSpace (what PosixWritableFile returns for ENOSPC)
// while the test says the disk is full. The real tmpfs version is
// tests/integration/disk_full_test.cc.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "engine/store.h"

namespace ringkv {
namespace {

namespace fs = std::filesystem;
using rocksdb::FileOptions;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

// A file system that can be "full": then every append to a file fails with
// NoSpace (retryable, as PosixWritableFile makes it) and GetFreeSpace() says 0.
class FillableFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FillableFs(const std::shared_ptr<rocksdb::FileSystem>& base)
      : rocksdb::FileSystemWrapper(base) {}
  const char* Name() const override { return "FillableFs"; }

  void set_full(bool full) { full_.store(full); }
  bool full() const { return full_.load(); }
  // Appends refused so far.
  uint64_t refused() const { return refused_.load(); }

  IOStatus NewWritableFile(const std::string& f, const FileOptions& o,
                           std::unique_ptr<FSWritableFile>* r, IODebugContext* d) override {
    IOStatus s = target()->NewWritableFile(f, o, r, d);
    if (s.ok()) r->reset(new File(std::move(*r), this));
    return s;
  }
  IOStatus ReopenWritableFile(const std::string& f, const FileOptions& o,
                              std::unique_ptr<FSWritableFile>* r, IODebugContext* d) override {
    IOStatus s = target()->ReopenWritableFile(f, o, r, d);
    if (s.ok()) r->reset(new File(std::move(*r), this));
    return s;
  }
  IOStatus ReuseWritableFile(const std::string& f, const std::string& old, const FileOptions& o,
                             std::unique_ptr<FSWritableFile>* r, IODebugContext* d) override {
    IOStatus s = target()->ReuseWritableFile(f, old, o, r, d);
    if (s.ok()) r->reset(new File(std::move(*r), this));
    return s;
  }
  IOStatus GetFreeSpace(const std::string& path, const IOOptions& o, uint64_t* free,
                        IODebugContext* d) override {
    if (full()) {
      *free = 0;
      return IOStatus::OK();
    }
    return target()->GetFreeSpace(path, o, free, d);
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<FSWritableFile>&& f, FillableFs* fs)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs) {}
    IOStatus Append(const Slice& d, const IOOptions& o, IODebugContext* g) override {
      if (fs_->full()) return fs_->NoSpace();
      return target()->Append(d, o, g);
    }
    IOStatus Append(const Slice& d, const IOOptions& o, const rocksdb::DataVerificationInfo& v,
                    IODebugContext* g) override {
      if (fs_->full()) return fs_->NoSpace();
      return target()->Append(d, o, v, g);
    }
    IOStatus PositionedAppend(const Slice& d, uint64_t off, const IOOptions& o,
                              IODebugContext* g) override {
      if (fs_->full()) return fs_->NoSpace();
      return target()->PositionedAppend(d, off, o, g);
    }
    IOStatus PositionedAppend(const Slice& d, uint64_t off, const IOOptions& o,
                              const rocksdb::DataVerificationInfo& v, IODebugContext* g) override {
      if (fs_->full()) return fs_->NoSpace();
      return target()->PositionedAppend(d, off, o, v, g);
    }

   private:
    FillableFs* const fs_;
  };

  IOStatus NoSpace() {
    refused_.fetch_add(1);
    IOStatus s = IOStatus::NoSpace("While appending to file", "No space left on device");
    s.SetRetryable(true);
    return s;
  }

  std::atomic<bool> full_{false};
  std::atomic<uint64_t> refused_{0};
};

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

bool HasNoSpace(const Status& s) {
  return s.code() == Status::Code::kInternal && s.message().find("no space") != std::string::npos;
}

class StoreDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ringkv-diskfull-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs_ = std::make_shared<FillableFs>(rocksdb::FileSystem::Default());
    env_ = rocksdb::NewCompositeEnv(fs_);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  StoreOptions Options() {
    StoreOptions o;
    o.path = dir_ + "/db";
    o.node_id = "n1";
    o.partitions = 4;
    o.wal_sync_interval_ms = 5;  // many syncs while the disk is full
    o.resume_interval_ms = 10;
    o.env = env_.get();
    return o;
  }
  void Open() { ASSERT_TRUE(Store::Open(Options(), &store_).ok()); }

  static Record Rec(uint64_t ms, const std::string& value) {
    Record r;
    r.version = {MakeHlc(ms, 0), "n1"};
    r.value = value;
    return r;
  }
  static std::string Value(int i) { return "\"value-" + std::to_string(i) + "\""; }
  Status Put(int i) {
    return store_->Write(i % 4, "k" + std::to_string(i), Rec(1000 + i, Value(i)));
  }
  // Every key in `acked` reads back with its value.
  void ExpectAllThere(const std::map<int, bool>& acked) {
    for (const auto& [i, ok] : acked) {
      if (!ok) continue;
      Record r;
      ASSERT_TRUE(store_->Get(i % 4, "k" + std::to_string(i), &r).ok()) << i;
      EXPECT_EQ(r.value, Value(i)) << i;
    }
  }
  // Waits until the background thread tried Resume() `n` more times, proof that
  // it kept running (and syncing) while the disk was full.
  void WaitForResumeAttempts(uint64_t n) {
    uint64_t start = store_->Properties().resume_attempts;
    ASSERT_TRUE(WaitFor([&] { return store_->Properties().resume_attempts >= start + n; },
                        std::chrono::seconds(10)));
  }

  std::string dir_;
  std::shared_ptr<FillableFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
};

// The WAL append of a write fails: that write and every later one until space
// is freed fail with "no space"; reads go on; the WAL sync thread keeps
// running without touching the failed WAL (RocksDB 7.8 aborts on that); once
// space is back, writes resume without a reopen and nothing acknowledged is
// lost across a reopen.
TEST_F(StoreDiskFullTest, WalAppendFailsThenWritesResumeByThemselves) {
  Open();
  std::map<int, bool> acked;
  int i = 0;
  for (; i < 200; ++i) {
    ASSERT_TRUE(Put(i).ok());
    acked[i] = true;
  }
  EXPECT_FALSE(store_->Properties().write_error);
  EXPECT_TRUE(fs::exists(dir_ + "/db/LOG"));  // RocksDB's info log, the store's logger

  fs_->set_full(true);
  for (int n = 0; n < 50; ++n, ++i) {
    Status s = Put(i);
    EXPECT_TRUE(HasNoSpace(s)) << s.ToString();
    acked[i] = s.ok();
  }
  EXPECT_GT(fs_->refused(), 0u);
  StoreProperties p = store_->Properties();
  EXPECT_TRUE(p.write_error);
  EXPECT_NE(p.write_error_message.find("no space"), std::string::npos) << p.write_error_message;
  EXPECT_GT(p.write_error_since_ms, 0u);
  EXPECT_EQ(p.write_errors, 1u);
  WaitForResumeAttempts(3);
  ExpectAllThere(acked);  // reads go on
  BackupResult backup;
  Status bs = store_->Backup(dir_ + "/backup", &backup);
  EXPECT_TRUE(HasNoSpace(bs)) << bs.ToString();
  EXPECT_TRUE(HasNoSpace(store_->TEST_FlushAll()));
  Status still = Put(i++);
  EXPECT_TRUE(HasNoSpace(still)) << still.ToString();

  fs_->set_full(false);
  ASSERT_TRUE(WaitFor([&] { return !store_->Properties().write_error; }, std::chrono::seconds(10)));
  p = store_->Properties();
  EXPECT_EQ(p.resumes, 1u);
  EXPECT_EQ(p.write_error_message, "");
  for (int n = 0; n < 100; ++n, ++i) {
    ASSERT_TRUE(Put(i).ok()) << i;
    acked[i] = true;
  }
  ExpectAllThere(acked);
  EXPECT_TRUE(store_->Backup(dir_ + "/backup", &backup).ok());

  store_.reset();
  Open();
  ExpectAllThere(acked);
  EXPECT_FALSE(store_->Properties().write_error);
}

// A flush that runs out of space is a hard error too: writes are refused (with
// the flush's error) until the space is back, then resume.
TEST_F(StoreDiskFullTest, FlushFailsThenWritesResume) {
  StoreOptions o = Options();
  o.wal_sync_interval_ms = 0;  // no WAL append of its own while the disk is full
  ASSERT_TRUE(Store::Open(o, &store_).ok());
  std::map<int, bool> acked;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(Put(i).ok());
    acked[i] = true;
  }
  fs_->set_full(true);
  Status fl = store_->TEST_FlushAll();
  EXPECT_TRUE(HasNoSpace(fl)) << fl.ToString();
  ASSERT_TRUE(WaitFor([&] { return store_->Properties().write_error; }, std::chrono::seconds(10)));
  std::string message = store_->Properties().write_error_message;
  EXPECT_EQ(message.find("no space left on device: flush failed"), 0u) << message;
  Status s = Put(100);
  EXPECT_TRUE(HasNoSpace(s)) << s.ToString();
  ExpectAllThere(acked);

  fs_->set_full(false);
  ASSERT_TRUE(WaitFor([&] { return !store_->Properties().write_error; }, std::chrono::seconds(10)));
  ASSERT_TRUE(Put(101).ok());
  acked[101] = true;
  store_.reset();
  ASSERT_TRUE(Store::Open(o, &store_).ok());
  ExpectAllThere(acked);
}

// Writers and the sync thread race against the disk filling up and being
// freed, three times: no crash, no write reported ok while the disk was full
// for all of it, and everything acknowledged is there after a reopen.
TEST_F(StoreDiskFullTest, ConcurrentWritersWhileTheDiskFills) {
  Open();
  constexpr int kThreads = 4;
  constexpr int kMaxPerThread = 200000;  // a bound; the rounds end long before
  std::vector<std::map<int, bool>> acked(kThreads);
  std::atomic<int> bad{0}, ok{0}, failed{0};
  std::atomic<bool> stop{false};
  // Even while the disk's state is settled, odd while it changes.
  std::atomic<uint64_t> epoch{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < kMaxPerThread && !stop.load(); ++n) {
        int i = t * kMaxPerThread + n;
        uint64_t e1 = epoch.load();
        bool was_full = fs_->full();
        Status s = Put(i);
        uint64_t e2 = epoch.load();
        acked[t][i] = s.ok();
        (s.ok() ? ok : failed).fetch_add(1);
        if (!s.ok() && !HasNoSpace(s)) bad.fetch_add(1);
        if (s.ok() && was_full && e1 == e2 && e1 % 2 == 0) bad.fetch_add(1);
      }
    });
  }
  auto set_full = [&](bool full) {
    epoch.fetch_add(1);
    fs_->set_full(full);
    epoch.fetch_add(1);
  };
  int rounds = 0;
  for (int round = 1; round <= 3; ++round) {
    // Writes flow again, then the disk fills until RocksDB refuses writes and
    // a few hundred more were refused, then it is freed.
    int before = ok.load();
    ASSERT_TRUE(
        WaitFor([&] { return !store_->Properties().write_error && ok.load() >= before + 100; },
                std::chrono::seconds(20)));
    uint64_t refused = fs_->refused();
    set_full(true);
    EXPECT_TRUE(
        WaitFor([&] { return store_->Properties().write_error; }, std::chrono::seconds(20)));
    EXPECT_GT(fs_->refused(), refused);
    before = failed.load();
    EXPECT_TRUE(WaitFor([&] { return failed.load() >= before + 200; }, std::chrono::seconds(20)));
    set_full(false);
    ++rounds;
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(rounds, 3);
  ASSERT_TRUE(WaitFor([&] { return !store_->Properties().write_error; }, std::chrono::seconds(10)));
  Status last = Put(kThreads * kMaxPerThread);
  ASSERT_TRUE(last.ok()) << last.ToString();
  StoreProperties p = store_->Properties();
  EXPECT_GE(p.write_errors, 3u);
  EXPECT_EQ(p.write_errors, p.resumes);
  std::printf("acknowledged %d writes, refused %d; entered write error %llu times, resumed %llu\n",
              ok.load(), failed.load(), static_cast<unsigned long long>(p.write_errors),
              static_cast<unsigned long long>(p.resumes));
  store_.reset();
  Open();
  for (const auto& m : acked) ExpectAllThere(m);
}

}  // namespace
}  // namespace ringkv
