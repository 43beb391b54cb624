// Talking to nodes, and `kvctl cluster`'s table: see cluster_table.h.
#include "cli/cluster_table.h"

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

#include "cli/client.h"
#include "cli/format.h"
#include "common/host_port.h"

namespace ringkv::kvctl {

using namespace cli;  // NOLINT(build/namespaces): the formatting helpers

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

// A node id as kvd accepts it (common/host_port.h). Ids become directory
// names under DEST, so anything else is refused.
bool ValidNodeId(const std::string& id) { return IsValidNodeId(id); }

// The members listed in a `cluster` response; false (with *why) if malformed.
bool ParseMembers(const json& resp, std::vector<Member>* out, std::string* why) {
  auto nodes = resp.find("nodes");
  if (nodes == resp.end() || !nodes->is_array() || nodes->empty()) {
    *why = "the cluster response lists no nodes";
    return false;
  }
  for (const auto& n : *nodes) {
    Member m{Field(n, "id"), Field(n, "address"), Field(n, "status"), Field(n, "state")};
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
    if (members[i].state == "left") continue;  // holds nothing, may be gone
    threads.emplace_back(AskMember, &reports[i], &inv.security, timeout_ms);
  }
  for (auto& t : threads) t.join();

  std::cout << "cluster via " << inv.host << " (node " << Field(resp, "node")
            << "): " << Nodes(members.size()) << ", replicas " << Field(resp, "replicas")
            << ", partitions " << Field(resp, "partitions") << "\n";
  std::cout << "epoch " << Field(resp, "epoch") << " (" << Field(resp, "phase") << ")";
  if (!Field(resp, "change").empty()) std::cout << ", changing: " << Field(resp, "change");
  std::cout << ", claimant " << Field(resp, "claimant") << "\n";
  std::vector<std::vector<std::string>> table = {
      {"ID", "ADDRESS", "STATUS", "SEEN DOWN BY", "PARTITIONS", "KEYS", "HINTS", "DISK", "STATE"}};
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
    const std::string state = r.member.state.empty() ? "-" : r.member.state;
    if (r.member.state == "left") {
      table.push_back({r.member.id, r.member.address, "-", "-", "-", "-", "-", "-", state});
      continue;
    }
    if (!r.error.empty()) {
      table.push_back(
          {r.member.id, r.member.address, "unreachable", seen_down_by, "-", "-", "-", "-", state});
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
                     num("disk_bytes", HumanBytes, &disk), state});
  }
  PrintTable(table, {false, false, false, false, true, true, true, true, false});
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

}  // namespace ringkv::kvctl
