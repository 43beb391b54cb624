// kvd: one RingKV database node.
//
// Flags (PROTOCOL.md §2) -> NodeOptions -> Node (storage and request handling)
// -> net::Server (TCP). In a cluster of more than one member, also a
// net::PeerTransport (the node's transport to its peers: a net::PeerClient on
// each I/O thread and a shared one for everything else) and a
// net::FailureDetector (pings peers into the node's Membership and drives
// hint delivery). With --metrics-listen, also a net::MetricsServer: HTTP
// GET /metrics (Prometheus text format) and GET /health (200 while the node
// serves clients, 503 while it starts or shuts down). Runs until SIGTERM or
// SIGINT, then stops accepting, answers the requests in flight, closes the
// store and exits 0.
//
// Exit status: 0 after a clean shutdown, 2 for a bad command line (one
// "kvd: error: ..." line on stderr), 1 when the node cannot start (unusable
// data directory, address in use, ...).

#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/signal_set.hpp>
#ifdef RINGKV_MIMALLOC
#include <mimalloc.h>
#endif
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cxxopts.hpp>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "engine/status.h"
#include "server/cluster/handoff.h"
#include "server/cluster/membership.h"
#include "server/net/failure_detector.h"
#include "server/net/metrics_server.h"
#include "server/net/peer_client.h"
#include "server/net/peer_transport.h"
#include "server/net/remote_aae_replica.h"
#include "server/net/server.h"
#include "server/net/tls.h"
#include "server/node.h"
#include "server/node_options.h"
#include "server/security/private_file.h"

namespace ringkv {
namespace {

constexpr char kVersion[] = RINGKV_VERSION;

// The allocator this kvd was linked with (CMake RINGKV_MALLOC), for
// --version and the start-up line: figures depend on it.
std::string AllocatorName() {
#ifdef RINGKV_MIMALLOC
  int v = mi_version();  // e.g. 209 = 2.0.9
  return "mimalloc " + std::to_string(v / 100) + "." + std::to_string(v / 10 % 10) + "." +
         std::to_string(v % 10);
#else
  return RINGKV_ALLOCATOR;
#endif
}
constexpr int kExitStartupFailure = 1;
constexpr int kExitUsage = 2;

// Everything the command line says.
struct KvdFlags {
  NodeOptions node;
  spdlog::level::level_enum log_level = spdlog::level::info;
  std::string port_file;          // empty: none
  std::string metrics_listen;     // empty: no metrics endpoint
  std::string metrics_port_file;  // empty: none
};

// An error that has already been reported, carrying the exit status.
struct ExitCode {
  int code;
};

void PrintError(std::string_view message) {
  std::fprintf(stderr, "kvd: error: %.*s\n", static_cast<int>(message.size()), message.data());
}

// cxxopts decorates names with typographic quotes; plain ones read better in
// a terminal and in test logs.
std::string PlainQuotes(std::string text) {
  for (const char* fancy : {"\u2018", "\u2019"}) {
    for (size_t at = text.find(fancy); at != std::string::npos; at = text.find(fancy, at)) {
      text.replace(at, std::strlen(fancy), "'");
    }
  }
  return text;
}

// One command-line flag. Numbers are taken as text and converted by
// ParseNumber, which names the flag in its error message (cxxopts's does not).
struct FlagSpec {
  const char* name;
  const char* help;
  const char* arg;            // e.g. "N"; nullptr for an on/off switch
  std::string default_value;  // "" for none
};

std::vector<FlagSpec> FlagSpecs() {
  const NodeOptions d;
  const auto mib = [](uint64_t bytes) { return std::to_string(bytes >> 20); };
  using std::to_string;
  return {
      {"node-id", "this node's name, [A-Za-z0-9_-]{1,64}", "ID", d.node_id},
      {"listen", "client and peer address; port 0: kernel's choice", "HOST:PORT", d.listen},
      {"data-dir", "RocksDB directory (default ./data/<node-id>)", "DIR", ""},
      {"cluster", "every member, this node included (default: only this node)", "ID=HOST:PORT,...",
       ""},
      {"join", "start outside any cluster and wait to be added (kvctl cluster join)",
       "HOST:PORT,...", ""},
      {"transfer-mb-per-s", "partition copies: MiB a second per node", "M",
       mib(d.transfer_bytes_per_s)},
      {"transfer-limit", "partition copies at once per node", "N", to_string(d.transfer_limit)},
      {"replicas", "replication factor N (default min(3, members))", "N", ""},
      {"read-quorum", "default R (default N/2+1)", "R", ""},
      {"write-quorum", "default W (default N/2+1)", "W", ""},
      {"partitions", "ring partitions, a power of two", "Q", to_string(d.partitions)},
      {"cache-mb", "record cache capacity in MiB", "M", mib(d.cache_bytes)},
      {"no-hinted-handoff", "do not store hints for replicas that are down", nullptr, ""},
      {"max-key-bytes", "longest key", "BYTES", to_string(d.max_key_bytes)},
      {"max-value-bytes", "longest value (compact JSON)", "BYTES", to_string(d.max_value_bytes)},
      {"max-request-bytes", "longest request line", "BYTES", to_string(d.max_request_bytes)},
      {"tombstone-grace-s", "keep tombstones and expired records this long", "SECONDS",
       to_string(d.tombstone_grace_s)},
      {"no-anti-entropy", "no exchanges between replicas, no rebuild; GC by grace alone", nullptr,
       ""},
      {"aae-interval-ms", "start an anti-entropy exchange this often", "MS",
       to_string(d.aae_interval_ms)},
      {"aae-repair-keys-per-s", "anti-entropy repairs per second (0: no limit)", "N",
       to_string(d.aae_repair_keys_per_s)},
      {"aae-repair-mb-per-s", "anti-entropy repaired MiB of values per second (0: no limit)", "M",
       mib(d.aae_repair_bytes_per_s)},
      {"auth-file", "users file: clients must authenticate (docs/security.md)", "PATH", ""},
      {"cluster-secret-file", "the cluster secret, which peers prove to each other", "PATH", ""},
      {"tls-cert", "TLS certificate chain (PEM) for the listen port and peers", "FILE", ""},
      {"tls-key", "TLS private key (PEM)", "FILE", ""},
      {"tls-ca", "CA bundle (PEM) that peers' certificates are verified against", "FILE", ""},
      {"sync-writes", "fsync the write-ahead log on every write", nullptr, ""},
      {"wal-sync-ms", "fsync the write-ahead log this often", "MS", to_string(d.wal_sync_ms)},
      {"block-cache-mb", "RocksDB block cache in MiB", "M", mib(d.block_cache_bytes)},
      {"write-buffer-mb", "RocksDB memtable budget in MiB", "M", mib(d.write_buffer_bytes)},
      {"io-threads", "threads serving connections", "N", to_string(d.io_threads)},
      {"max-connections", "client connections served at once; more are refused (overloaded)", "N",
       to_string(d.max_connections)},
      {"request-timeout-ms", "how long a coordinator waits for replicas by default", "MS",
       to_string(d.request_timeout_ms)},
      {"max-clock-skew-ms", "refuse replica writes stamped further ahead of this clock", "MS",
       to_string(d.max_clock_skew_ms)},
      {"hint-window-s", "drop hints older than this", "SECONDS", to_string(d.hint_window_s)},
      {"slow-request-ms", "log requests slower than this (0: never)", "MS",
       to_string(d.slow_request_ms)},
      {"log-level", "trace|debug|info|warn|error", "LEVEL", "info"},
      {"port-file", "once listening, write HOST:PORT to this file (atomically)", "PATH", ""},
      {"metrics-listen",
       "serve HTTP GET /metrics (Prometheus) and /health here; port 0: kernel's choice "
       "(default: off)",
       "HOST:PORT", ""},
      {"metrics-port-file", "once serving metrics, write HOST:PORT to this file (atomically)",
       "PATH", ""},
      {"h,help", "print this help and exit", nullptr, ""},
      {"version", "print the version and exit", nullptr, ""},
  };
}

cxxopts::Options DefineFlags() {
  cxxopts::Options options("kvd", "RingKV database node");
  options.custom_help("[FLAGS]");
  auto add = options.add_options();
  for (const FlagSpec& flag : FlagSpecs()) {
    if (flag.arg == nullptr) {
      add(flag.name, flag.help);
      continue;
    }
    auto value = cxxopts::value<std::string>();
    if (!flag.default_value.empty()) value->default_value(flag.default_value);
    add(flag.name, flag.help, value, flag.arg);
  }
  return options;
}

// Parses the value of --`flag` as an integer in [min, max].
template <typename T>
std::optional<T> ParseNumber(const cxxopts::ParseResult& result, const std::string& flag, T min = 0,
                             T max = std::numeric_limits<T>::max()) {
  const std::string text = result[flag].as<std::string>();
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min ||
      value > max) {
    PrintError("--" + flag + " must be an integer from " + std::to_string(min) + " to " +
               std::to_string(max) + ", not '" + text + "'");
    return std::nullopt;
  }
  return value;
}

// Sets *out from --`flag` if the flag has a value (given or defaulted).
template <typename T>
bool SetNumber(const cxxopts::ParseResult& result, const std::string& flag, T* out, T min = 0,
               T max = std::numeric_limits<T>::max()) {
  if (result.count(flag) == 0 && !result[flag].has_default()) return true;
  const auto value = ParseNumber<T>(result, flag, min, max);
  if (!value) return false;
  *out = *value;
  return true;
}

// Sets *out to --`flag` MiB in bytes.
bool SetMebibytes(const cxxopts::ParseResult& result, const std::string& flag, uint64_t* out) {
  uint64_t mib = 0;
  if (!SetNumber<uint64_t>(result, flag, &mib, 0, std::numeric_limits<uint64_t>::max() >> 20)) {
    return false;
  }
  *out = mib << 20;
  return true;
}

bool ParseLogLevel(const std::string& text, spdlog::level::level_enum* out) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},
  };
  for (const auto& [name, level] : kLevels) {
    if (text == name) {
      *out = level;
      return true;
    }
  }
  PrintError("--log-level must be one of trace, debug, info, warn, error, not '" + text + "'");
  return false;
}

bool MapNumbers(const cxxopts::ParseResult& r, NodeOptions* o) {
  constexpr int kMaxInt = std::numeric_limits<int>::max();
  return SetNumber<int>(r, "replicas", &o->replicas, 1, kMaxInt) &&
         SetNumber<int>(r, "read-quorum", &o->read_quorum, 1, kMaxInt) &&
         SetNumber<int>(r, "write-quorum", &o->write_quorum, 1, kMaxInt) &&
         SetNumber<uint32_t>(r, "partitions", &o->partitions, 1) &&
         SetMebibytes(r, "cache-mb", &o->cache_bytes) &&
         SetMebibytes(r, "transfer-mb-per-s", &o->transfer_bytes_per_s) &&
         SetNumber<int>(r, "transfer-limit", &o->transfer_limit, 1, 16) &&
         SetNumber<uint64_t>(r, "max-key-bytes", &o->max_key_bytes, 1) &&
         SetNumber<uint64_t>(r, "max-value-bytes", &o->max_value_bytes, 1) &&
         SetNumber<uint64_t>(r, "max-request-bytes", &o->max_request_bytes, 1,
                             std::numeric_limits<uint64_t>::max() - 1) &&
         SetNumber<uint64_t>(r, "tombstone-grace-s", &o->tombstone_grace_s) &&
         SetNumber<uint64_t>(r, "wal-sync-ms", &o->wal_sync_ms, 1) &&
         SetNumber<uint64_t>(r, "aae-interval-ms", &o->aae_interval_ms, 1, 86'400'000) &&
         SetNumber<uint64_t>(r, "aae-repair-keys-per-s", &o->aae_repair_keys_per_s) &&
         SetMebibytes(r, "aae-repair-mb-per-s", &o->aae_repair_bytes_per_s) &&
         SetMebibytes(r, "block-cache-mb", &o->block_cache_bytes) &&
         SetMebibytes(r, "write-buffer-mb", &o->write_buffer_bytes) &&
         SetNumber<int>(r, "io-threads", &o->io_threads, 1, 1024) &&
         SetNumber<uint64_t>(r, "max-connections", &o->max_connections, 1, kMaxConnections) &&
         SetNumber<uint64_t>(r, "request-timeout-ms", &o->request_timeout_ms, 1, 3'600'000) &&
         SetNumber<uint64_t>(r, "max-clock-skew-ms", &o->max_clock_skew_ms, 1) &&
         SetNumber<uint64_t>(r, "hint-window-s", &o->hint_window_s, 1) &&
         SetNumber<uint64_t>(r, "slow-request-ms", &o->slow_request_ms);
}

// Turns the parsed command line into flags; false after reporting an error.
bool MapFlags(const cxxopts::ParseResult& r, KvdFlags* flags) {
  NodeOptions* o = &flags->node;
  o->node_id = r["node-id"].as<std::string>();
  o->listen = r["listen"].as<std::string>();
  if (r.count("data-dir")) o->data_dir = r["data-dir"].as<std::string>();
  if (r.count("port-file")) flags->port_file = r["port-file"].as<std::string>();
  if (r.count("metrics-listen")) {
    flags->metrics_listen = r["metrics-listen"].as<std::string>();
    const Status s = net::MetricsServer::CheckAddress(flags->metrics_listen);
    if (!s.ok()) {
      PrintError("--metrics-listen '" + flags->metrics_listen + "' is not HOST:PORT");
      return false;
    }
  }
  if (r.count("metrics-port-file")) {
    flags->metrics_port_file = r["metrics-port-file"].as<std::string>();
    if (flags->metrics_listen.empty()) {
      PrintError("--metrics-port-file needs --metrics-listen");
      return false;
    }
  }
  for (auto [flag, field] : {std::pair{"auth-file", &o->auth_file},
                             {"cluster-secret-file", &o->cluster_secret_file},
                             {"tls-cert", &o->tls_cert},
                             {"tls-key", &o->tls_key},
                             {"tls-ca", &o->tls_ca}}) {
    if (r.count(flag)) *field = r[flag].as<std::string>();
  }
  o->hinted_handoff = !r["no-hinted-handoff"].as<bool>();
  o->anti_entropy = !r["no-anti-entropy"].as<bool>();
  o->sync_writes = r["sync-writes"].as<bool>();
  if (!MapNumbers(r, o)) return false;
  if (!ParseLogLevel(r["log-level"].as<std::string>(), &flags->log_level)) return false;
  if (r.count("join")) {
    std::stringstream seeds(r["join"].as<std::string>());
    for (std::string seed; std::getline(seeds, seed, ',');) {
      if (!seed.empty()) o->join_seeds.push_back(seed);
    }
    if (o->join_seeds.empty()) {
      PrintError("--join needs at least one HOST:PORT");
      return false;
    }
  }
  if (r.count("cluster")) {
    const Status s = ParseClusterSpec(r["cluster"].as<std::string>(), &o->cluster);
    if (!s.ok()) {
      PrintError(s.message());
      return false;
    }
  }
  const Status s = FinalizeNodeOptions(o);
  if (!s.ok()) {
    PrintError(s.message());
    return false;
  }
  return true;
}

// Parses argv. Returns the flags, or the exit status after --help, --version
// or an error has been reported.
std::variant<KvdFlags, ExitCode> ParseCommandLine(int argc, char** argv) {
  cxxopts::Options options = DefineFlags();
  cxxopts::ParseResult result;
  try {
    result = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    PrintError(PlainQuotes(e.what()) + " (see kvd --help)");
    return ExitCode{kExitUsage};
  }
  if (result.count("help")) {
    std::fputs(options.help().c_str(), stdout);
    return ExitCode{0};
  }
  if (result.count("version")) {
    std::printf("kvd %s (allocator: %s)\n", kVersion, AllocatorName().c_str());
    return ExitCode{0};
  }
  if (!result.unmatched().empty()) {
    PrintError("unexpected argument '" + result.unmatched().front() + "' (see kvd --help)");
    return ExitCode{kExitUsage};
  }
  KvdFlags flags;
  if (!MapFlags(result, &flags)) return ExitCode{kExitUsage};
  return flags;
}

void SetUpLogging(spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt("kvd");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%L%$ %v");
  logger->set_level(level);
  spdlog::set_default_logger(std::move(logger));
}

// Writes "HOST:PORT\n" to `path` atomically (PATH.tmp, then rename), so a
// reader polling for the file never sees it half-written.
Status WritePortFile(const std::string& path, const std::string& address) {
  const std::string tmp = path + ".tmp";
  const std::string line = address + "\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  int error = errno;
  if (fd >= 0 && ::close(fd) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    error = errno;
  }
  if (ok) return Status::OK();
  ::unlink(tmp.c_str());
  return Status::Internal("cannot write port file " + path + ": " + std::strerror(error));
}

// RocksDB creates only the last component of its directory; make the rest so
// that the default ./data/n1 works from a fresh checkout.
Status MakeDataDir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) {
    return Status::Internal("data directory " + dir + " exists and is not a directory");
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Internal("cannot create data directory " + dir + ": " + ec.message());
  return Status::OK();
}

net::ServerOptions ServerOptionsFor(const NodeOptions& node, ConnectionStats* stats,
                                    std::shared_ptr<net::TlsContext> tls) {
  net::ServerOptions options;
  options.tls = std::move(tls);
  options.listen = node.listen;
  options.io_threads = node.io_threads;
  options.session.max_request_bytes = node.max_request_bytes;
  options.max_connections = node.max_connections;
  options.stats = stats;
  return options;
}

// PROTOCOL.md §11: a node reachable beyond loopback without authentication
// says so once at start.
void WarnIfOpen(const NodeOptions& o) {
  if (!o.auth_file.empty()) return;
  const std::string host = o.listen.substr(0, o.listen.rfind(':'));
  std::error_code ec;
  const asio::ip::address address = asio::ip::make_address(
      host.size() > 2 && host.front() == '[' ? host.substr(1, host.size() - 2) : host, ec);
  if (!ec && address.is_loopback()) return;
  if (host == "localhost") return;
  spdlog::warn(
      "[security] listening on {} with authentication off: anyone who can reach this port can "
      "read and write every key (set --auth-file; see docs/security.md)",
      o.listen);
}

// Every connection is a file descriptor: raises the soft limit on open files
// to the hard limit, so that --max-connections can be reached, and warns when
// even that is too low.
void RaiseFileLimit(uint64_t max_connections) {
  // Descriptors beyond the clients': the store's files, listeners, peers, logs.
  constexpr uint64_t kHeadroom = 1024;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < max_connections + kHeadroom) {
    spdlog::warn(
        "[server] the open-file limit is {}, too low for --max-connections {}; connections "
        "beyond it fail to be accepted",
        static_cast<uint64_t>(limit.rlim_cur), max_connections);
  }
}

// Connects the node to its peers: the peer client as its transport, the
// failure detector pinging peers and delivering hints, and logging of
// membership changes.
void StartClusterLayer(const NodeOptions& options, Node* node, std::shared_ptr<net::TlsContext> tls,
                       std::unique_ptr<net::PeerClient>* peers,
                       std::unique_ptr<net::PeerTransport>* transport,
                       std::unique_ptr<net::FailureDetector>* detector) {
  cluster::Membership* membership = node->membership();
  membership->SetListener([](const std::string& id, bool up) {
    if (up) {
      spdlog::info("[membership] node {} is up", id);
    } else {
      spdlog::warn("[membership] node {} is down", id);
    }
  });
  net::PeerClientOptions peer_options;
  peer_options.tls = std::move(tls);
  peer_options.handshake = node->PeerHandshakes();
  *peers = std::make_unique<net::PeerClient>(peer_options, membership, options.node_id,
                                             node->cluster_fingerprint());
  net::PeerClient* client = peers->get();
  client->SetHybridClock(node->hybrid_clock());
  client->SetEpochSource([node] { return node->map_epoch(); });
  client->SetHelloListener([node](const std::string& peer, bool dir_changed, uint64_t epoch) {
    node->OnPeerHello(peer, dir_changed, epoch);
  });
  client->SetDataDirId(node->data_dir_id());
  // Coordinators on the server's I/O threads reach replicas through a client
  // on their own thread; everything else through `client`.
  std::vector<std::pair<std::string, std::string>> known;
  for (const std::string& id : membership->Peers()) known.emplace_back(id, membership->AddressOf(id));
  net::PeerClientOptions shard_options = peer_options;
  shard_options.connections_per_peer = 1;
  *transport = std::make_unique<net::PeerTransport>(client, shard_options, std::move(known),
                                                    options.node_id, node->cluster_fingerprint());
  net::PeerTransport* replicas = transport->get();
  // --join seeds are reached as "@seedN" until the map names their ids.
  for (size_t i = 0; i < options.join_seeds.size(); ++i) {
    replicas->AddPeer("@seed" + std::to_string(i), options.join_seeds[i]);
  }
  node->SetPeerTransport(replicas);
  std::map<std::string, std::unique_ptr<cluster::AaeReplica>> remotes;
  for (const std::string& peer : membership->Peers()) {
    remotes[peer] =
        std::make_unique<net::RemoteAaeReplica>(client, peer, options.request_timeout_ms * 5);
  }
  node->SetAaeRemotes(std::move(remotes));
  const uint64_t aae_timeout_ms = options.request_timeout_ms * 5;
  node->SetPeerListener(
      [node, client, replicas, aae_timeout_ms](const std::string& id, const std::string& address) {
        replicas->AddPeer(id, address);  // and to `client`
        node->AddAaeRemote(id, std::make_unique<net::RemoteAaeReplica>(client, id, aae_timeout_ms));
      });
  node->SetPeerSender([client](const std::string& to, std::string line, uint64_t timeout_ms,
                               Node::PeerSendDone done) {
    client->Send(to, std::move(line), timeout_ms, std::move(done));
  });
  client->Start();
  node->StartMembership();
  net::FailureDetector::Tick tick;
  if (cluster::HintedHandoff* handoff = node->handoff()) tick = [handoff] { handoff->Tick(); };
  *detector = std::make_unique<net::FailureDetector>(net::FailureDetectorOptions{}, peers->get(),
                                                     membership, std::move(tick));
  (*detector)->Start();
}

// Starts the HTTP metrics endpoint (--metrics-listen) and writes its port
// file. /health reports `*serving`.
Status StartMetrics(const KvdFlags& flags, Node* node, const std::atomic<bool>* serving,
                    std::unique_ptr<net::MetricsServer>* metrics) {
  net::MetricsServerOptions options;
  options.listen = flags.metrics_listen;
  *metrics = std::make_unique<net::MetricsServer>(
      std::move(options), [node] { return node->MetricsText(); },
      [serving] { return serving->load(std::memory_order_acquire); });
  RINGKV_RETURN_IF_ERROR((*metrics)->Start());
  if (flags.metrics_port_file.empty()) return Status::OK();
  return WritePortFile(flags.metrics_port_file, (*metrics)->BoundAddress());
}

// Opens the node, serves until SIGTERM/SIGINT, shuts down.
int Serve(const KvdFlags& flags) {
  // Installed before the (possibly slow) store opens: a signal that arrives
  // meanwhile is kept and handled as soon as the node is up.
  asio::io_context signal_io;
  asio::signal_set signals(signal_io);
  std::error_code ec;
  signals.add(SIGINT, ec);
  if (!ec) signals.add(SIGTERM, ec);
  if (ec) {
    PrintError("cannot install signal handlers: " + ec.message());
    return kExitStartupFailure;
  }
  if (!ec) signals.add(SIGHUP, ec);
  if (ec) {
    PrintError("cannot install signal handlers: " + ec.message());
    return kExitStartupFailure;
  }
  const NodeOptions& options = flags.node;
  std::unique_ptr<Node> node;
  std::shared_ptr<net::TlsContext> tls;
  // SIGHUP reloads the users and the certificates; SIGTERM or SIGINT stops.
  int received = 0;
  std::function<void(const std::error_code&, int)> on_signal = [&](const std::error_code& e,
                                                                   int signo) {
    if (e) return;
    if (signo != SIGHUP) {
      received = signo;
      return;
    }
    spdlog::info("[server] SIGHUP received; reloading users and certificates");
    if (node) (void)node->ReloadUsers();  // it logs why it failed
    if (tls) {
      // The key is checked again: a replacement readable by others is refused.
      Status r = security::CheckPrivateFile(options.tls_key, "--tls-key");
      if (r.ok()) r = tls->Reload();
      if (r.ok()) {
        spdlog::info("[security] TLS certificates reloaded");
      } else {
        spdlog::error("[security] reloading the TLS certificates failed, keeping the old: {}",
                      r.message());
      }
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);

  Status s = MakeDataDir(options.data_dir);
  if (s.ok() && !options.tls_cert.empty()) {
    s = net::TlsContext::Make({options.tls_cert, options.tls_key, options.tls_ca}, &tls);
  }
  if (s.ok()) s = Node::Open(options, &node);
  if (!s.ok()) {
    PrintError(s.message());
    return kExitStartupFailure;
  }
  WarnIfOpen(options);
  // The metrics endpoint comes up before the client listener, so that
  // /health answers 503 while the node is still starting; `serving` is set
  // once clients are served and cleared as soon as shutdown begins.
  std::atomic<bool> serving{false};
  std::unique_ptr<net::MetricsServer> metrics;
  if (!flags.metrics_listen.empty()) s = StartMetrics(flags, node.get(), &serving, &metrics);
  // Even a cluster of one runs the peer layer: a node may join it.
  std::unique_ptr<net::PeerClient> peers;
  std::unique_ptr<net::PeerTransport> transport;
  std::unique_ptr<net::FailureDetector> detector;
  if (s.ok()) StartClusterLayer(options, node.get(), tls, &peers, &transport, &detector);

  net::ServerOptions server_options = ServerOptionsFor(options, node->connection_stats(), tls);
  server_options.hooks = transport.get();
  auto server = std::make_unique<net::Server>(server_options, node.get());
  if (s.ok()) s = server->Listen();
  if (s.ok()) {
    node->SetAdvertisedAddress(server->BoundAddress());
    s = server->Start();
  }
  if (s.ok() && !flags.port_file.empty())
    s = WritePortFile(flags.port_file, server->BoundAddress());
  if (s.ok()) {
    spdlog::info("[server] node {} listening on {} (kvd {}, allocator: {})", options.node_id,
                 server->BoundAddress(), kVersion, AllocatorName());
    serving.store(true, std::memory_order_release);
    while (received == 0 && signal_io.run_one() > 0) {
    }  // until SIGTERM or SIGINT (SIGHUPs are handled on the way)
    // From here on /health says 503: the node is draining.
    serving.store(false, std::memory_order_release);
    // Shutting down already: a second signal (Ctrl-C reaching the process
    // group while a script also sends SIGTERM) must not kill the process
    // half-way with a failure status once the signal_set is gone.
    std::signal(SIGINT, SIG_IGN);
    std::signal(SIGTERM, SIG_IGN);
    spdlog::info("[server] {} received; shutting down", received == SIGINT ? "SIGINT" : "SIGTERM");
  } else {
    PrintError(s.message());
  }

  // Order matters: stop the network (in-flight requests answered, which may
  // still be waiting on peers, so the peer layer keeps running meanwhile;
  // then the I/O threads' peer clients fail what they still hold), stop
  // pinging and delivering hints, stop the peer client (what is still
  // pending there fails), let the node finish background work, close the
  // store, and only then destroy the server, whose io_context late `done`
  // callbacks would post to and whose io_contexts the I/O threads' peer
  // clients' sockets belong to. The node refers to `transport` and `peers`:
  // destroy it first.
  // The metrics endpoint keeps answering (/health with 503) until the node
  // is about to go, since it reads the node's figures.
  server->Stop();
  if (detector) detector->Stop();
  if (peers) peers->Stop();
  node->Shutdown();
  if (metrics) metrics->Stop();
  node.reset();
  detector.reset();
  transport.reset();
  peers.reset();
  server.reset();
  if (s.ok()) spdlog::info("[server] node {} stopped", options.node_id);
  return s.ok() ? 0 : kExitStartupFailure;
}

int Main(int argc, char** argv) {
  auto parsed = ParseCommandLine(argc, argv);
  if (auto* exit = std::get_if<ExitCode>(&parsed)) return exit->code;
  const KvdFlags& flags = std::get<KvdFlags>(parsed);
  SetUpLogging(flags.log_level);
  RaiseFileLimit(flags.node.max_connections);
  std::signal(SIGPIPE, SIG_IGN);  // a vanished client is an error code, not a death
  return Serve(flags);
}

}  // namespace
}  // namespace ringkv

int main(int argc, char** argv) {
  try {
    return ringkv::Main(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    ringkv::PrintError(ringkv::PlainQuotes(e.what()));
    return ringkv::kExitUsage;
  } catch (const std::exception& e) {
    ringkv::PrintError(e.what());
    return ringkv::kExitStartupFailure;
  } catch (...) {
    ringkv::PrintError("unexpected failure");
    return ringkv::kExitStartupFailure;
  }
}
