// FakeAaeReplica: one replica's side of anti-entropy in memory, behind
// cluster::AaeReplica, for the exchange and scheduler tests.
//
// Per partition a replica holds a std::map of records merged
// last-writer-wins and a GC watermark; its tree is computed from the map on
// every call as the store defines it (EntryHash, SegmentOfKey, records
// IsGcEligible() under the watermark left out).
//
// A mode decides what a call does: served at once (kServe); failed with
// Internal (kFail, a disk error); answered Timeout once the fake's
// ManualTimer passes `timeout_ms` (kDrop: a lost request, which the real
// peer transport ends with its own deadline); held until the test calls
// Release() (kHold, to delay and reorder). `only` limits the mode to the
// named methods ("Root", "Branches", "Keys", "Fetch", "Scan", "Put",
// "RaiseWatermark"); the others are served. `lose_puts` makes Put answer OK
// and keep nothing. `before_call` runs before each
// served call (e.g. to land an in-flight write between a compare and its
// confirmation). Every call is counted by method.
//
// Thread-safety: for single-threaded tests; callbacks run inline, on
// Release(), or on the timer's Advance().
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/aae_tree.h"
#include "server/cluster/aae_replica.h"
#include "tests/fakes/manual_timer.h"

namespace ringkv::testing {

class FakeAaeReplica final : public cluster::AaeReplica {
 public:
  enum class Mode { kServe, kFail, kDrop, kHold };

  struct Partition {
    std::map<std::string, Record> data;
    uint64_t watermark = 0;
  };

  // `timer` is needed only for kDrop.
  explicit FakeAaeReplica(std::string id, ManualTimer* timer = nullptr)
      : id_(std::move(id)), timer_(timer) {}

  const std::string& id() const override { return id_; }

  void SetMode(Mode mode, std::set<std::string> only = {}) {
    mode_ = mode;
    only_ = std::move(only);
  }
  uint64_t timeout_ms = 1000;
  std::function<void(const std::string& method)> before_call;
  // Put answers OK and keeps nothing (a disk that loses writes).
  bool lose_puts = false;

  // ---- Test access to the data ----
  // Merges `rec` last-writer-wins (as a replica write).
  void Apply(uint32_t p, const std::string& key, const Record& rec) {
    auto& data = parts_[p].data;
    auto it = data.find(key);
    if (it == data.end() || it->second.version < rec.version) data[key] = rec;
  }
  // Replaces or removes a record outright (divergence injected on disk).
  void Set(uint32_t p, const std::string& key, const Record& rec) { parts_[p].data[key] = rec; }
  void Erase(uint32_t p, const std::string& key) { parts_[p].data.erase(key); }
  Partition& part(uint32_t p) { return parts_[p]; }
  const Record* Get(uint32_t p, const std::string& key) {
    auto& data = parts_[p].data;
    auto it = data.find(key);
    return it == data.end() ? nullptr : &it->second;
  }
  uint64_t watermark(uint32_t p) { return parts_[p].watermark; }

  aae::Tree Tree(uint32_t p) {
    aae::Tree t;
    const Partition& part = parts_[p];
    for (const auto& [key, rec] : part.data) {
      if (aae::IsGcEligible(rec, part.watermark)) continue;
      t.Toggle(aae::SegmentOfKey(key), aae::EntryHash(key, Meta(rec)));
    }
    return t;
  }
  // The records a read would see, GC-eligible ones left out (what two
  // replicas must agree on).
  std::map<std::string, Record> Visible(uint32_t p) {
    std::map<std::string, Record> out;
    for (const auto& [key, rec] : parts_[p].data) {
      if (!aae::IsGcEligible(rec, parts_[p].watermark)) out.emplace(key, rec);
    }
    return out;
  }

  int calls(const std::string& method) { return calls_[method]; }
  int records_put() const { return records_put_; }
  size_t held() const { return held_.size(); }
  // Serves the held calls, oldest first (calls made meanwhile are held too
  // if the mode is still kHold).
  void Release() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& h : held) h.serve();
  }

  // ---- cluster::AaeReplica ----
  void Root(uint32_t p, RootDone done) override {
    Run(
        "Root",
        [this, p, done] {
          cluster::AaeRoot root;
          root.watermark = parts_[p].watermark;
          root.branches = Tree(p).branches();
          done(Status::OK(), root);
        },
        [done](Status s) { done(s, cluster::AaeRoot()); });
  }
  void Branches(uint32_t p, std::vector<uint32_t> branches, BranchesDone done) override {
    Run(
        "Branches",
        [this, p, branches, done] {
          aae::Tree t = Tree(p);
          std::vector<cluster::AaeSegments> out;
          for (uint32_t b : branches) out.push_back(t.BranchSegments(b));
          done(Status::OK(), std::move(out));
        },
        [done](Status s) { done(s, {}); });
  }
  void Keys(uint32_t p, std::vector<uint32_t> segments, size_t limit, KeysDone done) override {
    Run(
        "Keys",
        [this, p, segments, limit, done] {
          std::set<uint32_t> want(segments.begin(), segments.end());
          std::vector<aae::KeyVersion> out;
          bool truncated = false;
          for (const auto& [key, rec] : parts_[p].data) {
            if (aae::IsGcEligible(rec, parts_[p].watermark)) continue;
            if (want.count(aae::SegmentOfKey(key)) == 0) continue;
            if (out.size() == limit) {
              truncated = true;
              break;
            }
            out.push_back({key, Meta(rec)});
          }
          done(Status::OK(), std::move(out), truncated);
        },
        [done](Status s) { done(s, {}, false); });
  }
  void Fetch(uint32_t p, std::vector<std::string> keys, RecordsDone done) override {
    Run(
        "Fetch",
        [this, p, keys, done] {
          cluster::AaeRecords out;
          for (const std::string& k : keys) {
            if (const Record* r = Get(p, k)) out.emplace_back(k, *r);
          }
          done(Status::OK(), std::move(out));
        },
        [done](Status s) { done(s, {}); });
  }
  void Scan(uint32_t p, std::string after, size_t limit_keys, size_t limit_bytes,
            ScanDone done) override {
    Run(
        "Scan",
        [this, p, after, limit_keys, limit_bytes, done] {
          cluster::AaeRecords out;
          size_t bytes = 0;
          const Partition& part = parts_[p];
          auto it = after.empty() ? part.data.begin() : part.data.upper_bound(after);
          for (; it != part.data.end(); ++it) {
            if (out.size() >= limit_keys || bytes >= limit_bytes) break;
            if (aae::IsGcEligible(it->second, part.watermark)) continue;
            out.emplace_back(it->first, it->second);
            bytes += it->second.value.size();
          }
          std::string next = it == part.data.end() || out.empty() ? "" : out.back().first;
          done(Status::OK(), std::move(out), std::move(next));
        },
        [done](Status s) { done(s, {}, ""); });
  }
  void Put(uint32_t p, cluster::AaeRecords records, Done done) override {
    Run(
        "Put",
        [this, p, records, done] {
          if (!lose_puts) {
            for (const auto& [k, r] : records) Apply(p, k, r);
          }
          records_put_ += static_cast<int>(records.size());
          done(Status::OK());
        },
        [done](Status s) { done(s); });
  }
  void RaiseWatermark(uint32_t p, uint64_t w, Done done) override {
    Run(
        "RaiseWatermark",
        [this, p, w, done] {
          parts_[p].watermark = std::max(parts_[p].watermark, w);
          done(Status::OK());
        },
        [done](Status s) { done(s); });
  }

 private:
  // Fails a dropped call when the timer passes its deadline.
  struct Deadline final : cluster::Expirable {
    std::function<void(Status)> fail;
    void Expire() override { fail(Status::Timeout("fake: no reply")); }
  };
  struct Held {
    std::function<void()> serve;
  };

  static Record Meta(const Record& r) {
    Record m = r;
    m.value.clear();
    return m;
  }

  void Run(const std::string& method, std::function<void()> serve,
           std::function<void(Status)> fail) {
    ++calls_[method];
    Mode mode = only_.empty() || only_.count(method) > 0 ? mode_ : Mode::kServe;
    switch (mode) {
      case Mode::kServe:
        if (before_call) before_call(method);
        return serve();
      case Mode::kFail:
        return fail(Status::Internal("fake: disk error"));
      case Mode::kDrop: {
        auto d = std::make_shared<Deadline>();
        d->fail = std::move(fail);
        deadlines_.push_back(d);
        timer_->ExpireAfter(timeout_ms, d);
        return;
      }
      case Mode::kHold:
        held_.push_back({[this, method, serve = std::move(serve)] {
          if (before_call) before_call(method);
          serve();
        }});
        return;
    }
  }

  const std::string id_;
  ManualTimer* timer_;
  Mode mode_ = Mode::kServe;
  std::set<std::string> only_;
  std::map<uint32_t, Partition> parts_;
  std::map<std::string, int> calls_;
  std::vector<std::shared_ptr<Deadline>> deadlines_;
  std::deque<Held> held_;
  int records_put_ = 0;
};

// Test values: a record stamped (physical ms, node).
inline Record MakeRec(uint64_t physical_ms, const std::string& node, std::string value,
                      bool tombstone = false) {
  Record r;
  r.version = {MakeHlc(physical_ms, 0), node};
  r.tombstone = tombstone;
  if (!tombstone) r.value = std::move(value);
  return r;
}

}  // namespace ringkv::testing
