// Lifeline and Gate: how AntiEntropy (anti_entropy.cc) stops while a job
// is still in flight. Internal to the scheduler; not an interface.
//
// Thread-safety: both are safe to use from any thread.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server/cluster/aae_replica.h"

namespace ringkv::cluster::aae_internal {

// What Stop() waits for: calls out to what the owner supplied (replicas,
// callbacks, state store) that are under way. Once closed, no new one
// starts, so after Stop() returns nothing the owner gave is touched again.
class Lifeline {
 public:
  bool Enter() {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return false;
    ++active_;
    return true;
  }
  void Leave() {
    std::lock_guard<std::mutex> l(mu_);
    if (--active_ == 0) cv_.notify_all();
  }
  void Close() {
    std::unique_lock<std::mutex> l(mu_);
    closed_ = true;
    cv_.wait(l, [this] { return active_ == 0; });
  }
  bool closed() {
    std::lock_guard<std::mutex> l(mu_);
    return closed_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
  bool closed_ = false;
};

// Scoped Enter/Leave; false when the lifeline is closed.
class Entry {
 public:
  explicit Entry(Lifeline* l) : l_(l), in_(l->Enter()) {}
  ~Entry() {
    if (in_) l_->Leave();
  }
  explicit operator bool() const { return in_; }

 private:
  Lifeline* l_;
  bool in_;
};

inline Status Stopped() { return Status::Unavailable("anti-entropy stopped"); }

// The replica as a job sees it: forwards each call while the scheduler runs
// and answers Unavailable once it stopped, so a job still in flight after
// Stop() ends at its next call without touching the replica.
class Gate final : public AaeReplica {
 public:
  Gate(AaeReplica* target, std::shared_ptr<Lifeline> life)
      : target_(target), life_(std::move(life)), id_(target->id()) {}

  const std::string& id() const override { return id_; }
  void Root(uint32_t p, RootDone done) override {
    Entry e(life_.get());
    if (!e) return done(Stopped(), AaeRoot());
    target_->Root(p, std::move(done));
  }
  void Branches(uint32_t p, std::vector<uint32_t> b, BranchesDone done) override {
    Entry e(life_.get());
    if (!e) return done(Stopped(), {});
    target_->Branches(p, std::move(b), std::move(done));
  }
  void Keys(uint32_t p, std::vector<uint32_t> s, size_t limit, KeysDone done) override {
    Entry e(life_.get());
    if (!e) return done(Stopped(), {}, false);
    target_->Keys(p, std::move(s), limit, std::move(done));
  }
  void Fetch(uint32_t p, std::vector<std::string> keys, RecordsDone done) override {
    Entry e(life_.get());
    if (!e) return done(Stopped(), {});
    target_->Fetch(p, std::move(keys), std::move(done));
  }
  void Scan(uint32_t p, std::string after, size_t keys, size_t bytes, ScanDone done) override {
    Entry e(life_.get());
    if (!e) return done(Stopped(), {}, "");
    target_->Scan(p, std::move(after), keys, bytes, std::move(done));
  }
  void Put(uint32_t p, AaeRecords records, Done done) override {
    Entry e(life_.get());
    if (!e) return done(Stopped());
    target_->Put(p, std::move(records), std::move(done));
  }
  void RaiseWatermark(uint32_t p, uint64_t w, Done done) override {
    Entry e(life_.get());
    if (!e) return done(Stopped());
    target_->RaiseWatermark(p, w, std::move(done));
  }

 private:
  AaeReplica* target_;
  std::shared_ptr<Lifeline> life_;
  const std::string id_;
};

}  // namespace ringkv::cluster::aae_internal
