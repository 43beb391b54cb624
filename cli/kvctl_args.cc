// kvctl's command line: see kvctl_args.h.
#include "cli/kvctl_args.h"

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

namespace ringkv::kvctl {

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
    std::string name, value;
    bool has_value = SplitLongOption(arg, &name, &value);  // --name=value
    if (!has_value && arg.size() > 2 && arg[1] != '-' && TakesValue(arg.substr(0, 2))) {
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
  // `cluster` alone is the table; `cluster SUBCOMMAND ...` a membership
  // change (PROTOCOL.md §10), checked when the request is built.
  const bool membership = inv->command == "cluster" && !inv->args.empty();
  if (!membership && inv->args.size() != spec->arity) {
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
namespace {

// ID=HOST:PORT into its parts; "" on success, else the error.
std::string SplitMember(const std::string& text, std::string* id, std::string* address) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return "want ID=HOST:PORT, got '" + text + "'";
  }
  *id = text.substr(0, eq);
  *address = text.substr(eq + 1);
  return "";
}

// `cluster join|leave|replace|remove|plan|commit|clear|transfers`.
std::string BuildMembership(const Invocation& inv, json* request) {
  const std::string& sub = inv.args[0];
  const size_t extra = inv.args.size() - 1;
  json req = {{"op", "membership"}, {"action", sub}};
  std::string id, address;
  if (sub == "join") {
    if (extra != 1) return "cluster join takes ID=HOST:PORT";
    if (std::string err = SplitMember(inv.args[1], &id, &address); !err.empty()) return err;
    req["node"] = id;
    req["address"] = address;
  } else if (sub == "leave" || sub == "remove") {
    if (extra != 1) return "cluster " + sub + " takes ID";
    req["node"] = inv.args[1];
  } else if (sub == "replace") {
    if (extra != 2) return "cluster replace takes OLD NEW=HOST:PORT";
    if (std::string err = SplitMember(inv.args[2], &id, &address); !err.empty()) return err;
    req["node"] = inv.args[1];
    req["new_node"] = id;
    req["address"] = address;
  } else if (sub == "plan" || sub == "commit" || sub == "clear" || sub == "transfers") {
    if (extra != 0) return "cluster " + sub + " takes no arguments";
  } else {
    return "unknown cluster subcommand '" + sub +
           "' (join, leave, replace, remove, plan, commit, clear, transfers)";
  }
  *request = std::move(req);
  return "";
}

}  // namespace

std::string BuildRequest(const Invocation& inv, json* request) {
  if (inv.command == "cluster" && !inv.args.empty()) return BuildMembership(inv, request);
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

}  // namespace ringkv::kvctl
