#include "server/cluster/ring.h"

#include <xxhash.h>

#include <algorithm>

namespace ringkv::cluster {

uint64_t KeyHash(std::string_view key) { return XXH64(key.data(), key.size(), 0); }

Status Ring::Make(std::vector<std::string> member_ids, uint32_t partitions, int replicas,
                  Ring* out) {
  std::sort(member_ids.begin(), member_ids.end());
  if (member_ids.empty()) return Status::BadRequest("ring has no members");
  if (std::adjacent_find(member_ids.begin(), member_ids.end()) != member_ids.end()) {
    return Status::BadRequest("ring members must be distinct");
  }
  if (partitions == 0 || (partitions & (partitions - 1)) != 0) {
    return Status::BadRequest("partitions must be a power of two");
  }
  size_t s = member_ids.size();
  if (replicas < 1 || static_cast<size_t>(replicas) > s) {
    return Status::BadRequest("replicas must be from 1 to the number of members");
  }
  Ring r;
  r.partitions_ = partitions;
  r.replicas_ = replicas;
  r.preference_.resize(partitions);
  for (uint32_t p = 0; p < partitions; ++p) {
    for (int i = 0; i < replicas; ++i) r.preference_[p].push_back(member_ids[(p + i) % s]);
  }
  r.members_ = std::move(member_ids);
  r.write_old_ = r.preference_;
  r.write_new_.resize(partitions);
  *out = std::move(r);
  return Status::OK();
}

Ring Ring::FromMap(const ClusterMap& map) {
  Ring r;
  r.members_ = map.ActiveIds();
  r.partitions_ = map.partitions;
  r.replicas_ = map.replicas;
  r.epoch_ = map.epoch;
  r.preference_.resize(map.partitions);
  r.write_old_.resize(map.partitions);
  r.write_new_.resize(map.partitions);
  for (uint32_t p = 0; p < map.partitions; ++p) {
    r.preference_[p] = map.ReadSet(p);
    map.WriteSets(p, &r.write_old_[p], &r.write_new_[p]);
  }
  return r;
}

bool Ring::Replicates(std::string_view node, uint32_t partition) const {
  const auto& a = write_old_[partition];
  const auto& b = write_new_[partition];
  return std::find(a.begin(), a.end(), node) != a.end() ||
         std::find(b.begin(), b.end(), node) != b.end();
}

bool Ring::Reads(std::string_view node, uint32_t partition) const {
  const auto& list = preference_[partition];
  return std::find(list.begin(), list.end(), node) != list.end();
}

}  // namespace ringkv::cluster
