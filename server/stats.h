// Stats: the node's counters and latency histograms (PROTOCOL.md §5).
//
// Thread-safety: every method may be called concurrently; counters are
// relaxed atomics, so a reader sees each counter exact but not a snapshot of
// all of them at one instant.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "engine/status.h"
#include "server/histogram.h"
#include "server/op_list.h"

namespace ringkv {

// Every client operation, in the order of the protocol's op table.
// Ops whose names start with "_" are peer-to-peer (replica writes and reads,
// the membership handshake); clients are not meant to use them.
#define RINGKV_OP_ENUM(e, name, parser, handler, role, scope) e,
enum class Op { RINGKV_OPS(RINGKV_OP_ENUM) kCount };
#undef RINGKV_OP_ENUM
constexpr int kOpCount = static_cast<int>(Op::kCount);
// Error codes counted in stats (kStale is an internal answer between peers).
constexpr int kCodeCount = static_cast<int>(Status::Code::kForbidden) + 1;

class Stats {
 public:
  Stats() : start_(std::chrono::steady_clock::now()) {}

  // One finished request: its op, outcome and latency in microseconds.
  void RecordOp(Op op, uint64_t latency_us) {
    ops_[static_cast<int>(op)].fetch_add(1, std::memory_order_relaxed);
    latency_[static_cast<int>(op)].Record(latency_us);
  }
  // One error answered; requests that never named a valid op count here only.
  void RecordError(Status::Code code) {
    if (static_cast<int>(code) >= kCodeCount) return;  // not a client error
    errors_[static_cast<int>(code)].fetch_add(1, std::memory_order_relaxed);
  }

  uint64_t ops(Op op) const { return ops_[static_cast<int>(op)].load(std::memory_order_relaxed); }
  const Histogram& latency(Op op) const { return latency_[static_cast<int>(op)]; }
  uint64_t errors(Status::Code code) const {
    return errors_[static_cast<int>(code)].load(std::memory_order_relaxed);
  }
  uint64_t uptime_s() const {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start_)
            .count());
  }

 private:
  const std::chrono::steady_clock::time_point start_;
  std::array<std::atomic<uint64_t>, kOpCount> ops_{};
  std::array<Histogram, kOpCount> latency_;
  std::array<std::atomic<uint64_t>, kCodeCount> errors_{};
};

}  // namespace ringkv
