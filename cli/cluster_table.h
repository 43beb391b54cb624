// kvctl talking to nodes: one request on a new connection (CallNode), the
// members of a `cluster` response, node-id checks, and `kvctl cluster`'s
// table, which asks every member for its stats and view.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/client_security.h"
#include "cli/kvctl_args.h"

namespace ringkv::kvctl {

// One request to `host` on a new connection made with `security`. Returns ""
// on an ok answer, or one line saying why not; *resp holds whatever was answered.
std::string CallNode(const std::string& host, const ClientSecurity& security, const json& request,
                     int timeout_ms, json* resp);

// A node id as kvd accepts it: [A-Za-z0-9_-]{1,64}.
bool ValidNodeId(const std::string& id);

struct Member {
  std::string id;
  std::string address;
  std::string status;  // as the host sees it
  std::string state;   // joining, normal, leaving, left (PROTOCOL.md §10)
};

// The members listed in a `cluster` response; false (with *why) if malformed.
bool ParseMembers(const json& resp, std::vector<Member>* out, std::string* why);

// `kvctl cluster` for a person: every member's row. Returns the exit status.
int PrintClusterTable(const Invocation& inv, const json& resp);

}  // namespace ringkv::kvctl
