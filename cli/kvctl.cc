// kvctl: the RingKV command-line client (PROTOCOL.md §6).
//
//   kvctl [--host HOST:PORT] [-o json] [--timeout-ms N] COMMAND ARGS...
//
// Exit status: 0 success, 1 key not found (get), 2 usage error, 3 server or
// connection error ("kvctl: CODE: message" on stderr).
//
// Options may appear before or after the command; "--" ends them. The command
// line is parsed by hand rather than with cxxopts because cxxopts takes any
// word starting with '-' for an option, and `kvctl put n -5 --json` must store
// the number -5.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/client.h"
#include "engine/status.h"

namespace ringkv {
namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
constexpr int kExitUsage = 2;
constexpr int kExitError = 3;

constexpr int kDefaultTimeoutMs = 10000;
// A backup copies the whole database; give it far longer by default.
constexpr int kDefaultBackupTimeoutMs = 30 * 60 * 1000;

constexpr char kUsage[] =
    "usage: kvctl [--host HOST:PORT] [-o json] [--timeout-ms N] COMMAND [ARGS]\n"
    "commands:\n"
    "  put KEY VALUE [--json] [--ttl-ms N] [-w W]   store VALUE (a string unless --json;\n"
    "                                               VALUE - reads standard input)\n"
    "  get KEY [-r R] [--local]                     print the value\n"
    "  del KEY [-w W]                               delete the key\n"
    "  ping | stats | cluster                       ask the node\n"
    "  locate KEY                                   show the key's partition and replicas\n"
    "  backup DIR                                   online backup of the node into DIR\n"
    "W and R are an integer or one, quorum, all. --host defaults to 127.0.0.1:7700.\n"
    "exit status: 0 ok, 1 key not found, 2 usage error, 3 server or connection error\n";

// Everything the command line asked for.
struct Invocation {
  std::string host = "127.0.0.1:7700";
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

bool TakesValue(const std::string& name) {
  return name == "--host" || name == "-o" || name == "--output" || name == "--timeout-ms" ||
         name == "--ttl-ms" || name == "-w" || name == "-r";
}

bool IsFlag(const std::string& name) {
  return name == "--json" || name == "--local" || name == "-h" || name == "--help";
}

// Parses argv into *inv. Returns an error message, or "" on success.
std::string ParseArgs(int argc, char** argv, Invocation* inv) {
  std::vector<std::string> positional;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
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
        if (i + 1 >= argc) return "option " + name + " needs a value";
        value = argv[++i];
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

// A field as display text: strings raw, anything else as compact JSON, "" if absent.
std::string Field(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  if (it == obj.end()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// Flattens nested objects into "a.b.c" -> text rows.
void Flatten(const json& j, const std::string& prefix,
             std::vector<std::pair<std::string, std::string>>* rows) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      Flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), rows);
    }
    return;
  }
  rows->emplace_back(prefix, j.is_string() ? j.get<std::string>() : j.dump());
}

// True if obj[key] is the JSON literal true.
bool IsTrue(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

void PrintStats(const json& resp) {
  std::vector<std::pair<std::string, std::string>> rows;
  auto stats = resp.find("stats");
  Flatten(stats == resp.end() ? json::object() : *stats, "", &rows);
  size_t width = 0;
  for (const auto& [name, value] : rows) width = std::max(width, name.size());
  for (const auto& [name, value] : rows) {
    std::cout << name << std::string(width - name.size() + 2, ' ') << value << '\n';
  }
}

void PrintCluster(const json& resp) {
  std::cout << "node " << Field(resp, "node") << "  replicas " << Field(resp, "replicas")
            << "  partitions " << Field(resp, "partitions") << "\n";
  std::vector<std::vector<std::string>> table = {{"ID", "ADDRESS", "STATUS"}};
  auto nodes = resp.find("nodes");
  if (nodes != resp.end() && nodes->is_array()) {
    for (const auto& n : *nodes) {
      table.push_back({Field(n, "id"), Field(n, "address"), Field(n, "status")});
    }
  }
  size_t w0 = 0, w1 = 0;
  for (const auto& row : table) {
    w0 = std::max(w0, row[0].size());
    w1 = std::max(w1, row[1].size());
  }
  for (const auto& row : table) {
    std::cout << row[0] << std::string(w0 - row[0].size() + 2, ' ') << row[1]
              << std::string(w1 - row[1].size() + 2, ' ') << row[2] << "\n";
  }
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
    PrintCluster(resp);
  } else if (cmd == "locate") {
    PrintLocate(resp);
  } else if (cmd == "backup") {
    std::cout << "backup of node written to " << Field(resp, "dir") << " (" << Field(resp, "bytes")
              << " bytes)\n";
  }
  return kExitOk;
}

int UsageError(const std::string& message) {
  std::string_view usage_line(kUsage);
  usage_line = usage_line.substr(0, usage_line.find('\n') + 1);
  std::cerr << "kvctl: " << message << "\n"
            << usage_line << "run 'kvctl --help' for the commands\n";
  return kExitUsage;
}

int Run(int argc, char** argv) {
  Invocation inv;
  if (std::string err = ParseArgs(argc, argv, &inv); !err.empty()) return UsageError(err);
  if (inv.help) {
    std::cout << kUsage;
    return kExitOk;
  }
  json request;
  if (std::string err = BuildRequest(inv, &request); !err.empty()) return UsageError(err);

  int timeout_ms = inv.timeout_ms.value_or(inv.command == "backup" ? kDefaultBackupTimeoutMs
                                                                   : kDefaultTimeoutMs);
  std::unique_ptr<Client> client;
  Status st = Client::Connect(inv.host, &client, timeout_ms);
  if (st.code() == Status::Code::kBadRequest) return UsageError(st.message());
  if (!st.ok()) {
    std::cerr << "kvctl: cannot connect to " << inv.host << ": " << st.message() << "\n";
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
    auto error_it = resp.find("error");
    const json error = error_it == resp.end() ? json::object() : *error_it;
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
