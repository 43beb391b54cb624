// Polling waits for tests: a condition is polled with a deadline, never
// replaced by a sleep, so that a broken component fails a test instead of
// hanging it.
//
// Thread-safety: stateless functions; `condition` runs on the calling thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

namespace ringkv::testutil {

using SteadyClock = std::chrono::steady_clock;

// The default deadline of every wait: far more than a correct component needs
// (so loaded sanitizer builds do not flake), short enough to fail fast.
constexpr std::chrono::milliseconds kWait{5000};

// Milliseconds from `start` to now.
inline int64_t MillisSince(SteadyClock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
}

// Polls `condition` every `poll` until it returns true or `timeout` has passed.
// Returns whether it became true; it is evaluated once more at the deadline.
inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds timeout = kWait,
                    std::chrono::milliseconds poll = std::chrono::milliseconds(1)) {
  const auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

}  // namespace ringkv::testutil
