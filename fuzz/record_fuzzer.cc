// Fuzzer for the record decoder (engine/record.h). For any bytes:
// DecodeRecord and DecodeRecordMeta agree on validity and metadata and never
// read past the input; a record that decodes encodes back to the same bytes;
// CompareEncodedVersions is antisymmetric, and for two well-formed records
// agrees with comparing their decoded versions.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/record.h"

namespace ringkv {
namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "record_fuzzer: %s\n", what);
  std::abort();
}

int Sign(int v) { return (v > 0) - (v < 0); }

// Decodes `bytes` (held in its own allocation, so ASan catches any overread).
bool Decode(std::string_view bytes, Record* out) {
  const std::string copy(bytes);
  Record full, meta;
  meta.value = "untouched";
  const bool ok = DecodeRecord(copy, &full).ok();
  if (DecodeRecordMeta(copy, &meta).ok() != ok) Fail("DecodeRecord and DecodeRecordMeta disagree");
  if (!ok) return false;
  if (meta.value != "untouched") Fail("DecodeRecordMeta wrote the value");
  if (meta.version != full.version || meta.tombstone != full.tombstone ||
      meta.expires_at_ms != full.expires_at_ms) {
    Fail("DecodeRecordMeta's metadata differs from DecodeRecord's");
  }
  if (EncodeRecord(full) != copy) Fail("a decoded record does not encode back to its bytes");
  *out = full;
  return true;
}

}  // namespace
}  // namespace ringkv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringkv;
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  Record whole;
  if (Decode(all, &whole) && CompareEncodedVersions(all, all) != 0) {
    Fail("a record is not equal to itself");
  }

  // The first byte (if any) splits the rest into two records a and b.
  if (size < 1) return 0;
  const std::string_view rest = all.substr(1);
  const size_t cut = rest.empty() ? 0 : data[0] % (rest.size() + 1);
  const std::string a(rest.substr(0, cut)), b(rest.substr(cut));
  const int ab = CompareEncodedVersions(a, b), ba = CompareEncodedVersions(b, a);
  if (Sign(ab) != -Sign(ba)) Fail("CompareEncodedVersions is not antisymmetric");
  Record ra, rb;
  const bool ok_a = Decode(a, &ra), ok_b = Decode(b, &rb);
  if (ok_a && ok_b) {
    const int expect = ra.version < rb.version ? -1 : (rb.version < ra.version ? 1 : 0);
    if (Sign(ab) != expect) Fail("CompareEncodedVersions disagrees with the decoded versions");
  } else if (ok_a && Sign(ab) <= 0) {
    // Flags are not part of the header check: a record with bad flags still
    // compares as well-formed, so only a header failure must lose.
    if (b.size() < kRecordHeaderBytes) Fail("a well-formed record did not beat a malformed one");
  }
  return 0;
}
