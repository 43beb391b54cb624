// Runner: kvbench's event-driven, closed-loop load engine.
//
// A run has `sessions` logical clients spread over `threads` worker threads.
// Each worker runs one epoll loop over its sessions' non-blocking sockets
// (TCP_NODELAY). A session keeps `pipeline` requests in flight: a response
// frees a slot and the next request goes out; everything queued in one wake-up
// leaves in one write per socket. A session has one socket, or with token
// routing one per node, each request going to the node that owns its key.
//
// With RunSpec::security enabled (ringkv only), each connection is made by
// Client::Connect (TLS handshake, then `auth`) before the run starts, and the
// loop then writes with SSL_write_ex and reads with SSL_read_ex; without it
// the loop is plain send()/read(), one branch per call apart.
//
// Latency of a request = the time its response was read - the time its bytes
// were written, recorded in microseconds into fixed-memory histograms. Only
// requests sent after the warm-up and answered before the end count.
//
// Thread-safety: Run() is called from one thread; it starts and joins its
// workers itself.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "bench/router.h"
#include "bench/target.h"
#include "bench/workload.h"
#include "cli/client_security.h"
#include "server/histogram.h"

namespace ringkv::bench {

struct RunSpec {
  const Target* target = nullptr;
  // Session i connects to addresses[i % size] unless `router` is set, when it
  // connects to every router->addresses() entry.
  std::vector<std::string> addresses;
  const Router* router = nullptr;
  // TLS and authentication for every connection (not owned; must outlive
  // the run); null or !enabled() = plaintext, no auth.
  const ClientSecurity* security = nullptr;
  int sessions = 1;
  int pipeline = 1;
  int threads = 1;

  // What to send. A load run writes keys 0..key_count-1 once each, in order;
  // otherwise each request is a ping, or a read with probability
  // read_percent/100 else a write, of a key drawn from `keys`.
  bool load = false;
  bool ping = false;
  int read_percent = 0;
  const KeyChooser* keys = nullptr;
  uint64_t key_count = 0;
  std::string value;  // the raw value bytes every write sends
  uint64_t seed = 1;

  double warmup_s = 0;    // not for load runs
  double duration_s = 0;  // measured seconds; ignored if ops > 0 or load
  uint64_t ops = 0;       // stop after this many measured requests (0: duration)

  double progress_s = 0;  // > 0: a progress line to stderr this often
  std::string label = "run";

  // Processes whose CPU time (user + system, all threads, from
  // /proc/PID/stat) is read at the start and the end of the measured window:
  // the servers under test, so that a row can say what an operation costs
  // them (RunResult::server_cpu_s). kvbench's own is always read.
  std::vector<int> cpu_pids;
};

// CPU seconds a process has used so far (user + system, all its threads), or
// a negative number when /proc/PID/stat cannot be read.
double ProcessCpuSeconds(int pid);

struct OpStats {
  Histogram latency_us;
  uint64_t ops = 0;
};

struct RunResult {
  OpStats all, read, write;
  uint64_t error_count = 0;
  std::map<std::string, uint64_t> errors;  // by code
  double seconds = 0;                      // the measured window
  std::string fatal;                       // set if the run could not start
  bool interrupted = false;                // SIGINT/SIGTERM cut it short
  int sessions_lost = 0;                   // sessions whose connection broke
  // CPU used over the measured window (seconds of one core): by the
  // RunSpec::cpu_pids together (negative if one could not be read), and by
  // this process. cpu_window_s is the wall time between the two readings.
  double server_cpu_s = -1;
  double client_cpu_s = 0;
  double cpu_window_s = 0;
};

// Runs `spec`. Returns false with result->fatal set if the connections could
// not be made; otherwise true, whatever the errors.
bool RunBenchmark(const RunSpec& spec, RunResult* result);

// Connects a non-blocking TCP socket with TCP_NODELAY to HOST:PORT within
// timeout_ms. Returns the fd, or -1 with *error set ("connection refused").
int ConnectTcp(std::string_view host_port, int timeout_ms, std::string* error);

// Set by SIGINT/SIGTERM (kvbench's handler); running workers stop issuing.
extern std::atomic<bool> g_stop;

}  // namespace ringkv::bench
