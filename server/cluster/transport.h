// ReplicaTransport: how a coordinator asks one replica to write or read a key.
//
// The seam between quorum logic and the network (DESIGN.md): kvd plugs in a
// router that serves this node's own replica from the local store and sends
// everything else over TCP (server/net/peer_client.h); unit tests plug in
// in-process fakes that fail, delay, drop and reorder.
//
// Contract for every method: `done` is called exactly once, possibly before
// the method returns, possibly later from any thread. The caller must not hold
// a lock while calling in (fakes call back inline).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "engine/record.h"
#include "engine/status.h"

namespace ringkv::cluster {

// The map epoch a request was routed by (cluster_map.h). A replica refuses a
// request of another epoch than its own with StaleEpoch, so that no node reads
// or writes by an old map. 0: not routed by the map (hint delivery, repairs
// of anti-entropy): accepted by a replica that holds the partition.
struct Epoch {
  uint64_t value = 0;
};

class ReplicaTransport {
 public:
  using WriteDone = std::function<void(Status)>;
  // NotFound when the replica has no record of the key.
  using ReadDone = std::function<void(Status, Record)>;

  virtual ~ReplicaTransport() = default;

  // Merges `record` into `key` on `node` (last-writer-wins); OK once it is in
  // the replica's write-ahead log. Timeout if no answer within timeout_ms;
  // Unavailable if the node cannot be reached; BadRequest if the replica
  // refused the record (e.g. a version too far in its future).
  virtual void Write(const std::string& node, const std::string& key, const Record& record,
                     Epoch epoch, uint64_t timeout_ms, WriteDone done) = 0;

  // Reads `node`'s record of `key`, tombstones and expired records included.
  virtual void Read(const std::string& node, const std::string& key, Epoch epoch,
                    uint64_t timeout_ms, ReadDone done) = 0;
};

}  // namespace ringkv::cluster
