// Differential fuzzer for the request parser (server/protocol.h).
//
// Every input is one request line, parsed under two sets of limits. The flat
// scanner must either refuse the line and leave its Request untouched, or take
// it and produce exactly the Request the full parser produces (which must then
// accept it). ParseRequest() as a whole must answer with the full parser's
// status code and, on success, its Request. Any disagreement aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/protocol.h"

namespace ringkv {
namespace {

using protocol_internal::ParseFlatRequest;
using protocol_internal::ParseRequestFull;

bool SameQuorum(const QuorumSpec& a, const QuorumSpec& b) {
  return a.kind == b.kind && a.number == b.number;
}

bool SameRequest(const Request& a, const Request& b) {
  return a.op == b.op && a.id_json == b.id_json && a.key == b.key && a.value_json == b.value_json &&
         a.ttl_ms == b.ttl_ms && SameQuorum(a.r, b.r) && SameQuorum(a.w, b.w) &&
         a.local == b.local && a.timeout_ms == b.timeout_ms && a.dir == b.dir &&
         a.record == b.record && a.from == b.from && a.fingerprint == b.fingerprint;
}

[[noreturn]] void Fail(const char* what, std::string_view line) {
  std::fprintf(stderr, "request_fuzzer: %s\nline: %.*s\n", what, static_cast<int>(line.size()),
               line.data());
  std::abort();
}

void Check(std::string_view line, const Limits& limits) {
  Request flat, full, whole;
  const bool taken = ParseFlatRequest(line, limits, &flat);
  const Status full_status = ParseRequestFull(line, limits, &full);
  if (taken) {
    if (!full_status.ok()) Fail("the flat scanner took a line the full parser refuses", line);
    if (!SameRequest(flat, full)) Fail("the flat scanner and the full parser disagree", line);
  } else if (!SameRequest(flat, Request())) {
    Fail("the flat scanner refused a line but left fields behind", line);
  }
  const Status status = ParseRequest(line, limits, &whole);
  if (status.code() != full_status.code() || status.message() != full_status.message()) {
    Fail("ParseRequest's status is not the full parser's", line);
  }
  if (status.ok() && !SameRequest(whole, full)) {
    Fail("ParseRequest's request is not the full parser's", line);
  }
  if (!status.ok() || whole.op != Op::kPeerWrite) return;
  // A replica write that parses is stored (EncodeRecord) and forwarded
  // (EncodePeerWrite): both must give back the same record.
  Record stored;
  if (!DecodeRecord(EncodeRecord(whole.record), &stored).ok() || !(stored == whole.record)) {
    Fail("a parsed _write record does not survive EncodeRecord/DecodeRecord", line);
  }
  Request forwarded;
  if (!ParseRequest(EncodePeerWrite(whole.key, whole.record), limits, &forwarded).ok() ||
      forwarded.key != whole.key || !(forwarded.record == whole.record)) {
    Fail("a parsed _write does not survive EncodePeerWrite and a second parse", line);
  }
}

}  // namespace
}  // namespace ringkv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  ringkv::Check(line, ringkv::Limits{16, 64});  // small limits, so fuzzed lines reach them
  ringkv::Check(line, ringkv::Limits{});        // the defaults
  return 0;
}
