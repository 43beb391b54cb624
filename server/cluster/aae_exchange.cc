#include "server/cluster/aae_exchange.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace ringkv::cluster {
namespace {

using Outcome = ExchangeResult::Outcome;

// How long to wait before `want` fits a bucket holding `have` that fills at
// `rate` per second. A request above a second's worth needs a full bucket.
uint64_t WaitMs(double have, uint64_t want, uint64_t rate) {
  if (rate == 0) return 0;
  double need = std::min<double>(static_cast<double>(want), static_cast<double>(rate));
  if (have + 1e-9 >= need) return 0;
  return std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil((need - have) * 1000.0 / rate)));
}

// A replica's failure, said with whose it was.
Status Blame(const AaeReplica* replica, const Status& s) {
  return Status::FromCode(s.code(), replica->id() + ": " + s.message());
}

uint64_t ValueBytes(const AaeRecords& records) {
  uint64_t n = 0;
  for (const auto& [key, rec] : records) n += rec.value.size();
  return n;
}

// Collects the answers of the same call made to both sides (0 = local,
// 1 = remote) and runs `then` once with both, after the second answer: the
// exchange never moves on while one of its calls is outstanding, so no late
// answer can touch a later stage. `status` is the first failure (OK if none).
template <typename R>
class Join {
 public:
  using Then = std::function<void(Status, R local, R remote)>;
  explicit Join(Then then) : then_(std::move(then)) {}

  void Answer(int side, const AaeReplica* replica, Status s, R r) {
    std::unique_lock<std::mutex> l(mu_);
    result_[side] = std::move(r);
    if (!s.ok() && status_.ok()) status_ = Blame(replica, s);
    if (--left_ > 0) return;
    l.unlock();
    then_(std::move(status_), std::move(result_[0]), std::move(result_[1]));
  }

 private:
  Then then_;
  std::mutex mu_;
  int left_ = 2;
  Status status_;
  R result_[2];
};

// What both kinds of job share: waits on the timer (the pauses and the
// budget). The timer holds its target weakly and the job does not hold
// itself: the caller of RunExchange()/RunPull() keeps it alive until done.
// A job dropped while waiting (a node shutting down) is freed, not leaked.
class Job : public Expirable, public std::enable_shared_from_this<Job> {
 public:
  Job(Timer* timer, RepairBudget* budget, NowFn now)
      : timer_(timer), budget_(budget), now_(std::move(now)) {}

  void Expire() override {
    std::function<void()> next;
    {
      std::lock_guard<std::mutex> l(mu_);
      next = std::move(after_wait_);
    }
    if (next) next();
  }

 protected:
  // Runs `next` after `ms` on the timer.
  void Wait(uint64_t ms, std::function<void()> next) {
    {
      std::lock_guard<std::mutex> l(mu_);
      after_wait_ = std::move(next);
    }
    timer_->ExpireAfter(ms, weak_from_this());
  }

  // Takes `keys` and `bytes` from the budget, waiting as long as it says,
  // then runs `next`.
  void Take(uint64_t keys, uint64_t bytes, std::function<void()> next) {
    uint64_t wait = budget_->TryTake(now_(), keys, bytes);
    if (wait == 0) return next();
    Wait(wait, [this, keys, bytes, next = std::move(next)]() mutable {
      Take(keys, bytes, std::move(next));
    });
  }

  template <typename T>
  std::shared_ptr<T> Self() {
    return std::static_pointer_cast<T>(shared_from_this());
  }

 private:
  Timer* timer_;
  RepairBudget* budget_;
  NowFn now_;
  // mu_ protects the following.
  std::mutex mu_;
  std::function<void()> after_wait_;
};

// The keys listed by one side.
struct Listing {
  std::vector<aae::KeyVersion> keys;
  bool truncated = false;
};

// One exchange (the header's steps 1-5). The stages run one after another;
// each callback holds the exchange alive until it has run.
class Exchange final : public Job {
 public:
  Exchange(AaeReplica* local, AaeReplica* remote, uint32_t partition, ExchangeOptions options,
           Timer* timer, RepairBudget* budget, NowFn now, ExchangeDone done)
      : Job(timer, budget, std::move(now)),
        side_{local, remote},
        partition_(partition),
        options_(std::move(options)),
        done_(std::move(done)) {}

  void Start() { CompareRoots(false); }

 private:
  // Steps 1-2: roots, then after the pause, roots again.
  void CompareRoots(bool confirm) {
    auto self = Self<Exchange>();
    auto join = std::make_shared<Join<AaeRoot>>(
        [self, confirm](Status s, AaeRoot a, AaeRoot b) { self->OnRoots(confirm, s, a, b); });
    for (int i = 0; i < 2; ++i) {
      side_[i]->Root(partition_, [join, i, r = side_[i]](Status s, AaeRoot root) {
        join->Answer(i, r, std::move(s), root);
      });
    }
  }

  void OnRoots(bool confirm, const Status& s, const AaeRoot& a, const AaeRoot& b) {
    if (!s.ok()) return Fail(s);
    if (a.watermark != b.watermark)
      return RaiseWatermark(a.watermark < b.watermark ? 0 : 1, std::max(a.watermark, b.watermark));
    std::vector<uint32_t> differing;
    for (uint32_t i = 0; i < aae::kBranches; ++i) {
      if (a.branches[i] != b.branches[i]) differing.push_back(i);
    }
    if (confirm) differing = Intersect(branches_, differing);
    if (differing.empty()) return Finish();
    branches_ = std::move(differing);
    if (!confirm) return Wait(options_.pause_ms, [this] { CompareRoots(true); });
    CompareBranches(branches_, false);
  }

  // Step 3: the segments of the differing branches, twice. The confirmation
  // asks again only for the branches holding a segment that differed.
  void CompareBranches(std::vector<uint32_t> branches, bool confirm) {
    auto self = Self<Exchange>();
    using Segs = std::vector<AaeSegments>;
    auto join = std::make_shared<Join<Segs>>([self, branches, confirm](Status s, Segs a, Segs b) {
      self->OnBranches(branches, confirm, s, a, b);
    });
    for (int i = 0; i < 2; ++i) {
      side_[i]->Branches(partition_, branches, [join, i, r = side_[i]](Status s, Segs segs) {
        join->Answer(i, r, std::move(s), std::move(segs));
      });
    }
  }

  void OnBranches(const std::vector<uint32_t>& branches, bool confirm, const Status& s,
                  const std::vector<AaeSegments>& a, const std::vector<AaeSegments>& b) {
    if (!s.ok()) return Fail(s);
    if (a.size() != branches.size() || b.size() != branches.size()) {
      return Fail(Status::Internal("asked for " + std::to_string(branches.size()) +
                                   " branches, got " + std::to_string(a.size()) + " and " +
                                   std::to_string(b.size())));
    }
    std::vector<uint32_t> differing;  // ascending: branches are
    for (size_t i = 0; i < branches.size(); ++i) {
      for (uint32_t j = 0; j < aae::kSegmentsPerBranch; ++j) {
        if (a[i][j] != b[i][j]) differing.push_back(branches[i] * aae::kSegmentsPerBranch + j);
      }
    }
    if (confirm) differing = Intersect(segments_, differing);
    if (differing.empty()) return Finish();
    segments_ = std::move(differing);
    if (!confirm) {
      std::vector<uint32_t> again;
      for (uint32_t seg : segments_) {
        if (again.empty() || again.back() != aae::BranchOf(seg))
          again.push_back(aae::BranchOf(seg));
      }
      return Wait(options_.pause_ms,
                  [this, again = std::move(again)] { CompareBranches(again, true); });
    }
    result_.segments_differing = static_cast<uint32_t>(segments_.size());
    // The lowest ids: close together, so a store keyed by segment lists them
    // in one short range.
    if (segments_.size() > options_.max_segments) {
      segments_.resize(options_.max_segments);
      result_.incomplete = true;
    }
    ListKeys();
  }

  // Step 4: both sides list the keys of the differing segments.
  void ListKeys() {
    auto self = Self<Exchange>();
    auto join = std::make_shared<Join<Listing>>(
        [self](Status s, Listing a, Listing b) { self->OnKeys(s, a, b); });
    for (int i = 0; i < 2; ++i) {
      side_[i]->Keys(
          partition_, segments_, options_.max_keys,
          [join, i, r = side_[i]](Status s, std::vector<aae::KeyVersion> keys, bool truncated) {
            join->Answer(i, r, std::move(s), Listing{std::move(keys), truncated});
          });
    }
  }

  // Step 5's diff. A key listed by one side only is missing on the other.
  // With a truncated listing, a key may look missing on the side that cut
  // its list short while it holds it: pushing the record there anyway is
  // harmless (the write is last-writer-wins) and the result is incomplete.
  void OnKeys(const Status& s, const Listing& a, const Listing& b) {
    if (!s.ok()) return Fail(s);
    result_.keys_listed = a.keys.size() + b.keys.size();
    if (a.truncated || b.truncated) result_.incomplete = true;
    std::map<std::string_view, std::pair<const Record*, const Record*>> both;
    for (const auto& kv : a.keys) both[kv.key].first = &kv.meta;
    for (const auto& kv : b.keys) both[kv.key].second = &kv.meta;
    for (const auto& [key, pair] : both) {
      const auto [l, r] = pair;
      if (l != nullptr && r != nullptr && l->version == r->version) {
        ++result_.false_deltas;
        continue;
      }
      bool local_newer = r == nullptr || (l != nullptr && (l->version <=> r->version) > 0);
      const Record* newest = local_newer ? l : r;
      // What a watermark round asks: the newest version of a differing key
      // is what replicas must agree on below the watermark.
      result_.oldest_difference_hlc = std::min(result_.oldest_difference_hlc, newest->version.hlc);
      (local_newer ? push_ : pull_).emplace_back(key);
    }
    Repair(0, 0);
  }

  // Step 5's repair: batch `index` of direction `from` (0: local -> remote,
  // 1: remote -> local): fetch from the side that has the newest, take the
  // budget, put to the other.
  void Repair(int from, size_t index) {
    const std::vector<std::string>& keys = from == 0 ? push_ : pull_;
    if (index >= keys.size()) {
      if (from == 0) return Repair(1, 0);
      return Finish();
    }
    size_t end = std::min(keys.size(), index + std::max<size_t>(1, options_.batch_keys));
    std::vector<std::string> batch(keys.begin() + index, keys.begin() + end);
    auto self = Self<Exchange>();
    side_[from]->Fetch(partition_, std::move(batch), [self, from, end](Status s, AaeRecords recs) {
      self->OnFetched(from, end, std::move(s), std::move(recs));
    });
  }

  void OnFetched(int from, size_t next, Status s, AaeRecords records) {
    if (!s.ok()) return Fail(Blame(side_[from], s));
    if (records.empty()) return Repair(from, next);
    uint64_t n = records.size(), bytes = ValueBytes(records);
    auto put = [this, from, next, n, bytes, records = std::move(records)]() mutable {
      auto self = Self<Exchange>();
      side_[1 - from]->Put(partition_, std::move(records), [self, from, next, n, bytes](Status ps) {
        if (!ps.ok()) return self->Fail(Blame(self->side_[1 - from], ps));
        (from == 0 ? self->result_.keys_pushed : self->result_.keys_pulled) += n;
        self->result_.bytes_repaired += bytes;
        self->Repair(from, next);
      });
    };
    Take(n, bytes, std::move(put));
  }

  // Step 1's other ending: the lower side takes the higher watermark.
  void RaiseWatermark(int lower, uint64_t watermark) {
    auto self = Self<Exchange>();
    side_[lower]->RaiseWatermark(partition_, watermark, [self, lower](Status s) {
      if (!s.ok()) return self->Fail(Blame(self->side_[lower], s));
      self->result_.outcome = Outcome::kWatermarkRaised;
      self->Done();
    });
  }

  static std::vector<uint32_t> Intersect(const std::vector<uint32_t>& a,
                                         const std::vector<uint32_t>& b) {
    std::vector<uint32_t> out;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
    return out;
  }

  void Finish() {
    result_.outcome =
        result_.keys_pushed + result_.keys_pulled > 0 ? Outcome::kRepaired : Outcome::kInSync;
    Done();
  }
  void Fail(Status s) {
    result_.outcome = Outcome::kFailed;
    result_.status = std::move(s);
    Done();
  }
  void Done() {
    assert(done_);
    auto done = std::move(done_);
    done_ = nullptr;
    done(std::move(result_));
  }

  AaeReplica* const side_[2];
  const uint32_t partition_;
  const ExchangeOptions options_;
  ExchangeDone done_;
  // Touched by one stage at a time (each stage starts from the previous
  // one's callback, after a Join's lock or the timer's hand-off).
  ExchangeResult result_;
  std::vector<uint32_t> branches_;  // differing (at the compare, then confirmed)
  std::vector<uint32_t> segments_;  // likewise
  std::vector<std::string> push_, pull_;
};

// A rebuild's bulk pull: Scan pages of the source, Put them to the target.
class Pull final : public Job {
 public:
  Pull(AaeReplica* source, AaeReplica* target, uint32_t partition, ExchangeOptions options,
       Timer* timer, RepairBudget* budget, NowFn now, std::function<void(PullResult)> done)
      : Job(timer, budget, std::move(now)),
        source_(source),
        target_(target),
        partition_(partition),
        options_(std::move(options)),
        done_(std::move(done)) {}

  void Page(std::string after) {
    auto self = Self<Pull>();
    source_->Scan(partition_, after, std::max<size_t>(1, options_.page_keys), options_.page_bytes,
                  [self, after](Status s, AaeRecords recs, std::string next) {
                    self->OnPage(after, std::move(s), std::move(recs), std::move(next));
                  });
  }

 private:
  void OnPage(const std::string& after, Status s, AaeRecords records, std::string next) {
    if (!s.ok()) return Finish(Blame(source_, s));
    if (records.empty()) return Finish(Status::OK());
    // A scan that does not move forward would loop for ever.
    if (!next.empty() && next <= after) {
      return Finish(
          Status::Internal(source_->id() + ": scan did not advance past '" + after + "'"));
    }
    uint64_t n = records.size(), bytes = ValueBytes(records);
    auto put = [this, n, bytes, records = std::move(records), next = std::move(next)]() mutable {
      auto self = Self<Pull>();
      target_->Put(partition_, std::move(records), [self, n, bytes, next](Status ps) {
        if (!ps.ok()) return self->Finish(Blame(self->target_, ps));
        self->result_.records += n;
        self->result_.bytes += bytes;
        if (next.empty()) return self->Finish(Status::OK());
        self->Page(next);
      });
    };
    Take(n, bytes, std::move(put));
  }

  void Finish(Status s) {
    result_.status = std::move(s);
    auto done = std::move(done_);
    done_ = nullptr;
    done(std::move(result_));
  }

  AaeReplica* const source_;
  AaeReplica* const target_;
  const uint32_t partition_;
  const ExchangeOptions options_;
  std::function<void(PullResult)> done_;
  PullResult result_;
};

}  // namespace

RepairBudget::RepairBudget(uint64_t keys_per_s, uint64_t bytes_per_s)
    : keys_per_s_(keys_per_s), bytes_per_s_(bytes_per_s) {}

uint64_t RepairBudget::TryTake(uint64_t now_ms, uint64_t keys, uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  // Buckets start full and hold at most a second's worth.
  if (!started_) {
    started_ = true;
    last_ms_ = now_ms;
    keys_ = static_cast<double>(keys_per_s_);
    bytes_ = static_cast<double>(bytes_per_s_);
  }
  if (now_ms > last_ms_) {
    double elapsed = static_cast<double>(now_ms - last_ms_);
    keys_ = std::min<double>(keys_per_s_, keys_ + elapsed * keys_per_s_ / 1000.0);
    bytes_ = std::min<double>(bytes_per_s_, bytes_ + elapsed * bytes_per_s_ / 1000.0);
    last_ms_ = now_ms;
  }
  uint64_t wait = std::max(WaitMs(keys_, keys, keys_per_s_), WaitMs(bytes_, bytes, bytes_per_s_));
  if (wait > 0) return wait;
  // A grant above a second's worth leaves the bucket in debt, so the rate
  // holds over time.
  if (keys_per_s_ != 0) keys_ -= static_cast<double>(keys);
  if (bytes_per_s_ != 0) bytes_ -= static_cast<double>(bytes);
  return 0;
}

const char* OutcomeName(ExchangeResult::Outcome outcome) {
  switch (outcome) {
    case Outcome::kInSync:
      return "in_sync";
    case Outcome::kRepaired:
      return "repaired";
    case Outcome::kWatermarkRaised:
      return "watermark_raised";
    case Outcome::kFailed:
      return "failed";
  }
  return "failed";
}

std::shared_ptr<void> RunExchange(AaeReplica* local, AaeReplica* remote, uint32_t partition,
                                  const ExchangeOptions& options, Timer* timer,
                                  RepairBudget* budget, NowFn now, ExchangeDone done) {
  auto exchange = std::make_shared<Exchange>(local, remote, partition, options, timer, budget,
                                             std::move(now), std::move(done));
  exchange->Start();
  return exchange;
}

std::shared_ptr<void> RunPull(AaeReplica* source, AaeReplica* target, uint32_t partition,
                              const ExchangeOptions& options, Timer* timer, RepairBudget* budget,
                              NowFn now, std::function<void(PullResult)> done) {
  auto pull = std::make_shared<Pull>(source, target, partition, options, timer, budget,
                                     std::move(now), std::move(done));
  pull->Page("");
  return pull;
}

}  // namespace ringkv::cluster
