#include "server/node.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "engine/record_cache.h"
#include "engine/store.h"
#include "engine/version.h"
#include "server/auth_gate.h"
#include "server/background.h"
#include "server/cluster/anti_entropy.h"
#include "server/cluster/coordinator.h"
#include "server/cluster/counters.h"
#include "server/cluster/handoff.h"
#include "server/cluster/membership.h"
#include "server/cluster/ring.h"
#include "server/cluster/router.h"
#include "server/local_replica.h"
#include "server/metrics.h"
#include "server/node_impl.h"
#include "server/protocol.h"
#include "server/protocol_aae.h"
#include "server/stats.h"
#include "server/write_batcher.h"

namespace ringkv {

namespace {

constexpr char kFreshValue[] = "fresh";           // set while a new data dir checks with its peers
constexpr char kSeenPeersValue[] = "seen_peers";  // "id=dir,id=dir"
constexpr char kDirIdValue[] = "dir_id";
// Compaction debt beyond which anti-entropy pauses (see OpenAntiEntropy).
constexpr uint64_t kAaeBusyCompactionDebt = 1ULL << 30;

std::map<std::string, std::string> SplitSeen(const std::string& text) {
  std::map<std::string, std::string> out;
  std::stringstream in(text);
  std::string entry;
  while (std::getline(in, entry, ',')) {
    size_t eq = entry.find('=');
    if (eq != std::string::npos && eq > 0) out[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return out;
}

std::string JoinSeen(const std::map<std::string, std::string>& seen) {
  std::string out;
  for (const auto& [id, dir] : seen) out += (out.empty() ? "" : ",") + id + "=" + dir;
  return out;
}

// 128 random bits as hex: a data dir's identity.
std::string NewDirId() {
  std::random_device rd;
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return buf;
}

}  // namespace

Node::Impl::Impl(const NodeOptions& o)
    : opts_(o),
      hlc_(o.clock),
      membership_({{o.node_id, o.listen}}, o.node_id),
      fingerprint_("Q=" + std::to_string(o.partitions)),
      advertised_(o.listen) {
  limits_.max_key_bytes = o.max_key_bytes;
  limits_.max_value_bytes = o.max_value_bytes;
}

Status Node::Impl::Open() {
  // Until a map is installed (a --join node), a ring of this node alone,
  // which fences nothing: the node serves no request before it is a member.
  cluster::Ring lone;
  RINGKV_RETURN_IF_ERROR(cluster::Ring::Make({opts_.node_id}, opts_.partitions, 1, &lone));
  rings_ = std::make_unique<cluster::RingHolder>(std::move(lone));
  StoreOptions so;
  so.path = opts_.data_dir;
  so.node_id = opts_.node_id;
  so.partitions = opts_.partitions;
  so.clock = opts_.clock;
  so.block_cache_bytes = opts_.block_cache_bytes;
  so.write_buffer_bytes = opts_.write_buffer_bytes;
  so.sync_writes = opts_.sync_writes;
  so.wal_sync_interval_ms = opts_.wal_sync_ms;
  background_ = std::make_unique<Background>();
  LocalReplica::Options ro;
  ro.node_id = opts_.node_id;
  ro.cache_bytes = opts_.cache_bytes;
  ro.clock = opts_.clock;
  ro.max_clock_skew_ms = opts_.max_clock_skew_ms;
  RINGKV_RETURN_IF_ERROR(LocalReplica::Open(ro, so, background_.get(), &replica_));
  store_ = replica_->store();

  router_ = std::make_unique<cluster::ReplicaRouter>(opts_.node_id, replica_.get(), rings_.get());
  if (opts_.hinted_handoff) {
    cluster::HandoffOptions ho;
    ho.max_age_ms = opts_.hint_window_s * 1000;
    ho.timeout_ms = opts_.request_timeout_ms;
    ho.background = background_.get();
    handoff_ = std::make_unique<cluster::HintedHandoff>(ho, store_, router_.get(), &membership_,
                                                        rings_.get(), opts_.clock, &counters_);
    RINGKV_RETURN_IF_ERROR(handoff_->Init());
  }
  cluster::CoordinatorOptions co;
  co.node_id = opts_.node_id;
  co.timer = background_.get();
  co.background = background_.get();
  // After a replica answered stale_epoch: bring the maps together, then the
  // round is routed again (off the peer thread that carried the answer).
  co.catch_up = [this](uint64_t replica_epoch, std::function<void()> then) {
    manager_->Sync(replica_epoch, [this, then = std::move(then)] { background_->Run(then); });
  };
  coordinator_ = std::make_unique<cluster::Coordinator>(
      co, rings_.get(), &membership_, router_.get(), &hlc_, handoff_.get(), &counters_);
  AuthGate::Options go;
  go.node_id = opts_.node_id;
  go.auth_file = opts_.auth_file;
  go.cluster_secret_file = opts_.cluster_secret_file;
  go.tls_verifies_peers = !opts_.tls_ca.empty();
  go.tls_key_file = opts_.tls_key;
  // Knowing the secret proves a node is of this cluster; a node waiting to
  // join is in no map yet, so any valid id may authenticate.
  go.is_member = [](const std::string& id) { return IsValidNodeId(id); };
  RINGKV_RETURN_IF_ERROR(AuthGate::Open(go, &gate_));
  RINGKV_RETURN_IF_ERROR(OpenMembership());
  if (manager_->map()) {
    std::vector<uint32_t> replicated;
    const cluster::Ring* r = ring();
    for (uint32_t p = 0; p < r->partitions(); ++p) {
      if (r->Replicates(opts_.node_id, p)) replicated.push_back(p);
    }
    RINGKV_RETURN_IF_ERROR(store_->EnsurePartitions(replicated));
  }
  return OpenAntiEntropy();
}

void Node::Impl::Handle(const std::shared_ptr<Connection>& conn, std::string_view line, Done done) {
  auto start = std::chrono::steady_clock::now();
  Request req;
  Status s = ParseRequest(line, limits_, &req);
  if (!s.ok()) {
    // Who may send the op comes before what is wrong with its fields; a
    // line that is not a request is bad_request for everyone.
    if (req.op_known || s.code() == Status::Code::kUnknownOp) {
      Status admitted = req.op_known ? gate_->Admit(*conn, req.op) : gate_->AdmitUnknown(*conn);
      if (!admitted.ok()) return done(Fail(req.id_json, admitted));
    }
    return done(Fail(req.id_json, s));
  }
  // Indexed by Op: the op table's handler column (server/op_list.h).
#define RINGKV_OP_HANDLER(e, name, parser, handler, role, scope) &Impl::handler,
  static constexpr std::array<Handler, kOpCount> kHandlers = {RINGKV_OPS(RINGKV_OP_HANDLER)};
#undef RINGKV_OP_HANDLER
  s = gate_->Admit(*conn, req.op);
  if (!s.ok()) return done(Fail(req.id_json, s));
  req.conn = conn.get();
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

void Node::Impl::CoordinateWrite(const Request& req, Record record, Done done) {
  if (!manager_->member()) {
    return done(Fail(req.id_json, Status::Unavailable("this node is not a member of a cluster yet "
                                                      "(kvctl cluster join)")));
  }
  const int n = ring()->replicas();
  int w = 0;
  Status s = req.w.Resolve(n, opts_.write_quorum_given ? opts_.write_quorum : n / 2 + 1, "w", &w);
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
  if (!manager_->member() && !req.local) {
    return done(Fail(req.id_json, Status::Unavailable("this node is not a member of a cluster yet "
                                                      "(kvctl cluster join)")));
  }
  const int n = ring()->replicas();
  int r = 0;
  Status s = req.r.Resolve(n, opts_.read_quorum_given ? opts_.read_quorum : n / 2 + 1, "r", &r);
  if (!s.ok()) return done(Fail(req.id_json, s));
  if (req.local) {
    Record record;
    s = replica_->ReadOwn(req.key, &record);
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
  const cluster::Ring* r = ring();
  for (uint32_t p = 0; p < r->partitions(); ++p) replicated += r->Replicates(opts_.node_id, p);
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
        {"write_batches", replica_->batcher()->commits()},
        {"batched_writes", replica_->batcher()->writes()}}},
      {"partition_keys", partition_keys},
      {"peers", peers},
      {"uptime_s", stats_.uptime_s()},
      {"keys_estimate", store_->KeysEstimate()},
      {"ops", ops},
      {"latency_us", latency},
      {"cache",
       {{"hits", replica_->cache()->hits()},
        {"misses", replica_->cache()->misses()},
        {"bytes", replica_->cache()->bytes()},
        {"entries", replica_->cache()->entries()},
        {"capacity_bytes", replica_->cache()->capacity_bytes()}}},
      {"hints_pending", handoff_ ? handoff_->pending() : 0},
      {"hints_pending_per_target", per_target},
      {"hints_written", counters_.hints_written.load()},
      {"hints_delivered", counters_.hints_delivered.load()},
      {"hints_dropped", counters_.hints_dropped.load()},
      {"read_repairs", counters_.read_repairs.load()},
      {"auth_failures", gate_->auth_failures()},
      {"peer_auth_failures", gate_->peer_auth_failures()},
      {"clock_skew_rejections", counters_.clock_skew_rejections.load()},
      {"hints_failed", counters_.hints_failed.load()},
      {"write_restamps", counters_.write_restamps.load()},
      {"write_version_checks", replica_->version_checks()},
      {"round_deadlines", counters_.round_deadlines.load()},
      {"hints_retargeted", counters_.hints_retargeted.load()},
      {"fenced_requests", counters_.fenced_requests.load()},
      {"stale_epoch_retries", counters_.stale_epoch_retries.load()},
      {"membership",
       {{"epoch", manager_->epoch()},
        {"moves_started", manager_->counters().moves_started.load()},
        {"moves_done", manager_->counters().moves_done.load()},
        {"move_failures", manager_->counters().move_failures.load()},
        {"transfer_bytes_in", manager_->counters().bytes_in.load()},
        {"transfer_bytes_out", manager_->counters().bytes_out.load()},
        {"split_brain", manager_->counters().split_brain.load()}}},
      {"aae", json::parse(AaeSummaryJson(AaeSnapshot()))},
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
  in.cache_hits = replica_->cache()->hits();
  in.cache_misses = replica_->cache()->misses();
  in.cache_bytes = replica_->cache()->bytes();
  in.cache_capacity_bytes = replica_->cache()->capacity_bytes();
  in.write_batches = replica_->batcher()->commits();
  in.batched_writes = replica_->batcher()->writes();
  if (handoff_) in.hints_pending = handoff_->pending_per_target();
  in.members = membership_.Snapshot();
  in.connections = connections_.open.load();
  in.connections_refused = connections_.refused.load();
  in.auth_failures = gate_->auth_failures();
  in.peer_auth_failures = gate_->peer_auth_failures();
  in.aae = AaeSnapshot();
  in.map_epoch = manager_->epoch();
  if (auto map = manager_->map(); map && map->InTransition()) in.moves_pending = map->moves.size();
  const ClusterManagerCounters& mc = manager_->counters();
  in.moves_done = mc.moves_done.load();
  in.move_failures = mc.move_failures.load();
  in.transfer_bytes_in = mc.bytes_in.load();
  in.transfer_bytes_out = mc.bytes_out.load();
  in.split_brain = mc.split_brain.load();
  in.now_ms = opts_.clock->NowMs();
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
  std::shared_ptr<const cluster::ClusterMap> map = manager_->map();
  if (!map || map->Find(opts_.node_id) == nullptr) {
    nodes.push_back(
        {{"id", opts_.node_id}, {"address", self_address}, {"status", "up"}, {"state", "joining"}});
  } else {
    for (const cluster::MapMember& m : map->members) {
      bool self = m.id == opts_.node_id;
      nodes.push_back({{"id", m.id},
                       {"address", self ? self_address : m.address},
                       {"status", membership_.IsUp(m.id) ? "up" : "down"},
                       {"state", cluster::MemberStateName(m.state)}});
    }
  }
  const cluster::Ring* r = ring();
  ResponseBuilder out(req.id_json);
  out.AddString("node", opts_.node_id)
      .AddInt("epoch", static_cast<int64_t>(map ? map->epoch : 0))
      .AddInt("replicas", map ? map->replicas : 0)
      .AddInt("partitions", r->partitions());
  if (map) {
    out.AddString("cluster_id", map->cluster_id)
        .AddString("claimant", map->Claimant())
        .AddString("phase", cluster::MapPhaseName(map->phase));
    if (map->InTransition()) out.AddString("change", map->change);
  }
  done(out.AddRaw("nodes", nodes.dump()).Finish());
}

void Node::Impl::Locate(const Request& req, Done done) {
  const cluster::Ring* r = ring();
  uint32_t p = r->PartitionOf(req.key);
  done(ResponseBuilder(req.id_json)
           .AddInt("partition", p)
           .AddInt("epoch", static_cast<int64_t>(r->epoch()))
           .AddStringArray("replicas", r->PreferenceList(p))
           .Finish());
}

// A backup copies files and may take long: it runs on its own thread, never on
// an I/O thread, and answers through `done` when finished.
void Node::Impl::Backup(const Request& req, Done done) {
  RunJob([this, req, done = std::move(done)] {
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

void Node::Impl::RunJob(std::function<void()> fn) {
  std::lock_guard<std::mutex> l(mu_);
  // Join the jobs that have finished, so periodic backups do not pile up
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
  job.thread = std::thread([finished, fn = std::move(fn)] {
    struct MarkFinished {
      std::atomic<bool>* flag;
      ~MarkFinished() { flag->store(true); }
    } mark{finished.get()};
    fn();
  });
}

// A replica write from a coordinator. Versions too far ahead of this node's
// clock are refused, so that a peer with a skewed clock cannot stamp values
// that would win every later write for hours.
void Node::Impl::PeerWrite(const Request& req, Done done) {
  if (Status f = Fence(req, /*write=*/true); !f.ok()) return done(Fail(req.id_json, f));
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
  replica_->WriteLocal(req.key, req.record,
                       [this, id = req.id_json, done = std::move(done)](Status s) {
                         if (s.IsStale()) return done(RenderStale(id, s));
                         if (!s.ok()) return done(Fail(id, s));
                         done(ResponseBuilder(id).Finish());
                       });
}

void Node::Impl::Auth(const Request& req, Done done) {
  // The next request on this connection must see the outcome.
  req.conn->HoldUntilAnswered();
  gate_->Auth(req.conn->shared_from_this(), req.user, req.password,
              [this, id = req.id_json, done = std::move(done)](Status s, const std::string& user,
                                                               security::Role role) {
                if (!s.ok()) return done(Fail(id, s));
                done(ResponseBuilder(id)
                         .AddString("user", user)
                         .AddString("role", security::RoleName(role))
                         .Finish());
              });
}

void Node::Impl::PeerChallenge(const Request& req, Done done) {
  std::string nonce;
  Status s = gate_->Challenge(req.conn, &nonce);
  if (!s.ok()) return done(Fail(req.id_json, s));
  done(ResponseBuilder(req.id_json).AddString("nonce", nonce).Finish());
}

void Node::Impl::PeerAuth(const Request& req, Done done) {
  std::string proof;
  Status s = gate_->PeerAuth(req.conn, req.from, req.nonce, req.proof, &proof);
  if (!s.ok()) return done(Fail(req.id_json, s));
  done(ResponseBuilder(req.id_json)
           .AddString("node", opts_.node_id)
           .AddString("proof", proof)
           .Finish());
}

Status Node::Impl::ReloadUsers() { return gate_->ReloadUsers(); }

net::PeerHandshakeFactory Node::Impl::PeerHandshakes() const { return gate_->PeerHandshakes(); }

void Node::Impl::PeerRead(const Request& req, Done done) {
  if (Status f = Fence(req, /*write=*/false); !f.ok()) return done(Fail(req.id_json, f));
  Record record;
  Status s = replica_->ReadLocal(req.key, &record);
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
  // Whether this node knew the caller with another data dir: a caller whose
  // data dir is new learns from it that it lost its disk (OnPeerHello).
  // Remembered across restarts; written when a peer's dir first shows or
  // changes.
  bool dir_changed = false;
  if (!req.peer_dir.empty() && IsValidNodeId(req.from) &&
      req.peer_dir.find_first_of(",=") == std::string::npos) {
    std::lock_guard<std::mutex> l(seen_mu_);
    auto it = seen_peers_.find(req.from);
    if (it == seen_peers_.end() || it->second != req.peer_dir) {
      dir_changed = it != seen_peers_.end();
      seen_peers_[req.from] = req.peer_dir;
      Status s = store_->PutNodeValue(kSeenPeersValue, JoinSeen(seen_peers_));
      if (!s.ok()) spdlog::error("[membership] cannot record peer {}: {}", req.from, s.message());
    }
  }
  // A caller with a newer map: fetch it (in the background).
  if (req.epoch > manager_->epoch() && IsValidNodeId(req.from)) {
    manager_->OnPeerEpoch(req.from, req.epoch);
  }
  // The caller is not marked up here: membership follows this node's own
  // pings, so "up" means this node's transport has reached the peer (a peer
  // that can reach us may not yet be reachable from us).
  done(ResponseBuilder(req.id_json)
           .AddString("node", opts_.node_id)
           .AddBool("dir_changed", dir_changed)
           .AddInt("epoch", static_cast<int64_t>(manager_->epoch()))
           .Finish());
}

// ---- Anti-entropy ----

// The scheduler's persistent state: the node's own meta values.
class Node::Impl::StateStore final : public cluster::AaeStateStore {
 public:
  explicit StateStore(Store* store) : store_(store) {}
  Status Get(const std::string& name, std::string* value) override {
    return store_->GetNodeValue(name, value);
  }
  Status Put(const std::string& name, const std::string& value) override {
    return store_->PutNodeValue(name, value);
  }

 private:
  Store* const store_;
};

Status Node::Impl::OpenAntiEntropy() {
  std::string value;
  Status s = store_->GetNodeValue(kSeenPeersValue, &value);
  if (s.ok()) seen_peers_ = SplitSeen(value);
  if (!s.ok() && !s.IsNotFound()) return s;
  s = store_->GetNodeValue(kDirIdValue, &dir_id_);
  if (s.IsNotFound()) {
    dir_id_ = NewDirId();
    s = store_->PutNodeValue(kDirIdValue, dir_id_);
  }
  if (!s.ok()) return s;
  std::shared_ptr<const cluster::ClusterMap> map = manager_->map();
  const bool has_peers = !opts_.join_seeds.empty() || (map && map->members.size() > 1);
  if (has_peers && opts_.anti_entropy) {
    if (store_->created()) RINGKV_RETURN_IF_ERROR(store_->PutNodeValue(kFreshValue, "1"));
    s = store_->GetNodeValue(kFreshValue, &value);
    if (!s.ok() && !s.IsNotFound()) return s;
    fresh_ = s.ok();
  }
  aae_state_ = std::make_unique<StateStore>(store_);
  cluster::AntiEntropyOptions ao;
  ao.self = opts_.node_id;
  ao.interval_ms = opts_.aae_interval_ms;
  ao.exchanges = opts_.anti_entropy;
  // A tombstone may be purged once older than the grace period, every hint
  // that could still carry an older version (the hint window) and the clock
  // skew a version may have.
  ao.floor_ms = opts_.tombstone_grace_s * 1000 +
                (opts_.hinted_handoff ? opts_.hint_window_s * 1000 : 0) + opts_.max_clock_skew_ms;
  ao.repair_keys_per_s = opts_.aae_repair_keys_per_s;
  ao.repair_bytes_per_s = opts_.aae_repair_bytes_per_s;
  ao.exchange.pause_ms = std::min<uint64_t>(500, std::max<uint64_t>(1, opts_.aae_interval_ms / 4));
  ao.seed = std::hash<std::string>()(opts_.node_id);
  anti_entropy_ = std::make_unique<cluster::AntiEntropy>(
      ao, opts_.partitions, [this](uint32_t p) { return ring()->PreferenceList(p); },
      [this](const std::string& node) { return membership_.IsUp(node); },
      [this](const std::string& node) { return AaeReplicaOf(node); }, background_.get(),
      [clock = opts_.clock] { return clock->NowMs(); }, &hlc_, aae_state_.get(),
      [this] {
        // Busy: the store refuses writes (a full disk), or compaction is far
        // behind (exchanges would add scans and repairs to its debt).
        StoreProperties props = store_->Properties();
        return props.write_error || props.pending_compaction_bytes > kAaeBusyCompactionDebt;
      });
  replica_->SetRebuildGate([this](uint32_t p) { return RefusesQuorumReads(p); });
  return anti_entropy_->Start();
}

cluster::AaeStatus Node::Impl::AaeSnapshot() {
  cluster::AaeStatus status = anti_entropy_->Snapshot();
  for (cluster::AaePartitionStatus& p : status.partitions) {
    p.watermark = store_->GcWatermark(p.partition);
  }
  return status;
}

bool Node::Impl::RefusesQuorumReads(uint32_t partition) const {
  if (anti_entropy_->IsRebuilding(partition)) return true;
  if (!fresh_.load(std::memory_order_acquire)) return false;
  // A peer that is down cannot tell; one that is up will, within a ping.
  std::lock_guard<std::mutex> l(seen_mu_);
  for (const std::string& p : membership_.Peers()) {
    if (!answered_.count(p) && membership_.IsUp(p)) return true;
  }
  return false;
}

cluster::AaeReplica* Node::Impl::AaeReplicaOf(const std::string& node) {
  if (node == opts_.node_id) return replica_.get();
  std::lock_guard<std::mutex> l(remotes_mu_);
  auto it = remotes_.find(node);
  return it == remotes_.end() ? nullptr : it->second.get();
}

void Node::Impl::SetAaeRemotes(
    std::map<std::string, std::unique_ptr<cluster::AaeReplica>> remotes) {
  std::lock_guard<std::mutex> l(remotes_mu_);
  remotes_ = std::move(remotes);
}

// A peer answered our hello. A data dir that is new (fresh_) while a peer
// knew this node with another one means the node lost its disk: everything it
// replicates is pulled back from the other replicas before its reads count
// again. (A brand-new cluster's nodes have never seen each other's dirs, and a
// node restarted on its own dir sends the same identity: neither rebuilds.)
void Node::Impl::OnPeerHello(const std::string& peer, bool dir_changed, uint64_t epoch) {
  manager_->OnPeerEpoch(peer, epoch);
  if (!fresh_.load(std::memory_order_acquire)) return;
  bool settled = true;
  {
    std::lock_guard<std::mutex> l(seen_mu_);
    answered_.insert(peer);
    for (const std::string& p : membership_.Peers()) settled = settled && answered_.count(p) > 0;
  }
  const bool lost = dir_changed;
  if (lost) {
    spdlog::warn(
        "[aae] this data dir is new but {} knew node {} with another one: the disk was lost or "
        "replaced; "
        "rebuilding every partition from the other replicas (reads count again once done)",
        peer, opts_.node_id);
    Status s = anti_entropy_->BeginRebuild();
    if (!s.ok()) {
      spdlog::error("[aae] cannot start the rebuild: {}", s.message());
      return;
    }
  }
  if (lost || settled) {
    Status s = store_->DeleteNodeValue(kFreshValue);
    if (!s.ok()) spdlog::error("[aae] cannot record the data dir check: {}", s.message());
    fresh_.store(false, std::memory_order_release);
  }
}

void Node::Impl::OnWorker(const Request& req, Done done, std::function<std::string()> fn) {
  if (req.partition >= opts_.partitions) {
    return done(Fail(req.id_json, Status::BadRequest("'partition' must be below " +
                                                     std::to_string(opts_.partitions))));
  }
  background_->Run([fn = std::move(fn), done = std::move(done)] { done(fn()); });
}

void Node::Impl::PeerAaeTree(const Request& req, Done done) {
  OnWorker(req, std::move(done), [this, req] {
    aae::Tree tree;
    Status s = replica_->TreeNow(req.partition, &tree);
    if (!s.ok()) return Fail(req.id_json, s);
    if (!req.has_ids) {
      cluster::AaeRoot root;
      root.watermark = store_->GcWatermark(req.partition);
      root.branches = tree.branches();
      return RenderAaeRoot(req.id_json, root);
    }
    std::vector<cluster::AaeSegments> out;
    for (uint32_t b : req.ids) {
      if (b >= aae::kBranches) return Fail(req.id_json, Status::BadRequest("branch out of range"));
      out.push_back(tree.BranchSegments(b));
    }
    return RenderAaeBranches(req.id_json, out);
  });
}

void Node::Impl::PeerAaeKeys(const Request& req, Done done) {
  OnWorker(req, std::move(done), [this, req] {
    for (uint32_t seg : req.ids) {
      if (seg >= aae::kSegments)
        return Fail(req.id_json, Status::BadRequest("segment out of range"));
    }
    std::vector<aae::KeyVersion> keys;
    bool truncated = false;
    const size_t limit = std::clamp<uint64_t>(req.limit == 0 ? 20000 : req.limit, 1, 100000);
    Status s = store_->AaeListKeys(req.partition, req.ids, limit, &keys, &truncated);
    if (!s.ok()) return Fail(req.id_json, s);
    return RenderAaeKeys(req.id_json, keys, truncated);
  });
}

void Node::Impl::PeerAaeFetch(const Request& req, Done done) {
  OnWorker(req, std::move(done), [this, req] {
    cluster::AaeRecords records;
    Status s = replica_->FetchNow(req.partition, req.keys, &records);
    if (!s.ok()) return Fail(req.id_json, s);
    return RenderAaeRecords(req.id_json, records, false, "");
  });
}

void Node::Impl::PeerAaeScan(const Request& req, Done done) {
  OnWorker(req, std::move(done), [this, req] {
    cluster::AaeRecords records;
    std::string next;
    const size_t limit = std::clamp<uint64_t>(req.limit == 0 ? 1000 : req.limit, 1, 10000);
    const size_t bytes = std::clamp<uint64_t>(req.bytes == 0 ? 1 << 20 : req.bytes, 1, 8 << 20);
    Status s = store_->AaeScanRecords(req.partition, req.after, limit, bytes, &records, &next);
    if (!s.ok()) return Fail(req.id_json, s);
    return RenderAaeRecords(req.id_json, records, true, next);
  });
}

// A watermark lets compaction purge what lies below it, so one from the
// future (a peer with a skewed clock, or garbage) is refused.
void Node::Impl::PeerAaeGc(const Request& req, Done done) {
  if (HlcPhysicalMs(req.watermark) > opts_.clock->NowMs()) {
    return done(Fail(req.id_json, Status::BadRequest("watermark is in this node's future")));
  }
  OnWorker(req, std::move(done), [this, req] {
    Status s = store_->RaiseGcWatermark(req.partition, req.watermark);
    if (!s.ok()) return Fail(req.id_json, s);
    return ResponseBuilder(req.id_json).Finish();
  });
}

void Node::Impl::AaeOp(const Request& req, Done done) {
  done(ResponseBuilder(req.id_json)
           .AddRaw("aae", AaeStatusJson(AaeSnapshot(), opts_.clock->NowMs()))
           .Finish());
}

// A full compaction takes long: it runs on a thread of its own.
void Node::Impl::Compact(const Request& req, Done done) {
  RunJob([this, req, done = std::move(done)] {
    auto start = std::chrono::steady_clock::now();
    Status s = store_->CompactPartitions();
    if (!s.ok()) return done(Fail(req.id_json, s));
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    spdlog::info("[compact] full compaction of every partition took {} ms", ms);
    done(ResponseBuilder(req.id_json).AddInt("ms", ms).Finish());
  });
}

void Node::Impl::SetAdvertisedAddress(std::string address) {
  std::lock_guard<std::mutex> l(mu_);
  advertised_ = std::move(address);
}

void Node::Impl::Shutdown() {
  if (manager_) manager_->Stop();
  if (anti_entropy_) anti_entropy_->Stop();
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

Status Node::ReloadUsers() { return impl_->ReloadUsers(); }

net::PeerHandshakeFactory Node::PeerHandshakes() const { return impl_->PeerHandshakes(); }

void Node::Handle(const std::shared_ptr<Connection>& conn, std::string_view line, Done done) {
  impl_->Handle(conn, line, std::move(done));
}
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
void Node::SetAaeRemotes(std::map<std::string, std::unique_ptr<cluster::AaeReplica>> remotes) {
  impl_->SetAaeRemotes(std::move(remotes));
}
void Node::OnPeerHello(const std::string& peer, bool dir_changed, uint64_t epoch) {
  impl_->OnPeerHello(peer, dir_changed, epoch);
}
uint64_t Node::map_epoch() const { return impl_->map_epoch(); }
void Node::AddAaeRemote(const std::string& id, std::unique_ptr<cluster::AaeReplica> remote) {
  impl_->AddAaeRemote(id, std::move(remote));
}
void Node::SetPeerSender(PeerSender send) { impl_->SetPeerSender(std::move(send)); }
void Node::SetPeerListener(PeerListener listener) { impl_->SetPeerListener(std::move(listener)); }
void Node::StartMembership() { impl_->StartMembership(); }
const std::string& Node::data_dir_id() const { return impl_->data_dir_id(); }
std::string Node::MetricsText() { return impl_->MetricsText(); }
ConnectionStats* Node::connection_stats() { return impl_->connection_stats(); }

}  // namespace ringkv
