// kvbench: a closed-loop load generator for RingKV.
//
// Each connection runs on its own thread: it sends `pipeline` requests in one
// write, reads their responses, and repeats, until the duration or operation
// count is reached. Latency is measured per request from the write of its
// batch to the read of its response, into a fixed-memory histogram; the
// warm-up period is excluded from every figure.
#include <cxxopts.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "bench/workload.h"
#include "cli/client.h"
#include "server/histogram.h"

namespace ringkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string host = "127.0.0.1:7700";
  int connections = 50;
  int pipeline = 1;
  int read_percent = 50;  // write-only 0, YCSB A 50, B 95, C 100
  std::string workload = "a";
  uint64_t keys = 100000;
  size_t value_size = 100;
  double duration_s = 10;
  double warmup_s = 1;
  uint64_t ops = 0;  // 0: run for duration_s
  bool load = false;
  bool json = false;
  Distribution dist = Distribution::kUniform;
};

struct Totals {
  Histogram latency_us;
  std::atomic<uint64_t> ops{0};
  std::mutex mu;
  std::map<std::string, uint64_t> errors;  // guarded by mu
};

// The error code of a response line, or "" if it succeeded. A substring test
// rather than a JSON parse keeps the client's CPU cost small on a shared box.
std::string ErrorCodeOf(const std::string& line) {
  if (line.find("\"ok\":true") != std::string::npos) return "";
  size_t at = line.find("\"code\":\"");
  if (at == std::string::npos) return "malformed";
  at += 8;
  return line.substr(at, line.find('"', at) - at);
}

std::string PutLine(uint64_t key, const std::string& value_json) {
  return "{\"op\":\"put\",\"key\":\"" + KeyName(key) + "\",\"value\":" + value_json + "}\n";
}
std::string GetLine(uint64_t key) { return "{\"op\":\"get\",\"key\":\"" + KeyName(key) + "\"}\n"; }

// Writes every key once, spread over the connections.
Status Load(const Config& cfg, const std::string& value_json) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int c = 0; c < cfg.connections; ++c) {
    threads.emplace_back([&, c] {
      std::unique_ptr<Client> client;
      if (!Client::Connect(cfg.host, &client).ok()) return void(failures++);
      std::string batch, line;
      for (uint64_t k = c; k < cfg.keys;) {
        batch.clear();
        int n = 0;
        for (; n < 64 && k < cfg.keys; ++n, k += cfg.connections) batch += PutLine(k, value_json);
        if (!client->SendRaw(batch).ok()) return void(failures++);
        for (int i = 0; i < n; ++i) {
          if (!client->ReceiveLine(&line).ok() || !ErrorCodeOf(line).empty()) failures++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failures > 0) return Status::Internal(std::to_string(failures.load()) + " load writes failed");
  return Status::OK();
}

void RunConnection(const Config& cfg, const KeyChooser& keys, const std::string& value_json,
                   Clock::time_point measure_from, Clock::time_point end, int index,
                   std::atomic<uint64_t>* issued, Totals* totals) {
  std::unique_ptr<Client> client;
  Status s = Client::Connect(cfg.host, &client);
  if (!s.ok()) {
    std::lock_guard<std::mutex> l(totals->mu);
    totals->errors["connect"]++;
    return;
  }
  std::mt19937_64 rng(index * 7919 + 1);
  std::uniform_int_distribution<int> percent(0, 99);
  std::string batch, line;
  while (Clock::now() < end) {
    if (cfg.ops > 0 && issued->fetch_add(cfg.pipeline) >= cfg.ops) break;
    batch.clear();
    for (int i = 0; i < cfg.pipeline; ++i) {
      uint64_t k = keys.Next(rng);
      batch += percent(rng) < cfg.read_percent ? GetLine(k) : PutLine(k, value_json);
    }
    auto sent = Clock::now();
    if (!client->SendRaw(batch).ok()) break;
    for (int i = 0; i < cfg.pipeline; ++i) {
      Status r = client->ReceiveLine(&line);
      auto now = Clock::now();
      std::string code = r.ok() ? ErrorCodeOf(line) : "connection";
      if (sent >= measure_from) {
        totals->latency_us.Record(
            std::chrono::duration_cast<std::chrono::microseconds>(now - sent).count());
        totals->ops.fetch_add(1, std::memory_order_relaxed);
        if (!code.empty()) {
          std::lock_guard<std::mutex> l(totals->mu);
          totals->errors[code]++;
        }
      }
      if (!r.ok()) return;
    }
  }
}

int Report(const Config& cfg, Totals& t, double seconds) {
  const Histogram& h = t.latency_us;
  double tput = seconds > 0 ? static_cast<double>(t.ops.load()) / seconds : 0;
  uint64_t errors = 0;
  for (const auto& [code, n] : t.errors) errors += n;
  if (cfg.json) {
    nlohmann::json out = {{"workload", cfg.workload}, {"connections", cfg.connections},
                          {"pipeline", cfg.pipeline},  {"keys", cfg.keys},
                          {"value_size", cfg.value_size}, {"seconds", seconds},
                          {"ops", t.ops.load()},       {"ops_per_s", tput},
                          {"p50_us", h.Percentile(0.5)}, {"p99_us", h.Percentile(0.99)},
                          {"p999_us", h.Percentile(0.999)}, {"max_us", h.max()},
                          {"errors", t.errors}};
    std::cout << out.dump() << "\n";
  } else {
    std::printf("workload %s  connections %d  pipeline %d  keys %llu  value %zu B\n",
                cfg.workload.c_str(), cfg.connections, cfg.pipeline,
                static_cast<unsigned long long>(cfg.keys), cfg.value_size);
    std::printf("%-12s %12s %10s %10s %10s %10s %10s\n", "ops", "ops/s", "p50 us", "p99 us",
                "p99.9 us", "max us", "errors");
    std::printf("%-12llu %12.0f %10llu %10llu %10llu %10llu %10llu\n",
                static_cast<unsigned long long>(t.ops.load()), tput,
                static_cast<unsigned long long>(h.Percentile(0.5)),
                static_cast<unsigned long long>(h.Percentile(0.99)),
                static_cast<unsigned long long>(h.Percentile(0.999)),
                static_cast<unsigned long long>(h.max()), static_cast<unsigned long long>(errors));
    for (const auto& [code, n] : t.errors) std::printf("  error %s: %llu\n", code.c_str(), static_cast<unsigned long long>(n));
  }
  if (t.ops.load() == 0) {
    std::fprintf(stderr, "kvbench: no request completed (is %s reachable?)\n", cfg.host.c_str());
    return 3;
  }
  return errors * 100 > t.ops.load() ? 3 : 0;  // more than 1 % errors fails the run
}

int Run(const Config& cfg) {
  std::string value_json = "\"" + std::string(cfg.value_size, 'v') + "\"";
  {
    std::unique_ptr<Client> probe;
    Status s = Client::Connect(cfg.host, &probe, 5000);
    if (!s.ok()) {
      std::fprintf(stderr, "kvbench: cannot connect to %s: %s\n", cfg.host.c_str(),
                   s.message().c_str());
      return 3;
    }
  }
  if (cfg.load) {
    Status s = Load(cfg, value_json);
    if (!s.ok()) {
      std::fprintf(stderr, "kvbench: load phase: %s\n", s.message().c_str());
      return 3;
    }
  }
  KeyChooser keys(cfg.keys, cfg.dist);
  Totals totals;
  std::atomic<uint64_t> issued{0};
  auto start = Clock::now();
  auto measure_from = start + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(cfg.warmup_s));
  auto end = measure_from + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(cfg.ops > 0 ? 3600 : cfg.duration_s));
  std::vector<std::thread> threads;
  for (int c = 0; c < cfg.connections; ++c) {
    threads.emplace_back(RunConnection, std::cref(cfg), std::cref(keys), std::cref(value_json),
                         measure_from, end, c, &issued, &totals);
  }
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(Clock::now() - measure_from).count();
  return Report(cfg, totals, seconds);
}

}  // namespace
}  // namespace ringkv::bench

int main(int argc, char** argv) {
  using ringkv::bench::Config;
  Config cfg;
  cxxopts::Options opts("kvbench", "closed-loop load generator for RingKV");
  std::string dist = "uniform";
  opts.add_options()("host", "node to load, HOST:PORT", cxxopts::value(cfg.host))(
      "c,connections", "concurrent connections", cxxopts::value(cfg.connections))(
      "p,pipeline", "requests in flight per connection", cxxopts::value(cfg.pipeline))(
      "w,workload", "write | a (50/50) | b (95/5) | c (read-only)", cxxopts::value(cfg.workload))(
      "keys", "key space size", cxxopts::value(cfg.keys))(
      "value-size", "value bytes", cxxopts::value(cfg.value_size))(
      "d,duration-s", "measured seconds", cxxopts::value(cfg.duration_s))(
      "warmup-s", "seconds excluded before measuring", cxxopts::value(cfg.warmup_s))(
      "ops", "stop after this many operations (0 = use duration)", cxxopts::value(cfg.ops))(
      "load", "write every key once before measuring", cxxopts::value(cfg.load))(
      "dist", "uniform | zipfian", cxxopts::value(dist))(
      "json", "print one JSON object", cxxopts::value(cfg.json))("h,help", "this help");
  try {
    auto res = opts.parse(argc, argv);
    if (res.count("help")) {
      std::cout << opts.help() << "\n";
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvbench: %s\n", e.what());
    return 2;
  }
  std::map<std::string, int> reads = {{"write", 0}, {"a", 50}, {"b", 95}, {"c", 100}};
  if (!reads.count(cfg.workload) || cfg.connections < 1 || cfg.pipeline < 1 || cfg.keys < 1 ||
      (dist != "uniform" && dist != "zipfian")) {
    std::fprintf(stderr, "kvbench: bad --workload, --connections, --pipeline, --keys or --dist\n");
    return 2;
  }
  cfg.read_percent = reads[cfg.workload];
  cfg.dist = dist == "zipfian" ? ringkv::bench::Distribution::kZipfian
                               : ringkv::bench::Distribution::kUniform;
  return ringkv::bench::Run(cfg);
}
