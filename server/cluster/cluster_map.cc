#include "server/cluster/cluster_map.h"

#include <algorithm>
#include <set>

namespace ringkv::cluster {
namespace {

bool Contains(const std::vector<std::string>& list, std::string_view id) {
  return std::find(list.begin(), list.end(), id) != list.end();
}

// The moves from `before` to `after`: per partition, each node that leaves
// the list paired with one that enters it, in list order.
std::vector<MapMove> MovesBetween(const Assignment& before, const Assignment& after) {
  std::vector<MapMove> moves;
  for (uint32_t p = 0; p < before.size(); ++p) {
    std::vector<std::string> gone, come;
    for (const std::string& n : before[p]) {
      if (!Contains(after[p], n)) gone.push_back(n);
    }
    for (const std::string& n : after[p]) {
      if (!Contains(before[p], n)) come.push_back(n);
    }
    for (size_t i = 0; i < gone.size() && i < come.size(); ++i) {
      moves.push_back({p, gone[i], come[i], false});
    }
  }
  return moves;
}

MapMember* FindMutable(ClusterMap* map, std::string_view id) {
  for (MapMember& m : map->members) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

// The members the assignment is over: normal and leaving ones.
std::vector<std::string> AssignedIds(const ClusterMap& map) {
  std::vector<std::string> out;
  for (const MapMember& m : map.members) {
    if (m.state == MemberState::kNormal || m.state == MemberState::kLeaving) out.push_back(m.id);
  }
  return out;
}

}  // namespace

std::string_view MemberStateName(MemberState s) {
  switch (s) {
    case MemberState::kJoining:
      return "joining";
    case MemberState::kNormal:
      return "normal";
    case MemberState::kLeaving:
      return "leaving";
    case MemberState::kLeft:
      return "left";
  }
  return "normal";
}

bool MemberStateFromName(std::string_view name, MemberState* out) {
  for (MemberState s :
       {MemberState::kJoining, MemberState::kNormal, MemberState::kLeaving, MemberState::kLeft}) {
    if (MemberStateName(s) == name) {
      *out = s;
      return true;
    }
  }
  return false;
}

std::string_view MapPhaseName(MapPhase p) {
  switch (p) {
    case MapPhase::kStable:
      return "stable";
    case MapPhase::kCopy:
      return "copy";
    case MapPhase::kReadNew:
      return "read_new";
  }
  return "stable";
}

bool MapPhaseFromName(std::string_view name, MapPhase* out) {
  for (MapPhase p : {MapPhase::kStable, MapPhase::kCopy, MapPhase::kReadNew}) {
    if (MapPhaseName(p) == name) {
      *out = p;
      return true;
    }
  }
  return false;
}

const MapMember* ClusterMap::Find(std::string_view id) const {
  for (const MapMember& m : members) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

std::vector<std::string> ClusterMap::ActiveIds() const {
  std::vector<std::string> out;
  for (const MapMember& m : members) {
    if (m.state != MemberState::kLeft) out.push_back(m.id);
  }
  return out;
}

std::string ClusterMap::Claimant() const {
  for (const MapMember& m : members) {
    if (m.state == MemberState::kNormal) return m.id;
  }
  return "";
}

void ClusterMap::WriteSets(uint32_t p, std::vector<std::string>* old_set,
                           std::vector<std::string>* new_set) const {
  *old_set = assignment[p];
  new_set->clear();
  if (phase != MapPhase::kStable) *new_set = target[p];
}

bool ClusterMap::Holds(std::string_view node, uint32_t p) const {
  if (p >= assignment.size()) return false;
  return Contains(assignment[p], node) || (phase != MapPhase::kStable && Contains(target[p], node));
}

Status InitialMap(std::string cluster_id,
                  const std::vector<std::pair<std::string, std::string>>& members,
                  uint32_t partitions, int replicas, ClusterMap* out) {
  ClusterMap map;
  map.cluster_id = std::move(cluster_id);
  map.epoch = 1;
  map.partitions = partitions;
  map.replicas = replicas;
  std::vector<std::string> ids;
  for (const auto& [id, address] : members) {
    map.members.push_back({id, address, MemberState::kNormal});
    ids.push_back(id);
  }
  std::sort(map.members.begin(), map.members.end(),
            [](const MapMember& a, const MapMember& b) { return a.id < b.id; });
  RINGKV_RETURN_IF_ERROR(RoundRobinAssignment(ids, partitions, replicas, &map.assignment));
  *out = std::move(map);
  return Status::OK();
}

Status ValidateMap(const ClusterMap& map) {
  if (map.cluster_id.empty()) return Status::BadRequest("map without a cluster id");
  if (map.epoch == 0) return Status::BadRequest("map epoch must be at least 1");
  if (map.partitions == 0 || (map.partitions & (map.partitions - 1)) != 0) {
    return Status::BadRequest("map partitions must be a power of two");
  }
  if (map.replicas < 1) return Status::BadRequest("map replicas must be at least 1");
  std::set<std::string> ids;
  for (size_t i = 0; i < map.members.size(); ++i) {
    const MapMember& m = map.members[i];
    if (m.id.empty() || m.address.empty()) return Status::BadRequest("map member without id");
    if (i > 0 && !(map.members[i - 1].id < m.id)) {
      return Status::BadRequest("map members must be sorted by id and distinct");
    }
    ids.insert(m.id);
  }
  auto check_lists = [&](const Assignment& a, const char* what) -> Status {
    if (a.size() != map.partitions) {
      return Status::BadRequest(std::string("map ") + what + " has " + std::to_string(a.size()) +
                                " partitions, not " + std::to_string(map.partitions));
    }
    for (uint32_t p = 0; p < a.size(); ++p) {
      if (a[p].size() != static_cast<size_t>(map.replicas)) {
        return Status::BadRequest(std::string("map ") + what + " partition " + std::to_string(p) +
                                  " does not have " + std::to_string(map.replicas) + " replicas");
      }
      std::set<std::string> seen;
      for (const std::string& n : a[p]) {
        const MapMember* m = map.Find(n);
        if (m == nullptr || m->state == MemberState::kLeft || !seen.insert(n).second) {
          return Status::BadRequest(std::string("map ") + what + " partition " + std::to_string(p) +
                                    " lists an unknown or repeated node '" + n + "'");
        }
      }
    }
    return Status::OK();
  };
  RINGKV_RETURN_IF_ERROR(check_lists(map.assignment, "assignment"));
  if (map.phase == MapPhase::kStable) {
    if (!map.target.empty() || !map.moves.empty()) {
      return Status::BadRequest("a stable map has no target and no moves");
    }
    return Status::OK();
  }
  RINGKV_RETURN_IF_ERROR(check_lists(map.target, "target"));
  std::vector<MapMove> expected = MovesBetween(map.assignment, map.target);
  if (expected.size() != map.moves.size()) return Status::BadRequest("map moves do not match");
  for (size_t i = 0; i < expected.size(); ++i) {
    MapMove e = expected[i];
    e.ready = map.moves[i].ready;
    if (!(e == map.moves[i])) return Status::BadRequest("map moves do not match");
  }
  return Status::OK();
}

std::optional<ClusterMap> MovedMembers(const ClusterMap& stored, const ClusterMap& flags) {
  if (stored.InTransition() || stored.partitions != flags.partitions ||
      stored.replicas != flags.replicas || stored.ActiveIds() != flags.ActiveIds()) {
    return std::nullopt;
  }
  ClusterMap moved = stored;
  bool changed = false;
  for (MapMember& m : moved.members) {
    const MapMember* f = flags.Find(m.id);
    if (f == nullptr || m.state == MemberState::kLeft) continue;
    changed = changed || f->address != m.address;
    m.address = f->address;
  }
  if (!changed) return std::nullopt;
  moved.epoch = stored.epoch + 1;
  return moved;
}

std::string DescribeChange(const StagedChange& c) {
  switch (c.change.kind) {
    case MembershipChange::Kind::kJoin:
      return "join " + c.change.node + "=" + c.address;
    case MembershipChange::Kind::kLeave:
      return "leave " + c.change.node;
    case MembershipChange::Kind::kReplace:
      return "replace " + c.change.node + " " + c.change.new_node + "=" + c.address;
    case MembershipChange::Kind::kRemove:
      return "remove " + c.change.node;
  }
  return "";
}

Status PlanChanges(const ClusterMap& current, const std::vector<StagedChange>& changes,
                   ClusterMap* out) {
  if (current.InTransition()) {
    return Status::BadRequest("a change is in progress (" + current.change +
                              "): wait until `kvctl cluster transfers` shows none pending");
  }
  if (changes.empty()) return Status::BadRequest("nothing is staged");
  ClusterMap next = current;
  next.epoch = current.epoch + 1;
  Assignment assignment = current.assignment;
  std::vector<std::string> members = AssignedIds(current);
  std::string description;
  for (const StagedChange& c : changes) {
    const std::string& id = c.change.node;
    const MapMember* known = next.Find(id);
    switch (c.change.kind) {
      case MembershipChange::Kind::kJoin:
        if (known != nullptr && known->state != MemberState::kLeft) {
          return Status::BadRequest("node '" + id + "' is already a member");
        }
        if (known != nullptr) {
          return Status::BadRequest("node '" + id + "' has left this cluster; give it a new id");
        }
        break;
      case MembershipChange::Kind::kReplace: {
        const MapMember* fresh = next.Find(c.change.new_node);
        if (fresh != nullptr) {
          return Status::BadRequest("node '" + c.change.new_node + "' is already known");
        }
        [[fallthrough]];
      }
      case MembershipChange::Kind::kLeave:
      case MembershipChange::Kind::kRemove:
        if (known == nullptr || known->state != MemberState::kNormal) {
          return Status::BadRequest("node '" + id + "' is not a normal member");
        }
        break;
    }
    Plan plan;
    RINGKV_RETURN_IF_ERROR(PlanMembershipChange(assignment, members, c.change, &plan));
    assignment = std::move(plan.after);
    members = std::move(plan.members_after);
    if (c.change.kind == MembershipChange::Kind::kJoin) {
      next.members.push_back({id, c.address, MemberState::kJoining});
    } else {
      FindMutable(&next, id)->state = MemberState::kLeaving;
      if (c.change.kind == MembershipChange::Kind::kReplace) {
        next.members.push_back({c.change.new_node, c.address, MemberState::kJoining});
      }
    }
    std::sort(next.members.begin(), next.members.end(),
              [](const MapMember& a, const MapMember& b) { return a.id < b.id; });
    description += (description.empty() ? "" : ", ") + DescribeChange(c);
  }
  next.change = description;
  next.moves = MovesBetween(current.assignment, assignment);
  next.target = std::move(assignment);
  next.phase = MapPhase::kCopy;
  if (next.moves.empty()) {
    // Nothing to copy (only owners reordered): the change is done at once.
    ClusterMap done;
    next.phase = MapPhase::kReadNew;
    RINGKV_RETURN_IF_ERROR(AdvanceMap(next, &done));
    done.epoch = current.epoch + 1;
    next = std::move(done);
  }
  RINGKV_RETURN_IF_ERROR(ValidateMap(next));
  *out = std::move(next);
  return Status::OK();
}

Status AdvanceMap(const ClusterMap& current, ClusterMap* out) {
  ClusterMap next = current;
  next.epoch = current.epoch + 1;
  if (current.phase == MapPhase::kStable) return Status::BadRequest("no change is in progress");
  if (current.phase == MapPhase::kCopy) {
    for (const MapMove& m : current.moves) {
      if (!m.ready) {
        return Status::BadRequest("partition " + std::to_string(m.partition) + " is still copying");
      }
    }
    next.phase = MapPhase::kReadNew;
  } else {
    next.phase = MapPhase::kStable;
    next.assignment = current.target;
    next.target.clear();
    next.moves.clear();
    next.change.clear();
    for (MapMember& m : next.members) {
      if (m.state == MemberState::kJoining) m.state = MemberState::kNormal;
      if (m.state == MemberState::kLeaving) m.state = MemberState::kLeft;
    }
  }
  *out = std::move(next);
  return Status::OK();
}

}  // namespace ringkv::cluster
