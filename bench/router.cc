#include "bench/router.h"

#include <xxhash.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench/workload.h"
#include "cli/client.h"

namespace ringkv::bench {

uint32_t PartitionOf(std::string_view key, uint32_t partitions) {
  return static_cast<uint32_t>(XXH64(key.data(), key.size(), 0) & (partitions - 1));
}

namespace {

Status Ask(Client* client, const nlohmann::json& request, nlohmann::json* response) {
  Status s = client->Call(request, response);
  if (!s.ok()) return s;
  if (!response->is_object() || response->value("ok", false) != true) {
    return Status::Internal("node refused " + request.dump() + ": " + response->dump());
  }
  return Status::OK();
}

}  // namespace

Status Router::Discover(std::string_view host, Router* out, const ClientSecurity& security) {
  std::unique_ptr<Client> client;
  Status s = Client::Connect(host, &client, 5000, security);
  if (!s.ok()) return s;
  nlohmann::json cluster;
  s = Ask(client.get(), {{"op", "cluster"}}, &cluster);
  if (!s.ok()) return s;
  uint32_t q = cluster.value("partitions", 0u);
  if (q == 0 || (q & (q - 1)) != 0 || !cluster["nodes"].is_array()) {
    return Status::Internal("unexpected cluster answer: " + cluster.dump());
  }
  Router r;
  std::map<std::string, int> index_of;  // node id -> index into addresses_, up nodes only
  for (const auto& node : cluster["nodes"]) {
    if (!node.is_object() || node.value("status", "") != "up") continue;
    index_of[node.value("id", "")] = static_cast<int>(r.addresses_.size());
    r.node_ids_.push_back(node.value("id", ""));
    r.addresses_.push_back(node.value("address", ""));
  }
  // One probe key per partition, found by hashing kvbench's own key names.
  std::vector<std::string> probe(q);
  uint32_t found = 0;
  for (uint64_t i = 0; found < q && i < 1000000; ++i) {
    std::string key = KeyName(i);
    uint32_t p = PartitionOf(key, q);
    if (probe[p].empty()) {
      probe[p] = std::move(key);
      ++found;
    }
  }
  if (found < q) return Status::Internal("no probe key for some partition");
  r.partition_node_.assign(q, -1);
  for (uint32_t p = 0; p < q; ++p) {
    nlohmann::json located;
    s = Ask(client.get(), {{"op", "locate"}, {"key", probe[p]}}, &located);
    if (!s.ok()) return s;
    if (located.value("partition", -1) != static_cast<int64_t>(p)) {
      return Status::Internal("the node puts " + probe[p] + " in partition " +
                              located["partition"].dump() + ", kvbench computed " +
                              std::to_string(p));
    }
    for (const auto& id : located["replicas"]) {
      auto it = id.is_string() ? index_of.find(id.get<std::string>()) : index_of.end();
      if (it != index_of.end()) {
        r.partition_node_[p] = it->second;
        break;
      }
    }
    if (r.partition_node_[p] < 0) {
      return Status::Internal("no replica of partition " + std::to_string(p) + " is up");
    }
  }
  *out = std::move(r);
  return Status::OK();
}

}  // namespace ringkv::bench
