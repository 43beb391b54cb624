// A full disk under a real kvd (PROTOCOL §8 "Disk full"): the data dir is on a
// 64 MiB tmpfs that a 16 MiB ballast file and the writes fill up. Needs root
// (mount); skipped otherwise.
//
// Checks: every write is answered ok or internal "no space" (never timeout,
// never another code); an ok after a failure only once the store has resumed
// (stats.disk.resumes counts each return to writing); kvd keeps running and
// reads of acknowledged keys work while the disk is full; once the ballast is
// deleted writes succeed again by themselves, without a restart; after a
// SIGKILL and a restart on the same dir every acknowledged write reads back
// with its value. Then the disk is filled again and kvd SIGKILLed while it
// refuses writes: a restart on the full disk may be refused (one clear line),
// and once space is freed it starts with every acknowledged write.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringkv::itest {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kTmpfsSize[] = "size=64m,mode=0755";
constexpr size_t kBallastBytes = 16ULL << 20;
constexpr int kValueBytes = 2000;
// Bounds of the filling phase: writes and time.
constexpr int kMaxWrites = 200000;
constexpr auto kFillDeadline = std::chrono::seconds(120);
// The disk counts as full once this many writes in a row were refused while
// the store reports its write error state.
constexpr int kFailuresInARow = 100;
constexpr auto kResumeDeadline = std::chrono::seconds(30);

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A tmpfs mounted at `dir`, unmounted (lazily if busy) when this goes away.
// Kills `kvd` first if it still runs, so the unmount is not busy.
class TmpfsMount {
 public:
  TmpfsMount(std::string dir, KvdProcess* kvd) : dir_(std::move(dir)), kvd_(kvd) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, kTmpfsSize) != 0) {
      error_ = std::string("mount tmpfs on ") + dir_ + ": " + std::strerror(errno);
    } else {
      mounted_ = true;
    }
  }
  ~TmpfsMount() {
    if (!mounted_) return;
    if (kvd_->running()) kvd_->Kill(SIGKILL);
    if (::umount2(dir_.c_str(), 0) != 0 && ::umount2(dir_.c_str(), MNT_DETACH) != 0) {
      ADD_FAILURE() << "cannot unmount " << dir_ << ": " << std::strerror(errno);
    }
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  KvdProcess* kvd_;
  bool mounted_ = false;
  std::string error_;
};

// Writes `bytes` of real (not sparse) data to `path`.
bool WriteBallast(const std::string& path, size_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::string block(1 << 20, 'b');
  bool ok = true;
  for (size_t done = 0; ok && done < bytes; done += block.size()) {
    ok = ::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size());
  }
  return ::close(fd) == 0 && ok;
}

std::string Key(int i) { return "full-" + std::to_string(i); }

// A value that LZ4 barely compresses, different for every key.
std::string Value(int i) {
  std::string v;
  v.reserve(kValueBytes);
  uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(i + 1);
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  while (v.size() < static_cast<size_t>(kValueBytes)) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v.push_back(kAlphabet[x % 64]);
  }
  return v;
}

bool IsNoSpaceError(const Json& r) {
  return r.is_object() && r.value("ok", true) == false && r.contains("error") &&
         r["error"].value("code", "") == "internal" &&
         r["error"].value("message", "").find("no space") != std::string::npos;
}

std::string CodeOf(const Json& r) {
  if (!r.is_object()) return "not_json";
  if (r.contains("harness_error")) return "harness_error";
  if (r.value("ok", false)) return "ok";
  if (r.contains("error") && r["error"].is_object()) return r["error"].value("code", "?");
  return "?";
}

Json DiskStats(KvdProcess* kvd) {
  Json s = kvd->Call({{"op", "stats"}});
  if (!s.contains("stats") || !s["stats"].contains("disk")) return Json::object();
  return s["stats"]["disk"];
}

TEST(DiskFullTest, FullDiskRefusesWritesKeepsReadsAndResumesWithNothingLost) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to mount a tmpfs for the data dir (CI runs as root)";
  }
  // A small memtable budget: when the disk fills, what must be flushed to
  // resume (at most the memtables) fits in the space the ballast frees.
  KvdProcess kvd({"--write-buffer-mb", "16"});
  const std::string fs_dir = kvd.dir() + "/fs";
  TmpfsMount mount(fs_dir, &kvd);
  ASSERT_TRUE(mount.mounted()) << mount.error();
  const std::string ballast = fs_dir + "/ballast";
  ASSERT_TRUE(WriteBallast(ballast, kBallastBytes));
  std::error_code ec;
  fs::create_directories(fs_dir + "/db", ec);
  ASSERT_FALSE(ec) << ec.message();
  fs::create_directory_symlink(fs_dir + "/db", kvd.data_dir(), ec);  // the harness's data dir
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(kvd.Start());

  std::map<int, std::string> acked;  // key index -> value
  std::map<std::string, int> failures;
  int i = 0;  // the next key

  // Writes new keys until the store refuses writes for good (kFailuresInARow
  // in a row with stats.disk.write_error set); checks every answer.
  struct Fill {
    int attempted = 0, first_failure = -1, fail_to_ok = 0;
    bool in_error = false;
    double seconds = 0;
  };
  auto fill = [&](Fill* f) {
    int in_a_row = 0;
    const int resumes_before = DiskStats(&kvd).value("resumes", 0);
    const auto start = Clock::now();
    for (int n = 0; n < kMaxWrites && Clock::now() - start < kFillDeadline; ++n, ++i) {
      std::string value = Value(i);
      Json r = kvd.Call({{"op", "put"}, {"key", Key(i)}, {"value", value}});
      ++f->attempted;
      if (r.value("ok", false)) {
        acked[i] = value;
        if (in_a_row > 0) {
          // Writing again after refusals: only once the store resumed (RocksDB
          // may free space by itself, e.g. deleting files a compaction replaced).
          ++f->fail_to_ok;
          Json disk = DiskStats(&kvd);
          EXPECT_GE(disk.value("resumes", 0), resumes_before + f->fail_to_ok)
              << "write " << i << " acknowledged after refusals without a resume: " << disk.dump();
        }
        in_a_row = 0;
        f->in_error = false;
        continue;
      }
      ++failures[CodeOf(r)];
      ASSERT_NE(CodeOf(r), "harness_error")
          << "kvd stopped answering at write " << i << ": " << r.dump();
      EXPECT_TRUE(IsNoSpaceError(r)) << "write " << i << ": " << r.dump().substr(0, 300);
      if (f->first_failure < 0) f->first_failure = i;
      if (++in_a_row >= kFailuresInARow) {
        if (!f->in_error) f->in_error = DiskStats(&kvd).value("write_error", false);
        if (f->in_error) {
          ++i;
          break;
        }
      }
    }
    f->seconds = Seconds(Clock::now() - start);
    ASSERT_GE(f->first_failure, 0) << "the disk never filled in " << f->attempted << " writes";
    ASSERT_TRUE(f->in_error) << "no " << kFailuresInARow
                             << " refusals in a row with write_error set";
  };
  // Every acknowledged write reads back with its value; returns how many did not.
  auto count_lost = [&] {
    int lost = 0;
    for (const auto& [k, v] : acked) {
      Json r = kvd.Call({{"op", "get"}, {"key", Key(k)}});
      if (!IsOk(r) || r.value("found", false) != true || r["value"] != v) {
        if (++lost <= 5) ADD_FAILURE() << "lost " << Key(k) << ": " << r.dump().substr(0, 200);
      }
    }
    return lost;
  };

  // 1. Fill the disk.
  Fill first;
  fill(&first);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  ASSERT_TRUE(kvd.running()) << "kvd died when the disk filled";

  Json disk = DiskStats(&kvd);
  EXPECT_TRUE(disk.value("write_error", false)) << disk.dump();
  EXPECT_NE(disk.value("write_error_message", "").find("no space"), std::string::npos)
      << disk.dump();
  EXPECT_GT(disk.value("write_error_since_ms", 0), 0) << disk.dump();

  // Reads go on while the disk is full: a spread of acknowledged keys.
  int reads = 0;
  const int step = std::max<int>(1, static_cast<int>(acked.size()) / 500);
  int n = 0;
  for (const auto& [k, v] : acked) {
    if (n++ % step != 0 && k != acked.rbegin()->first) continue;
    Json r = kvd.Call({{"op", "get"}, {"key", Key(k)}});
    ASSERT_TRUE(IsOk(r)) << Key(k);
    ASSERT_EQ(r.value("found", false), true) << Key(k);
    ASSERT_EQ(r["value"], v) << Key(k);
    ++reads;
  }
  // Still refused: nothing was freed.
  Json again = kvd.Call({{"op", "put"}, {"key", "probe-full"}, {"value", "x"}});
  EXPECT_TRUE(IsNoSpaceError(again)) << again.dump();
  if (!again.value("ok", false)) ++failures[CodeOf(again)];

  // Free space: writes resume by themselves.
  ASSERT_TRUE(fs::remove(ballast, ec)) << ec.message();
  const auto freed_at = Clock::now();
  int probes = 0;
  bool resumed = WaitFor(
      [&] {
        Json r = kvd.Call({{"op", "put"},
                           {"key", "probe-" + std::to_string(probes)},
                           {"value", "after the ballast went"}});
        ++probes;
        if (!r.value("ok", false)) {
          ++failures[CodeOf(r)];
          EXPECT_TRUE(IsNoSpaceError(r)) << r.dump().substr(0, 300);
        }
        return r.value("ok", false);
      },
      std::chrono::duration_cast<milliseconds>(kResumeDeadline));
  const double resume_s = Seconds(Clock::now() - freed_at);
  ASSERT_TRUE(resumed) << "writes did not resume within " << Seconds(kResumeDeadline)
                       << " s of freeing space: " << DiskStats(&kvd).dump();
  for (int m = 0; m < 200; ++m, ++i) {  // keys after the last one the fill tried
    std::string value = Value(i);
    Json r = kvd.Call({{"op", "put"}, {"key", Key(i)}, {"value", value}});
    ASSERT_TRUE(IsOk(r)) << "write " << i << " after resuming";
    acked[i] = value;
  }
  disk = DiskStats(&kvd);
  EXPECT_FALSE(disk.value("write_error", true)) << disk.dump();
  EXPECT_GE(disk.value("resumes", 0), 1) << disk.dump();
  std::string log = kvd.ReadLog();
  EXPECT_NE(log.find("[store] writes refused"), std::string::npos);
  EXPECT_NE(log.find("[store] writes resumed"), std::string::npos);

  // 2. Nothing acknowledged is lost across a SIGKILL and a restart.
  kvd.Kill(SIGKILL);
  ASSERT_TRUE(kvd.Restart());
  const int lost = count_lost();
  EXPECT_EQ(lost, 0);

  // 3. Full again, and SIGKILL while writes are refused. A restart on the full
  // disk may be refused (RocksDB flushes the WAL when it opens), with one
  // clear line; once space is freed it starts, and nothing acknowledged is lost.
  struct statvfs vfs;
  ASSERT_EQ(::statvfs(fs_dir.c_str(), &vfs), 0);
  const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  ASSERT_TRUE(WriteBallast(ballast, free_bytes > (2u << 20) ? free_bytes - (2u << 20) : 0));
  Fill second;
  fill(&second);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  kvd.Kill(SIGKILL);
  ::testing::AssertionResult full_start = kvd.Start();
  if (!full_start) {
    EXPECT_NE(kvd.LogTail(4096).find("no space left on device"), std::string::npos)
        << full_start.message();
  } else {
    kvd.Kill(SIGKILL);
  }
  ASSERT_TRUE(fs::remove(ballast, ec)) << ec.message();
  ASSERT_TRUE(kvd.Start());
  const int lost_after_kill_while_full = count_lost();
  EXPECT_EQ(lost_after_kill_while_full, 0);

  std::string by_code;
  for (const auto& [code, count] : failures) by_code += " " + code + "=" + std::to_string(count);
  std::printf(
      "disk full: %d writes filled it in %.2f s (first refusal at write %d); %d reads while "
      "full; %d acknowledged after refusals (each after a resume); time to resume after "
      "freeing 16 MiB: %.2f s (%d probes); resumes=%d; lost after SIGKILL=%d\n"
      "full again: %d writes in %.2f s; restart while full %s; lost after SIGKILL while "
      "full=%d\n"
      "total: %zu acknowledged, failures by code:%s\n",
      first.attempted, first.seconds, first.first_failure, reads, first.fail_to_ok, resume_s,
      probes, disk.value("resumes", 0), lost, second.attempted, second.seconds,
      full_start ? "started" : "refused", lost_after_kill_while_full, acked.size(),
      by_code.c_str());
}

}  // namespace
}  // namespace ringkv::itest
