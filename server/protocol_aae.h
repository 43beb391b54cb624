// Anti-entropy messages between nodes (docs/protocol.md, "Peer messages"):
// the requests a node sends, the responses a replica renders and the
// parsers of those responses. Same framing as every peer message.
//
// _aae_tree  {"partition":P}                       -> {"watermark":W,"branches":[64 hashes]}
// _aae_tree  {"partition":P,"branches":[B,…]}      -> {"segments":[[64 hashes],…]} in order asked
// _aae_keys  {"partition":P,"segments":[S,…],"limit":L}
//                                 -> {"keys":[{"key","version","tombstone","expires_ms"},…],
//                                     "truncated":bool}
// _aae_fetch {"partition":P,"keys":[K,…]}          -> {"records":[{"key",record fields},…]}
// _aae_scan  {"partition":P,"after":K,"limit":L,"bytes":B}
//                                                  -> {"records":[…],"next":K}
// _aae_gc    {"partition":P,"watermark":W}         -> {}
// Hashes and watermarks are unsigned 64-bit JSON integers.
//
// Thread-safety: stateless functions. The parsers never throw.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/aae_tree.h"
#include "engine/status.h"
#include "server/cluster/aae_replica.h"
#include "server/cluster/anti_entropy.h"

namespace ringkv {

std::string EncodeAaeRoot(uint32_t partition);
std::string EncodeAaeBranches(uint32_t partition, const std::vector<uint32_t>& branches);
std::string EncodeAaeKeys(uint32_t partition, const std::vector<uint32_t>& segments, size_t limit);
std::string EncodeAaeFetch(uint32_t partition, const std::vector<std::string>& keys);
std::string EncodeAaeScan(uint32_t partition, std::string_view after, size_t limit_keys,
                          size_t limit_bytes);
std::string EncodeAaeGc(uint32_t partition, uint64_t watermark);

std::string RenderAaeRoot(const std::string& id_json, const cluster::AaeRoot& root);
std::string RenderAaeBranches(const std::string& id_json,
                              const std::vector<cluster::AaeSegments>& branches);
std::string RenderAaeKeys(const std::string& id_json, const std::vector<aae::KeyVersion>& keys,
                          bool truncated);
// `next` is rendered only for a scan (has_next).
std::string RenderAaeRecords(const std::string& id_json, const cluster::AaeRecords& records,
                             bool has_next, std::string_view next);

Status ParseAaeRootReply(std::string_view line, cluster::AaeRoot* out);
Status ParseAaeBranchesReply(std::string_view line, std::vector<cluster::AaeSegments>* out);
Status ParseAaeKeysReply(std::string_view line, std::vector<aae::KeyVersion>* out, bool* truncated);
Status ParseAaeRecordsReply(std::string_view line, cluster::AaeRecords* out, std::string* next);
// {"ok":true} or the peer's error.
Status ParseOkReply(std::string_view line);

// stats.aae: the counters and the rebuild summary, as a JSON object.
std::string AaeSummaryJson(const cluster::AaeStatus& status);
// The `aae` op's "aae" object: the summary plus one entry per partition
// (replicas, watermark, in sync, last exchange with each peer: its age in
// ms at `now_ms`, outcome and repairs; peers a rebuild still waits for).
std::string AaeStatusJson(const cluster::AaeStatus& status, uint64_t now_ms);

}  // namespace ringkv
