// Ring: where keys live. A pure function of (members, partitions, replicas):
// no I/O, identical on every node that was given the same inputs.
//
// The key space is cut into Q fixed partitions (Q a power of two); a key's
// partition is the low bits of the xxHash64 of its bytes (seed 0), which is the
// same on every machine and build. Partitions are dealt round-robin to the
// members sorted by id, so each owns Q/S or Q/S+1 of them; a partition's
// preference list is its owner followed by the next N-1 members in that order.
//
// Thread-safety: immutable after construction; safe to share.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace ringkv::cluster {

// The stable 64-bit hash of a key's bytes.
uint64_t KeyHash(std::string_view key);

class Ring {
 public:
  // BadRequest if members is empty or has duplicates, partitions is not a
  // power of two, or replicas is not in 1..members.
  static Status Make(std::vector<std::string> member_ids, uint32_t partitions, int replicas,
                     Ring* out);

  uint32_t PartitionOf(std::string_view key) const {
    return static_cast<uint32_t>(KeyHash(key) & (partitions_ - 1));
  }
  // The N distinct node ids that replicate `partition`, owner first.
  // REQUIRES: partition < partitions().
  const std::vector<std::string>& PreferenceList(uint32_t partition) const {
    return preference_[partition];
  }
  // True if `node` is in the preference list of `partition`.
  bool Replicates(std::string_view node, uint32_t partition) const;

  uint32_t partitions() const { return partitions_; }
  int replicas() const { return replicas_; }
  const std::vector<std::string>& members() const { return members_; }

 private:
  std::vector<std::string> members_;  // sorted
  uint32_t partitions_ = 0;
  int replicas_ = 0;
  std::vector<std::vector<std::string>> preference_;
};

}  // namespace ringkv::cluster
