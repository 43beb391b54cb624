#include "server/node.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "engine/record_cache.h"
#include "engine/store.h"
#include "engine/version.h"
#include "server/cluster/ring.h"
#include "server/protocol.h"
#include "server/stats.h"

namespace ringkv {

class Node::Impl {
 public:
  explicit Impl(const NodeOptions& o)
      : opts_(o), hlc_(o.clock), cache_(o.cache_bytes), advertised_(o.listen) {
    limits_.max_key_bytes = o.max_key_bytes;
    limits_.max_value_bytes = o.max_value_bytes;
  }

  Status Open();
  void Handle(std::string_view line, Done done);
  std::string RequestTooLarge();
  void SetAdvertisedAddress(std::string address);
  void Shutdown();

 private:
  using Handler = std::string (Impl::*)(const Request&);

  // Runs a parsed request; returns its response line, or "" if the op answers
  // asynchronously through `done` (backup).
  std::string Dispatch(const Request& req, const Done& done);
  std::string Fail(const std::string& id_json, const Status& s);

  std::string Put(const Request& req);
  std::string Get(const Request& req);
  std::string Delete(const Request& req);
  std::string Ping(const Request& req);
  std::string StatsOp(const Request& req);
  std::string ClusterOp(const Request& req);
  std::string Locate(const Request& req);
  void Backup(const Request& req, Done done);

  // Writes `record` for `key` through the store and the cache.
  Status WriteRecord(const Request& req, Record* record);
  // Reads `key`'s record through the cache. NotFound if there is none.
  Status ReadRecord(std::string_view key, std::shared_ptr<const Record>* out);
  Status CheckWriteQuorum(const Request& req);
  std::string StatsJson();

  const NodeOptions opts_;
  Limits limits_;
  HybridClock hlc_;
  RecordCache cache_;
  cluster::Ring ring_;
  std::unique_ptr<Store> store_;
  Stats stats_;

  // mu_ protects the following.
  std::mutex mu_;
  std::string advertised_;
  std::vector<std::thread> jobs_;  // background jobs (backups); joined by Shutdown()
};

Status Node::Impl::Open() {
  std::vector<std::string> ids;
  for (const Member& m : opts_.cluster) ids.push_back(m.id);
  RINGKV_RETURN_IF_ERROR(cluster::Ring::Make(ids, opts_.partitions, opts_.replicas, &ring_));
  StoreOptions so;
  so.path = opts_.data_dir;
  so.node_id = opts_.node_id;
  so.partitions = opts_.partitions;
  so.clock = opts_.clock;
  so.tombstone_grace_ms = opts_.tombstone_grace_s * 1000;
  so.block_cache_bytes = opts_.block_cache_bytes;
  so.write_buffer_bytes = opts_.write_buffer_bytes;
  so.sync_writes = opts_.sync_writes;
  so.wal_sync_interval_ms = opts_.wal_sync_ms;
  return Store::Open(so, &store_);
}

void Node::Impl::Handle(std::string_view line, Done done) {
  auto start = std::chrono::steady_clock::now();
  Request req;
  Status s = ParseRequest(line, limits_, &req);
  if (!s.ok()) {
    done(Fail(req.id_json, s));
    return;
  }
  Op op = req.op;
  auto finish = [this, op, start](const Done& reply, std::string response) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    stats_.RecordOp(op, static_cast<uint64_t>(us));
    reply(std::move(response));
  };
  if (op == Op::kBackup) {
    Backup(req, [finish, done](std::string response) { finish(done, std::move(response)); });
    return;
  }
  finish(done, Dispatch(req, done));
}

std::string Node::Impl::Dispatch(const Request& req, const Done&) {
  // Indexed by Op; backup is answered asynchronously by Handle().
  static constexpr std::array<Handler, kOpCount> kHandlers = {
      &Impl::Put,     &Impl::Get,       &Impl::Delete, &Impl::Ping,
      &Impl::StatsOp, &Impl::ClusterOp, &Impl::Locate, nullptr};
  return (this->*kHandlers[static_cast<int>(req.op)])(req);
}

std::string Node::Impl::Fail(const std::string& id_json, const Status& s) {
  stats_.RecordError(s.code());
  if (s.code() == Status::Code::kInternal) spdlog::error("[node] internal error: {}", s.message());
  return RenderError(id_json, s);
}

std::string Node::Impl::RequestTooLarge() {
  return Fail("", Status::RequestTooLarge("request line longer than " +
                                          std::to_string(opts_.max_request_bytes) + " bytes"));
}

Status Node::Impl::CheckWriteQuorum(const Request& req) {
  int w = 0;
  return req.w.Resolve(ring_.replicas(), opts_.write_quorum, "w", &w);
}

Status Node::Impl::WriteRecord(const Request& req, Record* record) {
  RINGKV_RETURN_IF_ERROR(CheckWriteQuorum(req));
  record->version = {hlc_.Now(), opts_.node_id};
  uint32_t partition = ring_.PartitionOf(req.key);
  RINGKV_RETURN_IF_ERROR(store_->Write(partition, req.key, *record));
  cache_.OnWrite(req.key, *record);
  return Status::OK();
}

std::string Node::Impl::Put(const Request& req) {
  Record record;
  record.value = req.value_json;
  if (req.ttl_ms > 0) record.expires_at_ms = opts_.clock->NowMs() + req.ttl_ms;
  Status s = WriteRecord(req, &record);
  if (!s.ok()) return Fail(req.id_json, s);
  return ResponseBuilder(req.id_json).AddString("version", record.version.ToString()).Finish();
}

std::string Node::Impl::Delete(const Request& req) {
  Record record;
  record.tombstone = true;
  Status s = WriteRecord(req, &record);
  if (!s.ok()) return Fail(req.id_json, s);
  return ResponseBuilder(req.id_json).AddString("version", record.version.ToString()).Finish();
}

Status Node::Impl::ReadRecord(std::string_view key, std::shared_ptr<const Record>* out) {
  if ((*out = cache_.Lookup(key))) return Status::OK();
  uint64_t token = cache_.BeginFill(key);
  auto record = std::make_shared<Record>();
  RINGKV_RETURN_IF_ERROR(store_->Get(ring_.PartitionOf(key), key, record.get()));
  cache_.Fill(key, *record, token);
  *out = std::move(record);
  return Status::OK();
}

std::string Node::Impl::Get(const Request& req) {
  int r = 0;
  Status s = req.r.Resolve(ring_.replicas(), opts_.read_quorum, "r", &r);
  if (!s.ok()) return Fail(req.id_json, s);
  std::shared_ptr<const Record> record;
  s = ReadRecord(req.key, &record);
  if (!s.ok() && !s.IsNotFound()) return Fail(req.id_json, s);
  ResponseBuilder out(req.id_json);
  if (s.IsNotFound() || !record->IsLive(opts_.clock->NowMs())) {
    return out.AddBool("found", false).Finish();
  }
  return out.AddBool("found", true)
      .AddRaw("value", record->value)
      .AddString("version", record->version.ToString())
      .Finish();
}

std::string Node::Impl::Ping(const Request& req) {
  return ResponseBuilder(req.id_json).AddString("node", opts_.node_id).Finish();
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
  json stats = {
      {"node", opts_.node_id},
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
      {"hints_pending", stats_.hints_pending.load()},
      {"hints_delivered", stats_.hints_delivered.load()},
      {"read_repairs", stats_.read_repairs.load()},
      {"errors", errors},
  };
  return stats.dump();
}

std::string Node::Impl::StatsOp(const Request& req) {
  return ResponseBuilder(req.id_json).AddRaw("stats", StatsJson()).Finish();
}

std::string Node::Impl::ClusterOp(const Request& req) {
  nlohmann::json nodes = nlohmann::json::array();
  std::string self_address;
  {
    std::lock_guard<std::mutex> l(mu_);
    self_address = advertised_;
  }
  for (const Member& m : opts_.cluster) {
    bool self = m.id == opts_.node_id;
    // Membership and failure detection arrive with the cluster issue; until
    // then the only member is this node, which is up while it answers.
    nodes.push_back({{"id", m.id}, {"address", self ? self_address : m.address}, {"status", "up"}});
  }
  return ResponseBuilder(req.id_json)
      .AddString("node", opts_.node_id)
      .AddInt("replicas", ring_.replicas())
      .AddInt("partitions", ring_.partitions())
      .AddRaw("nodes", nodes.dump())
      .Finish();
}

std::string Node::Impl::Locate(const Request& req) {
  uint32_t p = ring_.PartitionOf(req.key);
  return ResponseBuilder(req.id_json)
      .AddInt("partition", p)
      .AddStringArray("replicas", ring_.PreferenceList(p))
      .Finish();
}

// A backup copies files and may take long: it runs on its own thread, never on
// an I/O thread, and answers through `done` when finished.
void Node::Impl::Backup(const Request& req, Done done) {
  std::lock_guard<std::mutex> l(mu_);
  jobs_.emplace_back([this, req, done = std::move(done)] {
    BackupResult result;
    Status s = store_->Backup(req.dir, &result);
    if (!s.ok()) {
      done(Fail(req.id_json, s));
      return;
    }
    spdlog::info("[backup] backup {} of {} bytes written to {}", result.backup_id, result.bytes,
                 req.dir);
    done(ResponseBuilder(req.id_json)
             .AddString("dir", req.dir)
             .AddInt("bytes", static_cast<int64_t>(result.bytes))
             .AddInt("backup_id", result.backup_id)
             .Finish());
  });
}

void Node::Impl::SetAdvertisedAddress(std::string address) {
  std::lock_guard<std::mutex> l(mu_);
  advertised_ = std::move(address);
}

void Node::Impl::Shutdown() {
  std::vector<std::thread> jobs;
  {
    std::lock_guard<std::mutex> l(mu_);
    jobs.swap(jobs_);
  }
  for (std::thread& t : jobs) t.join();
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
void Node::Shutdown() { impl_->Shutdown(); }

}  // namespace ringkv
