#include "server/security/auth_worker.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <utility>
#include <vector>

namespace ringkv::security {
namespace {

void RunLogged(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    spdlog::error("[auth] a task threw: {}", e.what());
  } catch (...) {
    spdlog::error("[auth] a task threw");
  }
}

}  // namespace

AuthWorker::AuthWorker(size_t max_queued) : max_queued_(max_queued) {
  thread_ = std::thread([this] { Loop(); });
}

AuthWorker::~AuthWorker() { Stop(); }

bool AuthWorker::Submit(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) {
      if (queue_.size() >= max_queued_) return false;
      queue_.push_back(std::move(fn));
      cv_.notify_one();
      return true;
    }
  }
  RunLogged(fn);
  return true;
}

void AuthWorker::After(uint64_t ms, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) {
      timed_.emplace(std::chrono::steady_clock::now() + std::chrono::milliseconds(ms),
                     std::move(fn));
      cv_.notify_one();
      return;
    }
  }
  RunLogged(fn);
}

void AuthWorker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void AuthWorker::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    std::function<void()> fn;
    if (!timed_.empty() && (stop_ || timed_.begin()->first <= now)) {
      fn = std::move(timed_.begin()->second);
      timed_.erase(timed_.begin());
    } else if (!queue_.empty()) {
      fn = std::move(queue_.front());
      queue_.pop_front();
    } else if (stop_) {
      return;
    } else if (!timed_.empty()) {
      cv_.wait_until(lock, timed_.begin()->first);
      continue;
    } else {
      cv_.wait(lock);
      continue;
    }
    lock.unlock();
    RunLogged(fn);
    lock.lock();
  }
}

}  // namespace ringkv::security
