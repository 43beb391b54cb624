#include "engine/record.h"

#include <cstring>

namespace ringkv {
namespace {

void PutFixed64(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out->append(buf, 8);
}

uint64_t GetFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Checks the header of an encoded record; on success sets the node id view.
bool ParseHeader(std::string_view data, std::string_view* node) {
  if (data.size() < kRecordHeaderBytes || static_cast<uint8_t>(data[0]) != kRecordFormat) {
    return false;
  }
  size_t node_len = static_cast<uint8_t>(data[18]);
  if (data.size() < kRecordHeaderBytes + node_len) return false;
  *node = data.substr(kRecordHeaderBytes, node_len);
  return true;
}

}  // namespace

void EncodeRecord(const Record& r, std::string* out) {
  out->reserve(out->size() + kRecordHeaderBytes + r.version.node.size() + r.value.size());
  out->push_back(static_cast<char>(kRecordFormat));
  out->push_back(static_cast<char>(r.tombstone ? 1 : 0));
  PutFixed64(out, r.version.hlc);
  PutFixed64(out, r.expires_at_ms);
  out->push_back(static_cast<char>(static_cast<uint8_t>(r.version.node.size())));
  out->append(r.version.node);
  out->append(r.value);
}

Status DecodeRecord(std::string_view data, Record* out) {
  RINGKV_RETURN_IF_ERROR(DecodeRecordMeta(data, out));
  out->value.assign(data.substr(kRecordHeaderBytes + out->version.node.size()));
  return Status::OK();
}

Status DecodeRecordMeta(std::string_view data, Record* out) {
  std::string_view node;
  if (!ParseHeader(data, &node)) return Status::Internal("corrupt record");
  uint8_t flags = static_cast<uint8_t>(data[1]);
  if (flags & ~1u) return Status::Internal("corrupt record flags");
  out->tombstone = (flags & 1u) != 0;
  out->version.hlc = GetFixed64(data.data() + 2);
  out->expires_at_ms = GetFixed64(data.data() + 10);
  out->version.node.assign(node);
  return Status::OK();
}

int CompareEncodedVersions(std::string_view a, std::string_view b) {
  std::string_view na, nb;
  bool ok_a = ParseHeader(a, &na);
  bool ok_b = ParseHeader(b, &nb);
  if (!ok_a || !ok_b) return static_cast<int>(ok_a) - static_cast<int>(ok_b);
  uint64_t ha = GetFixed64(a.data() + 2), hb = GetFixed64(b.data() + 2);
  if (ha != hb) return ha < hb ? -1 : 1;
  int c = na.compare(nb);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

}  // namespace ringkv
