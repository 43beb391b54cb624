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
#include "cli/client.h"
#include "cli/client_security.h"
#include "cli/format.h"
#include "cli/stats_report.h"
#include "cli/user_command.h"
#include "engine/status.h"
#include "engine/store.h"

namespace ringkv {
namespace {

using nlohmann::json;
// Formatting and the stats report live in cli/format.h and cli/stats_report.h.
using namespace cli;  // NOLINT(build/namespaces): kvctl's own helpers

constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
constexpr int kExitUsage = 2;
constexpr int kExitError = 3;

constexpr int kDefaultTimeoutMs = 10000;
// A backup copies the whole database; give it far longer by default.
constexpr int kDefaultBackupTimeoutMs = 30 * 60 * 1000;
// `cluster` asks every member; one that does not answer in this time is shown
// as unreachable rather than holding up the whole table.
constexpr int kDefaultMemberTimeoutMs = 3000;

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "usage: kvctl [--host HOST:PORT] [-o json] [--timeout-ms N] [--tls] [--tls-ca FILE]\n"
    "             [--user NAME] [--password-file FILE] COMMAND [ARGS]\n"
    "commands:\n"
    "  put KEY VALUE [--json] [--ttl-ms N] [-w W]   store VALUE (a string unless --json;\n"
    "                                               VALUE - reads standard input)\n"
    "  get KEY [-r R] [--local]                     print the value\n"
    "  del KEY [-w W]                               delete the key\n"
    "  ping | stats | cluster                       ask the node\n"
    "  locate KEY                                   show the key's partition and replicas\n"
    "  backup DIR                                   online backup of the node into DIR\n"
    "  aae                                          anti-entropy: exchanges, repairs, rebuild\n"
    "                                               progress and GC watermark per partition\n"
    "  compact                                      full compaction of the node (purges what\n"
    "                                               every replica has confirmed)\n"
    "  cluster-backup DEST                          back up every member into DEST/<node-id>/\n"
    "                                               and write DEST/manifest.json (kv-backup)\n"
    "  restore DEST NODE_ID DATA_DIR                restore NODE_ID's backup from DEST into the\n"
    "                                               empty DATA_DIR; needs no node (kv-restore)\n"
    "  user hash                                    read a password on standard input and print\n"
    "                                               its hash for kvd's --auth-file\n"
    "W and R are an integer or one, quorum, all. --host defaults to 127.0.0.1:7700.\n"
    "exit status: 0 ok, 1 key not found, 2 usage error, 3 server or connection error\n";

// Everything the command line asked for.
struct Invocation {
  std::string host = "127.0.0.1:7700";
  ClientSecurity security;  // --tls, --tls-ca, --user, --password-file
  bool json_output = false;
  std::optional<int> timeout_ms;
  bool help = false;
  std::string command;
  std::vector<std::string> args;   // positional arguments after the command
  std::vector<std::string> flags;  // per-command options seen, for validation
  bool value_is_json = false;
  std::optional<int64_t> ttl_ms;
  std::optional<json> w, r;
  bool local = false;
};

struct CommandSpec {
  const char* name;
  const char* op;
  size_t arity;
  std::vector<std::string> allowed_flags;
};

// The one table that drives arity and option checks.
const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec> kCommands = {
      {"put", "put", 2, {"--json", "--ttl-ms", "-w"}},
      {"get", "get", 1, {"-r", "--local"}},
      {"del", "delete", 1, {"-w"}},
      {"ping", "ping", 0, {}},
      {"stats", "stats", 0, {}},
      {"cluster", "cluster", 0, {}},
      {"locate", "locate", 1, {}},
      {"backup", "backup", 1, {}},
      {"aae", "aae", 0, {}},
      {"compact", "compact", 0, {}},
      // Admin commands that are not one request (op is empty).
      {"cluster-backup", "", 1, {}},
      {"restore", "", 3, {}},
      {"user", "", 1, {}},
  };
  return kCommands;
}

const CommandSpec* FindCommand(const std::string& name) {
  for (const auto& spec : Commands()) {
    if (name == spec.name) return &spec;
  }
  if (name == "delete") return FindCommand("del");
  return nullptr;
}

// "-5", "-0.5", "-1e3": a negative number is a value, not an option.
bool LooksLikeNegativeNumber(const std::string& arg) {
  return arg.size() > 1 && arg[0] == '-' &&
         ((arg[1] >= '0' && arg[1] <= '9') || (arg[1] == '.' && arg.size() > 2));
}

bool IsOption(const std::string& arg) {
  return arg.size() > 1 && arg[0] == '-' && !LooksLikeNegativeNumber(arg);
}

// Parses a decimal integer in [min, max]; false for anything else.
bool ParseInt(const std::string& text, int64_t min, int64_t max, int64_t* out) {
  if (text.empty() || text.size() > 19) return false;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value < min || value > max) return false;
  *out = value;
  return true;
}

// -w / -r: a positive integer (sent as a JSON integer) or one/quorum/all.
bool ParseQuorum(const std::string& text, std::optional<json>* out) {
  if (text == "one" || text == "quorum" || text == "all") {
    *out = json(text);
    return true;
  }
  int64_t n = 0;
  if (!ParseInt(text, 1, 1000000, &n)) return false;
  *out = json(n);
  return true;
}

// Applies one option and its value. Returns an error message or "".
std::string ApplyOption(const std::string& name, const std::string& value, Invocation* inv) {
  int64_t n = 0;
  if (name == "--host") {
    inv->host = value;
  } else if (name == "-o" || name == "--output") {
    if (value != "json" && value != "text") return "-o takes json or text, not '" + value + "'";
    inv->json_output = value == "json";
  } else if (name == "--timeout-ms") {
    if (!ParseInt(value, 1, 24LL * 3600 * 1000, &n)) return "bad --timeout-ms: '" + value + "'";
    inv->timeout_ms = static_cast<int>(n);
  } else if (name == "--ttl-ms") {
    if (!ParseInt(value, 1, INT64_MAX, &n)) return "bad --ttl-ms (want N > 0): '" + value + "'";
    inv->ttl_ms = n;
  } else if (name == "-w") {
    if (!ParseQuorum(value, &inv->w)) return "bad -w (want N or one/quorum/all): '" + value + "'";
  } else if (name == "-r") {
    if (!ParseQuorum(value, &inv->r)) return "bad -r (want N or one/quorum/all): '" + value + "'";
  }
  return "";
}

// kvctl's own options that take a value (the security flags are parsed
// before, by ExtractSecurityFlags, which must skip these options' values).
const std::vector<std::string>& ValueOptions() {
  static const std::vector<std::string> kValueOptions = {
      "--host", "-o", "--output", "--timeout-ms", "--ttl-ms", "-w", "-r"};
  return kValueOptions;
}

bool TakesValue(const std::string& name) {
  const auto& names = ValueOptions();
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool IsFlag(const std::string& name) {
  return name == "--json" || name == "--local" || name == "-h" || name == "--help";
}

// Parses the arguments (argv without the program name and, already taken
// out, the security flags) into *inv. Returns an error message, or "" on
// success.
std::string ParseArgs(const std::vector<std::string>& args, Invocation* inv) {
  std::vector<std::string> positional;
  bool options_done = false;
  const size_t count = args.size();
  for (size_t i = 0; i < count; ++i) {
    std::string arg = args[i];
    if (options_done || !IsOption(arg)) {
      positional.push_back(std::move(arg));
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    std::string name = arg, value;
    bool has_value = false;
    if (size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    } else if (arg.size() > 2 && arg[1] != '-' && TakesValue(arg.substr(0, 2))) {
      name = arg.substr(0, 2);  // -ojson, -w2
      value = arg.substr(2);
      has_value = true;
    }
    if (IsFlag(name)) {
      if (has_value) return "option " + name + " takes no value";
      if (name == "-h" || name == "--help") inv->help = true;
      if (name == "--json") inv->value_is_json = true;
      if (name == "--local") inv->local = true;
    } else if (TakesValue(name)) {
      if (!has_value) {
        if (i + 1 >= count) return "option " + name + " needs a value";
        value = args[++i];
      }
      if (std::string err = ApplyOption(name, value, inv); !err.empty()) return err;
    } else {
      return "unknown option " + name;
    }
    if (name != "--host" && name != "-o" && name != "--output" && name != "--timeout-ms" &&
        name != "-h" && name != "--help") {
      inv->flags.push_back(name == "--output" ? "-o" : name);
    }
  }
  if (inv->help) return "";
  if (positional.empty()) return "no command given";
  inv->command = positional[0];
  inv->args.assign(positional.begin() + 1, positional.end());
  const CommandSpec* spec = FindCommand(inv->command);
  if (spec == nullptr) return "unknown command '" + inv->command + "'";
  if (inv->args.size() != spec->arity) {
    return inv->command + " takes " + std::to_string(spec->arity) + " argument(s), got " +
           std::to_string(inv->args.size());
  }
  for (const auto& flag : inv->flags) {
    const auto& allowed = spec->allowed_flags;
    if (std::find(allowed.begin(), allowed.end(), flag) == allowed.end()) {
      return "option " + flag + " does not apply to " + inv->command;
    }
  }
  return "";
}

// Reads all of standard input; false on a read error.
bool ReadStdin(std::string* out) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      return true;
    } else if (errno != EINTR) {
      return false;
    }
  }
}

// True if `text` can be sent as a JSON string (it is valid UTF-8).
bool IsValidUtf8(const std::string& text) {
  try {
    (void)json(text).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// Builds the put request's value from VALUE (or stdin for "-").
std::string BuildValue(const Invocation& inv, json* value) {
  std::string text = inv.args[1];
  if (text == "-") {
    text.clear();
    if (!ReadStdin(&text)) return "cannot read standard input";
    if (!inv.value_is_json && !text.empty() && text.back() == '\n') {
      text.pop_back();
      if (!text.empty() && text.back() == '\r') text.pop_back();
    }
  }
  if (inv.value_is_json) {
    *value = json::parse(text, nullptr, false);
    if (value->is_discarded()) return "VALUE is not valid JSON (--json)";
    return "";
  }
  if (!IsValidUtf8(text)) return "VALUE is not valid UTF-8 text; store it with --json or encode it";
  *value = json(std::move(text));
  return "";
}

// Builds the request for the parsed command line. Returns an error message or "".
std::string BuildRequest(const Invocation& inv, json* request) {
  const CommandSpec* spec = FindCommand(inv.command);
  json req = {{"op", spec->op}};
  if (inv.command == "put" || inv.command == "get" || inv.command == "del" ||
      inv.command == "delete" || inv.command == "locate") {
    if (!IsValidUtf8(inv.args[0])) return "KEY is not valid UTF-8";
    req["key"] = inv.args[0];
  }
  if (inv.command == "put") {
    json value;
    if (std::string err = BuildValue(inv, &value); !err.empty()) return err;
    req["value"] = std::move(value);
    if (inv.ttl_ms) req["ttl_ms"] = *inv.ttl_ms;
  }
  if (inv.w) req["w"] = *inv.w;
  if (inv.r) req["r"] = *inv.r;
  if (inv.local) req["local"] = true;
  if (inv.command == "backup") {
    // A relative DIR means relative to where kvctl runs, not to the node's cwd.
    std::error_code ec;
    auto dir = std::filesystem::absolute(inv.args[0], ec);
    if (ec || !IsValidUtf8(dir.string())) return "bad backup DIR '" + inv.args[0] + "'";
    req["dir"] = dir.string();
  }
  *request = std::move(req);
  return "";
}

int UsageError(const std::string& message) {
  std::string_view usage_line(kUsage);
  usage_line = usage_line.substr(0, usage_line.find("commands:\n"));
  std::cerr << "kvctl: " << message << "\n"
            << usage_line << "run 'kvctl --help' for the commands\n";
  return kExitUsage;
}

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
// Talking to nodes.

// One request to `host` on a new connection made with `security`. Returns ""
// on an ok answer, or one line saying why not ("cannot connect: connection
// refused", "timeout: ...", "bad_request: ...", "unauthenticated: ..." when
// the node refused the credentials); *resp holds whatever was answered.
std::string CallNode(const std::string& host, const ClientSecurity& security, const json& request,
                     int timeout_ms, json* resp) {
  std::unique_ptr<Client> client;
  Status st = Client::Connect(host, &client, timeout_ms, security);
  if (!st.ok() &&
      (st.code() == Status::Code::kUnavailable || st.code() == Status::Code::kTimeout)) {
    return "cannot connect: " + st.message();
  }
  if (!st.ok()) return std::string(st.CodeName()) + ": " + st.message();
  st = client->Call(request, resp);
  if (!st.ok()) return std::string(st.CodeName()) + ": " + st.message();
  if (!IsTrue(*resp, "ok")) {
    json error = Object(*resp, "error");
    std::string code = Field(error, "code"), message = Field(error, "message");
    return (code.empty() ? "internal" : code) + ": " + (message.empty() ? resp->dump() : message);
  }
  return "";
}

// A node id as kvd accepts it: [A-Za-z0-9_-]{1,64}. Ids become directory
// names under DEST, so anything else is refused.
bool ValidNodeId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

struct Member {
  std::string id;
  std::string address;
  std::string status;  // as the host sees it
};

// The members listed in a `cluster` response; false (with *why) if malformed.
bool ParseMembers(const json& resp, std::vector<Member>* out, std::string* why) {
  auto nodes = resp.find("nodes");
  if (nodes == resp.end() || !nodes->is_array() || nodes->empty()) {
    *why = "the cluster response lists no nodes";
    return false;
  }
  for (const auto& n : *nodes) {
    Member m{Field(n, "id"), Field(n, "address"), Field(n, "status")};
    if (!ValidNodeId(m.id) || m.address.empty()) {
      *why = "the cluster response has a malformed node entry: " + n.dump();
      return false;
    }
    out->push_back(std::move(m));
  }
  return true;
}

// ---------------------------------------------------------------------------
// kvctl cluster: one table for the whole cluster.

struct MemberReport {
  Member member;
  std::string error;                        // why kvctl could not ask it, "" if it answered
  json stats;                               // its stats object
  std::map<std::string, std::string> view;  // id -> up/down, as it sees the others
};

void AskMember(MemberReport* report, const ClientSecurity* security, int timeout_ms) {
  json resp;
  report->error = CallNode(report->member.address, *security, {{"op", "stats"}}, timeout_ms, &resp);
  if (!report->error.empty()) return;
  report->stats = Object(resp, "stats");
  std::string answered_as = Field(report->stats, "node");
  if (!answered_as.empty() && answered_as != report->member.id) {
    report->error = "answers as node '" + answered_as + "'";
    return;
  }
  report->error =
      CallNode(report->member.address, *security, {{"op", "cluster"}}, timeout_ms, &resp);
  if (!report->error.empty()) return;
  auto nodes = resp.find("nodes");
  if (nodes == resp.end() || !nodes->is_array()) return;
  for (const auto& n : *nodes) report->view[Field(n, "id")] = Field(n, "status");
}

int PrintClusterTable(const Invocation& inv, const json& resp) {
  std::vector<Member> members;
  std::string why;
  if (!ParseMembers(resp, &members, &why)) {
    std::cerr << "kvctl: internal: " << why << " (" << inv.host << ")\n";
    return kExitError;
  }
  std::vector<MemberReport> reports(members.size());
  std::vector<std::thread> threads;
  int timeout_ms = inv.timeout_ms.value_or(kDefaultMemberTimeoutMs);
  for (size_t i = 0; i < members.size(); ++i) {
    reports[i].member = members[i];
    threads.emplace_back(AskMember, &reports[i], &inv.security, timeout_ms);
  }
  for (auto& t : threads) t.join();

  std::cout << "cluster via " << inv.host << " (node " << Field(resp, "node")
            << "): " << Nodes(members.size()) << ", replicas " << Field(resp, "replicas")
            << ", partitions " << Field(resp, "partitions") << "\n";
  std::vector<std::vector<std::string>> table = {
      {"ID", "ADDRESS", "STATUS", "SEEN DOWN BY", "PARTITIONS", "KEYS", "HINTS", "DISK"}};
  double keys = 0, hints = 0, disk = 0;
  for (const MemberReport& r : reports) {
    std::string seen_down_by;
    for (const MemberReport& viewer : reports) {
      auto it = viewer.view.find(r.member.id);
      if (viewer.error.empty() && it != viewer.view.end() && it->second != "up") {
        seen_down_by += (seen_down_by.empty() ? "" : ",") + viewer.member.id;
      }
    }
    if (seen_down_by.empty()) seen_down_by = "-";
    if (!r.error.empty()) {
      table.push_back(
          {r.member.id, r.member.address, "unreachable", seen_down_by, "-", "-", "-", "-"});
      continue;
    }
    auto num = [&](const char* key, std::string (*format)(double), double* sum) -> std::string {
      std::optional<double> v = Number(r.stats, key);
      if (!v) return "-";
      *sum += *v;
      return format(*v);
    };
    double unused = 0;
    table.push_back({r.member.id, r.member.address, r.member.status.empty() ? "?" : r.member.status,
                     seen_down_by, num("partitions_replicated", Integer, &unused),
                     num("keys_estimate", Integer, &keys), num("hints_pending", Integer, &hints),
                     num("disk_bytes", HumanBytes, &disk)});
  }
  PrintTable(table, {false, false, false, false, true, true, true, true});
  std::cout << "total: " << Integer(keys) << " keys (estimate, counting every replica), "
            << Integer(hints) << " hints pending, " << HumanBytes(disk) << " on disk\n";
  for (const MemberReport& r : reports) {
    if (!r.error.empty()) {
      std::cout << r.member.id << " (" << r.member.address
                << ") is unreachable from here: " << r.error << "\n";
    }
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------
// kvctl cluster-backup DEST (scripts/kv-backup).

constexpr char kManifest[] = "manifest.json";

std::string IsoTimeUtc(std::chrono::system_clock::time_point when) {
  std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Seconds(SteadyClock::duration d) {
  return Printf("%.1f s", std::chrono::duration<double>(d).count());
}

// Writes `content` to path.tmp, fsyncs it, renames it over `path` and fsyncs
// the directory: readers see the old file, no file, or the whole new one.
std::string WriteFileAtomically(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "cannot create " + tmp.string() + ": " + std::strerror(errno);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string err = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return "cannot write " + tmp.string() + ": " + err;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return "cannot sync " + tmp.string() + ": " + err;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return "cannot rename " + tmp.string() + ": " + err;
  }
  int dir_fd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);  // best effort: the rename is done either way
    ::close(dir_fd);
  }
  return "";
}

// Progress of one long step on stderr. On a terminal the line shows the
// elapsed time, updated every second; elsewhere (logs, pipes) only the
// finished line is written.
class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), start_(SteadyClock::now()) {
    tty_ = ::isatty(STDERR_FILENO) == 1;
    if (!tty_) return;
    std::cerr << what_ << "..." << std::flush;
    ticker_ = std::thread([this] {
      std::unique_lock<std::mutex> l(mu_);
      while (!cv_.wait_for(l, std::chrono::seconds(1), [this] { return done_; })) {
        std::cerr << "\r\033[K" << what_ << "... " << Seconds(SteadyClock::now() - start_)
                  << std::flush;
      }
    });
  }
  ~Progress() { Stop(); }

  // Ends the line with `result` ("12.3 MiB, backup 4").
  void Finish(const std::string& result) {
    Stop();
    std::cerr << (tty_ ? "\r\033[K" : "") << what_ << "... " << result << " ("
              << Seconds(SteadyClock::now() - start_) << ")\n"
              << std::flush;
  }

 private:
  void Stop() {
    if (!ticker_.joinable()) return;
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    ticker_.join();
  }

  std::string what_;
  SteadyClock::time_point start_;
  bool tty_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread ticker_;
};

// Total size of the regular files under `dir`; nullopt if it is not a
// directory here.
std::optional<uint64_t> DirBytes(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  uint64_t total = 0;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      uintmax_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

int BackupFailed(const std::string& message, const fs::path& previous) {
  std::cerr << "kvctl: backup failed: " << message << "; no manifest written";
  std::error_code ec;
  if (fs::exists(previous, ec))
    std::cerr << " (the earlier one is kept as " << previous.string() << ")";
  std::cerr << "\n";
  return kExitError;
}

int RunClusterBackup(const Invocation& inv) {
  std::error_code ec;
  fs::path dest = fs::absolute(inv.args[0], ec).lexically_normal();
  if (ec || inv.args[0].empty() || !IsValidUtf8(dest.string())) {
    return UsageError("bad DEST '" + inv.args[0] + "'");
  }
  if (!dest.has_filename() && dest.has_parent_path()) dest = dest.parent_path();
  const fs::path manifest_path = dest / kManifest;
  const fs::path previous = dest / (std::string(kManifest) + ".previous");
  const auto started_at = std::chrono::system_clock::now();
  const auto started = SteadyClock::now();

  // First of all, a manifest from an earlier run must not describe this one
  // if it fails: set it aside (it stays valid for the earlier backups, which
  // BackupEngine keeps).
  if (fs::exists(manifest_path, ec)) {
    fs::rename(manifest_path, previous, ec);
    if (ec) {
      return BackupFailed("cannot set aside " + manifest_path.string() + ": " + ec.message(),
                          previous);
    }
  }

  // The members, as the node we were pointed at knows them.
  int timeout_ms = inv.timeout_ms.value_or(kDefaultTimeoutMs);
  json cluster;
  std::string err = CallNode(inv.host, inv.security, {{"op", "cluster"}}, timeout_ms, &cluster);
  if (!err.empty()) return BackupFailed("node at " + inv.host + ": " + err, previous);
  std::vector<Member> members;
  std::string why;
  if (!ParseMembers(cluster, &members, &why))
    return BackupFailed(why + " (" + inv.host + ")", previous);
  std::optional<double> partitions = Number(cluster, "partitions");
  std::optional<double> replicas = Number(cluster, "replicas");
  if (!partitions || !replicas) {
    return BackupFailed("the cluster response of " + inv.host + " lacks partitions or replicas",
                        previous);
  }

  // Every member must answer before any is backed up, so that a node known to
  // be down fails the run at once instead of after the others' backups.
  for (const Member& m : members) {
    json pong;
    err = CallNode(m.address, inv.security, {{"op", "ping"}}, timeout_ms, &pong);
    if (err.empty() && Field(pong, "node") != m.id) {
      err = "answers as node '" + Field(pong, "node") + "'";
    }
    if (!err.empty())
      return BackupFailed("node " + m.id + " (" + m.address + "): " + err, previous);
  }

  fs::create_directories(dest, ec);
  if (ec) return BackupFailed("cannot create " + dest.string() + ": " + ec.message(), previous);
  fs::remove(dest / (std::string(kManifest) + ".tmp"), ec);
  std::cerr << "backing up " << Nodes(members.size()) << " of the cluster of " << inv.host
            << " into " << dest.string() << "\n";

  nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
  double total_bytes = 0;
  int backup_timeout_ms = inv.timeout_ms.value_or(kDefaultBackupTimeoutMs);
  for (const Member& m : members) {
    fs::path dir = dest / m.id;
    auto node_started = SteadyClock::now();
    std::string taken_at = IsoTimeUtc(std::chrono::system_clock::now());
    // The node writes DEST/<id> on its own machine; when that is visible here
    // too, its growth shows how much this (incremental) backup copied.
    std::optional<uint64_t> size_before = DirBytes(dir);
    Progress progress("backing up " + m.id + " (" + m.address + ")");
    json resp;
    err = CallNode(m.address, inv.security, {{"op", "backup"}, {"dir", dir.string()}},
                   backup_timeout_ms, &resp);
    std::optional<double> bytes = Number(resp, "bytes"), id = Number(resp, "backup_id");
    if (err.empty() && (!bytes || !id || *id < 1)) err = "malformed backup response " + resp.dump();
    if (!err.empty()) {
      progress.Finish("failed");
      return BackupFailed("node " + m.id + " (" + m.address + "): " + err, previous);
    }
    std::optional<uint64_t> size_after = DirBytes(dir);
    std::string copied;
    if (size_after) {
      uint64_t before = size_before.value_or(0);
      copied = ", " +
               HumanBytes(static_cast<double>(*size_after > before ? *size_after - before : 0)) +
               " copied";
    }
    progress.Finish(HumanBytes(*bytes) + ", backup " + Integer(*id) + copied);
    total_bytes += *bytes;
    nodes.push_back({{"id", m.id},
                     {"address", m.address},
                     {"backup_id", static_cast<uint32_t>(*id)},
                     {"bytes", static_cast<uint64_t>(*bytes)},
                     {"dir", dir.string()},
                     {"taken_at", taken_at},
                     {"duration_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                         SteadyClock::now() - node_started)
                                         .count()}});
  }

  nlohmann::ordered_json manifest = {
      {"format", 1},
      {"created_at", IsoTimeUtc(started_at)},
      {"completed_at", IsoTimeUtc(std::chrono::system_clock::now())},
      {"cluster_via", inv.host},
      {"partitions", static_cast<uint32_t>(*partitions)},
      {"replicas", static_cast<uint32_t>(*replicas)},
      {"total_bytes", static_cast<uint64_t>(total_bytes)},
      {"nodes", nodes},
  };
  err = WriteFileAtomically(manifest_path, manifest.dump(2) + "\n");
  if (!err.empty()) return BackupFailed(err, previous);
  if (inv.json_output) {
    std::cout << manifest.dump() << "\n";
  } else {
    std::cout << "backup of " << Nodes(members.size()) << " (" << HumanBytes(total_bytes)
              << ") complete in " << Seconds(SteadyClock::now() - started) << ": "
              << manifest_path.string() << "\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------
// kvctl restore DEST NODE_ID DATA_DIR (scripts/kv-restore).

int RestoreFailed(const std::string& node, const std::string& message, bool refused = false) {
  std::cerr << "kvctl: restore of " << node << (refused ? " refused: " : " failed: ") << message
            << "\n";
  return kExitError;
}

// Reads DEST/manifest.json; "" or why it cannot be used.
std::string ReadManifest(const fs::path& path, json* out) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    fs::path previous = path;
    previous += ".previous";
    if (fs::exists(previous, ec)) {
      return path.string() + " does not exist: the last backup into this directory failed (the " +
             "manifest of the one before is " + previous.string() + "; rename it to " +
             path.filename().string() + " to restore that backup)";
    }
    return path.string() + " does not exist (not a kv-backup directory, or its backup did not " +
           "complete)";
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "cannot read " + path.string() + ": " + std::strerror(errno);
  std::string text;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) text.append(buf, n);
  std::fclose(f);
  *out = json::parse(text, nullptr, false);
  if (out->is_discarded() || !out->is_object() || !out->contains("nodes") ||
      !(*out)["nodes"].is_array()) {
    return path.string() + " is not a valid backup manifest";
  }
  return "";
}

int RunRestore(const Invocation& inv) {
  const std::string& node_id = inv.args[1];
  if (!ValidNodeId(node_id)) return UsageError("bad NODE_ID '" + node_id + "'");
  std::error_code ec;
  fs::path dest = fs::absolute(inv.args[0], ec).lexically_normal();
  if (ec || inv.args[0].empty()) return UsageError("bad DEST '" + inv.args[0] + "'");
  fs::path data_dir = fs::absolute(inv.args[2], ec).lexically_normal();
  if (ec || inv.args[2].empty()) return UsageError("bad DATA_DIR '" + inv.args[2] + "'");
  if (!data_dir.has_filename() && data_dir.has_parent_path()) data_dir = data_dir.parent_path();

  json manifest;
  if (std::string err = ReadManifest(dest / kManifest, &manifest); !err.empty()) {
    return RestoreFailed(node_id, err);
  }
  const json* entry = nullptr;
  std::string listed;
  for (const auto& n : manifest["nodes"]) {
    listed += (listed.empty() ? "" : ", ") + Field(n, "id");
    if (Field(n, "id") == node_id) entry = &n;
  }
  if (entry == nullptr) {
    return RestoreFailed(node_id, "node '" + node_id + "' is not in the backup in " +
                                      dest.string() + " (it has " + listed + ")");
  }
  std::optional<double> backup_id = Number(*entry, "backup_id");
  if (!backup_id || *backup_id < 1 || *backup_id > UINT32_MAX) {
    return RestoreFailed(node_id, "the manifest has no valid backup_id for " + node_id);
  }

  // Store::Restore refuses a data dir that holds anything, so if the restore
  // fails after that check, whatever is in the dir is the failed restore's
  // own partial output: remove it rather than leave a half-restored database.
  bool existed = fs::exists(data_dir, ec);
  bool was_empty = !existed || (fs::is_directory(data_dir, ec) && fs::is_empty(data_dir, ec));
  // Store::Restore checks this too; checking first keeps a refusal to one line.
  if (fs::exists(data_dir / "CURRENT", ec)) {
    return RestoreFailed(node_id, "data dir " + data_dir.string() + " already holds a database",
                         true);
  }
  if (!was_empty) {
    return RestoreFailed(node_id, "data dir " + data_dir.string() + " is not empty", true);
  }
  fs::path backup_dir = dest / node_id;
  if (!fs::is_directory(backup_dir, ec)) {
    return RestoreFailed(node_id, "the backup directory " + backup_dir.string() + " is missing");
  }
  std::string taken_at = Field(*entry, "taken_at");
  if (taken_at.empty()) taken_at = Field(manifest, "created_at");
  std::cerr << "restoring " << node_id << " from " << backup_dir.string() << " (backup "
            << Integer(*backup_id) << ", taken " << taken_at
            << "): verifying checksums, then copying into " << data_dir.string() << "\n";
  auto started = SteadyClock::now();
  RestoreResult result;
  Status st = Store::Restore(backup_dir.string(), static_cast<uint32_t>(*backup_id),
                             data_dir.string(), node_id, &result);
  if (!st.ok()) {
    if (st.code() != Status::Code::kBadRequest && was_empty) {
      if (existed) {
        for (const auto& child : fs::directory_iterator(data_dir, ec)) fs::remove_all(child, ec);
      } else {
        fs::remove_all(data_dir, ec);
      }
    }
    std::string message = st.message();
    if (st.IsNotFound()) message = "a file of backup " + backup_dir.string() + " is missing";
    // BackupEngine leaves a backup with a missing or unreadable file out of
    // its list: the manifest says it was there, so say what that means.
    if (message.rfind("no backup in ", 0) == 0 ||
        message.find(" is not in ") != std::string::npos) {
      message += " (the manifest names backup " + Integer(*backup_id) +
                 ": its files are missing or damaged, or it was deleted)";
    }
    return RestoreFailed(node_id, message);
  }
  auto took = SteadyClock::now() - started;
  if (inv.json_output) {
    json out = {
        {"ok", true},
        {"node", node_id},
        {"backup_id", result.backup_id},
        {"bytes", result.bytes},
        {"data_dir", data_dir.string()},
        {"partitions", manifest.value("partitions", json())},
        {"replicas", manifest.value("replicas", json())},
        {"duration_ms", std::chrono::duration_cast<std::chrono::milliseconds>(took).count()}};
    std::cout << out.dump() << "\n";
    return kExitOk;
  }
  std::string cluster_list;
  for (const auto& n : manifest["nodes"]) {
    cluster_list += (cluster_list.empty() ? "" : ",") + Field(n, "id") + "=" + Field(n, "address");
  }
  std::cout << "restored " << node_id << " (backup " << result.backup_id << ", "
            << HumanBytes(static_cast<double>(result.bytes)) << ") into " << data_dir.string()
            << " in " << Seconds(took) << "\n"
            << "start it with: kvd --node-id " << node_id << " --data-dir " << data_dir.string()
            << " --listen " << Field(*entry, "address") << " --partitions "
            << Field(manifest, "partitions") << " --replicas " << Field(manifest, "replicas")
            << " --cluster " << cluster_list << "\n";
  return kExitOk;
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
}  // namespace ringkv

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  int code;
  try {
    code = ringkv::Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "kvctl: internal: " << e.what() << "\n";
    code = 3;
  }
  std::cout.flush();
  return code;
}
