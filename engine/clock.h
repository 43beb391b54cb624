// Clock: the seam through which all wall-clock time enters RingKV.
//
// Real code uses SystemClock; tests use ManualClock so that TTLs, grace periods
// and the hybrid logical clock can be driven without sleeps.
//
// Thread-safety: both implementations are safe to call from any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace ringkv {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch. May go backwards (NTP steps).
  virtual uint64_t NowMs() const = 0;
};

// The process's real-time clock.
class SystemClock final : public Clock {
 public:
  uint64_t NowMs() const override;
  // A process-wide instance; never destroyed.
  static SystemClock* Default();
};

// A clock that moves only when told to. For tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t start_ms = 1'700'000'000'000ULL) : now_ms_(start_ms) {}
  uint64_t NowMs() const override { return now_ms_.load(std::memory_order_relaxed); }
  void Set(uint64_t ms) { now_ms_.store(ms, std::memory_order_relaxed); }
  void Advance(uint64_t ms) { now_ms_.fetch_add(ms, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> now_ms_;
};

}  // namespace ringkv
