// NodeOptions: everything kvd is configured with (PROTOCOL.md §2), and the
// parsing and validation shared by kvd's flags and the tests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/host_port.h"  // IsValidNodeId
#include "engine/clock.h"
#include "engine/status.h"

namespace ringkv {

struct Member {
  std::string id;       // node id, [A-Za-z0-9_-]{1,64}
  std::string address;  // "HOST:PORT"
  bool operator==(const Member&) const = default;
};

struct NodeOptions {
  // This node's id. Default: "n1".
  std::string node_id = "n1";
  // Client and peer address "HOST:PORT"; port 0 lets the kernel pick. Default: 127.0.0.1:7700.
  std::string listen = "127.0.0.1:7700";
  // RocksDB directory. Default (when empty): ./data/<node-id>.
  std::string data_dir;
  // Every member, this node included. Default (when empty): only this node.
  std::vector<Member> cluster;
  // --join: seeds (HOST:PORT) of a cluster this node waits to be added to
  // (PROTOCOL.md §10); `cluster` is then unused. Default: none.
  std::vector<std::string> join_seeds;
  // Partition copies (issue #11): bytes a second per node, and copies at
  // once. Defaults: 64 MiB/s, 2.
  uint64_t transfer_bytes_per_s = 64ULL << 20;
  int transfer_limit = 2;
  // Replication factor N. Default (0): min(3, members).
  int replicas = 0;
  // Default R and W for requests that name none. Default (0): N/2+1.
  int read_quorum = 0;
  int write_quorum = 0;
  // Whether R and W were given (else they follow the map's N: N/2+1).
  bool read_quorum_given = false, write_quorum_given = false;
  // Ring partitions Q, a power of two, fixed for the life of a cluster. Default: 64.
  uint32_t partitions = 64;
  // LRU record cache capacity in bytes. Default: 256 MiB.
  uint64_t cache_bytes = 256ULL << 20;
  // Store hints for replicas that are down. Default: true.
  bool hinted_handoff = true;
  // Limits (PROTOCOL.md §2). Defaults: 1024 / 1 MiB / 8 MiB.
  uint64_t max_key_bytes = 1024;
  uint64_t max_value_bytes = 1048576;
  uint64_t max_request_bytes = 8388608;
  // Tombstones and expired records are kept at least this long; they are
  // purged only once every replica has confirmed them (anti-entropy's GC
  // watermark), or after this alone with anti-entropy off. Default: 10 days.
  uint64_t tombstone_grace_s = 10ULL * 24 * 3600;
  // Anti-entropy (PROTOCOL.md §9): exchanges between replicas, the rebuild
  // of a lost disk, GC behind confirmation. Default: on.
  bool anti_entropy = true;
  // How often a node starts an exchange. Default: 10000.
  uint64_t aae_interval_ms = 10000;
  // Repair budget per node: keys and MiB of values per second (0 =
  // unlimited). Defaults: 20000, 32.
  uint64_t aae_repair_keys_per_s = 20000;
  uint64_t aae_repair_bytes_per_s = 32ULL << 20;
  // fsync the WAL on every write. Default: false (synced every wal_sync_ms).
  bool sync_writes = false;
  // Periodic WAL fsync interval. Default: 1000 ms.
  uint64_t wal_sync_ms = 1000;
  // RocksDB block cache and memtable budgets. Defaults: 64 MiB each.
  uint64_t block_cache_bytes = 64ULL << 20;
  uint64_t write_buffer_bytes = 64ULL << 20;
  // How long a coordinator waits for replicas when a request names no
  // timeout_ms. Default: 2000.
  uint64_t request_timeout_ms = 2000;
  // A replica refuses a record whose version is further ahead of its own
  // clock than this (a peer with a skewed clock must not win forever).
  // Default: 60000.
  uint64_t max_clock_skew_ms = 60000;
  // Hints older than this are dropped undelivered. Default: 3 hours.
  uint64_t hint_window_s = 3 * 3600;
  // Requests slower than this are logged (at most one line a second).
  // 0 disables. Default: 1000.
  uint64_t slow_request_ms = 1000;
  // Threads running the I/O loop. Default: 2.
  int io_threads = 2;
  // Client connections served at once; more are refused with `overloaded`
  // (PROTOCOL.md §8). Default: 10000.
  uint64_t max_connections = 10000;
  // Security (PROTOCOL.md §11, docs/security.md); every one is off when empty.
  // The users file: with it, clients must `auth` first.
  std::string auth_file;
  // The cluster secret's file: peers prove it to each other.
  std::string cluster_secret_file;
  // TLS on the listen port and to peers: certificate chain, key, CA bundle.
  std::string tls_cert, tls_key, tls_ca;
  // Source of wall-clock time. REQUIRES: outlives the node. Default: system clock.
  const Clock* clock = SystemClock::Default();
};

// The largest --max-connections accepted.
constexpr uint64_t kMaxConnections = 1'000'000;

// Parses "ID=HOST:PORT,ID=HOST:PORT,..." into members. BadRequest with a
// message naming the bad part otherwise.
Status ParseClusterSpec(std::string_view spec, std::vector<Member>* out);

// Checks every field and fills in the defaults that depend on others (data
// dir, cluster, replicas, quorums). Returns BadRequest with one clear sentence
// naming the flag at fault.
Status FinalizeNodeOptions(NodeOptions* options);

}  // namespace ringkv
