// RemoteAaeReplica: another node's replica as an anti-entropy exchange sees
// it (cluster::AaeReplica), over the peer client: _aae_* messages for the
// trees, listings, fetches and scans, and the normal replica write (_write)
// for repairs, so that a repaired replica applies its own rules (LWW, the
// clock-skew bound) exactly as for a coordinator's write.
//
// Thread-safety: as PeerClient; callbacks run on the peer client's thread.
#pragma once

#include <string>

#include "server/cluster/aae_replica.h"
#include "server/net/peer_client.h"

namespace ringkv::net {

class RemoteAaeReplica final : public cluster::AaeReplica {
 public:
  // REQUIRES: `peers` outlives this object.
  RemoteAaeReplica(PeerClient* peers, std::string node, uint64_t timeout_ms)
      : peers_(peers), node_(std::move(node)), timeout_ms_(timeout_ms) {}

  const std::string& id() const override { return node_; }
  void Root(uint32_t partition, RootDone done) override;
  void Branches(uint32_t partition, std::vector<uint32_t> branches, BranchesDone done) override;
  void Keys(uint32_t partition, std::vector<uint32_t> segments, size_t limit,
            KeysDone done) override;
  void Fetch(uint32_t partition, std::vector<std::string> keys, RecordsDone done) override;
  void Scan(uint32_t partition, std::string after_key, size_t limit_keys, size_t limit_bytes,
            ScanDone done) override;
  void Put(uint32_t partition, cluster::AaeRecords records, Done done) override;
  void RaiseWatermark(uint32_t partition, uint64_t watermark_hlc, Done done) override;

 private:
  PeerClient* const peers_;
  const std::string node_;
  const uint64_t timeout_ms_;
};

}  // namespace ringkv::net
