#include "server/cluster_manager.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <optional>
#include <random>

namespace ringkv {
namespace {

using cluster::ClusterMap;
using cluster::MapMove;
using cluster::MapPhase;
using cluster::MemberState;

constexpr char kMapValue[] = "cluster_map";
constexpr uint64_t kChunkBytes = 1ULL << 20;
constexpr int kCallAttempts = 3;

uint64_t NowMs(const Clock* clock) { return clock->NowMs(); }

// Crash points for the membership tests (MembershipTest.*): with
// RINGKV_CRASH_AT=NAME in its environment, kvd SIGKILLs itself when it
// reaches the point NAME, as if killed at that step of a change:
//   commit_persisted    the claimant wrote a committed map, before pushing it
//   copy_ingested       a target imported a partition, before reporting it
//   read_new_installed  a node installed a read_new map
// Unset (every user's case), nothing happens.
void CrashPoint(const char* name) {
  static const char* at = std::getenv("RINGKV_CRASH_AT");
  if (at == nullptr || std::strcmp(at, name) != 0) return;
  spdlog::warn("[membership] crash point {} reached: SIGKILL", name);
  spdlog::default_logger()->flush();
  ::raise(SIGKILL);
}

Status FileChecksum(const std::string& path, uint64_t* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Internal("cannot open " + path);
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  std::string buf(1 << 20, '\0');
  ssize_t n;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) XXH64_update(st, buf.data(), n);
  ::close(fd);
  *out = XXH64_digest(st);
  XXH64_freeState(st);
  return n < 0 ? Status::Internal("cannot read " + path) : Status::OK();
}

std::string RandomSuffix() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%08x%08x", rd(), rd());
  return buf;
}

}  // namespace

ClusterManager::ClusterManager(ClusterManagerOptions options, Store* store, Hooks hooks)
    : options_(std::move(options)),
      store_(store),
      hooks_(std::move(hooks)),
      transfer_dir_(options_.data_dir + "/transfers") {}

ClusterManager::~ClusterManager() { Stop(); }

Status ClusterManager::Open(const ClusterMap* initial) {
  // Files of copies a previous run did not finish are worthless now.
  std::error_code ec;
  std::filesystem::remove_all(transfer_dir_, ec);
  std::filesystem::create_directories(transfer_dir_, ec);
  if (ec) return Status::Internal("cannot create " + transfer_dir_ + ": " + ec.message());
  std::string stored;
  Status s = store_->GetNodeValue(kMapValue, &stored);
  if (s.ok()) {
    auto map = std::make_shared<ClusterMap>();
    Status d = DecodeMap(stored, map.get());
    if (!d.ok()) return Status::Internal("the stored cluster map is unreadable: " + d.message());
    if (initial != nullptr && !(*initial == *map)) {
      if (auto moved = cluster::MovedMembers(*map, *initial)) {
        spdlog::info(
            "[membership] --cluster names the map's members at other addresses: the map "
            "follows (epoch {})",
            moved->epoch);
        return Install(std::make_shared<ClusterMap>(*moved), /*persist=*/true);
      }
      spdlog::warn(
          "[membership] --cluster differs from the stored cluster map (epoch {}); the stored "
          "map is used and the flag ignored",
          map->epoch);
    }
    return Install(std::move(map), /*persist=*/false);
  }
  if (!s.IsNotFound()) return s;
  if (initial == nullptr) {
    spdlog::info("[membership] waiting to be added to the cluster of {} (kvctl cluster join {}=…)",
                 options_.seeds.empty() ? std::string("?") : options_.seeds[0], options_.node_id);
    return Status::OK();
  }
  return Install(std::make_shared<ClusterMap>(*initial), /*persist=*/true);
}

void ClusterManager::Start() {
  std::lock_guard<std::mutex> l(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Run(); });
}

void ClusterManager::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // The periodic thread first: it is the only one that adds copy threads.
  if (thread_.joinable()) thread_.join();
  std::vector<CopyThread> threads;
  {
    std::lock_guard<std::mutex> l(mu_);
    threads.swap(threads_);
  }
  for (CopyThread& t : threads) t.thread.join();
}

std::shared_ptr<const ClusterMap> ClusterManager::map() const {
  std::lock_guard<std::mutex> l(mu_);
  return map_;
}

bool ClusterManager::member() const {
  std::lock_guard<std::mutex> l(mu_);
  if (!map_) return false;
  const cluster::MapMember* m = map_->Find(options_.node_id);
  return m != nullptr && m->state != MemberState::kLeft;
}

Status ClusterManager::Install(std::shared_ptr<const ClusterMap> map, bool persist) {
  if (map->partitions != store_->partitions()) {
    return Status::BadRequest("the cluster has " + std::to_string(map->partitions) +
                              " partitions; this node was started with --partitions " +
                              std::to_string(store_->partitions()));
  }
  if (persist) RINGKV_RETURN_IF_ERROR(store_->PutNodeValue(kMapValue, EncodeMap(*map)));
  std::shared_ptr<const ClusterMap> previous;
  {
    std::lock_guard<std::mutex> l(mu_);
    previous = map_;
  }
  if (hooks_.install) hooks_.install(*map, previous.get());
  {
    std::lock_guard<std::mutex> l(mu_);
    map_ = map;
    epoch_.store(map->epoch, std::memory_order_release);
    kick_ = true;
  }
  counters_.maps_installed.fetch_add(1, std::memory_order_relaxed);
  if (map->phase == MapPhase::kReadNew) CrashPoint("read_new_installed");
  spdlog::log(previous ? spdlog::level::info : spdlog::level::debug,
              "[membership] installed the cluster map of epoch {} ({}{}{})", map->epoch,
              cluster::MapPhaseName(map->phase), map->change.empty() ? "" : ": ", map->change);
  cv_.notify_all();
  return Status::OK();
}

Status ClusterManager::Offer(const ClusterMap& offered, const std::string& from) {
  std::shared_ptr<const ClusterMap> current = map();
  if (current && offered.cluster_id != current->cluster_id) {
    return Status::BadRequest("map of another cluster (" + offered.cluster_id + ", this is " +
                              current->cluster_id + ")");
  }
  if (current && offered.epoch < current->epoch) return Status::OK();
  if (current && offered.epoch == current->epoch) {
    if (offered == *current) return Status::OK();
    counters_.split_brain.fetch_add(1, std::memory_order_relaxed);
    spdlog::error(
        "[membership] SPLIT BRAIN: {} has another cluster map at the same epoch {}; commits are "
        "refused until an operator resolves it",
        from, offered.epoch);
    return Status::BadRequest("another map at the same epoch " + std::to_string(offered.epoch));
  }
  if (!current && offered.Find(options_.node_id) == nullptr) {
    return Status::OK();  // a --join node that has not been added yet
  }
  std::lock_guard<std::mutex> commit(commit_mu_);
  current = map();
  if (current && offered.epoch <= current->epoch) return Status::OK();
  return Install(std::make_shared<ClusterMap>(offered), /*persist=*/true);
}

void ClusterManager::Push(const ClusterMap& map, const std::vector<std::string>& to) {
  if (!send_) return;
  std::string line = EncodeMapPush(map);
  for (const std::string& node : to) {
    if (node == options_.node_id) continue;
    send_(node, line, options_.timeout_ms, [this, node](Status s, std::string_view reply) {
      uint64_t e = 0;
      if (s.ok()) s = ParseMapPushReply(reply, &e);
      if (s.ok()) {
        std::lock_guard<std::mutex> l(mu_);
        peer_epochs_[node] = std::max(peer_epochs_[node], e);
      }
    });
  }
}

void ClusterManager::Fetch(const std::string& from, std::function<void()> then) {
  if (!send_) return then();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!fetching_.insert(from).second) {
      // One fetch at a time per peer; this caller goes on without waiting.
      return then();
    }
  }
  send_(from, EncodeMapFetch(), options_.timeout_ms,
        [this, from, then = std::move(then)](Status s, std::string_view reply) {
          ClusterMap map;
          if (s.ok()) s = ParseMapReply(reply, &map);
          if (s.ok()) s = Offer(map, from);
          if (!s.ok())
            spdlog::warn("[membership] cannot take the map of {}: {}", from, s.message());
          {
            std::lock_guard<std::mutex> l(mu_);
            fetching_.erase(from);
          }
          then();
        });
}

void ClusterManager::OnPeerEpoch(const std::string& peer, uint64_t e) {
  uint64_t mine = epoch();
  {
    std::lock_guard<std::mutex> l(mu_);
    peer_epochs_[peer] = e;
  }
  if (e > mine) {
    Fetch(peer, [] {});
  } else if (e < mine && e != 0) {
    std::shared_ptr<const ClusterMap> m = map();
    if (m) Push(*m, {peer});
  }
}

void ClusterManager::Sync(uint64_t replica_epoch, std::function<void()> then) {
  std::shared_ptr<const ClusterMap> m = map();
  if (!m || replica_epoch == m->epoch) return then();
  if (replica_epoch > m->epoch) {
    // Someone is ahead: the claimant has the newest map, else any member.
    std::string from = m->Claimant();
    if (from.empty() || from == options_.node_id || (hooks_.is_up && !hooks_.is_up(from))) {
      for (const std::string& id : m->ActiveIds()) {
        if (id != options_.node_id && (!hooks_.is_up || hooks_.is_up(id))) from = id;
      }
    }
    if (from.empty() || from == options_.node_id) return then();
    return Fetch(from, std::move(then));
  }
  // The replica is behind: send it (and every member) this map.
  Push(*m, m->ActiveIds());
  then();
}

// ---- The periodic work ----

void ClusterManager::Run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stopping_) {
    l.unlock();
    try {
      Tick();
    } catch (const std::exception& e) {
      spdlog::error("[membership] periodic work failed: {}", e.what());
    }
    l.lock();
    cv_.wait_for(l, std::chrono::milliseconds(options_.tick_ms),
                 [this] { return stopping_ || kick_; });
    kick_ = false;
  }
}

void ClusterManager::Tick() {
  std::shared_ptr<const ClusterMap> m = map();
  if (!m || m->Find(options_.node_id) == nullptr) {
    // --join: ask the seeds until a committed plan lists this node.
    for (size_t i = 0; i < options_.seeds.size(); ++i) Fetch("@seed" + std::to_string(i), [] {});
    return;
  }
  if (m->Claimant() == options_.node_id) ClaimantTick(m);
  MoverTick(m);
}

void ClusterManager::ClaimantTick(const std::shared_ptr<const ClusterMap>& m) {
  if (!m->InTransition()) return;
  std::lock_guard<std::mutex> commit(commit_mu_);
  if (map() != m) return;  // another install came first
  ClusterMap ready = *m;
  if (m->phase == MapPhase::kCopy) {
    std::lock_guard<std::mutex> l(mu_);
    for (MapMove& mv : ready.moves) {
      auto it = progress_.find({mv.partition, mv.to});
      mv.ready = it != progress_.end() && it->second.ready;
      if (!mv.ready) return;
    }
  } else {
    // read_new -> stable: every live member must read from the new sets
    // first, so that no read of the old replicas remains when they stop
    // taking writes.
    std::lock_guard<std::mutex> l(mu_);
    for (const std::string& id : m->ActiveIds()) {
      if (id == options_.node_id) continue;
      if (hooks_.is_up && !hooks_.is_up(id)) continue;
      auto it = peer_epochs_.find(id);
      if (it == peer_epochs_.end() || it->second < m->epoch) return;
    }
  }
  ClusterMap next;
  Status s = cluster::AdvanceMap(ready, &next);
  if (s.ok()) s = Install(std::make_shared<ClusterMap>(next), /*persist=*/true);
  if (!s.ok()) {
    spdlog::error("[membership] cannot advance the change: {}", s.message());
    return;
  }
  std::vector<std::string> to = next.ActiveIds();
  for (const auto& mm : m->members) {
    if (std::find(to.begin(), to.end(), mm.id) == to.end()) to.push_back(mm.id);
  }
  Push(next, to);
}

void ClusterManager::MoverTick(const std::shared_ptr<const ClusterMap>& m) {
  // Copies that ended are joined here, so that threads do not pile up.
  std::vector<CopyThread> ended;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->finished->load()) {
        ended.push_back(std::move(*it));
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (CopyThread& t : ended) t.thread.join();
  if (m->phase != MapPhase::kCopy) {
    std::lock_guard<std::mutex> l(mu_);
    copies_.clear();
    return;
  }
  std::vector<MapMove> start;
  std::vector<std::pair<uint32_t, Progress>> reports;
  const uint64_t now = NowMs(options_.clock);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (copies_of_epoch_ != m->epoch) {
      copies_.clear();
      copies_of_epoch_ = m->epoch;
    }
    for (const MapMove& mv : m->moves) {
      if (mv.to != options_.node_id) continue;
      auto it = copies_.find(mv.partition);
      if (it == copies_.end() && !copying_.count(mv.partition) &&
          static_cast<int>(copying_.size() + start.size()) < options_.transfer_limit) {
        start.push_back(mv);
      }
    }
    for (const MapMove& mv : start) copying_.insert(mv.partition);
    if (now >= last_report_ms_ + 1000) {
      last_report_ms_ = now;
      for (const auto& [p, prog] : copies_) reports.emplace_back(p, prog);
    }
  }
  for (const auto& [p, prog] : reports) Report(*m, p, prog);
  for (const MapMove& mv : start) {
    counters_.moves_started.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    auto finished = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back({std::thread([this, m, mv, finished] {
                          Copy(m, mv);
                          finished->store(true);
                        }),
                        finished});
  }
}

void ClusterManager::Report(const ClusterMap& map, uint32_t partition, const Progress& p) {
  const std::string claimant = map.Claimant();
  Request req;
  req.node = options_.node_id;
  req.partition = partition;
  req.epoch = map.epoch;
  req.done_bytes = p.done;
  req.total_bytes = p.total;
  req.ready = p.ready;
  if (claimant == options_.node_id) return OnMoveReport(req);
  if (!send_ || claimant.empty()) return;
  send_(claimant,
        EncodeMoveReport(options_.node_id, partition, map.epoch, p.done, p.total, p.ready),
        options_.timeout_ms, [](Status, std::string_view) {});
}

void ClusterManager::OnMoveReport(const Request& req) {
  std::lock_guard<std::mutex> l(mu_);
  if (!map_ || map_->phase != MapPhase::kCopy) return;
  Progress& p = progress_[{req.partition, req.node}];
  p.done = req.done_bytes;
  p.total = req.total_bytes;
  p.ready = p.ready || req.ready;
  if (req.ready) {
    kick_ = true;  // the claimant may advance now
    cv_.notify_all();
  }
}

// ---- Copies (target side) ----

Status ClusterManager::Call(const std::string& node, std::string line, std::string* reply) {
  if (!send_) return Status::Unavailable("no transport");
  auto promise = std::make_shared<std::promise<std::pair<Status, std::string>>>();
  auto future = promise->get_future();
  send_(node, std::move(line), options_.timeout_ms * 5, [promise](Status s, std::string_view r) {
    promise->set_value({s, std::string(r)});
  });
  // A shutdown does not wait for a peer's answer (the callback still has
  // the promise to fill).
  while (future.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return Status::Unavailable("shutting down");
  }
  auto [s, r] = future.get();
  *reply = std::move(r);
  return s;
}

Status ClusterManager::CopyFrom(const ClusterMap& map, const MapMove& move,
                                const std::string& source, uint64_t* bytes, uint64_t* watermark) {
  std::string reply;
  XferFile f;
  RINGKV_RETURN_IF_ERROR(Call(source, EncodeXferOpen(move.partition, map.epoch), &reply));
  RINGKV_RETURN_IF_ERROR(ParseXferOpenReply(reply, &f));
  *watermark = f.watermark;
  if (f.keys == 0) return Status::OK();
  {
    std::lock_guard<std::mutex> l(mu_);
    copies_[move.partition].total += f.bytes;
  }
  const std::string path = transfer_dir_ + "/in-" + std::to_string(move.partition) + "-" + source +
                           "-" + RandomSuffix() + ".sst";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Internal("cannot create " + path);
  Status s;
  uint64_t offset = 0;
  const auto started = std::chrono::steady_clock::now();
  for (bool eof = false; !eof && s.ok();) {
    std::string data;
    s = Call(source, EncodeXferRead(f.file, offset, kChunkBytes), &reply);
    if (s.ok()) s = ParseXferReadReply(reply, &data, &eof);
    if (s.ok() && ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
      s = Status::Internal("cannot write " + path);
    }
    offset += data.size();
    counters_.bytes_in.fetch_add(data.size(), std::memory_order_relaxed);
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    {
      std::lock_guard<std::mutex> l(mu_);
      Progress& p = copies_[move.partition];
      p.done += data.size();
      p.rate = elapsed > 0 ? static_cast<double>(offset) / elapsed : 0;
      if (stopping_) s = Status::Unavailable("shutting down");
    }
    // The throttle: this copy's share of --transfer-mb-per-s.
    const double budget =
        static_cast<double>(options_.transfer_bytes_per_s) / std::max(1, options_.transfer_limit);
    const double due = static_cast<double>(offset) / budget;
    if (s.ok() && due > elapsed) {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::duration<double>(due - elapsed), [this] { return stopping_; });
    }
  }
  if (s.ok() && ::fsync(fd) != 0) s = Status::Internal("cannot sync " + path);
  ::close(fd);
  uint64_t sum = 0;
  if (s.ok()) s = FileChecksum(path, &sum);
  if (s.ok() && (offset != f.bytes || sum != f.checksum)) {
    s = Status::Internal("partition " + std::to_string(move.partition) + " from " + source +
                         " arrived damaged (" + std::to_string(offset) + " of " +
                         std::to_string(f.bytes) + " bytes, checksum mismatch)");
  }
  if (s.ok()) s = hooks_.ingest(move.partition, path);
  if (s.ok()) CrashPoint("copy_ingested");
  std::error_code ec;
  std::filesystem::remove(path, ec);
  Status closed = Call(source, EncodeXferClose(f.file), &reply);
  if (!closed.ok()) spdlog::warn("[membership] {} kept transfer file {}", source, f.file);
  *bytes = offset;
  return s;
}

void ClusterManager::Copy(std::shared_ptr<const ClusterMap> map, MapMove move) {
  // From the replica it replaces, or, when that one is down, from every live
  // replica: one of them may lack a write the others acknowledged.
  std::vector<std::string> sources;
  if (!hooks_.is_up || hooks_.is_up(move.from)) {
    sources.push_back(move.from);
  } else {
    for (const std::string& n : map->assignment[move.partition]) {
      if (n != move.from && n != options_.node_id && (!hooks_.is_up || hooks_.is_up(n))) {
        sources.push_back(n);
      }
    }
  }
  Status s = sources.empty() ? Status::Unavailable("no live replica of partition " +
                                                   std::to_string(move.partition) + " to copy from")
                             : Status::OK();
  uint64_t total = 0, watermark = UINT64_MAX;
  for (const std::string& src : sources) {
    for (int attempt = 0; s.ok() && attempt < kCallAttempts; ++attempt) {
      uint64_t bytes = 0, w = 0;
      Status c = CopyFrom(*map, move, src, &bytes, &w);
      if (c.ok()) {
        total += bytes;
        watermark = std::min(watermark, w);
        break;
      }
      if (attempt + 1 == kCallAttempts) s = c;
    }
  }
  if (s.ok() && watermark != UINT64_MAX && watermark > 0) {
    s = store_->RaiseGcWatermark(move.partition, watermark);
  }
  std::lock_guard<std::mutex> l(mu_);
  copying_.erase(move.partition);
  if (copies_of_epoch_ != map->epoch) return;
  if (!s.ok()) {
    counters_.move_failures.fetch_add(1, std::memory_order_relaxed);
    copies_.erase(move.partition);  // started again by a later tick
    spdlog::warn("[membership] copy of partition {} from {} failed, will retry: {}", move.partition,
                 move.from, s.message());
    return;
  }
  counters_.moves_done.fetch_add(1, std::memory_order_relaxed);
  Progress& p = copies_[move.partition];
  p.ready = true;
  p.done = p.total = std::max(p.total, total);
  last_report_ms_ = 0;  // report, and start the next copy, at once
  kick_ = true;
  cv_.notify_all();
  spdlog::info("[membership] partition {} copied from {} ({} bytes)", move.partition,
               sources.size() == 1 ? sources[0] : "the live replicas", total);
}

// ---- Copies (source side) ----

Status ClusterManager::OpenTransfer(uint32_t partition, uint64_t epoch, XferFile* out) {
  std::shared_ptr<const ClusterMap> m = map();
  if (!m || epoch != m->epoch) return Status::StaleEpoch(m ? m->epoch : 0);
  if (partition >= m->partitions || !m->Holds(options_.node_id, partition)) {
    return Status::BadRequest("this node does not hold partition " + std::to_string(partition));
  }
  *out = XferFile();
  out->file = "out-" + std::to_string(partition) + "-" + std::to_string(epoch) + "-" +
              RandomSuffix() + ".sst";
  const std::string path = transfer_dir_ + "/" + out->file;
  PartitionExport ex;
  RINGKV_RETURN_IF_ERROR(store_->ExportPartition(partition, path, &ex));
  out->keys = ex.keys;
  out->bytes = ex.bytes;
  out->watermark = ex.watermark;
  if (ex.keys > 0) RINGKV_RETURN_IF_ERROR(FileChecksum(path, &out->checksum));
  return Status::OK();
}

Status ClusterManager::ReadTransfer(const std::string& file, uint64_t offset, uint64_t length,
                                    std::string* data, bool* eof) {
  if (!IsTransferFileName(file)) return Status::BadRequest("not a transfer file");
  const std::string path = transfer_dir_ + "/" + file;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::NotFound("no transfer file " + file);
  struct stat st;
  ::fstat(fd, &st);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  length = std::min<uint64_t>(length, 4 * kChunkBytes);
  const uint64_t n = offset >= size ? 0 : std::min(length, size - offset);
  data->assign(n, '\0');
  ssize_t got = n == 0 ? 0 : ::pread(fd, data->data(), n, static_cast<off_t>(offset));
  ::close(fd);
  if (got != static_cast<ssize_t>(n)) return Status::Internal("cannot read " + path);
  *eof = offset + n >= size;
  counters_.bytes_out.fetch_add(n, std::memory_order_relaxed);
  return Status::OK();
}

Status ClusterManager::CloseTransfer(const std::string& file) {
  if (!IsTransferFileName(file)) return Status::BadRequest("not a transfer file");
  std::error_code ec;
  std::filesystem::remove(transfer_dir_ + "/" + file, ec);
  return Status::OK();
}

// ---- Staged changes (the claimant) ----

PlanView ClusterManager::MakePlan(const ClusterMap& map,
                                  const std::vector<cluster::StagedChange>& staged) {
  PlanView v;
  v.epoch = map.epoch;
  for (const auto& c : staged) v.changes.push_back(cluster::DescribeChange(c));
  ClusterMap next;
  Status s = cluster::PlanChanges(map, staged, &next);
  if (!s.ok()) {
    v.error = s.message();
    return v;
  }
  // Bytes to copy, estimated from this node's mean record size on disk.
  StoreProperties props = store_->Properties();
  uint64_t keys = 0;
  for (const auto& [p, n] : props.partition_keys) keys += n;
  const double per_key =
      keys > 0 ? static_cast<double>(props.sst_bytes + props.memtable_bytes) / keys : 0;
  const cluster::Assignment& after = next.InTransition() ? next.target : next.assignment;
  for (const MapMove& mv : next.moves) {
    TransferView t;
    t.partition = mv.partition;
    t.from = mv.from;
    t.to = mv.to;
    t.stage = "planned";
    auto it = props.partition_keys.find(mv.partition);
    t.total_bytes =
        it != props.partition_keys.end() ? static_cast<uint64_t>(per_key * it->second) : 0;
    v.moves.push_back(t);
  }
  std::vector<std::string> ids;
  for (const auto& mm : next.members) ids.push_back(mm.id);
  auto before = cluster::SlotCounts(map.assignment, ids);
  auto later = cluster::SlotCounts(after, ids);
  for (const std::string& id : ids) v.slots.push_back({id, {before[id], later[id]}});
  return v;
}

std::vector<TransferView> ClusterManager::Transfers() {
  std::vector<TransferView> out;
  std::lock_guard<std::mutex> l(mu_);
  if (!map_ || !map_->InTransition()) return out;
  for (const MapMove& mv : map_->moves) {
    TransferView t;
    t.partition = mv.partition;
    t.from = mv.from;
    t.to = mv.to;
    auto it = progress_.find({mv.partition, mv.to});
    if (it != progress_.end()) {
      t.done_bytes = it->second.done;
      t.total_bytes = it->second.total;
      t.rate_bytes_per_s = it->second.rate;
    }
    if (map_->phase == MapPhase::kReadNew) {
      t.stage = "read_new";
    } else {
      t.stage = (mv.ready || (it != progress_.end() && it->second.ready)) ? "ready" : "copy";
    }
    out.push_back(t);
  }
  return out;
}

std::string ClusterManager::HandleClaimant(const Request& req) {
  const std::string& a = req.action;
  std::shared_ptr<const ClusterMap> m = map();
  if (a == "transfers") {
    return RenderTransfers(req.id_json, m->epoch, std::string(cluster::MapPhaseName(m->phase)),
                           m->change, Transfers());
  }
  std::lock_guard<std::mutex> commit(commit_mu_);
  m = map();
  std::vector<cluster::StagedChange> staged;
  {
    std::lock_guard<std::mutex> l(mu_);
    staged = staged_;
  }
  if (a == "clear") {
    std::lock_guard<std::mutex> l(mu_);
    staged_.clear();
    return ResponseBuilder(req.id_json)
        .AddInt("cleared", static_cast<int64_t>(staged.size()))
        .Finish();
  }
  if (a == "plan") {
    if (staged.empty()) return RenderError(req.id_json, Status::BadRequest("nothing is staged"));
    return RenderPlan(req.id_json, MakePlan(*m, staged));
  }
  if (a == "commit") {
    if (req.has_epoch && req.epoch != m->epoch) {
      return RenderError(req.id_json,
                         Status::BadRequest("plan_changed: the plan was made at epoch " +
                                            std::to_string(req.epoch) + " but the cluster is at " +
                                            std::to_string(m->epoch) + "; review it again"));
    }
    if (counters_.split_brain.load() > 0) {
      return RenderError(req.id_json, Status::BadRequest("a split brain was seen (see the log); "
                                                         "commits are refused"));
    }
    ClusterMap next;
    Status s = cluster::PlanChanges(*m, staged, &next);
    if (s.ok()) s = Install(std::make_shared<ClusterMap>(next), /*persist=*/true);
    if (!s.ok()) return RenderError(req.id_json, s);
    CrashPoint("commit_persisted");
    {
      std::lock_guard<std::mutex> l(mu_);
      staged_.clear();
      progress_.clear();
    }
    std::vector<std::string> to = next.ActiveIds();
    for (const auto& mm : m->members) {
      if (std::find(to.begin(), to.end(), mm.id) == to.end()) to.push_back(mm.id);
    }
    Push(next, to);
    return ResponseBuilder(req.id_json)
        .AddInt("epoch", static_cast<int64_t>(next.epoch))
        .AddInt("moves", static_cast<int64_t>(next.moves.size()))
        .Finish();
  }
  // join, leave, replace, remove: staged once the whole list still plans.
  cluster::StagedChange c;
  c.address = req.address;
  c.change.node = req.node;
  c.change.new_node = req.new_node;
  if (a == "join") c.change.kind = cluster::MembershipChange::Kind::kJoin;
  if (a == "leave") c.change.kind = cluster::MembershipChange::Kind::kLeave;
  if (a == "remove") c.change.kind = cluster::MembershipChange::Kind::kRemove;
  if (a == "replace") c.change.kind = cluster::MembershipChange::Kind::kReplace;
  if (c.change.kind == cluster::MembershipChange::Kind::kLeave && hooks_.is_up &&
      !hooks_.is_up(c.change.node)) {
    return RenderError(req.id_json,
                       Status::BadRequest("node '" + c.change.node +
                                          "' is down: a leave copies from it; use `kvctl cluster "
                                          "remove` for a dead node"));
  }
  staged.push_back(c);
  ClusterMap next;
  Status s = cluster::PlanChanges(*m, staged, &next);
  if (!s.ok()) return RenderError(req.id_json, s);
  {
    std::lock_guard<std::mutex> l(mu_);
    staged_ = staged;
  }
  return RenderPlan(req.id_json, MakePlan(*m, staged));
}

void ClusterManager::Membership(const Request& req, std::function<void(std::string)> done) {
  std::shared_ptr<const ClusterMap> m = map();
  if (!m || !member()) {
    return done(RenderError(req.id_json, Status::Unavailable("this node is not a member yet")));
  }
  const std::string claimant = m->Claimant();
  if (claimant == options_.node_id || req.op == Op::kPeerMembership) {
    if (claimant != options_.node_id) {
      return done(RenderError(
          req.id_json,
          Status::Unavailable("this node is not the claimant (" + claimant +
                              " is); its map is at epoch " + std::to_string(m->epoch))));
    }
    return done(HandleClaimant(req));
  }
  if (!send_ || claimant.empty()) {
    return done(RenderError(req.id_json, Status::Unavailable("no claimant to forward to")));
  }
  std::string line = EncodeForwardedMembership(req);
  send_(claimant, std::move(line), options_.timeout_ms,
        [id = req.id_json, claimant, done = std::move(done)](Status s, std::string_view reply) {
          if (!s.ok()) {
            return done(RenderError(
                id, Status::Unavailable(
                        "the claimant " + claimant +
                        " cannot be reached (changes are committed there): " + s.message())));
          }
          done(std::string(reply));
        });
}

}  // namespace ringkv
