// Router: token-aware routing for the ringkv target (--route token).
//
// Learns the ring from one node at start: `cluster` gives the members, their
// addresses and status, and Q; one `locate` per partition (on a probe key that
// hashes into it) gives each preference list, and checks that kvbench's own
// hash (xxHash64 of the key bytes, seed 0, low bits & (Q-1)) agrees with the
// node's. A key then goes to the first replica of its partition that was up.
//
// Thread-safety: immutable after Discover(); safe to share.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cli/client_security.h"
#include "engine/status.h"

namespace ringkv::bench {

// The ring partition of `key` among `partitions` (a power of two).
uint32_t PartitionOf(std::string_view key, uint32_t partitions);

class Router {
 public:
  // Asks the node at `host` (HOST:PORT), connecting with `security`.
  // Unavailable if it cannot be reached, the connection's error if it refuses
  // the credentials, Internal if its answers do not make sense or no replica
  // of some partition is up.
  static Status Discover(std::string_view host, Router* out, const ClientSecurity& security = {});

  // Addresses of the nodes that requests go to; NodeFor() indexes this.
  const std::vector<std::string>& addresses() const { return addresses_; }
  const std::vector<std::string>& node_ids() const { return node_ids_; }
  int NodeFor(std::string_view key) const {
    return partition_node_[PartitionOf(key, static_cast<uint32_t>(partition_node_.size()))];
  }

 private:
  std::vector<std::string> addresses_;
  std::vector<std::string> node_ids_;
  std::vector<int> partition_node_;  // partition -> index into addresses_
};

}  // namespace ringkv::bench
