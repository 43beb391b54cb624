// ConnectionStats: the client listener's connection counts (PROTOCOL.md §8
// "Overload"), kept by the network layer (server/net/server.h) and reported
// by the node in `stats` and /metrics.
//
// Thread-safety: relaxed atomics; any thread may read or update them.
#pragma once

#include <atomic>
#include <cstdint>

namespace ringkv {

struct ConnectionStats {
  // Connections being served now.
  std::atomic<uint64_t> open{0};
  // Connections refused with `overloaded` because `open` was at
  // --max-connections, since the node started.
  std::atomic<uint64_t> refused{0};
};

}  // namespace ringkv
