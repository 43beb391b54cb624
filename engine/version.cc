#include "engine/version.h"

#include <charconv>
#include <cstdio>

namespace ringkv {

std::string Version::ToString() const {
  // By hand rather than snprintf: this runs for every read and write answered.
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(17 + node.size(), '.');
  for (int i = 0; i < 16; ++i) out[i] = kHex[(hlc >> (60 - 4 * i)) & 0xf];
  out.replace(17, node.size(), node);
  return out;
}

Status Version::Parse(std::string_view text, Version* out) {
  if (text.size() < 18 || text[16] != '.') return Status::BadRequest("malformed version");
  uint64_t hlc = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + 16, hlc, 16);
  if (ec != std::errc() || ptr != text.data() + 16) return Status::BadRequest("malformed version");
  // The node id is what --node-id allows ([A-Za-z0-9_-]{1,64}): a version
  // travels inside JSON strings unescaped, so no quote or control byte may
  // ever get into one.
  std::string_view node = text.substr(17);
  if (node.size() > 64) return Status::BadRequest("malformed version: node id over 64 bytes");
  for (char c : node) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return Status::BadRequest("malformed version: bad node id");
  }
  out->hlc = hlc;
  out->node.assign(node);
  return Status::OK();
}

uint64_t HybridClock::Now() {
  uint64_t physical = MakeHlc(clock_->NowMs(), 0);
  uint64_t last = last_.load(std::memory_order_acquire);
  for (;;) {
    // Physical time ahead of everything seen: take it. Otherwise tick the
    // logical counter of the last timestamp (which may carry into the ms part;
    // that only happens after 65536 stamps in one ms and keeps order intact).
    uint64_t next = physical > last ? physical : last + 1;
    if (last_.compare_exchange_weak(last, next, std::memory_order_acq_rel)) return next;
  }
}

void HybridClock::Observe(uint64_t remote_hlc) {
  uint64_t last = last_.load(std::memory_order_acquire);
  while (remote_hlc > last &&
         !last_.compare_exchange_weak(last, remote_hlc, std::memory_order_acq_rel)) {
  }
}

}  // namespace ringkv
