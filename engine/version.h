// Version: what last-writer-wins compares.
//
// A version is a hybrid logical clock timestamp (HLC) plus the id of the node
// that stamped it. The HLC packs physical milliseconds in the high 48 bits and a
// logical counter in the low 16 bits, so comparing two HLCs as integers orders
// them by time first and counter second. Ties between equal HLCs from distinct
// nodes are broken by comparing node ids as bytes.
//
// On the wire a version is the string "<16 lowercase hex digits>.<node id>":
// fixed width, so its text order within one node agrees with the numeric order.
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/clock.h"
#include "engine/status.h"

namespace ringkv {

constexpr int kHlcLogicalBits = 16;
constexpr uint64_t kHlcLogicalMask = (1ULL << kHlcLogicalBits) - 1;

inline uint64_t HlcPhysicalMs(uint64_t hlc) { return hlc >> kHlcLogicalBits; }
inline uint64_t HlcLogical(uint64_t hlc) { return hlc & kHlcLogicalMask; }
inline uint64_t MakeHlc(uint64_t physical_ms, uint64_t logical) {
  return (physical_ms << kHlcLogicalBits) | (logical & kHlcLogicalMask);
}

struct Version {
  uint64_t hlc = 0;  // 0 means "no version" and is older than every real one
  std::string node;  // the stamping node's id; at most 255 bytes

  std::strong_ordering operator<=>(const Version& o) const {
    if (auto c = hlc <=> o.hlc; c != 0) return c;
    return node.compare(o.node) <=> 0;
  }
  bool operator==(const Version& o) const = default;

  // "0000018bcfe56800.n1"
  std::string ToString() const;
  // Parses what ToString() produced; BadRequest otherwise (including a node
  // id that --node-id would not allow).
  static Status Parse(std::string_view text, Version* out);
};

// HybridClock issues HLC timestamps that never go backwards, even if the
// physical clock does, and that move past any timestamp observed from a peer.
//
// Thread-safe (lock-free).
class HybridClock {
 public:
  // REQUIRES: clock outlives this object.
  explicit HybridClock(const Clock* clock) : clock_(clock) {}

  // A timestamp greater than every timestamp this clock has issued or observed.
  uint64_t Now();
  // Records a timestamp seen from elsewhere, so later Now() values exceed it.
  void Observe(uint64_t remote_hlc);
  // The last timestamp issued or observed (for tests and stats).
  uint64_t Last() const { return last_.load(std::memory_order_acquire); }

 private:
  const Clock* clock_;
  std::atomic<uint64_t> last_{0};
};

}  // namespace ringkv
