#include "server/metrics.h"

#include <cstdio>

#include "engine/version.h"
#include "server/protocol.h"

namespace ringkv {
namespace {

class Writer {
 public:
  // Starts a metric family with its HELP and TYPE lines.
  void Family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // One sample; `labels` is "" or `a="x",b="y"`.
  void Sample(const std::string& name, const std::string& labels, double value) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    char buf[64];
    std::snprintf(buf, sizeof(buf), " %.17g\n", value);
    out_ += buf;
  }
  void Sample(const std::string& name, const std::string& labels, uint64_t value) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    out_ += ' ' + std::to_string(value) + '\n';
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Label values here are node ids, op and code names, numbers: none needs
// escaping except in principle backslash and quote, which node ids exclude.
std::string Label(const char* name, const std::string& value) {
  return std::string(name) + "=\"" + value + "\"";
}

void LatencyHistogram(Writer& w, const Stats& stats) {
  const char* name = "ringkv_request_duration_seconds";
  w.Family(name, "histogram", "Time from parsing a request to its response, by op.");
  for (int i = 0; i < kOpCount; ++i) {
    Op op = static_cast<Op>(i);
    const Histogram& h = stats.latency(op);
    std::string op_label = Label("op", std::string(OpName(op)));
    uint64_t cumulative = 0;
    int bucket = 0;
    // Bounds 2^k µs, k = 4..26: each is the first value of a histogram
    // bucket, so the counts below it are exact.
    for (int k = 4; k <= 26; ++k) {
      uint64_t bound_us = uint64_t{1} << k;
      for (; bucket < Histogram::BucketOf(bound_us); ++bucket) cumulative += h.BucketCount(bucket);
      char le[32];
      std::snprintf(le, sizeof(le), "%g", static_cast<double>(bound_us) / 1e6);
      w.Sample(std::string(name) + "_bucket", op_label + "," + Label("le", le), cumulative);
    }
    for (; bucket < Histogram::kBuckets; ++bucket) cumulative += h.BucketCount(bucket);
    w.Sample(std::string(name) + "_bucket", op_label + ",le=\"+Inf\"", cumulative);
    w.Sample(std::string(name) + "_sum", op_label, static_cast<double>(h.sum()) / 1e6);
    w.Sample(std::string(name) + "_count", op_label, cumulative);
  }
}

void Requests(Writer& w, const Stats& stats) {
  w.Family("ringkv_requests_total", "counter", "Requests handled, by op.");
  for (int i = 0; i < kOpCount; ++i) {
    Op op = static_cast<Op>(i);
    w.Sample("ringkv_requests_total", Label("op", std::string(OpName(op))), stats.ops(op));
  }
  w.Family("ringkv_request_errors_total", "counter", "Error responses, by error code.");
  for (int c = static_cast<int>(Status::Code::kBadRequest); c < kCodeCount; ++c) {
    auto code = static_cast<Status::Code>(c);
    w.Sample("ringkv_request_errors_total", Label("code", std::string(Status::CodeName(code))),
             stats.errors(code));
  }
}

void Gauge(Writer& w, const char* name, const char* help, uint64_t value) {
  w.Family(name, "gauge", help);
  w.Sample(name, "", value);
}

void Counter(Writer& w, const char* name, const char* help, uint64_t value) {
  w.Family(name, "counter", help);
  w.Sample(name, "", value);
}

void Cluster(Writer& w, const MetricsInput& in) {
  w.Family("ringkv_peer_up", "gauge", "1 if this node sees the member up, 0 if down.");
  for (const auto& m : in.members) w.Sample("ringkv_peer_up", Label("peer", m.id), uint64_t{m.up});
  w.Family("ringkv_hints_pending", "gauge", "Hints waiting for delivery, by target node.");
  for (const auto& [target, n] : in.hints_pending) {
    w.Sample("ringkv_hints_pending", Label("target", target), n);
  }
  const cluster::Counters& c = *in.counters;
  Counter(w, "ringkv_hints_written_total", "Hints stored for replicas that missed writes.",
          c.hints_written.load());
  Counter(w, "ringkv_hints_delivered_total", "Hints delivered to their target.",
          c.hints_delivered.load());
  Counter(w, "ringkv_hints_dropped_total", "Hints dropped undelivered (too old or refused).",
          c.hints_dropped.load());
  Counter(w, "ringkv_read_repairs_total", "Stale replicas written the newest version by reads.",
          c.read_repairs.load());
  Counter(w, "ringkv_clock_skew_rejections_total",
          "Replica writes refused as stamped too far ahead of this clock.",
          c.clock_skew_rejections.load());
  Counter(w, "ringkv_hints_retargeted_total",
          "Hints handed to a partition's new replicas (their target gave it away).",
          c.hints_retargeted.load());
  Counter(w, "ringkv_fenced_requests_total",
          "Peer requests refused as routed by another cluster map epoch.",
          c.fenced_requests.load());
  Counter(w, "ringkv_stale_epoch_retries_total",
          "Client requests run again after the maps were brought together.",
          c.stale_epoch_retries.load());
  Gauge(w, "ringkv_cluster_map_epoch", "The installed cluster map's epoch.", in.map_epoch);
  Gauge(w, "ringkv_partition_moves_pending",
        "Moves of the change in progress not yet done (0 when stable).", in.moves_pending);
  Counter(w, "ringkv_partition_moves_done_total", "Partitions copied into this node.",
          in.moves_done);
  Counter(w, "ringkv_partition_move_failures_total", "Partition copies that failed and retried.",
          in.move_failures);
  Counter(w, "ringkv_transfer_bytes_in_total", "Partition file bytes received.",
          in.transfer_bytes_in);
  Counter(w, "ringkv_transfer_bytes_out_total", "Partition file bytes sent.",
          in.transfer_bytes_out);
  Counter(w, "ringkv_cluster_map_split_brain_total",
          "Maps seen at this node's epoch that differ from its own.", in.split_brain);
}

void Storage(Writer& w, const MetricsInput& in) {
  Gauge(w, "ringkv_keys_estimate", "RocksDB's estimate of keys stored (tombstones included).",
        in.keys_estimate);
  Counter(w, "ringkv_write_batches_total",
          "Group commits of local writes (one RocksDB write each).", in.write_batches);
  Counter(w, "ringkv_batched_writes_total", "Local writes committed in those group commits.",
          in.batched_writes);
  Counter(w, "ringkv_cache_hits_total", "Record cache hits.", in.cache_hits);
  Counter(w, "ringkv_cache_misses_total", "Record cache misses.", in.cache_misses);
  Gauge(w, "ringkv_cache_bytes", "Bytes charged to the record cache.", in.cache_bytes);
  Gauge(w, "ringkv_cache_capacity_bytes", "Record cache capacity.", in.cache_capacity_bytes);
  const StoreProperties& p = in.store;
  Gauge(w, "ringkv_rocksdb_sst_bytes", "Live SST file bytes.", p.sst_bytes);
  Gauge(w, "ringkv_rocksdb_memtable_bytes", "Bytes in all memtables.", p.memtable_bytes);
  Gauge(w, "ringkv_rocksdb_pending_compaction_bytes", "Estimated bytes compaction must rewrite.",
        p.pending_compaction_bytes);
  Gauge(w, "ringkv_rocksdb_block_cache_usage_bytes", "Block cache bytes in use.",
        p.block_cache_usage_bytes);
  Gauge(w, "ringkv_rocksdb_block_cache_capacity_bytes", "Block cache capacity.",
        p.block_cache_capacity_bytes);
  Gauge(w, "ringkv_rocksdb_wal_bytes", "Write-ahead log bytes on disk.", p.wal_bytes);
  Gauge(w, "ringkv_store_write_error",
        "1 while the store refuses writes after a storage error (a full disk), else 0.",
        uint64_t{p.write_error ? 1u : 0u});
  Counter(w, "ringkv_store_write_errors_total", "Times the store began refusing writes.",
          p.write_errors);
  Counter(w, "ringkv_store_resumes_total",
          "Times the store resumed writing by itself after refusing writes.", p.resumes);
  w.Family("ringkv_partition_keys_estimate", "gauge", "Estimated keys per partition held here.");
  for (const auto& [partition, n] : p.partition_keys) {
    w.Sample("ringkv_partition_keys_estimate", Label("partition", std::to_string(partition)), n);
  }
}

}  // namespace

void AntiEntropyFamilies(Writer& w, const MetricsInput& in) {
  const cluster::AaeStatus& a = in.aae;
  w.Family("ringkv_aae_exchanges_total", "counter", "Anti-entropy exchanges finished, by result.");
  for (auto outcome :
       {cluster::ExchangeResult::Outcome::kInSync, cluster::ExchangeResult::Outcome::kRepaired,
        cluster::ExchangeResult::Outcome::kWatermarkRaised,
        cluster::ExchangeResult::Outcome::kFailed}) {
    std::string name = cluster::OutcomeName(outcome);
    auto it = a.exchanges_by_outcome.find(name);
    w.Sample("ringkv_aae_exchanges_total", Label("result", name),
             it == a.exchanges_by_outcome.end() ? uint64_t{0} : it->second);
  }
  Counter(w, "ringkv_aae_ticks_skipped_total",
          "Anti-entropy ticks that started nothing (a job running, or the node busy).",
          a.ticks_skipped);
  Counter(w, "ringkv_aae_keys_repaired_total", "Keys repaired by anti-entropy (pushed or pulled).",
          a.keys_repaired);
  Counter(w, "ringkv_aae_false_deltas_total",
          "Keys listed in differing segments whose versions were equal.", a.false_deltas);
  Counter(w, "ringkv_aae_segments_differing_total",
          "Tree segments found differing (after confirmation), summed over exchanges.",
          a.segments_differing);
  Counter(w, "ringkv_aae_watermark_raises_total", "GC watermark raises led by this node.",
          a.watermark_raises);
  Gauge(w, "ringkv_aae_partitions_in_sync",
        "Partitions whose last exchange with every other replica found them in sync.",
        a.partitions_in_sync);
  Gauge(w, "ringkv_aae_partitions_total", "Partitions this node replicates.", a.partitions_total);
  Gauge(w, "ringkv_aae_rebuild_partitions_pending",
        "Partitions still to be pulled back after a lost disk.", a.rebuild_partitions_pending);
  Counter(w, "ringkv_aae_rebuild_records_total", "Records pulled by rebuilds.", a.rebuild_records);
  w.Family("ringkv_aae_last_in_sync_age_seconds", "gauge",
           "Seconds since the partition was last found in sync with every replica "
           "(absent: never).");
  for (const auto& p : a.partitions) {
    if (p.last_in_sync_ms == 0) continue;
    uint64_t age = in.now_ms > p.last_in_sync_ms ? in.now_ms - p.last_in_sync_ms : 0;
    w.Sample("ringkv_aae_last_in_sync_age_seconds", Label("partition", std::to_string(p.partition)),
             static_cast<double>(age) / 1e3);
  }
  w.Family(
      "ringkv_gc_watermark_lag_seconds", "gauge",
      "How far the partition's tombstone GC watermark lags the wall clock (absent: never raised).");
  for (const auto& p : a.partitions) {
    if (p.watermark == 0) continue;  // never raised yet
    uint64_t at = HlcPhysicalMs(p.watermark);
    uint64_t lag = in.now_ms > at ? in.now_ms - at : 0;
    w.Sample("ringkv_gc_watermark_lag_seconds", Label("partition", std::to_string(p.partition)),
             static_cast<double>(lag) / 1e3);
  }
}

std::string RenderPrometheus(const MetricsInput& in) {
  Writer w;
  w.Family("ringkv_node_info", "gauge", "Always 1; labels name the node.");
  w.Sample("ringkv_node_info", Label("node", in.node_id), uint64_t{1});
  Gauge(w, "ringkv_uptime_seconds", "Seconds since the node started.", in.stats->uptime_s());
  Requests(w, *in.stats);
  LatencyHistogram(w, *in.stats);
  Storage(w, in);
  Cluster(w, in);
  AntiEntropyFamilies(w, in);
  Gauge(w, "ringkv_connections", "Client connections open now.", in.connections);
  Counter(w, "ringkv_connections_refused_total",
          "Connections refused (overloaded) at --max-connections.", in.connections_refused);
  Counter(w, "ringkv_auth_failures_total", "Failed auth attempts (wrong user or password).",
          in.auth_failures);
  Counter(w, "ringkv_peer_auth_failures_total",
          "Failed peer handshakes (a wrong cluster-secret proof or a non-member).",
          in.peer_auth_failures);
  return w.Take();
}

}  // namespace ringkv
