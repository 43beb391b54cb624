#include "server/node_options.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "common/host_port.h"

namespace ringkv {
namespace {

bool IsValidAddress(std::string_view addr) {
  HostPort unused;
  return ParseHostPort(addr, &unused).ok();
}

Status Bad(const std::string& msg) { return Status::BadRequest(msg); }

}  // namespace

Status ParseClusterSpec(std::string_view spec, std::vector<Member>* out) {
  out->clear();
  std::set<std::string> ids;
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return Bad("--cluster: '" + std::string(item) + "' is not ID=HOST:PORT");
    }
    Member m{std::string(item.substr(0, eq)), std::string(item.substr(eq + 1))};
    if (!IsValidNodeId(m.id)) return Bad("--cluster: bad node id '" + m.id + "'");
    if (!IsValidAddress(m.address)) {
      return Bad("--cluster: bad address '" + m.address + "' for node " + m.id);
    }
    if (!ids.insert(m.id).second) return Bad("--cluster: node id '" + m.id + "' appears twice");
    out->push_back(std::move(m));
  }
  if (out->empty()) return Bad("--cluster: no members");
  return Status::OK();
}

namespace {
Status CheckLimits(const NodeOptions& options) {
  const NodeOptions* o = &options;
  if (o->max_key_bytes == 0 || o->max_value_bytes == 0 || o->max_request_bytes < 64) {
    return Bad("limits must be positive (--max-request-bytes at least 64)");
  }
  if (o->io_threads < 1 || o->io_threads > 64) return Bad("--io-threads must be from 1 to 64");
  if (o->max_connections < 1 || o->max_connections > kMaxConnections) {
    return Bad("--max-connections must be from 1 to " + std::to_string(kMaxConnections));
  }
  return Status::OK();
}
}  // namespace

Status FinalizeNodeOptions(NodeOptions* o) {
  if (!IsValidNodeId(o->node_id)) {
    return Bad("--node-id '" + o->node_id + "' must match [A-Za-z0-9_-]{1,64}");
  }
  if (!IsValidAddress(o->listen)) return Bad("--listen '" + o->listen + "' is not HOST:PORT");
  if (o->data_dir.empty()) o->data_dir = "./data/" + o->node_id;
  o->read_quorum_given = o->read_quorum != 0;
  o->write_quorum_given = o->write_quorum != 0;
  if (o->transfer_bytes_per_s == 0) return Bad("--transfer-mb-per-s must be positive");
  if (o->transfer_limit < 1 || o->transfer_limit > 16) {
    return Bad("--transfer-limit must be from 1 to 16");
  }
  if (!o->join_seeds.empty()) {
    if (!o->cluster.empty()) return Bad("--join and --cluster exclude each other");
    for (const std::string& seed : o->join_seeds) {
      if (!IsValidAddress(seed)) return Bad("--join seed '" + seed + "' is not HOST:PORT");
    }
    if (o->partitions == 0 || (o->partitions & (o->partitions - 1)) != 0 || o->partitions > 8192) {
      return Bad("--partitions must be a power of two from 1 to 8192");
    }
    // N comes from the cluster's map; quorums given here must fit it then.
    if (!o->tls_cert.empty() && o->tls_ca.empty()) {
      return Bad("a node joining a cluster with TLS needs --tls-ca, so that peers verify it");
    }
    if (!o->auth_file.empty() && o->cluster_secret_file.empty()) {
      return Bad("a node joining a cluster with --auth-file needs --cluster-secret-file");
    }
    if (o->replicas == 0) o->replicas = 3;
    return CheckLimits(*o);
  }
  if (o->cluster.empty()) o->cluster.push_back({o->node_id, o->listen});
  auto self = std::find_if(o->cluster.begin(), o->cluster.end(),
                           [&](const Member& m) { return m.id == o->node_id; });
  if (self == o->cluster.end()) {
    return Bad("--cluster does not include this node '" + o->node_id + "'");
  }
  if (o->partitions == 0 || (o->partitions & (o->partitions - 1)) != 0 || o->partitions > 8192) {
    return Bad("--partitions must be a power of two from 1 to 8192");
  }
  int members = static_cast<int>(o->cluster.size());
  if (o->replicas == 0) o->replicas = std::min(3, members);
  if (o->replicas < 1 || o->replicas > members) {
    return Bad("--replicas must be from 1 to the number of members (" + std::to_string(members) +
               ")");
  }
  if (o->tls_cert.empty() != o->tls_key.empty()) {
    return Bad("--tls-cert and --tls-key must be given together");
  }
  if (!o->tls_ca.empty() && o->tls_cert.empty()) {
    return Bad("--tls-ca needs --tls-cert and --tls-key");
  }
  if (members > 1 && !o->tls_cert.empty() && o->tls_ca.empty()) {
    return Bad(
        "a cluster of more than one member with TLS needs --tls-ca, so that peers "
        "verify each other");
  }
  if (members > 1 && !o->auth_file.empty() && o->cluster_secret_file.empty()) {
    return Bad(
        "a cluster of more than one member with --auth-file needs --cluster-secret-file, "
        "so that only members may send the internal ops");
  }
  int majority = o->replicas / 2 + 1;
  if (o->read_quorum == 0) o->read_quorum = majority;
  if (o->write_quorum == 0) o->write_quorum = majority;
  if (o->read_quorum < 1 || o->read_quorum > o->replicas) {
    return Bad("--read-quorum must be from 1 to --replicas");
  }
  if (o->write_quorum < 1 || o->write_quorum > o->replicas) {
    return Bad("--write-quorum must be from 1 to --replicas");
  }
  return CheckLimits(*o);
}

}  // namespace ringkv
