#include "server/protocol_membership.h"

#include <openssl/evp.h>

#include "common/host_port.h"
#include "server/cluster/ring.h"
#include "server/protocol.h"
#include "server/protocol_json.h"

namespace ringkv {

using json = nlohmann::json;
using protocol_internal::ParseReply;

namespace {

json AssignmentJson(const cluster::Assignment& a) {
  json out = json::array();
  for (const auto& list : a) out.push_back(list);
  return out;
}

Status AssignmentFrom(const json& j, cluster::Assignment* out) {
  if (!j.is_array()) return Status::BadRequest("map assignment must be an array");
  out->clear();
  for (const json& list : j) {
    if (!list.is_array()) return Status::BadRequest("map assignment lists must be arrays");
    std::vector<std::string> ids;
    for (const json& id : list) {
      if (!id.is_string()) return Status::BadRequest("map assignment lists hold node ids");
      ids.push_back(id.get<std::string>());
    }
    out->push_back(std::move(ids));
  }
  return Status::OK();
}

json MapJson(const cluster::ClusterMap& map) {
  json members = json::array();
  for (const auto& m : map.members) {
    members.push_back(
        {{"id", m.id}, {"address", m.address}, {"state", cluster::MemberStateName(m.state)}});
  }
  json moves = json::array();
  for (const auto& m : map.moves) {
    moves.push_back(
        {{"partition", m.partition}, {"from", m.from}, {"to", m.to}, {"ready", m.ready}});
  }
  json out = {{"cluster_id", map.cluster_id},
              {"epoch", map.epoch},
              {"partitions", map.partitions},
              {"replicas", map.replicas},
              {"members", members},
              {"assignment", AssignmentJson(map.assignment)},
              {"phase", cluster::MapPhaseName(map.phase)}};
  if (map.InTransition()) {
    out["change"] = map.change;
    out["target"] = AssignmentJson(map.target);
    out["moves"] = moves;
  }
  return out;
}

Status MapFrom(const json& j, cluster::ClusterMap* out) {
  if (!j.is_object()) return Status::BadRequest("map must be an object");
  cluster::ClusterMap map;
  auto str = [&](const char* f, std::string* v) -> Status {
    auto it = j.find(f);
    if (it == j.end() || !it->is_string()) {
      return Status::BadRequest(std::string("map needs a string '") + f + "'");
    }
    *v = it->get<std::string>();
    return Status::OK();
  };
  auto num = [&](const char* f, uint64_t* v) -> Status {
    auto it = j.find(f);
    if (it == j.end() || !it->is_number_unsigned()) {
      return Status::BadRequest(std::string("map needs an unsigned '") + f + "'");
    }
    *v = it->get<uint64_t>();
    return Status::OK();
  };
  uint64_t partitions = 0, replicas = 0;
  RINGKV_RETURN_IF_ERROR(str("cluster_id", &map.cluster_id));
  RINGKV_RETURN_IF_ERROR(num("epoch", &map.epoch));
  RINGKV_RETURN_IF_ERROR(num("partitions", &partitions));
  RINGKV_RETURN_IF_ERROR(num("replicas", &replicas));
  if (partitions > (1u << 20) || replicas > 64) return Status::BadRequest("map too large");
  map.partitions = static_cast<uint32_t>(partitions);
  map.replicas = static_cast<int>(replicas);
  auto members = j.find("members");
  if (members == j.end() || !members->is_array()) return Status::BadRequest("map needs members");
  for (const json& m : *members) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string() || !m.contains("address") ||
        !m["address"].is_string() || !m.contains("state") || !m["state"].is_string()) {
      return Status::BadRequest("map members need id, address and state strings");
    }
    cluster::MapMember member{m["id"].get<std::string>(), m["address"].get<std::string>(),
                              cluster::MemberState::kNormal};
    if (!cluster::MemberStateFromName(m["state"].get<std::string>(), &member.state)) {
      return Status::BadRequest("map member state unknown");
    }
    map.members.push_back(std::move(member));
  }
  auto assignment = j.find("assignment");
  if (assignment == j.end()) return Status::BadRequest("map needs an assignment");
  RINGKV_RETURN_IF_ERROR(AssignmentFrom(*assignment, &map.assignment));
  std::string phase;
  RINGKV_RETURN_IF_ERROR(str("phase", &phase));
  if (!cluster::MapPhaseFromName(phase, &map.phase)) return Status::BadRequest("map phase unknown");
  if (map.InTransition()) {
    RINGKV_RETURN_IF_ERROR(str("change", &map.change));
    auto target = j.find("target");
    if (target == j.end()) return Status::BadRequest("map in transition needs a target");
    RINGKV_RETURN_IF_ERROR(AssignmentFrom(*target, &map.target));
    auto moves = j.find("moves");
    if (moves == j.end() || !moves->is_array()) return Status::BadRequest("map needs moves");
    for (const json& m : *moves) {
      if (!m.is_object() || !m.contains("partition") || !m["partition"].is_number_unsigned() ||
          !m.contains("from") || !m["from"].is_string() || !m.contains("to") ||
          !m["to"].is_string() || !m.contains("ready") || !m["ready"].is_boolean()) {
        return Status::BadRequest("map moves need partition, from, to and ready");
      }
      map.moves.push_back({static_cast<uint32_t>(m["partition"].get<uint64_t>()),
                           m["from"].get<std::string>(), m["to"].get<std::string>(),
                           m["ready"].get<bool>()});
    }
  }
  RINGKV_RETURN_IF_ERROR(cluster::ValidateMap(map));
  *out = std::move(map);
  return Status::OK();
}

std::string Base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

bool Unbase64(std::string_view text, std::string* out) {
  if (text.size() % 4 != 0) return false;
  out->assign(3 * (text.size() / 4) + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out->data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return false;
  size_t len = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (!text.empty() && text.back() == '=') --len;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --len;
  out->resize(len);
  return true;
}

json TransfersJson(const std::vector<TransferView>& moves) {
  json out = json::array();
  for (const TransferView& m : moves) {
    out.push_back({{"partition", m.partition},
                   {"from", m.from},
                   {"to", m.to},
                   {"stage", m.stage},
                   {"bytes_done", m.done_bytes},
                   {"bytes_total", m.total_bytes},
                   {"rate_bytes_per_s", static_cast<uint64_t>(m.rate_bytes_per_s)}});
  }
  return out;
}

}  // namespace

std::string EncodeMap(const cluster::ClusterMap& map) { return MapJson(map).dump(); }

Status DecodeMap(std::string_view text, cluster::ClusterMap* out) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::BadRequest("map is not valid JSON");
  try {
    return MapFrom(j, out);
  } catch (const json::exception& e) {
    return Status::BadRequest(std::string("malformed map: ") + e.what());
  }
}

uint64_t MapHash(const cluster::ClusterMap& map) { return cluster::KeyHash(EncodeMap(map)); }

std::string EncodeMapFetch() { return "{\"op\":\"_map\"}"; }

std::string RenderMap(const std::string& id_json, const cluster::ClusterMap& map) {
  return ResponseBuilder(id_json).AddRaw("map", EncodeMap(map)).Finish();
}

Status ParseMapReply(std::string_view line, cluster::ClusterMap* out) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto it = reply.find("map");
  if (it == reply.end()) return Status::Internal("map reply without a map");
  try {
    Status s = MapFrom(*it, out);
    return s.ok() ? s : Status::Internal("peer sent a bad map: " + s.message());
  } catch (const json::exception& e) {
    return Status::Internal(std::string("malformed map: ") + e.what());
  }
}

std::string EncodeMapPush(const cluster::ClusterMap& map) {
  return "{\"op\":\"_map_push\",\"map\":" + EncodeMap(map) + "}";
}

Status ParseMapPushReply(std::string_view line, uint64_t* epoch) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto it = reply.find("epoch");
  if (it == reply.end() || !it->is_number_unsigned())
    return Status::Internal("reply without epoch");
  *epoch = it->get<uint64_t>();
  return Status::OK();
}

std::string EncodeXferOpen(uint32_t partition, uint64_t epoch) {
  return "{\"op\":\"_xfer_open\",\"partition\":" + std::to_string(partition) +
         ",\"epoch\":" + std::to_string(epoch) + "}";
}

std::string RenderXferOpen(const std::string& id_json, const XferFile& f) {
  return ResponseBuilder(id_json)
      .AddString("file", f.file)
      .AddRaw("bytes", std::to_string(f.bytes))
      .AddRaw("keys", std::to_string(f.keys))
      .AddRaw("checksum", std::to_string(f.checksum))
      .AddRaw("watermark", std::to_string(f.watermark))
      .Finish();
}

Status ParseXferOpenReply(std::string_view line, XferFile* out) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto u = [&](const char* f, uint64_t* v) {
    auto it = reply.find(f);
    if (it == reply.end() || !it->is_number_unsigned()) return false;
    *v = it->get<uint64_t>();
    return true;
  };
  auto file = reply.find("file");
  if (file == reply.end() || !file->is_string() || !u("bytes", &out->bytes) ||
      !u("keys", &out->keys) || !u("checksum", &out->checksum) ||
      !u("watermark", &out->watermark)) {
    return Status::Internal("malformed _xfer_open reply");
  }
  out->file = file->get<std::string>();
  if (out->keys > 0 && !IsTransferFileName(out->file)) {
    return Status::Internal("_xfer_open reply names a bad file");
  }
  return Status::OK();
}

std::string EncodeXferRead(std::string_view file, uint64_t offset, uint64_t length) {
  return "{\"op\":\"_xfer_read\",\"file\":" + JsonQuote(file) +
         ",\"offset\":" + std::to_string(offset) + ",\"length\":" + std::to_string(length) + "}";
}

std::string RenderXferRead(const std::string& id_json, std::string_view data, bool eof) {
  return ResponseBuilder(id_json).AddString("data", Base64(data)).AddBool("eof", eof).Finish();
}

Status ParseXferReadReply(std::string_view line, std::string* data, bool* eof) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto d = reply.find("data");
  auto e = reply.find("eof");
  if (d == reply.end() || !d->is_string() || e == reply.end() || !e->is_boolean() ||
      !Unbase64(d->get_ref<const std::string&>(), data)) {
    return Status::Internal("malformed _xfer_read reply");
  }
  *eof = e->get<bool>();
  return Status::OK();
}

std::string EncodeXferClose(std::string_view file) {
  return "{\"op\":\"_xfer_close\",\"file\":" + JsonQuote(file) + "}";
}

bool IsTransferFileName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name.substr(0, 4) != "out-") return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return name.find("..") == std::string_view::npos;
}

std::string EncodeMoveReport(std::string_view node, uint32_t partition, uint64_t epoch,
                             uint64_t done_bytes, uint64_t total_bytes, bool ready) {
  return "{\"op\":\"_move_report\",\"node\":" + JsonQuote(node) +
         ",\"partition\":" + std::to_string(partition) + ",\"epoch\":" + std::to_string(epoch) +
         ",\"done_bytes\":" + std::to_string(done_bytes) +
         ",\"total_bytes\":" + std::to_string(total_bytes) +
         ",\"ready\":" + (ready ? "true" : "false") + "}";
}

std::string EncodeForwardedMembership(const Request& req) {
  json out = {{"op", "_membership"}, {"action", req.action}};
  if (!req.id_json.empty()) out["id"] = json::parse(req.id_json, nullptr, false);
  if (!req.node.empty()) out["node"] = req.node;
  if (!req.address.empty()) out["address"] = req.address;
  if (!req.new_node.empty()) out["new_node"] = req.new_node;
  if (req.has_epoch) out["epoch"] = req.epoch;
  return out.dump();
}

std::string RenderTransfers(const std::string& id_json, uint64_t epoch, const std::string& phase,
                            const std::string& change, const std::vector<TransferView>& moves) {
  uint64_t pending = 0;
  for (const TransferView& m : moves) pending += m.stage != "done";
  return ResponseBuilder(id_json)
      .AddInt("epoch", static_cast<int64_t>(epoch))
      .AddString("phase", phase)
      .AddString("change", change)
      .AddInt("moves_pending", static_cast<int64_t>(pending))
      .AddRaw("transfers", TransfersJson(moves).dump())
      .Finish();
}

std::string RenderPlan(const std::string& id_json, const PlanView& plan) {
  json slots = json::object();
  for (const auto& [node, ba] : plan.slots)
    slots[node] = {{"before", ba.first}, {"after", ba.second}};
  uint64_t bytes = 0;
  for (const TransferView& m : plan.moves) bytes += m.total_bytes;
  ResponseBuilder b(id_json);
  b.AddInt("epoch", static_cast<int64_t>(plan.epoch))
      .AddRaw("changes", json(plan.changes).dump())
      .AddRaw("moves", TransfersJson(plan.moves).dump())
      .AddRaw("bytes_to_copy", std::to_string(bytes))
      .AddRaw("slots", slots.dump());
  if (!plan.error.empty()) b.AddString("error", plan.error);
  return b.Finish();
}

// ---- Request parsers (the op table's, server/op_list.h) ----

namespace protocol_internal {
namespace {

Status Str(const json& req, const char* field, size_t max, bool required, std::string* out) {
  auto it = req.find(field);
  if (it == req.end()) {
    if (required) return Status::BadRequest(std::string("missing field '") + field + "'");
    return Status::OK();
  }
  if (!it->is_string() || it->get_ref<const std::string&>().size() > max) {
    return Status::BadRequest(std::string("'") + field + "' must be a string of at most " +
                              std::to_string(max) + " bytes");
  }
  *out = it->get<std::string>();
  return Status::OK();
}

Status Unsigned(const json& req, const char* field, bool required, uint64_t* out) {
  auto it = req.find(field);
  if (it == req.end()) {
    if (required) return Status::BadRequest(std::string("missing field '") + field + "'");
    return Status::OK();
  }
  if (!it->is_number_unsigned()) {
    return Status::BadRequest(std::string("'") + field + "' must be an unsigned integer");
  }
  *out = it->get<uint64_t>();
  return Status::OK();
}

Status NodeId(const json& req, const char* field, std::string* out) {
  RINGKV_RETURN_IF_ERROR(Str(req, field, 64, true, out));
  if (!IsValidNodeId(*out)) {
    return Status::BadRequest(std::string("'") + field +
                              "' is not a valid node id: " + JsonQuote(*out));
  }
  return Status::OK();
}

Status Address(const json& req, std::string* out) {
  RINGKV_RETURN_IF_ERROR(Str(req, "address", 300, true, out));
  HostPort unused;
  Status s = ParseHostPort(*out, &unused);
  if (!s.ok()) return Status::BadRequest("'address': " + s.message());
  return Status::OK();
}

}  // namespace

Status ParseMembership(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(Str(req, "action", 32, true, &out->action));
  const std::string& a = out->action;
  if (a == "join") {
    RINGKV_RETURN_IF_ERROR(NodeId(req, "node", &out->node));
    return Address(req, &out->address);
  }
  if (a == "leave" || a == "remove") return NodeId(req, "node", &out->node);
  if (a == "replace") {
    RINGKV_RETURN_IF_ERROR(NodeId(req, "node", &out->node));
    RINGKV_RETURN_IF_ERROR(NodeId(req, "new_node", &out->new_node));
    return Address(req, &out->address);
  }
  if (a == "commit") {
    out->has_epoch = req.find("epoch") != req.end();
    return Unsigned(req, "epoch", false, &out->epoch);
  }
  if (a == "plan" || a == "clear" || a == "transfers") return Status::OK();
  return Status::BadRequest(
      "'action' must be join, leave, replace, remove, plan, commit, clear or transfers");
}

Status ParseMapPush(const json& req, const Limits&, Request* out) {
  auto it = req.find("map");
  if (it == req.end() || !it->is_object()) return Status::BadRequest("missing object 'map'");
  out->map_json = it->dump();
  return Status::OK();
}

Status ParseXferOpen(const json& req, const Limits&, Request* out) {
  uint64_t p = 0;
  RINGKV_RETURN_IF_ERROR(Unsigned(req, "partition", true, &p));
  if (p > UINT32_MAX) return Status::BadRequest("'partition' out of range");
  out->partition = static_cast<uint32_t>(p);
  return Unsigned(req, "epoch", true, &out->epoch);
}

Status ParseXferRead(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(Str(req, "file", 128, true, &out->file));
  if (!IsTransferFileName(out->file)) return Status::BadRequest("'file' is not a transfer file");
  RINGKV_RETURN_IF_ERROR(Unsigned(req, "offset", true, &out->offset));
  return Unsigned(req, "length", true, &out->length);
}

Status ParseXferClose(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(Str(req, "file", 128, true, &out->file));
  if (!IsTransferFileName(out->file)) return Status::BadRequest("'file' is not a transfer file");
  return Status::OK();
}

Status ParseMoveReport(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(NodeId(req, "node", &out->node));
  uint64_t p = 0;
  RINGKV_RETURN_IF_ERROR(Unsigned(req, "partition", true, &p));
  if (p > UINT32_MAX) return Status::BadRequest("'partition' out of range");
  out->partition = static_cast<uint32_t>(p);
  RINGKV_RETURN_IF_ERROR(Unsigned(req, "epoch", true, &out->epoch));
  RINGKV_RETURN_IF_ERROR(Unsigned(req, "done_bytes", true, &out->done_bytes));
  RINGKV_RETURN_IF_ERROR(Unsigned(req, "total_bytes", true, &out->total_bytes));
  auto it = req.find("ready");
  if (it == req.end() || !it->is_boolean()) return Status::BadRequest("'ready' must be a boolean");
  out->ready = it->get<bool>();
  return Status::OK();
}

}  // namespace protocol_internal
}  // namespace ringkv
