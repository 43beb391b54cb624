// Background: kvd's implementation of the cluster layer's Timer and Executor
// seams (server/cluster/timer.h): one timer thread and one worker thread.
//
// Timer: deadlines are kept in one FIFO per delay value. Nearly every
// deadline a node arms uses the same few delays (the request timeouts), and
// within one delay deadlines come due in the order they were armed, so arming
// is a push_back and expiring a pop_front, where a heap would cost a log-n
// sift per request and hold every entry until it came due in order anyway.
// The timer thread wakes at most every 5 ms while deadlines are armed, and
// expires everything due then (a deadline may pass up to 5 ms late), rather
// than once per request. Entries hold their target weakly: a round answered on time is freed at
// once, and its entry is dropped without a call when it comes due.
//
// Executor: functions run in order on one worker thread, which may block on
// storage (hint scans and deletes, local repair writes). Its queue is not
// bounded here; its callers bound what they submit (one hint batch in flight
// per target; repairs follow reads that are already bounded per connection).
//
// Shutdown: Stop() (or the destructor) drops the deadlines not yet due, runs
// the functions already queued, and joins both threads.
//
// Thread-safety: every method is safe from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "server/cluster/timer.h"

namespace ringkv {

class Background final : public cluster::Timer, public cluster::Executor {
 public:
  Background();
  ~Background() override;
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  void ExpireAfter(uint64_t ms, std::weak_ptr<cluster::Expirable> target) override;
  void Run(std::function<void()> fn) override;

  // Idempotent; see the header comment.
  void Stop();

  // Deadlines armed and not yet due or dropped (for tests and stats).
  size_t pending_deadlines() const;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Deadline {
    TimePoint due;
    std::weak_ptr<cluster::Expirable> target;
  };
  void TimerLoop();
  void WorkerLoop();

  // timer_mu_ protects the following.
  mutable std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  std::map<uint64_t, std::deque<Deadline>> deadlines_;  // by delay in ms
  size_t deadline_count_ = 0;
  bool timer_stop_ = false;

  // work_mu_ protects the following.
  std::mutex work_mu_;
  std::condition_variable work_cv_;
  std::deque<std::function<void()>> work_;
  bool work_stop_ = false;

  std::thread timer_thread_;
  std::thread worker_thread_;
};

}  // namespace ringkv
