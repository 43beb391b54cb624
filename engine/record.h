// Record: what a replica stores for one key.
//
// A record is a version, a tombstone flag, an optional absolute expiry time and
// the value as the compact JSON text the client sent. Deletes are records too
// (tombstones), so that they win over older values by the same last-writer-wins
// rule and can be replicated and repaired like any write.
//
// Encoding (all integers little-endian), format 1:
//   [0]      format byte (1)
//   [1]      flags: bit 0 = tombstone
//   [2..9]   HLC of the version
//   [10..17] expiry in ms since the epoch, 0 = never
//   [18]     length L of the version's node id (0..255)
//   [19..]   node id (L bytes), then the value bytes to the end
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/status.h"
#include "engine/version.h"

namespace ringkv {

struct Record {
  Version version;
  bool tombstone = false;
  uint64_t expires_at_ms = 0;  // 0 = never expires
  std::string value;           // compact JSON text; empty for a tombstone

  // True when the record holds a value a client may read at `now_ms`.
  bool IsLive(uint64_t now_ms) const {
    return !tombstone && (expires_at_ms == 0 || now_ms < expires_at_ms);
  }
  bool operator==(const Record&) const = default;
};

constexpr uint8_t kRecordFormat = 1;
constexpr size_t kRecordHeaderBytes = 19;

// Appends the encoding of `r` to `*out`.
// REQUIRES: r.version.node.size() <= 255.
void EncodeRecord(const Record& r, std::string* out);
inline std::string EncodeRecord(const Record& r) {
  std::string out;
  EncodeRecord(r, &out);
  return out;
}

// Decodes `data` into `*out`. Returns Internal (corruption) if `data` is not a
// well-formed record; never reads past `data`.
Status DecodeRecord(std::string_view data, Record* out);
// As DecodeRecord(), but leaves out->value untouched (no copy of the value).
Status DecodeRecordMeta(std::string_view data, Record* out);

// Compares the versions of two encoded records without decoding the values:
// <0 if a is older, 0 if equal, >0 if a is newer. A malformed record is older
// than any well-formed one (so garbage never wins a merge).
int CompareEncodedVersions(std::string_view a, std::string_view b);

}  // namespace ringkv
