// ManualTimer: a cluster::Timer whose deadlines pass only when the test says
// so (Advance), so that deadline behaviour is tested without sleeping.
//
// Thread-safety: for single-threaded tests.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "server/cluster/timer.h"

namespace ringkv::testing {

class ManualTimer final : public cluster::Timer {
 public:
  void ExpireAfter(uint64_t ms, std::weak_ptr<cluster::Expirable> target) override {
    armed_.emplace(now_ + ms, std::move(target));
  }

  // Moves time forward by `ms` and expires every target now due that still
  // exists, earliest first.
  void Advance(uint64_t ms) {
    now_ += ms;
    std::vector<std::shared_ptr<cluster::Expirable>> due;
    while (!armed_.empty() && armed_.begin()->first <= now_) {
      if (auto t = armed_.begin()->second.lock()) due.push_back(std::move(t));
      armed_.erase(armed_.begin());
    }
    for (auto& t : due) t->Expire();
  }

  size_t armed() const { return armed_.size(); }

 private:
  uint64_t now_ = 0;
  std::multimap<uint64_t, std::weak_ptr<cluster::Expirable>> armed_;
};

}  // namespace ringkv::testing
