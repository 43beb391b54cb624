// Metrics: the node's figures in the Prometheus text exposition format
// (version 0.0.4), for `GET /metrics`.
//
// Names follow Prometheus conventions: a `ringkv_` prefix, base units
// (seconds, bytes), `_total` for counters. Request latency is a histogram with
// power-of-two bucket bounds from 16 µs to about 67 s, cut from the node's
// log-linear latency histograms (server/histogram.h).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/store.h"
#include "server/cluster/anti_entropy.h"
#include "server/cluster/counters.h"
#include "server/cluster/membership.h"
#include "server/stats.h"

namespace ringkv {

// Everything one exposition shows, gathered by the node.
struct MetricsInput {
  std::string node_id;
  const Stats* stats = nullptr;
  const cluster::Counters* counters = nullptr;
  StoreProperties store;
  uint64_t keys_estimate = 0;
  uint64_t cache_hits = 0, cache_misses = 0, cache_bytes = 0, cache_capacity_bytes = 0;
  uint64_t write_batches = 0, batched_writes = 0;  // group commits and the writes they held
  std::map<std::string, uint64_t> hints_pending;   // per target
  std::vector<cluster::MemberStatus> members;
  uint64_t connections = 0, connections_refused = 0;   // client connections
  uint64_t auth_failures = 0, peer_auth_failures = 0;  // PROTOCOL.md §11
  cluster::AaeStatus aae;
  // Membership (issue #11).
  uint64_t map_epoch = 0, moves_pending = 0;
  uint64_t moves_done = 0, move_failures = 0, transfer_bytes_in = 0, transfer_bytes_out = 0;
  uint64_t split_brain = 0;
  uint64_t now_ms = 0;  // wall clock, for ages
};

std::string RenderPrometheus(const MetricsInput& in);

}  // namespace ringkv
