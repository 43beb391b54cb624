// Membership messages (issue #11; PROTOCOL.md §10; docs/protocol.md, "Peer
// messages"): the cluster map's JSON form, the client's `membership` op and
// the peer messages that spread maps and move partitions.
//
// Client:
//   membership {"action":"join","node":ID,"address":A} | {"action":"leave"|"remove","node":ID}
//              | {"action":"replace","node":OLD,"new_node":NEW,"address":A}
//              | {"action":"plan"|"clear"|"transfers"} | {"action":"commit"[,"epoch":E]}
// Peers:
//   _membership  the same, forwarded by a member to the claimant
//   _map         {}                                  -> {"map":{…}}
//   _map_push    {"map":{…}}                         -> {"epoch":E}
//   _xfer_open   {"partition":P,"epoch":E}           -> {"file":F,"bytes":B,"keys":K,
//                                                        "checksum":X,"watermark":W}
//   _xfer_read   {"file":F,"offset":O,"length":L}    -> {"data":base64,"eof":bool}
//   _xfer_close  {"file":F}                          -> {}
//   _move_report {"node":TO,"partition":P,"epoch":E,"done_bytes":D,"total_bytes":T,
//                 "ready":bool}                      -> {}
//
// Thread-safety: stateless functions. The parsers never throw.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "server/cluster/cluster_map.h"

namespace ringkv {

// The map as one compact JSON object, and back (DecodeMap validates it).
std::string EncodeMap(const cluster::ClusterMap& map);
Status DecodeMap(std::string_view json, cluster::ClusterMap* out);
// A hash of the encoded map: equal epochs with other hashes are a split brain.
uint64_t MapHash(const cluster::ClusterMap& map);

std::string EncodeMapFetch();
std::string RenderMap(const std::string& id_json, const cluster::ClusterMap& map);
Status ParseMapReply(std::string_view line, cluster::ClusterMap* out);
std::string EncodeMapPush(const cluster::ClusterMap& map);
// The receiver's epoch after the push.
Status ParseMapPushReply(std::string_view line, uint64_t* epoch);

// One exported partition file on the source.
struct XferFile {
  std::string file;  // a name in the source's transfer directory
  uint64_t bytes = 0;
  uint64_t keys = 0;      // 0: the partition is empty there, no file
  uint64_t checksum = 0;  // xxh64 of the file's bytes
  uint64_t watermark = 0;
};
std::string EncodeXferOpen(uint32_t partition, uint64_t epoch);
std::string RenderXferOpen(const std::string& id_json, const XferFile& f);
Status ParseXferOpenReply(std::string_view line, XferFile* out);
std::string EncodeXferRead(std::string_view file, uint64_t offset, uint64_t length);
std::string RenderXferRead(const std::string& id_json, std::string_view data, bool eof);
Status ParseXferReadReply(std::string_view line, std::string* data, bool* eof);
std::string EncodeXferClose(std::string_view file);
// A transfer file name the source made (no path, no surprises).
bool IsTransferFileName(std::string_view name);

std::string EncodeMoveReport(std::string_view node, uint32_t partition, uint64_t epoch,
                             uint64_t done_bytes, uint64_t total_bytes, bool ready);

// The membership op forwarded to the claimant, from the parsed request.
struct Request;
std::string EncodeForwardedMembership(const Request& req);

// One move as `transfers` shows it.
struct TransferView {
  uint32_t partition = 0;
  std::string from, to;
  std::string stage;  // copy, ready, read_new, done
  uint64_t done_bytes = 0, total_bytes = 0;
  double rate_bytes_per_s = 0;
};
std::string RenderTransfers(const std::string& id_json, uint64_t epoch, const std::string& phase,
                            const std::string& change, const std::vector<TransferView>& moves);

// The plan: the staged changes, the moves they cause with the bytes to copy
// (estimated from the partitions' sizes), and slots per node before and
// after.
struct PlanView {
  uint64_t epoch = 0;  // the epoch the plan is computed at (commit's CAS)
  std::vector<std::string> changes;
  std::vector<TransferView> moves;
  std::vector<std::pair<std::string, std::pair<int, int>>> slots;  // node -> (before, after)
  std::string error;  // why the staged changes cannot be planned ("" if they can)
};
std::string RenderPlan(const std::string& id_json, const PlanView& plan);

}  // namespace ringkv
