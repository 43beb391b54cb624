// AuthWorker: where `auth` requests are answered, off the I/O threads
// (PROTOCOL.md §11: "password hashing never blocks the node's I/O").
//
// One thread runs submitted functions in order, and functions scheduled with
// After() once their delay has passed: a failed attempt's answer is delayed
// that way (n x 100 ms after the n-th failure on a connection, at most 2 s)
// without holding the thread, so other connections are not slowed.
//
// Submit() is bounded: beyond `max_queued` functions waiting to run it refuses
// (returns false), and the caller answers `overloaded`, so a flood of auth
// attempts costs a bounded queue, not memory.
//
// Shutdown: Stop() (or the destructor) runs what is queued and what is
// scheduled, at once and in order, then joins the thread; later Submit() and
// After() run the function inline.
//
// Thread-safety: every method is safe from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace ringkv::security {

class AuthWorker {
 public:
  explicit AuthWorker(size_t max_queued = 256);
  ~AuthWorker();
  AuthWorker(const AuthWorker&) = delete;
  AuthWorker& operator=(const AuthWorker&) = delete;

  // Runs `fn` on the worker thread; false (fn dropped) if the queue is full.
  bool Submit(std::function<void()> fn);
  // Runs `fn` on the worker thread about `ms` milliseconds from now.
  void After(uint64_t ms, std::function<void()> fn);

  void Stop();

 private:
  void Loop();

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;                                            // by mu_
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> timed_;  // by mu_
  bool stop_ = false;                                                                  // by mu_
  std::thread thread_;
};

}  // namespace ringkv::security
