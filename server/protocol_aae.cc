#include "server/protocol_aae.h"

#include "engine/version.h"
#include "server/protocol.h"
#include "server/protocol_json.h"

namespace ringkv {
namespace {

using json = nlohmann::json;
using protocol_internal::AppendRecordFields;
using protocol_internal::ParseRecordFields;
using protocol_internal::ParseReply;

template <typename Ints>
void AppendInts(const Ints& values, std::string* out) {
  *out += '[';
  bool first = true;
  for (auto v : values) {
    if (!first) *out += ',';
    first = false;
    *out += std::to_string(v);
  }
  *out += ']';
}

std::string Begin(std::string_view op, uint32_t partition) {
  std::string out = "{\"op\":\"";
  out += op;
  out += "\",\"partition\":";
  out += std::to_string(partition);
  return out;
}

// Reads exactly N unsigned integers from `v` into `out`.
template <size_t N>
bool ReadHashes(const json& v, std::array<uint64_t, N>* out) {
  if (!v.is_array() || v.size() != N) return false;
  for (size_t i = 0; i < N; ++i) {
    if (!v[i].is_number_unsigned() && !(v[i].is_number_integer() && v[i].get<int64_t>() >= 0)) {
      return false;
    }
    (*out)[i] = v[i].get<uint64_t>();
  }
  return true;
}

Status Malformed(const char* what) {
  return Status::Internal(std::string("malformed peer reply: ") + what);
}

Status ParseKeyed(const json& obj, std::string* key, Record* record) {
  if (!obj.is_object()) return Malformed("entry is not an object");
  auto k = obj.find("key");
  if (k == obj.end() || !k->is_string()) return Malformed("entry without a key");
  *key = k->get<std::string>();
  Status s = ParseRecordFields(obj, record);
  return s.ok() ? s : Status::Internal("malformed peer record: " + s.message());
}

}  // namespace

std::string EncodeAaeRoot(uint32_t partition) { return Begin("_aae_tree", partition) + "}"; }

std::string EncodeAaeBranches(uint32_t partition, const std::vector<uint32_t>& branches) {
  std::string out = Begin("_aae_tree", partition) + ",\"branches\":";
  AppendInts(branches, &out);
  return out + "}";
}

std::string EncodeAaeKeys(uint32_t partition, const std::vector<uint32_t>& segments, size_t limit) {
  std::string out = Begin("_aae_keys", partition) + ",\"segments\":";
  AppendInts(segments, &out);
  return out + ",\"limit\":" + std::to_string(limit) + "}";
}

std::string EncodeAaeFetch(uint32_t partition, const std::vector<std::string>& keys) {
  std::string out = Begin("_aae_fetch", partition) + ",\"keys\":[";
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out += ',';
    out += JsonQuote(keys[i]);
  }
  return out + "]}";
}

std::string EncodeAaeScan(uint32_t partition, std::string_view after, size_t limit_keys,
                          size_t limit_bytes) {
  return Begin("_aae_scan", partition) + ",\"after\":" + JsonQuote(after) +
         ",\"limit\":" + std::to_string(limit_keys) + ",\"bytes\":" + std::to_string(limit_bytes) +
         "}";
}

std::string EncodeAaeGc(uint32_t partition, uint64_t watermark) {
  return Begin("_aae_gc", partition) + ",\"watermark\":" + std::to_string(watermark) + "}";
}

std::string RenderAaeRoot(const std::string& id_json, const cluster::AaeRoot& root) {
  std::string hashes;
  AppendInts(root.branches, &hashes);
  return ResponseBuilder(id_json)
      .AddRaw("watermark", std::to_string(root.watermark))
      .AddRaw("branches", hashes)
      .Finish();
}

std::string RenderAaeBranches(const std::string& id_json,
                              const std::vector<cluster::AaeSegments>& branches) {
  std::string all = "[";
  for (size_t i = 0; i < branches.size(); ++i) {
    if (i > 0) all += ',';
    AppendInts(branches[i], &all);
  }
  all += ']';
  return ResponseBuilder(id_json).AddRaw("segments", all).Finish();
}

std::string RenderAaeKeys(const std::string& id_json, const std::vector<aae::KeyVersion>& keys,
                          bool truncated) {
  std::string all = "[";
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) all += ',';
    const Record& meta = keys[i].meta;
    all += "{\"key\":";
    all += JsonQuote(keys[i].key);
    all += ",\"version\":\"";
    all += meta.version.ToString();
    all += "\",\"tombstone\":";
    all += meta.tombstone ? "true" : "false";
    all += ",\"expires_ms\":";
    all += std::to_string(meta.expires_at_ms);
    all += '}';
  }
  all += ']';
  return ResponseBuilder(id_json).AddRaw("keys", all).AddBool("truncated", truncated).Finish();
}

std::string RenderAaeRecords(const std::string& id_json, const cluster::AaeRecords& records,
                             bool has_next, std::string_view next) {
  std::string all = "[";
  for (size_t i = 0; i < records.size(); ++i) {
    if (i > 0) all += ',';
    all += "{\"key\":";
    all += JsonQuote(records[i].first);
    AppendRecordFields(records[i].second, &all);
    all += '}';
  }
  all += ']';
  ResponseBuilder b(id_json);
  b.AddRaw("records", all);
  if (has_next) b.AddString("next", next);
  return b.Finish();
}

Status ParseAaeRootReply(std::string_view line, cluster::AaeRoot* out) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto w = reply.find("watermark");
  auto b = reply.find("branches");
  if (w == reply.end() || !w->is_number_unsigned() || b == reply.end() ||
      !ReadHashes(*b, &out->branches)) {
    return Malformed("tree root");
  }
  out->watermark = w->get<uint64_t>();
  return Status::OK();
}

Status ParseAaeBranchesReply(std::string_view line, std::vector<cluster::AaeSegments>* out) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto segs = reply.find("segments");
  if (segs == reply.end() || !segs->is_array()) return Malformed("tree branches");
  for (const json& branch : *segs) {
    cluster::AaeSegments s;
    if (!ReadHashes(branch, &s)) return Malformed("tree branch");
    out->push_back(s);
  }
  return Status::OK();
}

Status ParseAaeKeysReply(std::string_view line, std::vector<aae::KeyVersion>* out,
                         bool* truncated) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto keys = reply.find("keys");
  auto trunc = reply.find("truncated");
  if (keys == reply.end() || !keys->is_array() || trunc == reply.end() || !trunc->is_boolean()) {
    return Malformed("key list");
  }
  *truncated = trunc->get<bool>();
  for (const json& entry : *keys) {
    aae::KeyVersion kv;
    if (!entry.is_object()) return Malformed("key entry is not an object");
    auto k = entry.find("key");
    auto v = entry.find("version");
    auto t = entry.find("tombstone");
    auto e = entry.find("expires_ms");
    if (k == entry.end() || !k->is_string() || v == entry.end() || !v->is_string() ||
        t == entry.end() || !t->is_boolean() || e == entry.end() || !e->is_number_unsigned()) {
      return Malformed("key entry");
    }
    kv.key = k->get<std::string>();
    if (!Version::Parse(v->get_ref<const std::string&>(), &kv.meta.version).ok()) {
      return Malformed("key entry version");
    }
    kv.meta.tombstone = t->get<bool>();
    kv.meta.expires_at_ms = e->get<uint64_t>();
    out->push_back(std::move(kv));
  }
  return Status::OK();
}

Status ParseAaeRecordsReply(std::string_view line, cluster::AaeRecords* out, std::string* next) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto records = reply.find("records");
  if (records == reply.end() || !records->is_array()) return Malformed("records");
  for (const json& entry : *records) {
    std::string key;
    Record record;
    RINGKV_RETURN_IF_ERROR(ParseKeyed(entry, &key, &record));
    out->emplace_back(std::move(key), std::move(record));
  }
  if (next != nullptr) {
    auto n = reply.find("next");
    if (n == reply.end() || !n->is_string()) return Malformed("scan without next");
    *next = n->get<std::string>();
  }
  return Status::OK();
}

Status ParseOkReply(std::string_view line) {
  json reply;
  return ParseReply(line, &reply);
}

namespace {

json SummaryObject(const cluster::AaeStatus& st) {
  json by_outcome = json::object();
  for (const auto& [name, n] : st.exchanges_by_outcome) by_outcome[name] = n;
  return {{"enabled", st.enabled},
          {"exchanges", st.exchanges},
          {"exchanges_by_result", by_outcome},
          {"ticks_skipped", st.ticks_skipped},
          {"keys_repaired", st.keys_repaired},
          {"false_deltas", st.false_deltas},
          {"segments_differing", st.segments_differing},
          {"watermark_raises", st.watermark_raises},
          {"partitions_in_sync", st.partitions_in_sync},
          {"partitions_total", st.partitions_total},
          {"rebuilding", st.rebuilding},
          {"rebuild_partitions_pending", st.rebuild_partitions_pending},
          {"rebuild_partitions_total", st.rebuild_partitions_total},
          {"rebuild_records", st.rebuild_records},
          {"rebuild_bytes", st.rebuild_bytes}};
}

}  // namespace

std::string AaeSummaryJson(const cluster::AaeStatus& status) {
  return SummaryObject(status).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string AaeStatusJson(const cluster::AaeStatus& status, uint64_t now_ms) {
  json out = SummaryObject(status);
  json partitions = json::array();
  for (const cluster::AaePartitionStatus& p : status.partitions) {
    json peers = json::object();
    for (const auto& [id, ps] : p.peers) {
      json entry = {{"result", ps.last_ms == 0 ? "never" : cluster::OutcomeName(ps.outcome)},
                    {"keys_repaired", ps.keys_repaired},
                    {"segments_differing", ps.segments_differing},
                    {"total_repaired", ps.total_repaired}};
      if (ps.last_ms != 0) entry["age_ms"] = now_ms > ps.last_ms ? now_ms - ps.last_ms : 0;
      if (!ps.error.empty()) entry["error"] = ps.error;
      peers[id] = entry;
    }
    json entry = {{"partition", p.partition},
                  {"replicas", p.replicas},
                  {"leader", p.leader},
                  {"watermark", p.watermark},
                  {"in_sync", p.in_sync},
                  {"rebuild_pending", p.rebuild_pending},
                  {"peers", peers}};
    if (p.last_in_sync_ms != 0) {
      entry["in_sync_age_ms"] = now_ms > p.last_in_sync_ms ? now_ms - p.last_in_sync_ms : 0;
    }
    partitions.push_back(std::move(entry));
  }
  out["partitions"] = std::move(partitions);
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace ringkv
