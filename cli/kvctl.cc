// kvctl: the RingKV command-line client and admin tool (PROTOCOL.md §6, §7).
//
//   kvctl [--host HOST:PORT] [-o json] [--timeout-ms N] [--tls] [--tls-ca FILE]
//         [--user NAME] [--password-file FILE] COMMAND ARGS...
//
// The security flags (cli/client_security.h) apply to every connection kvctl
// makes, the members asked by `cluster` and `cluster-backup` included.
//
// Exit status: 0 success, 1 key not found (get), 2 usage error, 3 server or
// connection error ("kvctl: CODE: message" on stderr).
//
// Besides the one-request commands, three admin commands do more:
// - `cluster` (human output) asks every member for its stats and its view of
//   the others and prints one table for the whole cluster;
// - `cluster-backup DEST` (what scripts/kv-backup runs) backs up every member
//   into DEST/<node-id>/ and then writes DEST/manifest.json atomically;
// - `restore DEST NODE_ID DATA_DIR` (what scripts/kv-restore runs) verifies and
//   restores one node's backup into an empty data dir, with no node running.
// - `user hash` (cli/user_command.h) prints a password hash for the users file.
//
// Options may appear before or after the command; "--" ends them. The command
// line is parsed by hand rather than with cxxopts because cxxopts takes any
// word starting with '-' for an option, and `kvctl put n -5 --json` must store
// the number -5.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cli/aae_report.h"
#include "cli/backup_command.h"
#include "cli/client.h"
#include "cli/client_security.h"
#include "cli/cluster_table.h"
#include "cli/format.h"
#include "cli/kvctl_args.h"
#include "cli/stats_report.h"
#include "cli/user_command.h"
#include "engine/status.h"
#include "engine/store.h"

namespace ringkv::kvctl {
namespace {

using namespace cli;  // NOLINT(build/namespaces): the formatting and stats helpers

void PrintLocate(const json& resp) {
  std::cout << "partition " << Field(resp, "partition") << "\nreplicas ";
  auto replicas = resp.find("replicas");
  if (replicas != resp.end() && replicas->is_array()) {
    bool first = true;
    for (const auto& r : *replicas) {
      std::cout << (first ? "" : " ") << (r.is_string() ? r.get<std::string>() : r.dump());
      first = false;
    }
  }
  std::cout << "\n";
}

// ---------------------------------------------------------------------------

// `kvctl user SUBCOMMAND`: only `user hash` so far.
int RunUser(const Invocation& inv) {
  Status st = RunUserCommand(inv.args, STDIN_FILENO, std::cout, std::cerr);
  if (st.code() == Status::Code::kBadRequest) return UsageError(st.message());
  if (!st.ok()) {
    std::cerr << "kvctl: " << st.CodeName() << ": " << st.message() << "\n";
    return kExitError;
  }
  return kExitOk;
}

// A membership response (`cluster join|…|transfers`) for a human: the moves
// with a progress bar, rate and ETA, and the balance a plan leads to.
void PrintMembership(const std::string& sub, const json& resp) {
  if (sub == "commit") {
    std::cout << "committed: epoch " << Field(resp, "epoch") << ", " << Field(resp, "moves")
              << " partition moves (kvctl cluster transfers shows them)\n";
    return;
  }
  if (sub == "clear") {
    std::cout << "cleared " << Field(resp, "cleared") << " staged change(s)\n";
    return;
  }
  if (sub == "transfers") {
    std::cout << "epoch " << Field(resp, "epoch") << " (" << Field(resp, "phase") << ")";
    if (!Field(resp, "change").empty()) std::cout << ": " << Field(resp, "change");
    std::cout << "; moves pending: " << Field(resp, "moves_pending") << "\n";
  } else {
    std::cout << "staged at epoch " << Field(resp, "epoch") << ":";
    for (const json& c : resp.value("changes", json::array()))
      std::cout << " " << c.get<std::string>();
    std::cout << "\n";
    if (resp.contains("error")) std::cout << "cannot be planned: " << Field(resp, "error") << "\n";
  }
  const json moves =
      resp.contains("transfers") ? resp["transfers"] : resp.value("moves", json::array());
  for (const json& m : moves) {
    const double done = m.value("bytes_done", 0.0), total = m.value("bytes_total", 0.0);
    const double rate = m.value("rate_bytes_per_s", 0.0);
    const int width = 20;
    const int filled = total > 0 ? static_cast<int>(width * std::min(1.0, done / total)) : 0;
    std::cout << "  p" << m.value("partition", 0) << " " << m.value("from", "") << " -> "
              << m.value("to", "") << "  " << m.value("stage", "") << "  ["
              << std::string(filled, '#') << std::string(width - filled, '.') << "] "
              << HumanBytes(done) << " / " << HumanBytes(total);
    if (rate > 0) {
      std::cout << "  " << HumanBytes(rate) << "/s";
      if (total > done) std::cout << "  ETA " << static_cast<int>((total - done) / rate) << " s";
    }
    std::cout << "\n";
  }
  if (resp.contains("slots")) {
    std::cout << "replica slots per node (before -> after):";
    for (const auto& [node, ba] : resp["slots"].items()) {
      std::cout << " " << node << " " << ba.value("before", 0) << "->" << ba.value("after", 0);
    }
    std::cout << "\n";
    std::cout << "bytes to copy (estimate): " << HumanBytes(resp.value("bytes_to_copy", 0.0))
              << "\n";
  }
}

// Prints a successful response for a human. Returns the exit status.
int PrintHuman(const Invocation& inv, const json& resp) {
  const std::string& cmd = inv.command;
  if (cmd == "get") {
    auto it = resp.find("value");
    const json value = it == resp.end() ? json() : *it;
    std::cout << (value.is_string() ? value.get<std::string>() : value.dump()) << "\n";
  } else if (cmd == "put" || cmd == "del" || cmd == "delete") {
    std::cout << Field(resp, "version") << "\n";
  } else if (cmd == "ping") {
    std::cout << "PONG " << Field(resp, "node") << "\n";
  } else if (cmd == "stats") {
    PrintStats(resp);
  } else if (cmd == "cluster" && !inv.args.empty()) {
    PrintMembership(inv.args[0], resp);
  } else if (cmd == "cluster") {
    return PrintClusterTable(inv, resp);
  } else if (cmd == "locate") {
    PrintLocate(resp);
  } else if (cmd == "aae") {
    PrintAaeReport(Object(resp, "aae"), std::cout);
  } else if (cmd == "compact") {
    std::cout << "compacted in " << Field(resp, "ms") << " ms\n";
  } else if (cmd == "backup") {
    std::optional<double> bytes = Number(resp, "bytes");
    std::cout << "backup " << Field(resp, "backup_id") << " written to " << Field(resp, "dir")
              << " (" << (bytes ? HumanBytes(*bytes) : "?") << ")\n";
  }
  return kExitOk;
}

int Run(int argc, char** argv) {
  Invocation inv;
  std::vector<std::string> args(argv + 1, argv + argc);
  SecurityFlags security_flags;
  Status st = ExtractSecurityFlags(&args, &security_flags, ValueOptions());
  if (!st.ok()) return UsageError(st.message());
  if (std::string err = ParseArgs(args, &inv); !err.empty()) return UsageError(err);
  if (inv.help) {
    std::cout << kUsage << kSecurityFlagsHelp;
    return kExitOk;
  }
  // These connect to no node: the security flags (kv-restore passes them on)
  // do not apply, and no password is needed.
  if (inv.command == "restore") return RunRestore(inv);
  if (inv.command == "user") return RunUser(inv);
  st = ResolveSecurity(security_flags, std::getenv(kPasswordEnvVar), &inv.security);
  if (!st.ok()) return UsageError(st.message());
  // One TLS context (CA loaded once) for every connection; a CA file that
  // cannot be loaded is a usage error, found before connecting.
  if (st = PrepareTls(&inv.security); !st.ok()) return UsageError(st.message());
  if (inv.command == "cluster-backup") return RunClusterBackup(inv);
  json request;
  if (std::string err = BuildRequest(inv, &request); !err.empty()) return UsageError(err);
  if (!Client::ValidAddress(inv.host)) {
    return UsageError("malformed address (want HOST:PORT): " + inv.host);
  }

  const bool long_op = inv.command == "backup" || inv.command == "compact";
  int timeout_ms = inv.timeout_ms.value_or(long_op ? kDefaultBackupTimeoutMs : kDefaultTimeoutMs);
  std::unique_ptr<Client> client;
  st = Client::Connect(inv.host, &client, timeout_ms, inv.security);
  if (!st.ok() &&
      (st.code() == Status::Code::kUnavailable || st.code() == Status::Code::kTimeout)) {
    std::cerr << "kvctl: cannot connect to " << inv.host << ": " << st.message() << "\n";
    return kExitError;
  }
  if (!st.ok()) {
    // The node refused the credentials (unauthenticated), or this port wants
    // TLS (bad_request): its own words.
    std::cerr << "kvctl: " << st.CodeName() << ": " << st.message() << "\n";
    return kExitError;
  }
  json resp;
  st = client->Call(request, &resp);
  if (!st.ok()) {
    std::cerr << "kvctl: " << st.CodeName() << ": " << st.message() << " (" << inv.host << ")\n";
    return kExitError;
  }
  if (inv.json_output) std::cout << resp.dump() << "\n";
  if (!IsTrue(resp, "ok")) {
    json error = Object(resp, "error");
    std::string code = Field(error, "code"), message = Field(error, "message");
    std::cerr << "kvctl: " << (code.empty() ? "internal" : code) << ": "
              << (message.empty() ? resp.dump() : message) << "\n";
    return kExitError;
  }
  bool not_found = inv.command == "get" && !IsTrue(resp, "found");
  if (not_found) std::cerr << "kvctl: key not found\n";
  if (not_found) return kExitNotFound;
  return inv.json_output ? kExitOk : PrintHuman(inv, resp);
}

}  // namespace
}  // namespace ringkv::kvctl

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  int code;
  try {
    code = ringkv::kvctl::Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "kvctl: internal: " << e.what() << "\n";
    code = 3;
  }
  std::cout.flush();
  return code;
}
