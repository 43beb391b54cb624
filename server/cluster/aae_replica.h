// AaeReplica: one replica's side of an anti-entropy exchange, as the pure
// exchange logic (aae_exchange.h) sees it.
//
// kvd plugs in the local store for its own replica (server/local_replica.h)
// and peer messages for the others (_aae_tree, _aae_keys, _aae_scan, _read,
// _write, _aae_gc: docs/protocol.md); unit tests plug in in-memory fakes that
// diverge, drop and delay (tests/fakes/fake_aae.h).
//
// Contract for every method: `done` is called exactly once, possibly before
// the method returns, possibly later from any thread. The caller holds no
// lock while calling in.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/aae_tree.h"
#include "engine/record.h"
#include "engine/status.h"

namespace ringkv::cluster {

// What an exchange compares first: the partition's GC watermark (trees are
// only comparable under equal watermarks) and its level-1 hashes.
struct AaeRoot {
  uint64_t watermark = 0;
  std::array<uint64_t, aae::kBranches> branches{};
};

using AaeSegments = std::array<uint64_t, aae::kSegmentsPerBranch>;
using AaeRecords = std::vector<std::pair<std::string, Record>>;

class AaeReplica {
 public:
  using RootDone = std::function<void(Status, AaeRoot)>;
  // The segment hashes of each branch asked for, in the order asked.
  using BranchesDone = std::function<void(Status, std::vector<AaeSegments>)>;
  using KeysDone = std::function<void(Status, std::vector<aae::KeyVersion>, bool truncated)>;
  // Records found (keys with no record are left out).
  using RecordsDone = std::function<void(Status, AaeRecords)>;
  // next_key: the last key returned, "" once the scan reached the end.
  using ScanDone = std::function<void(Status, AaeRecords, std::string next_key)>;
  using Done = std::function<void(Status)>;

  virtual ~AaeReplica() = default;

  // The replica's node id.
  virtual const std::string& id() const = 0;

  virtual void Root(uint32_t partition, RootDone done) = 0;
  virtual void Branches(uint32_t partition, std::vector<uint32_t> branches, BranchesDone done) = 0;
  // Keys with versions (no values) of the given segments; at most `limit`.
  virtual void Keys(uint32_t partition, std::vector<uint32_t> segments, size_t limit,
                    KeysDone done) = 0;
  // Whole records of `keys` (tombstones included).
  virtual void Fetch(uint32_t partition, std::vector<std::string> keys, RecordsDone done) = 0;
  // Records in key order after `after_key`, at most limit_keys or about
  // limit_bytes of values (a rebuild's bulk pull).
  virtual void Scan(uint32_t partition, std::string after_key, size_t limit_keys,
                    size_t limit_bytes, ScanDone done) = 0;
  // Merges `records` into the replica through its normal replica write
  // (last-writer-wins; a record that is not newer is not an error).
  virtual void Put(uint32_t partition, AaeRecords records, Done done) = 0;
  // Raises the partition's GC watermark (never lowers it).
  virtual void RaiseWatermark(uint32_t partition, uint64_t watermark_hlc, Done done) = 0;
};

}  // namespace ringkv::cluster
