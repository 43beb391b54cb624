#include "server/background.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <vector>

namespace ringkv {
namespace {
// The timer's resolution: a deadline expires up to this much late.
constexpr auto kTimerTick = std::chrono::milliseconds(5);
}  // namespace

Background::Background()
    : timer_thread_([this] { TimerLoop(); }), worker_thread_([this] { WorkerLoop(); }) {}

Background::~Background() { Stop(); }

void Background::Stop() {
  {
    std::lock_guard<std::mutex> l(timer_mu_);
    timer_stop_ = true;
  }
  timer_cv_.notify_all();
  {
    std::lock_guard<std::mutex> l(work_mu_);
    work_stop_ = true;
  }
  work_cv_.notify_all();
  if (timer_thread_.joinable()) timer_thread_.join();
  if (worker_thread_.joinable()) worker_thread_.join();
}

void Background::ExpireAfter(uint64_t ms, std::weak_ptr<cluster::Expirable> target) {
  TimePoint due = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  bool wake = false;
  {
    std::lock_guard<std::mutex> l(timer_mu_);
    if (timer_stop_) return;
    auto& fifo = deadlines_[ms];
    // The timer thread sleeps until the earliest front; only a new FIFO can
    // hold an earlier deadline than every existing one.
    wake = fifo.empty();
    fifo.push_back({due, std::move(target)});
    ++deadline_count_;
  }
  if (wake) timer_cv_.notify_one();
}

size_t Background::pending_deadlines() const {
  std::lock_guard<std::mutex> l(timer_mu_);
  return deadline_count_;
}

void Background::TimerLoop() {
  std::unique_lock<std::mutex> l(timer_mu_);
  std::vector<std::shared_ptr<cluster::Expirable>> due;
  while (!timer_stop_) {
    TimePoint now = std::chrono::steady_clock::now();
    TimePoint next = TimePoint::max();
    for (auto it = deadlines_.begin(); it != deadlines_.end();) {
      auto& fifo = it->second;
      while (!fifo.empty() && fifo.front().due <= now) {
        if (auto target = fifo.front().target.lock()) due.push_back(std::move(target));
        fifo.pop_front();
        --deadline_count_;
      }
      if (fifo.empty()) {
        it = deadlines_.erase(it);
      } else {
        next = std::min(next, fifo.front().due);
        ++it;
      }
    }
    if (!due.empty()) {
      l.unlock();
      for (auto& target : due) {
        try {
          target->Expire();
        } catch (const std::exception& e) {
          spdlog::error("[background] a deadline handler threw: {}", e.what());
        }
      }
      due.clear();  // the last references may free rounds: outside the lock
      l.lock();
      continue;
    }
    if (next == TimePoint::max()) {
      timer_cv_.wait(l);
    } else {
      // Deadlines come due one after another (one per request); waking for
      // each would cost a context switch per request. Expire in ticks.
      timer_cv_.wait_until(l, std::max(next, now + kTimerTick));
    }
  }
}

void Background::WorkerLoop() {
  std::unique_lock<std::mutex> l(work_mu_);
  for (;;) {
    work_cv_.wait(l, [this] { return work_stop_ || !work_.empty(); });
    if (work_.empty()) return;  // stopping, and everything queued has run
    std::function<void()> fn = std::move(work_.front());
    work_.pop_front();
    l.unlock();
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("[background] a background task threw: {}", e.what());
    }
    fn = nullptr;
    l.lock();
  }
}

void Background::Run(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> l(work_mu_);
    if (!work_stop_) {
      work_.push_back(std::move(fn));
      fn = nullptr;
    }
  }
  if (fn) {
    fn();  // stopping: the worker may be gone; run it here rather than drop it
    return;
  }
  work_cv_.notify_one();
}

}  // namespace ringkv
