#include "server/cluster/anti_entropy.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <sstream>

#include "server/cluster/aae_gate.h"

namespace ringkv::cluster {
namespace {

using aae_internal::Entry;
using aae_internal::Gate;
using aae_internal::Lifeline;
using aae_internal::Stopped;
using Outcome = ExchangeResult::Outcome;

// The rebuild state in the AaeStateStore: kRebuildFlag holds the number of
// partitions the rebuild began with ("" or absent: no rebuild), and
// "aae_rebuild/<p>" the peers partition p still waits for, comma-separated
// (node ids never hold a comma). BeginRebuild writes the partitions first
// and the flag last: the flag is the commit point.
constexpr char kRebuildFlag[] = "aae_rebuild";
std::string RebuildKey(uint32_t p) { return std::string(kRebuildFlag) + "/" + std::to_string(p); }

std::string JoinIds(const std::set<std::string>& ids) {
  std::string out;
  for (const std::string& id : ids) out += (out.empty() ? "" : ",") + id;
  return out;
}
std::set<std::string> SplitIds(const std::string& text) {
  std::set<std::string> out;
  std::stringstream in(text);
  std::string id;
  while (std::getline(in, id, ',')) {
    if (!id.empty()) out.insert(id);
  }
  return out;
}

}  // namespace

class AntiEntropy::Impl final : public std::enable_shared_from_this<Impl> {
 public:
  Impl(AntiEntropyOptions options, uint32_t partitions, PreferenceFn preference, IsUpFn is_up,
       ReplicaFn replica, Timer* timer, NowFn now, HybridClock* hlc, AaeStateStore* state,
       BusyFn busy)
      : options_(std::move(options)),
        partitions_(partitions),
        preference_(std::move(preference)),
        is_up_(std::move(is_up)),
        replica_(std::move(replica)),
        timer_(timer),
        now_(std::move(now)),
        hlc_(hlc),
        state_(state),
        busy_(std::move(busy)),
        budget_(options_.repair_keys_per_s, options_.repair_bytes_per_s),
        rng_(options_.seed) {}

  Status Start();
  void Stop();
  Status BeginRebuild();
  bool IsRebuilding(uint32_t partition) const;
  bool Tick(bool forced);
  AaeStatus Snapshot() const;

 private:
  // The tick (re-arms itself) and the kick (starts the next rebuild job at
  // once). The timer holds them weakly; they hold the scheduler weakly.
  struct Alarm final : Expirable {
    std::weak_ptr<Impl> impl;
    bool kick = false;
    void Expire() override {
      if (auto i = impl.lock()) i->OnAlarm(kick);
    }
  };
  // A watermark round this node leads (anti_entropy.h).
  struct Round {
    uint64_t t0 = 0;
    std::set<std::string> confirmed;
  };
  struct PartState {
    std::map<std::string, AaePeerStatus> peers;
    uint64_t last_in_sync_ms = 0;
    uint64_t watermark = 0;  // the highest this scheduler raised it to
    std::optional<Round> round;
  };
  // One running job and what its callbacks need.
  struct Job {
    uint32_t partition = 0;
    std::string peer;
    std::vector<std::string> replicas;  // the partition's, owner first
    bool rebuild = false;
    bool retried = false;    // a rebuild's exchange ran again after a watermark raise
    uint64_t start_hlc = 0;  // when its exchange started
    std::unique_ptr<Gate> local, remote;
  };
  using Replicated = std::vector<std::pair<uint32_t, std::vector<std::string>>>;

  void OnAlarm(bool kick);
  void ArmTick();
  void Kick();
  Replicated ReplicatedPartitions() const;
  // Raises the watermarks that need no confirmation (N = 1; exchanges off).
  void RaiseUnconfirmed(const Replicated& parts);
  // Drops the confirmations of peers that are down now.
  void ForgetDownPeers();
  std::optional<std::pair<uint32_t, std::string>> PickRebuild();
  std::optional<std::pair<uint32_t, std::string>> PickExchange();
  // Tries to start a job (only a rebuild one if `rebuild_only`); clears
  // job_running_ if none starts. REQUIRES: job_running_ reserved by the caller.
  void StartJob(bool rebuild_only);
  void RunJobExchange(const std::shared_ptr<Job>& job);
  void OnPulled(const std::shared_ptr<Job>& job, const PullResult& r);
  void OnExchanged(const std::shared_ptr<Job>& job, const ExchangeResult& r);
  // Records `r`; returns true when the partition's watermark round is
  // complete (every other replica confirmed).
  bool Record(const Job& job, const ExchangeResult& r);
  void StrikeOff(uint32_t partition, const std::string& peer);
  void RaiseRound(const std::shared_ptr<Job>& job);
  // The job is over; `next` starts the next rebuild job at once (after a
  // success: a failing peer is retried at the next tick, not in a loop).
  void EndJob(bool next);
  // The running job's handle (aae_exchange.h): numbered runs, so that a
  // done() that ran inline, before RunX() returned, is not held after it.
  uint64_t NextRun();
  void Hold(uint64_t run, std::shared_ptr<void> handle);
  void Release(uint64_t run);
  Status Persist(uint32_t partition);
  bool InSyncLocked(uint32_t partition, const std::vector<std::string>& replicas) const;
  bool RebuildingLocked() const;
  uint64_t NextIntervalLocked();
  uint64_t Floor() const;
  NowFn GatedNow() const;

  const AntiEntropyOptions options_;
  const uint32_t partitions_;
  const PreferenceFn preference_;
  const IsUpFn is_up_;
  const ReplicaFn replica_;
  Timer* const timer_;
  const NowFn now_;
  HybridClock* const hlc_;
  AaeStateStore* const state_;
  const BusyFn busy_;
  RepairBudget budget_;
  const std::shared_ptr<Lifeline> life_ = std::make_shared<Lifeline>();
  std::shared_ptr<Alarm> tick_, kick_;
  // Held across state store writes (which never call back) so that they land
  // in the order the state changed.
  std::mutex persist_mu_;

  // mu_ protects the following.
  mutable std::mutex mu_;
  bool started_ = false;
  bool job_running_ = false;
  std::shared_ptr<void> running_;  // the running pull or exchange
  uint64_t runs_ = 0, released_ = 0, running_run_ = 0;
  std::mt19937_64 rng_;
  std::vector<std::pair<uint32_t, std::string>> cycle_;
  size_t cycle_pos_ = 0;
  std::map<uint32_t, std::set<std::string>> rebuild_;  // partition -> peers pending
  std::atomic<bool> any_rebuild_{false};               // !rebuild_.empty(), read without mu_
  std::set<std::pair<uint32_t, std::string>> pulled_;  // rebuild pulls done (not persisted)
  uint32_t rebuild_total_ = 0;
  uint64_t rebuild_records_ = 0, rebuild_bytes_ = 0;
  std::map<uint32_t, PartState> parts_;
  uint64_t exchanges_ = 0, ticks_skipped_ = 0, keys_repaired_ = 0, false_deltas_ = 0;
  uint64_t segments_differing_ = 0, watermark_raises_ = 0;
  std::map<std::string, uint64_t> by_outcome_;
  // The last exchange repaired something or left some for later: the next
  // job starts at once, and an incomplete pair goes again first.
  bool hurry_ = false;
  std::optional<std::pair<uint32_t, std::string>> again_;
  // Catch-up: a peer found behind (an exchange repaired something) has most
  // likely missed writes in every partition it shares with this node (it was
  // down, or without hints): those pairs are queued and exchanged back to
  // back, in sync or not, instead of waiting for the cycle to reach them.
  std::deque<std::pair<uint32_t, std::string>> catchup_;
  std::set<std::string> catching_up_;  // peers with pairs in catchup_
};

AntiEntropy::Impl::Replicated AntiEntropy::Impl::ReplicatedPartitions() const {
  Replicated out;
  for (uint32_t p = 0; p < partitions_; ++p) {
    std::vector<std::string> pref = preference_(p);
    if (std::find(pref.begin(), pref.end(), options_.self) != pref.end()) {
      out.emplace_back(p, std::move(pref));
    }
  }
  return out;
}

Status AntiEntropy::Impl::Start() {
  Entry e(life_.get());
  if (!e) return Stopped();
  std::map<uint32_t, std::set<std::string>> pending;
  uint32_t total = 0;
  std::string flag;
  Status s = state_->Get(kRebuildFlag, &flag);
  if (!s.ok() && !s.IsNotFound()) return s;
  if (s.ok() && !flag.empty()) {
    total = static_cast<uint32_t>(std::strtoul(flag.c_str(), nullptr, 10));
    for (const auto& [p, replicas] : ReplicatedPartitions()) {
      std::string peers;
      s = state_->Get(RebuildKey(p), &peers);
      if (s.IsNotFound()) continue;
      if (!s.ok()) return s;
      if (auto set = SplitIds(peers); !set.empty()) pending[p] = std::move(set);
    }
  }
  size_t resumed;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (started_) return Status::OK();
    started_ = true;
    rebuild_ = std::move(pending);
    any_rebuild_.store(!rebuild_.empty(), std::memory_order_release);
    resumed = rebuild_.size();
    rebuild_total_ = resumed == 0 ? 0 : std::max(total, static_cast<uint32_t>(resumed));
    tick_ = std::make_shared<Alarm>();
    tick_->impl = weak_from_this();
    kick_ = std::make_shared<Alarm>();
    kick_->impl = weak_from_this();
    kick_->kick = true;
  }
  if (resumed > 0) {
    spdlog::info("[aae] resuming the rebuild: {} partitions still to pull", resumed);
    Kick();
  }
  ArmTick();
  return Status::OK();
}

void AntiEntropy::Impl::Stop() {
  life_->Close();
  std::shared_ptr<void> running;  // freed outside the lock
  std::lock_guard<std::mutex> l(mu_);
  running = std::move(running_);
  released_ = runs_;
}

uint64_t AntiEntropy::Impl::NextRun() {
  std::lock_guard<std::mutex> l(mu_);
  return ++runs_;
}

// The running pull or exchange is held here (and by nothing of its own)
// until its `done` releases it, or Stop() drops it.
void AntiEntropy::Impl::Hold(uint64_t run, std::shared_ptr<void> handle) {
  std::lock_guard<std::mutex> l(mu_);
  if (released_ < run) {
    std::swap(running_, handle);
    running_run_ = run;
  }
}

void AntiEntropy::Impl::Release(uint64_t run) {
  std::shared_ptr<void> done;  // freed outside the lock (its caller still holds it)
  std::lock_guard<std::mutex> l(mu_);
  released_ = std::max(released_, run);
  if (running_run_ == run) done = std::move(running_);
}

uint64_t AntiEntropy::Impl::NextIntervalLocked() {
  uint64_t base = options_.interval_ms;
  uint64_t spread = base / 5;  // +-10 %
  return base - base / 10 + (spread == 0 ? 0 : rng_() % (spread + 1));
}

void AntiEntropy::Impl::ArmTick() {
  uint64_t ms;
  std::weak_ptr<Alarm> tick;
  {
    std::lock_guard<std::mutex> l(mu_);
    ms = NextIntervalLocked();
    tick = tick_;
  }
  timer_->ExpireAfter(ms, std::move(tick));
}

void AntiEntropy::Impl::Kick() {
  std::weak_ptr<Alarm> kick;
  {
    std::lock_guard<std::mutex> l(mu_);
    kick = kick_;
  }
  timer_->ExpireAfter(0, std::move(kick));
}

void AntiEntropy::Impl::OnAlarm(bool kick) {
  Entry e(life_.get());
  if (!e) return;
  if (!kick) {
    Tick(false);
    return ArmTick();
  }
  bool rebuild_only;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (job_running_ || !options_.exchanges) return;
    job_running_ = true;
    rebuild_only = !hurry_ && catchup_.empty();
    hurry_ = false;
  }
  if (busy_ && busy_()) {
    std::lock_guard<std::mutex> l(mu_);
    job_running_ = false;
    return;  // the next tick tries again
  }
  StartJob(rebuild_only);
}

bool AntiEntropy::Impl::Tick(bool forced) {
  Entry e(life_.get());
  if (!e) return true;
  Replicated parts = ReplicatedPartitions();
  RaiseUnconfirmed(parts);
  if (!options_.exchanges) return true;
  ForgetDownPeers();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (job_running_) {
      if (!forced) ++ticks_skipped_;
      return false;
    }
    job_running_ = true;
  }
  if (!forced && busy_ && busy_()) {
    std::lock_guard<std::mutex> l(mu_);
    job_running_ = false;
    ++ticks_skipped_;
    return true;
  }
  StartJob(false);
  return true;
}

uint64_t AntiEntropy::Impl::Floor() const {
  uint64_t now = now_();
  return now > options_.floor_ms ? MakeHlc(now - options_.floor_ms, 0) : 0;
}

void AntiEntropy::Impl::RaiseUnconfirmed(const Replicated& parts) {
  uint64_t w = Floor();
  if (w == 0) return;
  AaeReplica* local = replica_(options_.self);
  if (local == nullptr) return;
  auto self = shared_from_this();
  for (const auto& [p, replicas] : parts) {
    if (options_.exchanges && replicas.size() > 1) continue;
    local->RaiseWatermark(p, w, [self, p = p, w](Status s) {
      if (!s.ok()) {
        spdlog::warn("[aae] cannot raise the watermark of partition {}: {}", p, s.ToString());
        return;
      }
      std::lock_guard<std::mutex> l(self->mu_);
      ++self->watermark_raises_;
      auto& part = self->parts_[p];
      part.watermark = std::max(part.watermark, w);
    });
  }
}

void AntiEntropy::Impl::ForgetDownPeers() {
  std::vector<std::pair<uint32_t, std::string>> confirmed;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [p, st] : parts_) {
      if (!st.round) continue;
      for (const std::string& peer : st.round->confirmed) confirmed.emplace_back(p, peer);
    }
  }
  for (const auto& [p, peer] : confirmed) {
    if (is_up_(peer)) continue;
    std::lock_guard<std::mutex> l(mu_);
    if (parts_[p].round) parts_[p].round->confirmed.erase(peer);
  }
}

std::optional<std::pair<uint32_t, std::string>> AntiEntropy::Impl::PickRebuild() {
  std::map<uint32_t, std::set<std::string>> pending;
  {
    std::lock_guard<std::mutex> l(mu_);
    pending = rebuild_;
  }
  for (const auto& [p, peers] : pending) {
    for (const std::string& peer : peers) {
      if (is_up_(peer) && replica_(peer) != nullptr) return std::make_pair(p, peer);
    }
  }
  return std::nullopt;
}

// The next pair of the shuffled cycle whose peer is up; the cycle is rebuilt
// (and reshuffled) when exhausted. Pairs whose peer is down are passed over
// until the next cycle.
std::optional<std::pair<uint32_t, std::string>> AntiEntropy::Impl::PickExchange() {
  bool fresh = false;
  while (true) {
    std::optional<std::pair<uint32_t, std::string>> next;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (cycle_pos_ < cycle_.size()) next = cycle_[cycle_pos_++];
    }
    if (next) {
      if (is_up_(next->second) && replica_(next->second) != nullptr) return next;
      continue;
    }
    if (fresh) return std::nullopt;  // a whole new cycle had no peer up
    fresh = true;
    std::vector<std::pair<uint32_t, std::string>> cycle;
    for (const auto& [p, replicas] : ReplicatedPartitions()) {
      for (const std::string& peer : replicas) {
        if (peer != options_.self) cycle.emplace_back(p, peer);
      }
    }
    std::lock_guard<std::mutex> l(mu_);
    std::shuffle(cycle.begin(), cycle.end(), rng_);
    cycle_ = std::move(cycle);
    cycle_pos_ = 0;
    if (cycle_.empty()) return std::nullopt;
  }
}

void AntiEntropy::Impl::StartJob(bool rebuild_only) {
  auto job = std::make_shared<Job>();
  auto pick = PickRebuild();
  job->rebuild = pick.has_value();
  if (!pick && !rebuild_only) {
    {
      std::lock_guard<std::mutex> l(mu_);
      pick = std::move(again_);
      again_.reset();
    }
    if (pick && (!is_up_(pick->second) || replica_(pick->second) == nullptr)) pick.reset();
    while (!pick) {
      {
        std::lock_guard<std::mutex> l(mu_);
        if (catchup_.empty()) {
          catching_up_.clear();
          break;
        }
        pick = catchup_.front();
        catchup_.pop_front();
      }
      if (!is_up_(pick->second) || replica_(pick->second) == nullptr) pick.reset();
    }
    if (!pick) pick = PickExchange();
  }
  AaeReplica* local = replica_(options_.self);
  AaeReplica* remote = pick ? replica_(pick->second) : nullptr;
  if (!pick || local == nullptr || remote == nullptr) {
    std::lock_guard<std::mutex> l(mu_);
    job_running_ = false;
    return;
  }
  job->partition = pick->first;
  job->peer = pick->second;
  job->replicas = preference_(job->partition);
  job->local = std::make_unique<Gate>(local, life_);
  job->remote = std::make_unique<Gate>(remote, life_);
  bool pull;
  {
    std::lock_guard<std::mutex> l(mu_);
    pull = job->rebuild && pulled_.count({job->partition, job->peer}) == 0;
  }
  if (!pull) return RunJobExchange(job);
  auto self = shared_from_this();
  uint64_t run = NextRun();
  Hold(run, RunPull(job->remote.get(), job->local.get(), job->partition, options_.exchange, timer_,
                    &budget_, GatedNow(), [self, job, run](PullResult r) {
                      self->Release(run);
                      self->OnPulled(job, r);
                    }));
}

// After Stop() the clock reads far ahead, so that a job waiting on the budget
// moves on at once (and ends at its next call, which the gate refuses).
NowFn AntiEntropy::Impl::GatedNow() const {
  return [life = life_, now = now_]() -> uint64_t {
    Entry e(life.get());
    if (!e) return UINT64_MAX / 4;
    return now();
  };
}

void AntiEntropy::Impl::RunJobExchange(const std::shared_ptr<Job>& job) {
  // A round this node leads starts before the exchange that may confirm it.
  bool leads = !job->replicas.empty() && job->replicas[0] == options_.self;
  uint64_t t0 = leads ? hlc_->Now() : 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto& part = parts_[job->partition];
    if (leads && !part.round) part.round = Round{t0, {}};
  }
  job->start_hlc = hlc_->Now();
  auto self = shared_from_this();
  uint64_t run = NextRun();
  Hold(run, RunExchange(job->local.get(), job->remote.get(), job->partition, options_.exchange,
                        timer_, &budget_, GatedNow(), [self, job, run](ExchangeResult r) {
                          self->Release(run);
                          self->OnExchanged(job, r);
                        }));
}

void AntiEntropy::Impl::OnPulled(const std::shared_ptr<Job>& job, const PullResult& r) {
  Entry e(life_.get());
  if (!e) return;  // stopped: dropped
  uint64_t now = now_();
  {
    std::lock_guard<std::mutex> l(mu_);
    rebuild_records_ += r.records;
    rebuild_bytes_ += r.bytes;
    if (r.status.ok()) pulled_.insert({job->partition, job->peer});
    if (!r.status.ok()) {
      auto& peer = parts_[job->partition].peers[job->peer];
      peer.last_ms = now;
      peer.outcome = Outcome::kFailed;
      peer.error = "pull: " + r.status.ToString();
    }
  }
  if (!r.status.ok()) {
    spdlog::warn("[aae] rebuild pull of partition {} from {} failed: {}", job->partition, job->peer,
                 r.status.ToString());
    return EndJob(false);
  }
  spdlog::info("[aae] rebuild pulled partition {} from {}: {} records, {} bytes", job->partition,
               job->peer, r.records, r.bytes);
  RunJobExchange(job);
}

bool AntiEntropy::Impl::InSyncLocked(uint32_t partition,
                                     const std::vector<std::string>& replicas) const {
  auto it = parts_.find(partition);
  for (const std::string& node : replicas) {
    if (node == options_.self) continue;
    if (it == parts_.end()) return false;
    auto peer = it->second.peers.find(node);
    if (peer == it->second.peers.end() || peer->second.outcome != Outcome::kInSync) return false;
  }
  return true;
}

bool AntiEntropy::Impl::Record(const Job& job, const ExchangeResult& r) {
  uint64_t now = now_();
  std::lock_guard<std::mutex> l(mu_);
  ++exchanges_;
  ++by_outcome_[OutcomeName(r.outcome)];
  uint64_t repaired = r.keys_pushed + r.keys_pulled;
  keys_repaired_ += repaired;
  false_deltas_ += r.false_deltas;
  segments_differing_ += r.segments_differing;
  PartState& part = parts_[job.partition];
  AaePeerStatus& peer = part.peers[job.peer];
  peer.last_ms = now;
  peer.outcome = r.outcome;
  peer.error = r.status.ok() ? "" : r.status.ToString();
  peer.keys_repaired = repaired;
  peer.segments_differing = r.segments_differing;
  peer.total_repaired += repaired;
  if (InSyncLocked(job.partition, job.replicas)) part.last_in_sync_ms = now;
  if (!part.round) return false;
  // A confirmation (anti_entropy.h): an exchange that started after T0,
  // compared the trees, and left no difference older than T0 behind. This
  // node's own copy must be whole: not while it is rebuilding the partition.
  bool compared = r.outcome == Outcome::kInSync || r.outcome == Outcome::kRepaired;
  auto pending = rebuild_.find(job.partition);
  bool rebuilding = pending != rebuild_.end() && !pending->second.empty();
  if (compared && !r.incomplete && job.start_hlc > part.round->t0 &&
      r.oldest_difference_hlc >= part.round->t0 && !rebuilding) {
    part.round->confirmed.insert(job.peer);
  }
  for (const std::string& node : job.replicas) {
    if (node != options_.self && part.round->confirmed.count(node) == 0) return false;
  }
  return true;
}

void AntiEntropy::Impl::OnExchanged(const std::shared_ptr<Job>& job, const ExchangeResult& r) {
  Entry e(life_.get());
  if (!e) return;  // stopped: dropped
  if (r.outcome == Outcome::kFailed) {
    spdlog::warn("[aae] exchange of partition {} with {} failed: {}", job->partition, job->peer,
                 r.status.ToString());
  } else if (r.keys_pushed + r.keys_pulled > 0) {
    spdlog::info(
        "[aae] exchange of partition {} with {}: {} segments differed, {} keys pushed, {} pulled{}",
        job->partition, job->peer, r.segments_differing, r.keys_pushed, r.keys_pulled,
        r.incomplete ? " (more left for later)" : "");
  }
  bool round_complete = Record(*job, r);
  bool more = r.outcome == Outcome::kRepaired || (r.incomplete && r.outcome != Outcome::kFailed);
  if (r.outcome == Outcome::kRepaired && !job->rebuild) {
    bool queue;
    {
      std::lock_guard<std::mutex> l(mu_);
      queue = catching_up_.insert(job->peer).second;
    }
    if (queue) {
      std::vector<std::pair<uint32_t, std::string>> pairs;
      for (const auto& [p, replicas] : ReplicatedPartitions()) {
        if (p != job->partition &&
            std::find(replicas.begin(), replicas.end(), job->peer) != replicas.end()) {
          pairs.emplace_back(p, job->peer);
        }
      }
      spdlog::info(
          "[aae] {} was behind in partition {}: exchanging the other {} partitions "
          "it shares with this node at once",
          job->peer, job->partition, pairs.size());
      std::lock_guard<std::mutex> l(mu_);
      catchup_.insert(catchup_.end(), pairs.begin(), pairs.end());
    }
  }
  if (more && !job->rebuild) {
    std::lock_guard<std::mutex> l(mu_);
    hurry_ = true;
    if (r.incomplete) again_.emplace(job->partition, job->peer);
  }
  if (job->rebuild) {
    // A wiped replica's watermark is behind its peers': its first exchange
    // only raises it, so it compares once more.
    if (r.outcome == Outcome::kWatermarkRaised && !job->retried) {
      job->retried = true;
      return RunJobExchange(job);
    }
    if (r.outcome == Outcome::kInSync || r.outcome == Outcome::kRepaired) {
      StrikeOff(job->partition, job->peer);
    }
  }
  if (round_complete) return RaiseRound(job);
  EndJob(r.outcome != Outcome::kFailed);
}

void AntiEntropy::Impl::StrikeOff(uint32_t partition, const std::string& peer) {
  std::lock_guard<std::mutex> persist(persist_mu_);
  bool last;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = rebuild_.find(partition);
    if (it == rebuild_.end() || it->second.erase(peer) == 0) return;
    if (it->second.empty()) rebuild_.erase(it);
    any_rebuild_.store(!rebuild_.empty(), std::memory_order_release);
    pulled_.erase({partition, peer});  // a later rebuild pulls again
    last = rebuild_.empty();
  }
  std::string remaining;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = rebuild_.find(partition);
    if (it != rebuild_.end()) remaining = JoinIds(it->second);
  }
  Status s = state_->Put(RebuildKey(partition), remaining);
  if (s.ok() && last) s = state_->Put(kRebuildFlag, "");
  if (!s.ok()) spdlog::error("[aae] cannot persist the rebuild state: {}", s.ToString());
  if (last) spdlog::info("[aae] rebuild finished: every partition is back");
}

// Every other replica confirmed: raise the watermark on all replicas, if all
// are up, to min(T0, now - floor), and start the next round.
void AntiEntropy::Impl::RaiseRound(const std::shared_ptr<Job>& job) {
  uint64_t t0;
  {
    std::lock_guard<std::mutex> l(mu_);
    t0 = parts_[job->partition].round->t0;
  }
  uint64_t w = std::min(t0, Floor());
  std::vector<std::unique_ptr<Gate>> gates;
  for (const std::string& node : job->replicas) {
    AaeReplica* r = replica_(node);
    if (r == nullptr || (node != options_.self && !is_up_(node))) return EndJob(true);
    gates.push_back(std::make_unique<Gate>(r, life_));
  }
  if (w == 0) return EndJob(true);
  struct Raise {
    std::vector<std::unique_ptr<Gate>> gates;
    std::mutex mu;
    size_t left = 0;
    Status status;
  };
  auto raise = std::make_shared<Raise>();
  raise->gates = std::move(gates);
  raise->left = raise->gates.size();
  auto self = shared_from_this();
  for (auto& gate : raise->gates) {
    gate->RaiseWatermark(job->partition, w, [self, job, raise, w, id = gate->id()](Status s) {
      {
        std::lock_guard<std::mutex> l(raise->mu);
        if (!s.ok() && raise->status.ok())
          raise->status = Status::FromCode(s.code(), id + ": " + s.message());
        if (--raise->left > 0) return;
      }
      Entry e(self->life_.get());
      if (!e) return;
      if (!raise->status.ok()) {
        // Confirmations stand; the next exchange of the partition retries.
        spdlog::warn("[aae] cannot raise the watermark of partition {}: {}", job->partition,
                     raise->status.ToString());
      } else {
        std::lock_guard<std::mutex> l(self->mu_);
        auto& part = self->parts_[job->partition];
        part.watermark = std::max(part.watermark, w);
        ++self->watermark_raises_;
        part.round = Round{self->hlc_->Now(), {}};
      }
      self->EndJob(true);
    });
  }
}

void AntiEntropy::Impl::EndJob(bool next) {
  bool more;
  {
    std::lock_guard<std::mutex> l(mu_);
    job_running_ = false;
    more = RebuildingLocked() || hurry_ || !catchup_.empty();
  }
  if (next && more && !life_->closed()) Kick();
}

bool AntiEntropy::Impl::RebuildingLocked() const { return !rebuild_.empty(); }

bool AntiEntropy::Impl::IsRebuilding(uint32_t partition) const {
  // Asked on every quorum read of this replica: no lock unless a rebuild runs.
  if (!any_rebuild_.load(std::memory_order_acquire)) return false;
  std::lock_guard<std::mutex> l(mu_);
  auto it = rebuild_.find(partition);
  return it != rebuild_.end() && !it->second.empty();
}

Status AntiEntropy::Impl::BeginRebuild() {
  Entry e(life_.get());
  if (!e) return Stopped();
  if (!options_.exchanges) {
    // Nothing would ever pull: marking partitions pending would only keep
    // this replica out of read quorums for good.
    spdlog::warn("[aae] rebuild asked for with anti-entropy off: not started");
    return Status::OK();
  }
  std::lock_guard<std::mutex> persist(persist_mu_);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (RebuildingLocked()) return Status::OK();
  }
  std::map<uint32_t, std::set<std::string>> pending;
  for (const auto& [p, replicas] : ReplicatedPartitions()) {
    std::set<std::string> peers(replicas.begin(), replicas.end());
    peers.erase(options_.self);
    if (!peers.empty()) pending[p] = std::move(peers);
  }
  for (const auto& [p, peers] : pending) {
    if (Status s = state_->Put(RebuildKey(p), JoinIds(peers)); !s.ok()) return s;
  }
  if (pending.empty()) return Status::OK();
  if (Status s = state_->Put(kRebuildFlag, std::to_string(pending.size())); !s.ok()) return s;
  spdlog::info("[aae] rebuild begins: {} partitions to pull from their other replicas",
               pending.size());
  bool started;
  {
    std::lock_guard<std::mutex> l(mu_);
    rebuild_total_ = static_cast<uint32_t>(pending.size());
    rebuild_ = std::move(pending);
    any_rebuild_.store(!rebuild_.empty(), std::memory_order_release);
    pulled_.clear();
    started = started_;
  }
  if (started) Kick();
  return Status::OK();
}

AaeStatus AntiEntropy::Impl::Snapshot() const {
  Replicated parts;
  uint64_t now = 0;
  {
    Entry e(life_.get());
    if (e) {
      parts = ReplicatedPartitions();
      now = now_();
    }
  }
  AaeStatus st;
  std::lock_guard<std::mutex> l(mu_);
  st.enabled = options_.exchanges;
  st.exchanges = exchanges_;
  st.exchanges_by_outcome = by_outcome_;
  st.ticks_skipped = ticks_skipped_;
  st.keys_repaired = keys_repaired_;
  st.false_deltas = false_deltas_;
  st.segments_differing = segments_differing_;
  st.watermark_raises = watermark_raises_;
  st.partitions_total = static_cast<uint32_t>(parts.size());
  st.rebuilding = RebuildingLocked();
  st.rebuild_partitions_pending = static_cast<uint32_t>(rebuild_.size());
  st.rebuild_partitions_total = rebuild_total_;
  st.rebuild_records = rebuild_records_;
  st.rebuild_bytes = rebuild_bytes_;
  for (const auto& [p, replicas] : parts) {
    AaePartitionStatus ps;
    ps.partition = p;
    ps.replicas = replicas;
    ps.leader = !replicas.empty() && replicas[0] == options_.self;
    ps.in_sync = InSyncLocked(p, replicas);
    if (auto it = parts_.find(p); it != parts_.end()) {
      ps.watermark = it->second.watermark;
      ps.last_in_sync_ms = it->second.last_in_sync_ms;
      ps.peers = it->second.peers;
    }
    if (replicas.size() <= 1) ps.last_in_sync_ms = now;  // alone: always in sync
    if (auto it = rebuild_.find(p); it != rebuild_.end()) {
      ps.rebuild_pending.assign(it->second.begin(), it->second.end());
    }
    if (ps.in_sync) ++st.partitions_in_sync;
    st.partitions.push_back(std::move(ps));
  }
  return st;
}

AntiEntropy::AntiEntropy(AntiEntropyOptions options, uint32_t partitions, PreferenceFn preference,
                         IsUpFn is_up, ReplicaFn replica, Timer* timer, NowFn now, HybridClock* hlc,
                         AaeStateStore* state, BusyFn busy)
    : impl_(std::make_shared<Impl>(std::move(options), partitions, std::move(preference),
                                   std::move(is_up), std::move(replica), timer, std::move(now), hlc,
                                   state, std::move(busy))) {}

AntiEntropy::~AntiEntropy() { Stop(); }

Status AntiEntropy::Start() { return impl_->Start(); }
void AntiEntropy::Stop() { impl_->Stop(); }
Status AntiEntropy::BeginRebuild() { return impl_->BeginRebuild(); }
bool AntiEntropy::IsRebuilding(uint32_t partition) const { return impl_->IsRebuilding(partition); }
bool AntiEntropy::TickNow() { return impl_->Tick(true); }
AaeStatus AntiEntropy::Snapshot() const { return impl_->Snapshot(); }

}  // namespace ringkv::cluster
