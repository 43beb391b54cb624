// kvbench: a closed-loop load generator for RingKV, Redis and etcd.
//
// An event-driven client (bench/runner.h): a few threads, each an epoll loop
// over its share of the connections, every connection keeping `pipeline`
// requests in flight. The same key stream (seeded per connection) and the
// same value bytes go to every target (bench/target.h). Latency goes into
// fixed-memory histograms; the warm-up is excluded from every figure.
//
// With --target ringkv, --tls, --tls-ca, --user and --password-file
// (cli/client_security.h) secure every connection: each does its TLS
// handshake and `auth` before the run, so neither is in the figures.
//
// Exit status: 0 success; 2 bad flags; 3 target unreachable, no request
// completed, or errors above --max-error-percent.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cxxopts.hpp>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench/router.h"
#include "bench/runner.h"
#include "bench/target.h"
#include "bench/workload.h"
#include "cli/client.h"
#include "cli/client_security.h"

namespace ringkv::bench {
namespace {

struct Config {
  std::string target = "ringkv";
  std::vector<std::string> hosts;
  std::string route = "any";
  int threads = 1;
  int connections = 50;
  int pipeline = 1;
  std::string workload = "a";
  int read_percent = 50;
  uint64_t keys = 100000;
  size_t value_size = 100;
  std::string dist = "uniform";
  double duration_s = 10;
  double warmup_s = 1;
  uint64_t ops = 0;
  bool load = false;
  int load_pipeline = 16;
  bool json = false;
  double progress_s = 5;
  double max_error_percent = 1;
  uint64_t seed = 1;
  std::vector<int> cpu_pids;  // --cpu-pid: servers whose CPU per operation is reported
  ClientSecurity security;    // --tls, --tls-ca, --user, --password-file (ringkv only)
};

// The value every write sends: value_size printable bytes from a fixed seed,
// so every target stores the same bytes and none can compress them to nothing.
std::string ValueBytes(size_t size) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::mt19937_64 rng(42);
  std::string value(size, ' ');
  for (char& c : value) c = kChars[rng() % (sizeof(kChars) - 1)];
  return value;
}

nlohmann::json OpJson(const OpStats& s, double seconds) {
  const Histogram& h = s.latency_us;
  return {{"ops", s.ops},
          {"ops_per_s", seconds > 0 ? static_cast<double>(s.ops) / seconds : 0.0},
          {"p50_us", h.Percentile(0.5)},
          {"p99_us", h.Percentile(0.99)},
          {"p999_us", h.Percentile(0.999)},
          {"max_us", h.max()},
          {"mean_us",
           h.count() > 0 ? static_cast<double>(h.sum()) / static_cast<double>(h.count()) : 0.0}};
}

std::string ErrorsText(const RunResult& r) {
  if (r.errors.empty()) return "none";
  std::string text;
  for (const auto& [code, n] : r.errors) {
    if (!text.empty()) text += ", ";
    text += code + " " + std::to_string(n);
  }
  return text;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ",") + p;
  return out;
}

void PrintRow(const char* name, const OpStats& s, double seconds) {
  const Histogram& h = s.latency_us;
  std::printf("%-8s %12llu %12.0f %9llu %9llu %9llu %9llu\n", name,
              static_cast<unsigned long long>(s.ops),
              seconds > 0 ? static_cast<double>(s.ops) / seconds : 0.0,
              static_cast<unsigned long long>(h.Percentile(0.5)),
              static_cast<unsigned long long>(h.Percentile(0.99)),
              static_cast<unsigned long long>(h.Percentile(0.999)),
              static_cast<unsigned long long>(h.max()));
}

// CPU per operation over the measured window: kvbench's own always, the
// --cpu-pid processes' together when given (negative otherwise). "cores" =
// CPU seconds per second.
struct CpuFigures {
  bool valid = false;
  double client_us_per_op = 0, client_cores = 0;
  double server_us_per_op = -1, server_cores = -1;
};

CpuFigures CpuPerOp(const RunResult& run) {
  CpuFigures f;
  double window = run.cpu_window_s > 0 ? run.cpu_window_s : run.seconds;
  if (run.seconds <= 0 || window <= 0 || run.all.ops == 0) return f;
  // The readings' window and the ops' window differ by a wake-up at most;
  // scale the count to the readings' window.
  double ops = static_cast<double>(run.all.ops) / run.seconds * window;
  f.valid = true;
  f.client_us_per_op = run.client_cpu_s * 1e6 / ops;
  f.client_cores = run.client_cpu_s / window;
  if (run.server_cpu_s >= 0) {
    f.server_us_per_op = run.server_cpu_s * 1e6 / ops;
    f.server_cores = run.server_cpu_s / window;
  }
  return f;
}

void Report(const Config& cfg, const RunResult* load, const RunResult& run) {
  if (cfg.json) {
    nlohmann::json out = OpJson(run.all, run.seconds);
    out["target"] = cfg.target;
    out["hosts"] = cfg.hosts;
    out["route"] = cfg.route;
    out["workload"] = cfg.workload;
    out["read_percent"] = cfg.read_percent;
    out["dist"] = cfg.dist;
    out["connections"] = cfg.connections;
    out["pipeline"] = cfg.pipeline;
    out["threads"] = cfg.threads;
    out["keys"] = cfg.keys;
    out["value_size"] = cfg.value_size;
    out["warmup_s"] = cfg.warmup_s;
    out["seconds"] = run.seconds;
    out["errors"] = run.errors;
    out["error_count"] = run.error_count;
    out["interrupted"] = run.interrupted;
    out["connections_lost"] = run.sessions_lost;
    CpuFigures cpu = CpuPerOp(run);
    if (cpu.valid) {
      out["client_cpu_us_per_op"] = cpu.client_us_per_op;
      out["client_cores"] = cpu.client_cores;
      if (cpu.server_us_per_op >= 0) {
        out["server_cpu_us_per_op"] = cpu.server_us_per_op;
        out["server_cores"] = cpu.server_cores;
      }
    }
    if (cfg.workload != "ping") {
      out["read"] = OpJson(run.read, run.seconds);
      out["write"] = OpJson(run.write, run.seconds);
    }
    if (load != nullptr) {
      out["load"] = OpJson(load->all, load->seconds);
      out["load"]["keys"] = cfg.keys;
      out["load"]["seconds"] = load->seconds;
      out["load"]["pipeline"] = cfg.load_pipeline;
      out["load"]["errors"] = load->errors;
      out["load"]["error_count"] = load->error_count;
    }
    std::cout << out.dump() << std::endl;
    return;
  }
  std::printf("kvbench: target %s at %s (route %s)\n", cfg.target.c_str(), Join(cfg.hosts).c_str(),
              cfg.route.c_str());
  if (cfg.workload == "ping") {
    std::printf("workload ping\n");
  } else {
    std::printf("workload %s (%d%% reads), %s over %llu keys, %zu-byte values\n",
                cfg.workload.c_str(), cfg.read_percent, cfg.dist.c_str(),
                static_cast<unsigned long long>(cfg.keys), cfg.value_size);
  }
  std::printf("%d connections x pipeline %d on %d thread%s; %.1f s warm-up, %.2f s measured%s\n",
              cfg.connections, cfg.pipeline, cfg.threads, cfg.threads == 1 ? "" : "s", cfg.warmup_s,
              run.seconds, run.interrupted ? " (interrupted)" : "");
  if (load != nullptr) {
    std::printf("load: %llu keys in %.2f s = %.0f writes/s (pipeline %d), errors: %s\n",
                static_cast<unsigned long long>(load->all.ops), load->seconds,
                load->seconds > 0 ? static_cast<double>(load->all.ops) / load->seconds : 0.0,
                cfg.load_pipeline, ErrorsText(*load).c_str());
  }
  std::printf("%-8s %12s %12s %9s %9s %9s %9s\n", "op", "ops", "ops/s", "p50 us", "p99 us",
              "p99.9 us", "max us");
  PrintRow("all", run.all, run.seconds);
  if (run.read.ops > 0) PrintRow("read", run.read, run.seconds);
  if (run.write.ops > 0) PrintRow("write", run.write, run.seconds);
  std::printf("errors: %s\n", ErrorsText(run).c_str());
  CpuFigures cpu = CpuPerOp(run);
  if (cpu.valid) {
    std::printf("cpu: kvbench %.1f us/op (%.2f cores)", cpu.client_us_per_op, cpu.client_cores);
    if (cpu.server_us_per_op >= 0)
      std::printf(", servers %.1f us/op (%.2f cores)", cpu.server_us_per_op, cpu.server_cores);
    std::printf("\n");
  }
}

// Exit status for a finished run: 3 if nothing completed or too many errors.
int Verdict(const Config& cfg, const RunResult& r, const char* phase) {
  if (r.sessions_lost > 0) {
    std::fprintf(stderr, "kvbench: %s: %d of %d connections lost (%s)\n", phase, r.sessions_lost,
                 cfg.connections, ErrorsText(r).c_str());
    return 3;
  }
  if (r.all.ops == 0) {
    std::fprintf(stderr, "kvbench: %s: no request completed (%s)\n", phase, ErrorsText(r).c_str());
    return 3;
  }
  double percent = 100.0 * static_cast<double>(r.error_count) / static_cast<double>(r.all.ops);
  if (percent > cfg.max_error_percent) {
    std::fprintf(stderr, "kvbench: %s: %.2f%% of requests failed (limit %.2f%%): %s\n", phase,
                 percent, cfg.max_error_percent, ErrorsText(r).c_str());
    return 3;
  }
  return 0;
}

extern "C" void OnSignal(int) { g_stop.store(true); }

int Main(Config cfg) {
  std::unique_ptr<Target> target = MakeTarget(cfg.target, cfg.hosts.front());
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  // Reachability first, so an unreachable target is one clear line.
  Router router;
  if (cfg.route == "token") {
    Status s;
    for (const std::string& host : cfg.hosts) {
      s = Router::Discover(host, &router, cfg.security);
      if (s.ok()) break;
    }
    if (!s.ok()) {
      std::fprintf(stderr, "kvbench: cannot learn the ring from %s: %s\n", Join(cfg.hosts).c_str(),
                   s.message().c_str());
      return 3;
    }
  } else if (cfg.security.enabled()) {
    // The whole setup once per host (TLS, auth), so that a bad certificate or
    // password is one clear line rather than a failed run.
    for (const std::string& host : cfg.hosts) {
      std::unique_ptr<Client> client;
      Status s = Client::Connect(host, &client, 5000, cfg.security);
      if (!s.ok()) {
        // The node's refusal (unauthenticated, bad_request) keeps its code.
        bool network = s.code() == Status::Code::kUnavailable || s.code() == Status::Code::kTimeout;
        std::string why = network ? s.message() : s.ToString();
        std::fprintf(stderr, "kvbench: cannot reach %s at %s: %s\n", cfg.target.c_str(),
                     host.c_str(), why.c_str());
        return 3;
      }
    }
  } else {
    for (const std::string& host : cfg.hosts) {
      std::string why;
      int fd = ConnectTcp(host, 5000, &why);
      if (fd < 0) {
        std::fprintf(stderr, "kvbench: cannot reach %s at %s: %s\n", cfg.target.c_str(),
                     host.c_str(), why.c_str());
        return 3;
      }
      ::close(fd);
    }
  }

  RunSpec base;
  base.target = target.get();
  base.addresses = cfg.hosts;
  base.router = cfg.route == "token" ? &router : nullptr;
  base.security = &cfg.security;
  base.sessions = cfg.connections;
  base.threads = cfg.threads;
  base.key_count = cfg.keys;
  base.value = ValueBytes(cfg.value_size);
  base.seed = cfg.seed;
  base.progress_s = cfg.progress_s;
  base.cpu_pids = cfg.cpu_pids;

  std::unique_ptr<RunResult> load;
  if (cfg.load) {
    RunSpec spec = base;
    spec.load = true;
    spec.pipeline = cfg.load_pipeline;
    spec.label = "load";
    load = std::make_unique<RunResult>();
    if (!RunBenchmark(spec, load.get())) {
      std::fprintf(stderr, "kvbench: load: %s\n", load->fatal.c_str());
      return 3;
    }
    if (int rc = Verdict(cfg, *load, "load"); rc != 0) return rc;
    if (g_stop.load()) return 3;
  }

  KeyChooser keys(cfg.keys,
                  cfg.dist == "zipfian" ? Distribution::kZipfian : Distribution::kUniform);
  RunSpec spec = base;
  spec.pipeline = cfg.pipeline;
  spec.ping = cfg.workload == "ping";
  spec.read_percent = cfg.read_percent;
  spec.keys = &keys;
  spec.warmup_s = cfg.warmup_s;
  spec.duration_s = cfg.duration_s;
  spec.ops = cfg.ops;
  RunResult run;
  if (!RunBenchmark(spec, &run)) {
    std::fprintf(stderr, "kvbench: %s\n", run.fatal.c_str());
    return 3;
  }
  Report(cfg, load.get(), run);
  return Verdict(cfg, run, "run");
}

// kvbench's own options that take a value: ExtractSecurityFlags skips their
// values.
const std::vector<std::string>& ValueOptions() {
  static const std::vector<std::string> kValueOptions = {
      "--target",      "--host",       "--route",         "--threads",    "-c",
      "--connections", "-p",           "--pipeline",      "-w",           "--workload",
      "--keys",        "--value-size", "--dist",          "-d",           "--duration-s",
      "--warmup-s",    "--ops",        "--load-pipeline", "--progress-s", "--max-error-percent",
      "--seed",        "--cpu-pid"};
  return kValueOptions;
}

// Parses argv into *cfg. Returns -1 to go on, else the exit status.
int ParseFlags(int argc, char** argv, Config* cfg) {
  // The security flags first, with the parser kvctl uses; cxxopts gets the rest.
  std::vector<std::string> args(argv + 1, argv + argc);
  SecurityFlags security_flags;
  if (Status s = ExtractSecurityFlags(&args, &security_flags, ValueOptions()); !s.ok()) {
    std::fprintf(stderr, "kvbench: %s (see --help)\n", s.message().c_str());
    return 2;
  }
  std::vector<char*> rest = {argv[0]};
  for (std::string& a : args) rest.push_back(a.data());
  argc = static_cast<int>(rest.size());
  argv = rest.data();

  cxxopts::Options opts("kvbench", "closed-loop load generator for RingKV, Redis and etcd");
  opts.add_options()("target", "ringkv | redis | etcd",
                     cxxopts::value(cfg->target)->default_value("ringkv"))(
      "host",
      "HOST:PORT to load; repeat or comma-separate for several nodes (connections "
      "round-robin over them). Default 127.0.0.1:7700 / :6379 / :2379 by target",
      cxxopts::value(cfg->hosts))(
      "route",
      "ringkv: any (each connection to one --host) | token (each key to the first "
      "live replica of its partition)",
      cxxopts::value(cfg->route)->default_value("any"))(
      "threads", "client threads, each an epoll loop",
      cxxopts::value(cfg->threads)->default_value("1"))(
      "c,connections", "connections", cxxopts::value(cfg->connections)->default_value("50"))(
      "p,pipeline", "requests in flight per connection",
      cxxopts::value(cfg->pipeline)->default_value("1"))(
      "w,workload", "write | a (50% read) | b (95% read) | c (read-only) | ping",
      cxxopts::value(cfg->workload)->default_value("a"))(
      "keys", "key space size", cxxopts::value(cfg->keys)->default_value("100000"))(
      "value-size", "value bytes", cxxopts::value(cfg->value_size)->default_value("100"))(
      "dist", "uniform | zipfian", cxxopts::value(cfg->dist)->default_value("uniform"))(
      "d,duration-s", "measured seconds", cxxopts::value(cfg->duration_s)->default_value("10"))(
      "warmup-s", "seconds run before measuring",
      cxxopts::value(cfg->warmup_s)->default_value("1"))(
      "ops", "measure this many requests instead of a duration (0: use --duration-s)",
      cxxopts::value(cfg->ops)->default_value("0"))(
      "load", "first write every key once (pipelined) and report its rate")(
      "load-pipeline", "requests in flight per connection in the load phase",
      cxxopts::value(cfg->load_pipeline)->default_value("16"))(
      "json", "print one JSON object instead of the table")(
      "progress-s", "a progress line on stderr this often (0: never)",
      cxxopts::value(cfg->progress_s)->default_value("5"))(
      "max-error-percent", "exit 3 if more requests than this fail",
      cxxopts::value(cfg->max_error_percent)->default_value("1"))(
      "seed", "key stream seed", cxxopts::value(cfg->seed)->default_value("1"))(
      "cpu-pid", "comma list of server PIDs whose CPU per operation is reported",
      cxxopts::value(cfg->cpu_pids))("h,help", "this help");
  try {
    auto res = opts.parse(argc, argv);
    if (res.count("help")) {
      std::cout << opts.help() << "\n" << kSecurityFlagsHelp;
      return 0;
    }
    if (!res.unmatched().empty()) {
      std::fprintf(stderr, "kvbench: unexpected argument '%s'\n", res.unmatched().front().c_str());
      return 2;
    }
    cfg->load = res.count("load") > 0;
    cfg->json = res.count("json") > 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvbench: %s (see --help)\n", e.what());
    return 2;
  }
  static const std::map<std::string, int> kReads = {
      {"write", 0}, {"a", 50}, {"b", 95}, {"c", 100}, {"ping", 0}};
  static const std::map<std::string, std::string> kPorts = {
      {"ringkv", "127.0.0.1:7700"}, {"redis", "127.0.0.1:6379"}, {"etcd", "127.0.0.1:2379"}};
  const char* bad = nullptr;
  if (!kPorts.count(cfg->target))
    bad = "--target must be ringkv, redis or etcd";
  else if (!kReads.count(cfg->workload))
    bad = "--workload must be write, a, b, c or ping";
  else if (cfg->route != "any" && cfg->route != "token")
    bad = "--route must be any or token";
  else if (cfg->route == "token" && cfg->target != "ringkv")
    bad = "--route token is for ringkv";
  else if (cfg->dist != "uniform" && cfg->dist != "zipfian")
    bad = "--dist must be uniform or zipfian";
  else if (cfg->threads < 1 || cfg->threads > 64)
    bad = "--threads must be 1..64";
  else if (cfg->connections < 1 || cfg->connections > 100000)
    bad = "--connections must be >= 1";
  else if (cfg->pipeline < 1 || cfg->pipeline > 100000)
    bad = "--pipeline must be >= 1";
  else if (cfg->load_pipeline < 1 || cfg->load_pipeline > 100000)
    bad = "--load-pipeline must be >= 1";
  else if (cfg->keys < 1)
    bad = "--keys must be >= 1";
  else if (cfg->value_size > (64u << 20))
    bad = "--value-size must be at most 64 MiB";
  else if (!(cfg->duration_s > 0) && cfg->ops == 0)
    bad = "--duration-s must be > 0";
  else if (!(cfg->warmup_s >= 0))
    bad = "--warmup-s must be >= 0";
  else if (!(cfg->progress_s >= 0))
    bad = "--progress-s must be >= 0";
  else if (!(cfg->max_error_percent >= 0))
    bad = "--max-error-percent must be >= 0";
  else if (std::any_of(cfg->cpu_pids.begin(), cfg->cpu_pids.end(),
                       [](int pid) { return pid <= 0; }))
    bad = "--cpu-pid wants positive process ids";
  bool secure = security_flags.tls || security_flags.tls_ca_given || security_flags.user_given ||
                security_flags.password_file_given;
  if (bad == nullptr && secure && cfg->target != "ringkv") {
    bad = "--tls, --tls-ca, --user and --password-file are for --target ringkv";
  }
  if (bad != nullptr) {
    std::fprintf(stderr, "kvbench: %s\n", bad);
    return 2;
  }
  Status security = ResolveSecurity(security_flags, std::getenv(kPasswordEnvVar), &cfg->security);
  if (security.ok()) security = PrepareTls(&cfg->security);
  if (!security.ok()) {
    std::fprintf(stderr, "kvbench: %s\n", security.message().c_str());
    return 2;
  }
  std::vector<std::string> hosts;
  for (const std::string& h : cfg->hosts) {
    if (h.empty() || h.find(':') == std::string::npos) {
      std::fprintf(stderr, "kvbench: --host wants HOST:PORT, got '%s'\n", h.c_str());
      return 2;
    }
    hosts.push_back(h);
  }
  if (hosts.empty()) hosts.push_back(kPorts.at(cfg->target));
  cfg->hosts = hosts;
  cfg->read_percent = kReads.at(cfg->workload);
  return -1;
}

}  // namespace
}  // namespace ringkv::bench

int main(int argc, char** argv) {
  ringkv::bench::Config cfg;
  try {
    int rc = ringkv::bench::ParseFlags(argc, argv, &cfg);
    if (rc >= 0) return rc;
    return ringkv::bench::Main(std::move(cfg));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvbench: %s\n", e.what());
    return 3;
  }
}
