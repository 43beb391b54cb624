// ClusterMap: the cluster's membership and partition assignment as data
// (PROTOCOL.md §10, issue #11; research/aae-membership.md D1, D2).
//
// Every node stores the map it last installed (in its meta family) and the
// nodes exchange it: each `_hello` carries (cluster id, epoch), and the side
// with the lower epoch fetches the whole map from the other. A map is never
// edited in place: a change builds the next one with epoch + 1.
//
// A change moves through phases, each an epoch of its own (D2):
//   stable     reads and writes go to `assignment`.
//   copy       writes go to `assignment` and `target` (W acks in each), reads
//              to `assignment`; each move's new replica copies the partition
//              as files from the replica it replaces (from every live
//              replica when that one is down) and reports ready.
//   read_new   all moves ready: reads go to `target`, writes still to both.
//   then the next stable map has assignment = target. The claimant enters
//   it only once every live member has installed read_new (a barrier), so
//   no coordinator still reads the old replicas when they stop taking
//   writes; a node that no longer replicates a partition drops it there.
//
// Replicas refuse peer requests stamped with another epoch than theirs
// (stale_epoch, fencing): the side that is behind catches up and the
// coordinator retries, so a node with an old map never writes or reads by it.
//
// The claimant, which alone commits changes, is the member with the lowest
// id among those in state normal; it is a function of the map, so every node
// agrees who it is.
//
// Thread-safety: plain values; immutable once installed (shared as
// shared_ptr<const ClusterMap>).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "server/cluster/planner.h"

namespace ringkv::cluster {

enum class MemberState { kJoining, kNormal, kLeaving, kLeft };
std::string_view MemberStateName(MemberState s);
bool MemberStateFromName(std::string_view name, MemberState* out);

enum class MapPhase { kStable, kCopy, kReadNew };
std::string_view MapPhaseName(MapPhase p);
bool MapPhaseFromName(std::string_view name, MapPhase* out);

struct MapMember {
  std::string id;
  std::string address;
  MemberState state = MemberState::kNormal;
  bool operator==(const MapMember&) const = default;
};

struct MapMove {
  uint32_t partition = 0;
  std::string from;  // the replica that gives the slot away (may be dead)
  std::string to;    // the replica that takes it
  bool ready = false;
  bool operator==(const MapMove&) const = default;
};

struct ClusterMap {
  std::string cluster_id;
  uint64_t epoch = 0;
  uint32_t partitions = 0;
  int replicas = 0;
  std::vector<MapMember> members;  // sorted by id; `left` members stay listed
  Assignment assignment;           // the current preference lists, owner first
  // The change in progress (phase != kStable).
  MapPhase phase = MapPhase::kStable;
  std::string change;  // what it is, for people ("join n4")
  Assignment target;   // the assignment after it
  std::vector<MapMove> moves;

  bool operator==(const ClusterMap&) const = default;

  const MapMember* Find(std::string_view id) const;
  bool InTransition() const { return phase != MapPhase::kStable; }
  // Members that take part (every state but left), in id order.
  std::vector<std::string> ActiveIds() const;
  // The member that commits changes: the lowest id in state normal ("" if
  // none is).
  std::string Claimant() const;

  // The replicas that answer reads of `p`, owner first.
  const std::vector<std::string>& ReadSet(uint32_t p) const {
    return phase == MapPhase::kReadNew ? target[p] : assignment[p];
  }
  // Where writes of `p` go: `old_set`, and during a change `new_set` (empty
  // when stable). A write needs W acks in each.
  void WriteSets(uint32_t p, std::vector<std::string>* old_set,
                 std::vector<std::string>* new_set) const;
  // True if `node` must hold `p` at this epoch: it is in a write set.
  bool Holds(std::string_view node, uint32_t p) const;
};

// Epoch 1: `members` (id, address) from --cluster, all normal, with today's
// round-robin assignment (so that data dirs of earlier versions keep their
// partitions). BadRequest as RoundRobinAssignment.
Status InitialMap(std::string cluster_id,
                  const std::vector<std::pair<std::string, std::string>>& members,
                  uint32_t partitions, int replicas, ClusterMap* out);

// Checks a map received from a peer or read from disk: ids, states, lists of
// N distinct active members, moves matching the two assignments. BadRequest
// naming the problem.
Status ValidateMap(const ClusterMap& map);

// When `flags` (epoch 1 from --cluster) names exactly the active members of
// the stable `stored` map, with the same Q and N, but some at other
// addresses (a restore onto other machines, a member moved): the stored map
// with those addresses, one epoch on. Every member given the same flags
// computes the same map, so they agree on it. Otherwise nothing.
std::optional<ClusterMap> MovedMembers(const ClusterMap& stored, const ClusterMap& flags);

// One staged change (PROTOCOL.md §10): join ID=ADDR, leave ID, replace OLD
// NEW=ADDR, remove ID.
struct StagedChange {
  MembershipChange change;
  std::string address;  // join, replace: the new node's address
  bool operator==(const StagedChange&) const = default;
};
std::string DescribeChange(const StagedChange& c);

// The map that begins `changes` (applied in order) on `current`, which must
// be stable: epoch + 1, phase copy with the moves (or, when nothing moves,
// the next stable map at once). BadRequest naming the problem.
Status PlanChanges(const ClusterMap& current, const std::vector<StagedChange>& changes,
                   ClusterMap* out);

// The next map of a change in progress once its moves are all ready:
// copy -> read_new -> stable (the target installed, joining members normal,
// leaving ones left). FailedPrecondition-style BadRequest if not ready.
Status AdvanceMap(const ClusterMap& current, ClusterMap* out);

}  // namespace ringkv::cluster
