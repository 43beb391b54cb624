// AtomicRaise: raises an atomic counter to at least a value, never lowering
// it (a compare-and-swap loop that stops as soon as the held value is not
// smaller). Used for watermarks and maxima written by several threads.
#pragma once

#include <atomic>
#include <cstdint>

namespace ringkv {

inline void AtomicRaise(std::atomic<uint64_t>& target, uint64_t value,
                        std::memory_order order = std::memory_order_acq_rel) {
  uint64_t held = target.load(std::memory_order_relaxed);
  while (value > held && !target.compare_exchange_weak(held, value, order)) {
  }
}

}  // namespace ringkv
