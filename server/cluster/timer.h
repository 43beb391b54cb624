// Timer and Executor: the seams through which the cluster logic schedules
// work for later and hands blocking work off the thread it was called on.
//
// The cluster layer stays free of asio and of threads of its own: kvd plugs
// in server/background.h (one timer thread, one worker thread); unit tests
// plug in ManualTimer (fires when the test advances it) and InlineExecutor.
//
// Thread-safety: implementations are safe to call from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace ringkv::cluster {

// Something with a deadline: a coordinator round. Expire() runs once the
// deadline has passed, unless the object is gone by then (timers hold it only
// weakly, so a round that finished on time is freed at once).
class Expirable {
 public:
  virtual ~Expirable() = default;
  virtual void Expire() = 0;
};

class Timer {
 public:
  virtual ~Timer() = default;
  // Calls target->Expire() about `ms` milliseconds from now, on a thread of
  // the timer's choosing, if `target` still exists then.
  virtual void ExpireAfter(uint64_t ms, std::weak_ptr<Expirable> target) = 0;
};

class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `fn` later, in the order given, on a thread that may block on
  // storage (never an I/O thread).
  virtual void Run(std::function<void()> fn) = 0;
};

// Runs each function at once, on the caller's thread. For tests and for a
// caller that is already off the I/O threads.
class InlineExecutor final : public Executor {
 public:
  void Run(std::function<void()> fn) override { fn(); }
};

}  // namespace ringkv::cluster
