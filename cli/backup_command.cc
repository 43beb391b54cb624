// `kvctl cluster-backup` and `kvctl restore`: see backup_command.h.
#include "cli/backup_command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cli/cluster_table.h"
#include "cli/format.h"
#include "engine/status.h"
#include "engine/store.h"

namespace ringkv::kvctl {

using namespace cli;  // NOLINT(build/namespaces): the formatting helpers
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// kvctl cluster-backup DEST (scripts/kv-backup).

constexpr char kManifest[] = "manifest.json";

std::string IsoTimeUtc(std::chrono::system_clock::time_point when) {
  std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Seconds(SteadyClock::duration d) {
  return Printf("%.1f s", std::chrono::duration<double>(d).count());
}

// Writes `content` to path.tmp, fsyncs it, renames it over `path` and fsyncs
// the directory: readers see the old file, no file, or the whole new one.
std::string WriteFileAtomically(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "cannot create " + tmp.string() + ": " + std::strerror(errno);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string err = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return "cannot write " + tmp.string() + ": " + err;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return "cannot sync " + tmp.string() + ": " + err;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return "cannot rename " + tmp.string() + ": " + err;
  }
  int dir_fd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);  // best effort: the rename is done either way
    ::close(dir_fd);
  }
  return "";
}

// Progress of one long step on stderr. On a terminal the line shows the
// elapsed time, updated every second; elsewhere (logs, pipes) only the
// finished line is written.
class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), start_(SteadyClock::now()) {
    tty_ = ::isatty(STDERR_FILENO) == 1;
    if (!tty_) return;
    std::cerr << what_ << "..." << std::flush;
    ticker_ = std::thread([this] {
      std::unique_lock<std::mutex> l(mu_);
      while (!cv_.wait_for(l, std::chrono::seconds(1), [this] { return done_; })) {
        std::cerr << "\r\033[K" << what_ << "... " << Seconds(SteadyClock::now() - start_)
                  << std::flush;
      }
    });
  }
  ~Progress() { Stop(); }

  // Ends the line with `result` ("12.3 MiB, backup 4").
  void Finish(const std::string& result) {
    Stop();
    std::cerr << (tty_ ? "\r\033[K" : "") << what_ << "... " << result << " ("
              << Seconds(SteadyClock::now() - start_) << ")\n"
              << std::flush;
  }

 private:
  void Stop() {
    if (!ticker_.joinable()) return;
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    ticker_.join();
  }

  std::string what_;
  SteadyClock::time_point start_;
  bool tty_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread ticker_;
};

// Total size of the regular files under `dir`; nullopt if it is not a
// directory here.
std::optional<uint64_t> DirBytes(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  uint64_t total = 0;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      uintmax_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

int BackupFailed(const std::string& message, const fs::path& previous) {
  std::cerr << "kvctl: backup failed: " << message << "; no manifest written";
  std::error_code ec;
  if (fs::exists(previous, ec))
    std::cerr << " (the earlier one is kept as " << previous.string() << ")";
  std::cerr << "\n";
  return kExitError;
}

// The map's members from a `cluster` response: id, address and state.
nlohmann::ordered_json MapMembers(const json& cluster) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const json& n : cluster.value("nodes", json::array())) {
    out.push_back(
        {{"id", Field(n, "id")}, {"address", Field(n, "address")}, {"state", Field(n, "state")}});
  }
  return out;
}

int RunClusterBackup(const Invocation& inv) {
  std::error_code ec;
  fs::path dest = fs::absolute(inv.args[0], ec).lexically_normal();
  if (ec || inv.args[0].empty() || !IsValidUtf8(dest.string())) {
    return UsageError("bad DEST '" + inv.args[0] + "'");
  }
  if (!dest.has_filename() && dest.has_parent_path()) dest = dest.parent_path();
  const fs::path manifest_path = dest / kManifest;
  const fs::path previous = dest / (std::string(kManifest) + ".previous");
  const auto started_at = std::chrono::system_clock::now();
  const auto started = SteadyClock::now();

  // First of all, a manifest from an earlier run must not describe this one
  // if it fails: set it aside (it stays valid for the earlier backups, which
  // BackupEngine keeps).
  if (fs::exists(manifest_path, ec)) {
    fs::rename(manifest_path, previous, ec);
    if (ec) {
      return BackupFailed("cannot set aside " + manifest_path.string() + ": " + ec.message(),
                          previous);
    }
  }

  // The members, as the node we were pointed at knows them.
  int timeout_ms = inv.timeout_ms.value_or(kDefaultTimeoutMs);
  json cluster;
  std::string err = CallNode(inv.host, inv.security, {{"op", "cluster"}}, timeout_ms, &cluster);
  if (!err.empty()) return BackupFailed("node at " + inv.host + ": " + err, previous);
  std::vector<Member> members;
  std::string why;
  if (!ParseMembers(cluster, &members, &why))
    return BackupFailed(why + " (" + inv.host + ")", previous);
  // Members that left hold nothing and may be gone.
  members.erase(std::remove_if(members.begin(), members.end(),
                               [](const Member& m) { return m.state == "left"; }),
                members.end());
  std::optional<double> partitions = Number(cluster, "partitions");
  std::optional<double> replicas = Number(cluster, "replicas");
  if (!partitions || !replicas) {
    return BackupFailed("the cluster response of " + inv.host + " lacks partitions or replicas",
                        previous);
  }

  // Every member must answer before any is backed up, so that a node known to
  // be down fails the run at once instead of after the others' backups.
  for (const Member& m : members) {
    json pong;
    err = CallNode(m.address, inv.security, {{"op", "ping"}}, timeout_ms, &pong);
    if (err.empty() && Field(pong, "node") != m.id) {
      err = "answers as node '" + Field(pong, "node") + "'";
    }
    if (!err.empty())
      return BackupFailed("node " + m.id + " (" + m.address + "): " + err, previous);
  }

  fs::create_directories(dest, ec);
  if (ec) return BackupFailed("cannot create " + dest.string() + ": " + ec.message(), previous);
  fs::remove(dest / (std::string(kManifest) + ".tmp"), ec);
  std::cerr << "backing up " << Nodes(members.size()) << " of the cluster of " << inv.host
            << " into " << dest.string() << "\n";

  nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
  double total_bytes = 0;
  int backup_timeout_ms = inv.timeout_ms.value_or(kDefaultBackupTimeoutMs);
  for (const Member& m : members) {
    fs::path dir = dest / m.id;
    auto node_started = SteadyClock::now();
    std::string taken_at = IsoTimeUtc(std::chrono::system_clock::now());
    // The node writes DEST/<id> on its own machine; when that is visible here
    // too, its growth shows how much this (incremental) backup copied.
    std::optional<uint64_t> size_before = DirBytes(dir);
    Progress progress("backing up " + m.id + " (" + m.address + ")");
    json resp;
    err = CallNode(m.address, inv.security, {{"op", "backup"}, {"dir", dir.string()}},
                   backup_timeout_ms, &resp);
    std::optional<double> bytes = Number(resp, "bytes"), id = Number(resp, "backup_id");
    if (err.empty() && (!bytes || !id || *id < 1)) err = "malformed backup response " + resp.dump();
    if (!err.empty()) {
      progress.Finish("failed");
      return BackupFailed("node " + m.id + " (" + m.address + "): " + err, previous);
    }
    std::optional<uint64_t> size_after = DirBytes(dir);
    std::string copied;
    if (size_after) {
      uint64_t before = size_before.value_or(0);
      copied = ", " +
               HumanBytes(static_cast<double>(*size_after > before ? *size_after - before : 0)) +
               " copied";
    }
    progress.Finish(HumanBytes(*bytes) + ", backup " + Integer(*id) + copied);
    total_bytes += *bytes;
    nodes.push_back({{"id", m.id},
                     {"address", m.address},
                     {"backup_id", static_cast<uint32_t>(*id)},
                     {"bytes", static_cast<uint64_t>(*bytes)},
                     {"dir", dir.string()},
                     {"taken_at", taken_at},
                     {"duration_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                         SteadyClock::now() - node_started)
                                         .count()}});
  }

  nlohmann::ordered_json manifest = {
      {"format", 1},
      {"created_at", IsoTimeUtc(started_at)},
      {"completed_at", IsoTimeUtc(std::chrono::system_clock::now())},
      {"cluster_via", inv.host},
      {"partitions", static_cast<uint32_t>(*partitions)},
      {"replicas", static_cast<uint32_t>(*replicas)},
      // The cluster map the backups hold (each node's copy is in its
      // backup): its epoch and members, as the node asked knew them.
      {"epoch", static_cast<uint64_t>(Number(cluster, "epoch").value_or(0))},
      {"members", MapMembers(cluster)},
      {"total_bytes", static_cast<uint64_t>(total_bytes)},
      {"nodes", nodes},
  };
  err = WriteFileAtomically(manifest_path, manifest.dump(2) + "\n");
  if (!err.empty()) return BackupFailed(err, previous);
  if (inv.json_output) {
    std::cout << manifest.dump() << "\n";
  } else {
    std::cout << "backup of " << Nodes(members.size()) << " (" << HumanBytes(total_bytes)
              << ") complete in " << Seconds(SteadyClock::now() - started) << ": "
              << manifest_path.string() << "\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------
// kvctl restore DEST NODE_ID DATA_DIR (scripts/kv-restore).

int RestoreFailed(const std::string& node, const std::string& message, bool refused = false) {
  std::cerr << "kvctl: restore of " << node << (refused ? " refused: " : " failed: ") << message
            << "\n";
  return kExitError;
}

// Reads DEST/manifest.json; "" or why it cannot be used.
std::string ReadManifest(const fs::path& path, json* out) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    fs::path previous = path;
    previous += ".previous";
    if (fs::exists(previous, ec)) {
      return path.string() + " does not exist: the last backup into this directory failed (the " +
             "manifest of the one before is " + previous.string() + "; rename it to " +
             path.filename().string() + " to restore that backup)";
    }
    return path.string() + " does not exist (not a kv-backup directory, or its backup did not " +
           "complete)";
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "cannot read " + path.string() + ": " + std::strerror(errno);
  std::string text;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) text.append(buf, n);
  std::fclose(f);
  *out = json::parse(text, nullptr, false);
  if (out->is_discarded() || !out->is_object() || !out->contains("nodes") ||
      !(*out)["nodes"].is_array()) {
    return path.string() + " is not a valid backup manifest";
  }
  return "";
}

int RunRestore(const Invocation& inv) {
  const std::string& node_id = inv.args[1];
  if (!ValidNodeId(node_id)) return UsageError("bad NODE_ID '" + node_id + "'");
  std::error_code ec;
  fs::path dest = fs::absolute(inv.args[0], ec).lexically_normal();
  if (ec || inv.args[0].empty()) return UsageError("bad DEST '" + inv.args[0] + "'");
  fs::path data_dir = fs::absolute(inv.args[2], ec).lexically_normal();
  if (ec || inv.args[2].empty()) return UsageError("bad DATA_DIR '" + inv.args[2] + "'");
  if (!data_dir.has_filename() && data_dir.has_parent_path()) data_dir = data_dir.parent_path();

  json manifest;
  if (std::string err = ReadManifest(dest / kManifest, &manifest); !err.empty()) {
    return RestoreFailed(node_id, err);
  }
  const json* entry = nullptr;
  std::string listed;
  for (const auto& n : manifest["nodes"]) {
    listed += (listed.empty() ? "" : ", ") + Field(n, "id");
    if (Field(n, "id") == node_id) entry = &n;
  }
  if (entry == nullptr) {
    return RestoreFailed(node_id, "node '" + node_id + "' is not in the backup in " +
                                      dest.string() + " (it has " + listed + ")");
  }
  std::optional<double> backup_id = Number(*entry, "backup_id");
  if (!backup_id || *backup_id < 1 || *backup_id > UINT32_MAX) {
    return RestoreFailed(node_id, "the manifest has no valid backup_id for " + node_id);
  }

  // Store::Restore refuses a data dir that holds anything, so if the restore
  // fails after that check, whatever is in the dir is the failed restore's
  // own partial output: remove it rather than leave a half-restored database.
  bool existed = fs::exists(data_dir, ec);
  bool was_empty = !existed || (fs::is_directory(data_dir, ec) && fs::is_empty(data_dir, ec));
  // Store::Restore checks this too; checking first keeps a refusal to one line.
  if (fs::exists(data_dir / "CURRENT", ec)) {
    return RestoreFailed(node_id, "data dir " + data_dir.string() + " already holds a database",
                         true);
  }
  if (!was_empty) {
    return RestoreFailed(node_id, "data dir " + data_dir.string() + " is not empty", true);
  }
  fs::path backup_dir = dest / node_id;
  if (!fs::is_directory(backup_dir, ec)) {
    return RestoreFailed(node_id, "the backup directory " + backup_dir.string() + " is missing");
  }
  std::string taken_at = Field(*entry, "taken_at");
  if (taken_at.empty()) taken_at = Field(manifest, "created_at");
  std::cerr << "restoring " << node_id << " from " << backup_dir.string() << " (backup "
            << Integer(*backup_id) << ", taken " << taken_at
            << "): verifying checksums, then copying into " << data_dir.string() << "\n";
  auto started = SteadyClock::now();
  RestoreResult result;
  Status st = Store::Restore(backup_dir.string(), static_cast<uint32_t>(*backup_id),
                             data_dir.string(), node_id, &result);
  if (!st.ok()) {
    if (st.code() != Status::Code::kBadRequest && was_empty) {
      if (existed) {
        for (const auto& child : fs::directory_iterator(data_dir, ec)) fs::remove_all(child, ec);
      } else {
        fs::remove_all(data_dir, ec);
      }
    }
    std::string message = st.message();
    if (st.IsNotFound()) message = "a file of backup " + backup_dir.string() + " is missing";
    // BackupEngine leaves a backup with a missing or unreadable file out of
    // its list: the manifest says it was there, so say what that means.
    if (message.rfind("no backup in ", 0) == 0 ||
        message.find(" is not in ") != std::string::npos) {
      message += " (the manifest names backup " + Integer(*backup_id) +
                 ": its files are missing or damaged, or it was deleted)";
    }
    return RestoreFailed(node_id, message);
  }
  auto took = SteadyClock::now() - started;
  if (inv.json_output) {
    json out = {
        {"ok", true},
        {"node", node_id},
        {"backup_id", result.backup_id},
        {"bytes", result.bytes},
        {"data_dir", data_dir.string()},
        {"partitions", manifest.value("partitions", json())},
        {"replicas", manifest.value("replicas", json())},
        {"duration_ms", std::chrono::duration_cast<std::chrono::milliseconds>(took).count()}};
    std::cout << out.dump() << "\n";
    return kExitOk;
  }
  std::string cluster_list;
  for (const auto& n : manifest["nodes"]) {
    cluster_list += (cluster_list.empty() ? "" : ",") + Field(n, "id") + "=" + Field(n, "address");
  }
  std::cout << "restored " << node_id << " (backup " << result.backup_id << ", "
            << HumanBytes(static_cast<double>(result.bytes)) << ") into " << data_dir.string()
            << " in " << Seconds(took) << "\n"
            << "start it with: kvd --node-id " << node_id << " --data-dir " << data_dir.string()
            << " --listen " << Field(*entry, "address") << " --partitions "
            << Field(manifest, "partitions") << " --replicas " << Field(manifest, "replicas")
            << " --cluster " << cluster_list << "\n";
  return kExitOk;
}

}  // namespace ringkv::kvctl
