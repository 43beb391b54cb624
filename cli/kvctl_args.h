// kvctl's command line: the exit codes, the usage text, the command table and
// the parser that turns argv into an Invocation and an Invocation into the
// request it sends (cli/kvctl.cc runs it).
//
// Thread-safety: pure functions (BuildRequest may read standard input).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/client_security.h"

namespace ringkv::kvctl {

using nlohmann::json;

inline constexpr int kExitOk = 0;
inline constexpr int kExitNotFound = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitError = 3;

inline constexpr int kDefaultTimeoutMs = 10000;
// A backup copies the whole database; give it far longer by default.
inline constexpr int kDefaultBackupTimeoutMs = 30 * 60 * 1000;
// `cluster` asks every member; one that does not answer in this time is shown
// as unreachable rather than holding up the whole table.
inline constexpr int kDefaultMemberTimeoutMs = 3000;

using SteadyClock = std::chrono::steady_clock;

inline constexpr char kUsage[] =
    "usage: kvctl [--host HOST:PORT] [-o json] [--timeout-ms N] [--tls] [--tls-ca FILE]\n"
    "             [--user NAME] [--password-file FILE] COMMAND [ARGS]\n"
    "commands:\n"
    "  put KEY VALUE [--json] [--ttl-ms N] [-w W]   store VALUE (a string unless --json;\n"
    "                                               VALUE - reads standard input)\n"
    "  get KEY [-r R] [--local]                     print the value\n"
    "  del KEY [-w W]                               delete the key\n"
    "  ping | stats | cluster                       ask the node\n"
    "  cluster join ID=HOST:PORT | leave ID | remove ID | replace OLD NEW=HOST:PORT\n"
    "  cluster plan | commit | clear | transfers    stage, review, apply membership changes\n"
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
const std::vector<CommandSpec>& Commands();
const CommandSpec* FindCommand(const std::string& name);
// True if `text` can be sent as a JSON string (it is valid UTF-8).
bool IsValidUtf8(const std::string& text);
// The options that take a value (for the security flags' extraction).
const std::vector<std::string>& ValueOptions();
// Parses the arguments after argv[0] into *inv. Returns an error message, or "".
std::string ParseArgs(const std::vector<std::string>& args, Invocation* inv);
// Builds the request for the parsed command line. Returns an error message or "".
std::string BuildRequest(const Invocation& inv, json* request);
// Prints `message` and the usage line to stderr; returns kExitUsage.
int UsageError(const std::string& message);

}  // namespace ringkv::kvctl
