#include "server/node.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "engine/record_cache.h"
#include "engine/store.h"
#include "engine/version.h"
#include "server/background.h"
#include "server/cluster/coordinator.h"
#include "server/cluster/counters.h"
#include "server/cluster/handoff.h"
#include "server/cluster/membership.h"
#include "server/cluster/ring.h"
#include "server/cluster/router.h"
#include "server/metrics.h"
#include "server/protocol.h"
#include "server/stats.h"
#include "server/write_batcher.h"

namespace ringkv {

class Node::Impl final : public cluster::LocalReplica {
 public:
  explicit Impl(const NodeOptions& o);

  Status Open();
  void Handle(std::string_view line, Done done);
  std::string RequestTooLarge();
  void SetAdvertisedAddress(std::string address);
  void SetPeerTransport(cluster::ReplicaTransport* peers) { router_->SetRemote(peers); }
  cluster::Membership* membership() { return &membership_; }
  cluster::HintedHandoff* handoff() { return handoff_.get(); }
  HybridClock* hybrid_clock() { return &hlc_; }
  const std::string& fingerprint() const { return fingerprint_; }
  void Shutdown();

  // cluster::LocalReplica: this node's own replica, through the cache.
  void WriteLocal(const std::string& key, const Record& record,
                  cluster::ReplicaTransport::WriteDone done) override;
  Status ReadLocal(const std::string& key, Record* out) override;

 private:
  using Handler = void (Impl::*)(const Request&, Done);

  std::string Fail(const std::string& id_json, const Status& s);
  uint64_t TimeoutOf(const Request& req) const {
    return req.timeout_ms > 0 ? req.timeout_ms : opts_.request_timeout_ms;
  }

  void Put(const Request& req, Done done);
  void Get(const Request& req, Done done);
  void Delete(const Request& req, Done done);
  void Ping(const Request& req, Done done);
  void StatsOp(const Request& req, Done done);
  void ClusterOp(const Request& req, Done done);
  void Locate(const Request& req, Done done);
  void Backup(const Request& req, Done done);
  void PeerWrite(const Request& req, Done done);
  void PeerRead(const Request& req, Done done);
  void PeerHello(const Request& req, Done done);

  // Runs a put or delete through the coordinator.
  void CoordinateWrite(const Request& req, Record record, Done done);
  // The response to a get, from the newest record the replicas had.
  std::string RenderGet(const std::string& id_json, const std::optional<Record>& newest);
  std::string StatsJson();
  MetricsInput GatherMetrics();
  void NoteSlow(Op op, const std::string& key, uint64_t us);

 public:
  std::string MetricsText() { return RenderPrometheus(GatherMetrics()); }
  ConnectionStats* connection_stats() { return &connections_; }

 private:
  const NodeOptions opts_;
  Limits limits_;
  HybridClock hlc_;
  RecordCache cache_;
  cluster::Ring ring_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<WriteBatcher> batcher_;
  Stats stats_;
  ConnectionStats connections_;
  cluster::Counters counters_;
  cluster::Membership membership_;
  std::string fingerprint_;
  std::unique_ptr<cluster::ReplicaRouter> router_;
  std::unique_ptr<cluster::HintedHandoff> handoff_;
  std::unique_ptr<cluster::Coordinator> coordinator_;

  // mu_ protects the following.
  std::mutex mu_;
  std::string advertised_;
  struct Job {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  std::vector<Job> jobs_;  // background jobs (backups); finished ones joined lazily

  std::atomic<uint64_t> last_slow_log_ms_{0};
  std::atomic<uint64_t> slow_suppressed_{0};
  std::atomic<uint64_t> last_mismatch_log_ms_{0};
  std::atomic<uint64_t> last_internal_log_ms_{0};
  // At least the version of every record this replica holds (see WriteLocal).
  // Starts at the highest version any record can carry: one accepted at most
  // --max-clock-skew-ms ahead of this clock (records written before a start
  // were stamped or accepted by an earlier run, whose clock was not ahead).
  std::atomic<uint64_t> applied_hlc_{0};
  std::atomic<uint64_t> internal_unlogged_{0};

  // Round deadlines and the work kept off I/O and peer threads (hint
  // delivery, local repairs). Declared last, so destroyed first: its threads
  // are joined while everything they use still exists.
  std::unique_ptr<Background> background_;
};

namespace {

std::vector<std::pair<std::string, std::string>> MemberPairs(const NodeOptions& o) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Member& m : o.cluster) out.emplace_back(m.id, m.address);
  return out;
}

}  // namespace

Node::Impl::Impl(const NodeOptions& o)
    : opts_(o),
      hlc_(o.clock),
      cache_(o.cache_bytes),
      membership_(MemberPairs(o), o.node_id),
      fingerprint_(ClusterFingerprint(MemberPairs(o), o.partitions, o.replicas)),
      advertised_(o.listen) {
  limits_.max_key_bytes = o.max_key_bytes;
  limits_.max_value_bytes = o.max_value_bytes;
}

Status Node::Impl::Open() {
  std::vector<std::string> ids;
  for (const Member& m : opts_.cluster) ids.push_back(m.id);
  RINGKV_RETURN_IF_ERROR(cluster::Ring::Make(ids, opts_.partitions, opts_.replicas, &ring_));
  StoreOptions so;
  so.path = opts_.data_dir;
  so.node_id = opts_.node_id;
  so.partitions = opts_.partitions;
  so.clock = opts_.clock;
  so.block_cache_bytes = opts_.block_cache_bytes;
  so.write_buffer_bytes = opts_.write_buffer_bytes;
  so.sync_writes = opts_.sync_writes;
  so.wal_sync_interval_ms = opts_.wal_sync_ms;
  RINGKV_RETURN_IF_ERROR(Store::Open(so, &store_));
  std::vector<uint32_t> replicated;
  for (uint32_t p = 0; p < ring_.partitions(); ++p) {
    if (ring_.Replicates(opts_.node_id, p)) replicated.push_back(p);
  }
  RINGKV_RETURN_IF_ERROR(store_->EnsurePartitions(replicated));
  batcher_ = std::make_unique<WriteBatcher>(store_.get(), &cache_);
  applied_hlc_ = MakeHlc(opts_.clock->NowMs() + opts_.max_clock_skew_ms, kHlcLogicalMask);
  background_ = std::make_unique<Background>();

  router_ = std::make_unique<cluster::ReplicaRouter>(opts_.node_id, this);
  if (opts_.hinted_handoff) {
    cluster::HandoffOptions ho;
    ho.max_age_ms = opts_.hint_window_s * 1000;
    ho.timeout_ms = opts_.request_timeout_ms;
    ho.background = background_.get();
    handoff_ = std::make_unique<cluster::HintedHandoff>(ho, store_.get(), router_.get(),
                                                        &membership_, opts_.clock, &counters_);
    RINGKV_RETURN_IF_ERROR(handoff_->Init());
  }
  cluster::CoordinatorOptions co;
  co.node_id = opts_.node_id;
  co.timer = background_.get();
  co.background = background_.get();
  coordinator_ = std::make_unique<cluster::Coordinator>(co, &ring_, &membership_, router_.get(),
                                                        &hlc_, handoff_.get(), &counters_);
  return Status::OK();
}

void Node::Impl::Handle(std::string_view line, Done done) {
  auto start = std::chrono::steady_clock::now();
  Request req;
  Status s = ParseRequest(line, limits_, &req);
  if (!s.ok()) return done(Fail(req.id_json, s));
  // Indexed by Op, in the order of the protocol's op table.
  static constexpr std::array<Handler, kOpCount> kHandlers = {
      &Impl::Put,       &Impl::Get,       &Impl::Delete,   &Impl::Ping,
      &Impl::StatsOp,   &Impl::ClusterOp, &Impl::Locate,   &Impl::Backup,
      &Impl::PeerWrite, &Impl::PeerRead,  &Impl::PeerHello};
  Op op = req.op;
  auto finish = [this, op, start, key = req.key, done = std::move(done)](std::string response) {
    auto us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::steady_clock::now() - start)
                                        .count());
    stats_.RecordOp(op, us);
    if (opts_.slow_request_ms > 0 && us >= opts_.slow_request_ms * 1000) NoteSlow(op, key, us);
    done(std::move(response));
  };
  (this->*kHandlers[static_cast<int>(op)])(req, std::move(finish));
}

// Logs a slow request, at most one line a second: under overload every
// request is slow, and a line per request would make it worse.
void Node::Impl::NoteSlow(Op op, const std::string& key, uint64_t us) {
  uint64_t now = opts_.clock->NowMs();
  uint64_t last = last_slow_log_ms_.load(std::memory_order_relaxed);
  if (now < last + 1000 || !last_slow_log_ms_.compare_exchange_strong(last, now)) {
    slow_suppressed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t more = slow_suppressed_.exchange(0, std::memory_order_relaxed);
  spdlog::warn(
      "[node] slow {} of key {} took {} ms (threshold {} ms; {} more slow since last line)",
      OpName(op), JsonQuote(key.substr(0, 64)), us / 1000, opts_.slow_request_ms, more);
}

std::string Node::Impl::Fail(const std::string& id_json, const Status& s) {
  stats_.RecordError(s.code());
  if (s.code() == Status::Code::kInternal) {
    // At most one line a second: a full disk fails every write.
    uint64_t now = opts_.clock->NowMs();
    uint64_t last = last_internal_log_ms_.load(std::memory_order_relaxed);
    if (now < last + 1000 || !last_internal_log_ms_.compare_exchange_strong(last, now)) {
      internal_unlogged_.fetch_add(1, std::memory_order_relaxed);
    } else {
      spdlog::error("[node] internal error: {} ({} more since the last line)", s.message(),
                    internal_unlogged_.exchange(0, std::memory_order_relaxed));
    }
  }
  return RenderError(id_json, s);
}

std::string Node::Impl::RequestTooLarge() {
  return Fail("", Status::RequestTooLarge("request line longer than " +
                                          std::to_string(opts_.max_request_bytes) + " bytes"));
}

// A write that is not newer than what this replica holds is not written: it
// is answered Stale with the held version (equal: OK, the replica has it), so
// that the coordinator can re-stamp above it (coordinator.h).
//
// The check costs a lookup (the cache, then the store; a write of the same key
// pending in this thread's group commit is committed first) only when it can
// matter: `applied_hlc_` is at least the version of every record this replica
// has taken, so a write stamped above it is newer than anything held and goes
// straight to the batcher. The watermark is raised before the write is
// acknowledged, so a write that starts after another was acknowledged here is
// either above it or checked.
void Node::Impl::WriteLocal(const std::string& key, const Record& record,
                            cluster::ReplicaTransport::WriteDone done) {
  const uint32_t partition = ring_.PartitionOf(key);
  uint64_t applied = applied_hlc_.load(std::memory_order_acquire);
  if (record.version.hlc <= applied) {
    batcher_->CommitIfPending(key);
    Record held;
    Status s;
    if (auto cached = cache_.Peek(key)) {
      held.version = cached->version;
    } else {
      s = store_->GetMeta(partition, key, &held);
    }
    if (s.ok() && !(held.version < record.version)) {
      if (held.version == record.version) return done(Status::OK());
      return done(Status::Stale(held.version.ToString()));
    }
    if (!s.ok() && !s.IsNotFound()) return done(s);
  }
  while (
      record.version.hlc > applied &&
      !applied_hlc_.compare_exchange_weak(applied, record.version.hlc, std::memory_order_acq_rel)) {
  }
  batcher_->Write(partition, key, record, std::move(done));
}

Status Node::Impl::ReadLocal(const std::string& key, Record* out) {
  batcher_->CommitIfPending(key);  // a put pipelined before this get is seen
  if (auto cached = cache_.Lookup(key)) {
    *out = *cached;
    return Status::OK();
  }
  uint64_t token = cache_.BeginFill(key);
  RINGKV_RETURN_IF_ERROR(store_->Get(ring_.PartitionOf(key), key, out));
  cache_.Fill(key, *out, token);
  return Status::OK();
}

void Node::Impl::CoordinateWrite(const Request& req, Record record, Done done) {
  int w = 0;
  Status s = req.w.Resolve(ring_.replicas(), opts_.write_quorum, "w", &w);
  if (!s.ok()) return done(Fail(req.id_json, s));
  coordinator_->Write(req.key, std::move(record), w, TimeoutOf(req),
                      [this, id = req.id_json, done = std::move(done)](Status ws, Version v) {
                        if (!ws.ok()) return done(Fail(id, ws));
                        done(ResponseBuilder(id).AddString("version", v.ToString()).Finish());
                      });
}

void Node::Impl::Put(const Request& req, Done done) {
  Record record;
  record.value = req.value_json;
  if (req.ttl_ms > 0) record.expires_at_ms = opts_.clock->NowMs() + req.ttl_ms;
  CoordinateWrite(req, std::move(record), std::move(done));
}

void Node::Impl::Delete(const Request& req, Done done) {
  Record record;
  record.tombstone = true;
  CoordinateWrite(req, std::move(record), std::move(done));
}

std::string Node::Impl::RenderGet(const std::string& id_json, const std::optional<Record>& newest) {
  ResponseBuilder out(id_json);
  if (!newest || !newest->IsLive(opts_.clock->NowMs())) return out.AddBool("found", false).Finish();
  return out.AddBool("found", true)
      .AddRaw("value", newest->value)
      .AddString("version", newest->version.ToString())
      .Finish();
}

void Node::Impl::Get(const Request& req, Done done) {
  int r = 0;
  Status s = req.r.Resolve(ring_.replicas(), opts_.read_quorum, "r", &r);
  if (!s.ok()) return done(Fail(req.id_json, s));
  if (req.local) {
    Record record;
    s = ReadLocal(req.key, &record);
    if (!s.ok() && !s.IsNotFound()) return done(Fail(req.id_json, s));
    return done(RenderGet(req.id_json, s.ok() ? std::optional<Record>(record) : std::nullopt));
  }
  coordinator_->Read(
      req.key, r, TimeoutOf(req),
      [this, id = req.id_json, done = std::move(done)](Status rs, std::optional<Record> newest) {
        if (!rs.ok()) return done(Fail(id, rs));
        done(RenderGet(id, newest));
      });
}

void Node::Impl::Ping(const Request& req, Done done) {
  done(ResponseBuilder(req.id_json).AddString("node", opts_.node_id).Finish());
}

std::string Node::Impl::StatsJson() {
  using json = nlohmann::json;
  json ops = json::object(), latency = json::object(), errors = json::object();
  for (int i = 0; i < kOpCount; ++i) {
    Op op = static_cast<Op>(i);
    std::string name(OpName(op));
    ops[name] = stats_.ops(op);
    const Histogram& h = stats_.latency(op);
    latency[name] = {{"p50", h.Percentile(0.50)},
                     {"p99", h.Percentile(0.99)},
                     {"p999", h.Percentile(0.999)},
                     {"max", h.max()}};
  }
  for (int c = static_cast<int>(Status::Code::kBadRequest); c < kCodeCount; ++c) {
    auto code = static_cast<Status::Code>(c);
    errors[std::string(Status::CodeName(code))] = stats_.errors(code);
  }
  json per_target = json::object();
  if (handoff_) {
    for (const auto& [target, n] : handoff_->pending_per_target()) per_target[target] = n;
  }
  StoreProperties props = store_->Properties();
  json partition_keys = json::object();
  for (const auto& [p, n] : props.partition_keys) partition_keys[std::to_string(p)] = n;
  json peers = json::object();
  for (const auto& m : membership_.Snapshot()) {
    if (m.id != opts_.node_id) peers[m.id] = m.up ? "up" : "down";
  }
  uint32_t replicated = 0;
  for (uint32_t p = 0; p < ring_.partitions(); ++p)
    replicated += ring_.Replicates(opts_.node_id, p);
  json stats = {
      {"node", opts_.node_id},
      {"partitions_replicated", replicated},
      {"disk_bytes", props.sst_bytes + props.wal_bytes},
      {"disk",
       {{"write_error", props.write_error},
        {"write_error_message", props.write_error_message},
        {"write_error_since_ms", props.write_error_since_ms},
        {"write_errors", props.write_errors},
        {"resumes", props.resumes}}},
      {"rocksdb",
       {{"sst_bytes", props.sst_bytes},
        {"memtable_bytes", props.memtable_bytes},
        {"pending_compaction_bytes", props.pending_compaction_bytes},
        {"block_cache_usage_bytes", props.block_cache_usage_bytes},
        {"block_cache_capacity_bytes", props.block_cache_capacity_bytes},
        {"wal_bytes", props.wal_bytes},
        {"write_batches", batcher_->commits()},
        {"batched_writes", batcher_->writes()}}},
      {"partition_keys", partition_keys},
      {"peers", peers},
      {"uptime_s", stats_.uptime_s()},
      {"keys_estimate", store_->KeysEstimate()},
      {"ops", ops},
      {"latency_us", latency},
      {"cache",
       {{"hits", cache_.hits()},
        {"misses", cache_.misses()},
        {"bytes", cache_.bytes()},
        {"entries", cache_.entries()},
        {"capacity_bytes", cache_.capacity_bytes()}}},
      {"hints_pending", handoff_ ? handoff_->pending() : 0},
      {"hints_pending_per_target", per_target},
      {"hints_written", counters_.hints_written.load()},
      {"hints_delivered", counters_.hints_delivered.load()},
      {"hints_dropped", counters_.hints_dropped.load()},
      {"read_repairs", counters_.read_repairs.load()},
      {"clock_skew_rejections", counters_.clock_skew_rejections.load()},
      {"hints_failed", counters_.hints_failed.load()},
      {"write_restamps", counters_.write_restamps.load()},
      {"round_deadlines", counters_.round_deadlines.load()},
      {"connections", connections_.open.load()},
      {"connections_refused", connections_.refused.load()},
      {"errors", errors},
  };
  return stats.dump();
}

MetricsInput Node::Impl::GatherMetrics() {
  MetricsInput in;
  in.node_id = opts_.node_id;
  in.stats = &stats_;
  in.counters = &counters_;
  in.store = store_->Properties();
  in.keys_estimate = store_->KeysEstimate();
  in.cache_hits = cache_.hits();
  in.cache_misses = cache_.misses();
  in.cache_bytes = cache_.bytes();
  in.cache_capacity_bytes = cache_.capacity_bytes();
  in.write_batches = batcher_->commits();
  in.batched_writes = batcher_->writes();
  if (handoff_) in.hints_pending = handoff_->pending_per_target();
  in.members = membership_.Snapshot();
  in.connections = connections_.open.load();
  in.connections_refused = connections_.refused.load();
  return in;
}

void Node::Impl::StatsOp(const Request& req, Done done) {
  done(ResponseBuilder(req.id_json).AddRaw("stats", StatsJson()).Finish());
}

void Node::Impl::ClusterOp(const Request& req, Done done) {
  nlohmann::json nodes = nlohmann::json::array();
  std::string self_address;
  {
    std::lock_guard<std::mutex> l(mu_);
    self_address = advertised_;
  }
  for (const cluster::MemberStatus& m : membership_.Snapshot()) {
    bool self = m.id == opts_.node_id;
    nodes.push_back({{"id", m.id},
                     {"address", self ? self_address : m.address},
                     {"status", m.up ? "up" : "down"}});
  }
  done(ResponseBuilder(req.id_json)
           .AddString("node", opts_.node_id)
           .AddInt("replicas", ring_.replicas())
           .AddInt("partitions", ring_.partitions())
           .AddRaw("nodes", nodes.dump())
           .Finish());
}

void Node::Impl::Locate(const Request& req, Done done) {
  uint32_t p = ring_.PartitionOf(req.key);
  done(ResponseBuilder(req.id_json)
           .AddInt("partition", p)
           .AddStringArray("replicas", ring_.PreferenceList(p))
           .Finish());
}

// A backup copies files and may take long: it runs on its own thread, never on
// an I/O thread, and answers through `done` when finished.
void Node::Impl::Backup(const Request& req, Done done) {
  std::lock_guard<std::mutex> l(mu_);
  // Join the backups that have finished, so periodic backups do not pile up
  // threads; a running one is left alone.
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (it->finished->load()) {
      it->thread.join();
      it = jobs_.erase(it);
    } else {
      ++it;
    }
  }
  auto finished = std::make_shared<std::atomic<bool>>(false);
  Job& job = jobs_.emplace_back();
  job.finished = finished;
  job.thread = std::thread([this, req, finished, done = std::move(done)] {
    struct MarkFinished {
      std::atomic<bool>* flag;
      ~MarkFinished() { flag->store(true); }
    } mark{finished.get()};
    BackupResult result;
    Status s = store_->Backup(req.dir, &result);
    if (!s.ok()) return done(Fail(req.id_json, s));
    spdlog::info("[backup] backup {} of {} bytes written to {}", result.backup_id, result.bytes,
                 req.dir);
    done(ResponseBuilder(req.id_json)
             .AddString("dir", req.dir)
             .AddInt("bytes", static_cast<int64_t>(result.bytes))
             .AddInt("backup_id", result.backup_id)
             .Finish());
  });
}

// A replica write from a coordinator. Versions too far ahead of this node's
// clock are refused, so that a peer with a skewed clock cannot stamp values
// that would win every later write for hours.
void Node::Impl::PeerWrite(const Request& req, Done done) {
  uint64_t now = opts_.clock->NowMs();
  uint64_t at = HlcPhysicalMs(req.record.version.hlc);
  if (at > now + opts_.max_clock_skew_ms) {
    counters_.clock_skew_rejections.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("[node] refused a write stamped {} ms ahead of this clock by {}", at - now,
                 req.record.version.node);
    return done(Fail(req.id_json, Status::BadRequest("version is " + std::to_string(at - now) +
                                                     " ms ahead of this node's clock")));
  }
  hlc_.Observe(req.record.version.hlc);
  WriteLocal(req.key, req.record, [this, id = req.id_json, done = std::move(done)](Status s) {
    if (s.IsStale()) return done(RenderStale(id, s));
    if (!s.ok()) return done(Fail(id, s));
    done(ResponseBuilder(id).Finish());
  });
}

void Node::Impl::PeerRead(const Request& req, Done done) {
  Record record;
  Status s = ReadLocal(req.key, &record);
  if (!s.ok() && !s.IsNotFound()) return done(Fail(req.id_json, s));
  done(RenderPeerRecord(req.id_json, s.ok() ? &record : nullptr));
}

// The membership handshake and failure-detector ping: both sides must agree on
// members, Q and N, or they refuse to work together.
void Node::Impl::PeerHello(const Request& req, Done done) {
  if (req.fingerprint != fingerprint_) {
    // A misconfigured peer pings 4 times a second: log it once a minute.
    uint64_t now = opts_.clock->NowMs();
    uint64_t last = last_mismatch_log_ms_.load(std::memory_order_relaxed);
    if (now >= last + 60'000 && last_mismatch_log_ms_.compare_exchange_strong(last, now)) {
      spdlog::error("[membership] {} has another cluster configuration: theirs '{}', ours '{}'",
                    req.from, req.fingerprint, fingerprint_);
    }
    return done(
        Fail(req.id_json, Status::BadRequest("cluster mismatch: this node has '" + fingerprint_ +
                                             "', the caller '" + req.fingerprint + "'")));
  }
  // Keep this clock past the caller's (PROTOCOL.md §8, clock skew), unless
  // the caller's runs further ahead than this node accepts versions from.
  if (req.hlc != 0) {
    uint64_t ahead = HlcPhysicalMs(req.hlc);
    if (ahead <= opts_.clock->NowMs() + opts_.max_clock_skew_ms) hlc_.Observe(req.hlc);
  }
  // The caller is not marked up here: membership follows this node's own
  // pings, so "up" means this node's transport has reached the peer (a peer
  // that can reach us may not yet be reachable from us).
  done(ResponseBuilder(req.id_json).AddString("node", opts_.node_id).Finish());
}

void Node::Impl::SetAdvertisedAddress(std::string address) {
  std::lock_guard<std::mutex> l(mu_);
  advertised_ = std::move(address);
}

void Node::Impl::Shutdown() {
  if (background_) background_->Stop();
  std::vector<Job> jobs;
  {
    std::lock_guard<std::mutex> l(mu_);
    jobs.swap(jobs_);
  }
  for (Job& job : jobs) job.thread.join();
}

Status Node::Open(const NodeOptions& options, std::unique_ptr<Node>* out) {
  auto impl = std::make_unique<Impl>(options);
  RINGKV_RETURN_IF_ERROR(impl->Open());
  out->reset(new Node(std::move(impl)));
  return Status::OK();
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Node::~Node() { impl_->Shutdown(); }

void Node::Handle(std::string_view line, Done done) { impl_->Handle(line, std::move(done)); }
std::string Node::RequestTooLargeResponse() { return impl_->RequestTooLarge(); }
void Node::SetAdvertisedAddress(std::string address) {
  impl_->SetAdvertisedAddress(std::move(address));
}
void Node::SetPeerTransport(cluster::ReplicaTransport* peers) { impl_->SetPeerTransport(peers); }
cluster::Membership* Node::membership() { return impl_->membership(); }
cluster::HintedHandoff* Node::handoff() { return impl_->handoff(); }
HybridClock* Node::hybrid_clock() { return impl_->hybrid_clock(); }
const std::string& Node::cluster_fingerprint() const { return impl_->fingerprint(); }
void Node::Shutdown() { impl_->Shutdown(); }
std::string Node::MetricsText() { return impl_->MetricsText(); }
ConnectionStats* Node::connection_stats() { return impl_->connection_stats(); }

}  // namespace ringkv
