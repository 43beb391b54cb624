#include "server/cluster/coordinator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>

#include "server/cluster/handoff.h"

namespace ringkv::cluster {
namespace {

// Failures after which a hint is worth keeping: the replica may simply be
// down or slow. A replica that refused the record (bad_request: a version too
// far in its future; a value over its limit) would refuse the hint too.
bool Hintable(const Status& s) {
  return s.code() == Status::Code::kTimeout || s.code() == Status::Code::kUnavailable ||
         s.code() == Status::Code::kInternal;
}

// A key for a log line: at most 64 bytes, control bytes shown as '?' (keys
// may hold any bytes, newlines included, which must not forge log lines).
std::string Printable(const std::string& key) {
  std::string out = key.substr(0, 64);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

// The replica's epoch a StaleEpoch answer carries (0 if malformed).
uint64_t ParseEpoch(const Status& s) {
  uint64_t e = 0;
  for (char c : s.message()) {
    if (c < '0' || c > '9' || e > UINT64_MAX / 10) return 0;
    e = e * 10 + static_cast<uint64_t>(c - '0');
  }
  return e;
}

bool Older(const std::optional<Record>& a, const Record& b) {
  return !a.has_value() || a->version < b.version;
}

// The answer for a round that can no longer reach its quorum: a storage
// failure of a replica (Internal: a full disk, an I/O error) says more than
// "timeout" and is passed on; anything else is a timeout.
Status QuorumFailure(bool internal, const std::string& what) {
  return internal ? Status::Internal(what) : Status::Timeout(what);
}

}  // namespace

struct Coordinator::WriteRound final : Expirable {
  Counters* counters = nullptr;
  std::string key;
  int w = 0;
  uint64_t timeout_ms = 0;
  Epoch epoch;
  std::vector<std::string> live, down;
  // Per live replica: bit 1 in the old set, bit 2 in the new set (a change
  // in progress; otherwise every replica is in the old set only).
  std::vector<uint8_t> sets;
  int live_old = 0, live_new = 0;
  bool has_new = false;
  WriteDone done;
  // mu protects the following.
  std::mutex mu;
  std::shared_ptr<const Record> record;  // the current stamp
  int attempt = 0;                       // replies of earlier attempts are ignored
  int acks = 0, acks_old = 0, acks_new = 0;
  int fails = 0, fails_old = 0, fails_new = 0;
  bool internal = false;     // a replica failed with Internal in this attempt
  uint64_t stale_epoch = 0;  // the highest epoch a replica answered StaleEpoch with
  int reroutes = 0;          // times the round was routed again by a newer map
  bool answered = false;
  std::string last_error;
  // The round itself until it is answered: replies that never come (their
  // callbacks dropped) must not free a round that its deadline will answer.
  // The timer holds rounds only weakly, so an answered round is freed at once.
  std::shared_ptr<WriteRound> keep_alive;

  // The deadline passed: answer Timeout unless answered already.
  void Expire() override {
    Version version;
    int got = 0;
    std::string error;
    std::shared_ptr<WriteRound> self;  // the caller holds the round too
    {
      std::lock_guard<std::mutex> l(mu);
      if (answered) return;
      answered = true;
      self = std::move(keep_alive);
      version = record->version;
      counters->round_deadlines.fetch_add(1, std::memory_order_relaxed);
      got = acks;
      error = last_error;
    }
    done(Status::Timeout("write reached " + std::to_string(got) + " of the " + std::to_string(w) +
                         " replicas it needs within " + std::to_string(timeout_ms) + " ms" +
                         (error.empty() ? "" : " (" + error + ")")),
         version);
  }
};

struct Coordinator::ReadRound final : Expirable {
  Counters* counters = nullptr;
  std::string key;
  int r = 0;
  int live = 0;
  uint64_t timeout_ms = 0;
  Epoch epoch;
  ReadDone done;
  std::atomic<bool> finished{false};  // done has been called (or is being)
  // mu protects the following.
  std::mutex mu;
  std::vector<std::pair<std::string, std::optional<Record>>> answers;  // in arrival order
  int fails = 0;
  bool internal = false;
  uint64_t stale_epoch = 0;  // as in WriteRound
  int attempt = 0;           // replies of earlier routes are ignored
  int reroutes = 0;
  bool answered = false;                  // the quorum decided (done may wait for repairs)
  std::optional<Record> newest;           // what was (or is being) answered
  std::shared_ptr<ReadRound> keep_alive;  // until finished, as in WriteRound

  // Calls done once, whoever gets here first: the quorum, or the deadline.
  // REQUIRES: the caller holds a reference to the round.
  void Finish(Status s, std::optional<Record> rec) {
    if (finished.exchange(true)) return;
    std::shared_ptr<ReadRound> self;
    {
      std::lock_guard<std::mutex> l(mu);
      self = std::move(keep_alive);
    }
    done(std::move(s), std::move(rec));
  }
  void Expire() override {
    int got = 0;
    {
      std::lock_guard<std::mutex> l(mu);
      got = static_cast<int>(answers.size());
      answered = true;
    }
    if (finished.load()) return;
    counters->round_deadlines.fetch_add(1, std::memory_order_relaxed);
    Finish(Status::Timeout("read got " + std::to_string(std::min(got, r)) + " of the " +
                           std::to_string(r) + " replies it needs within " +
                           std::to_string(timeout_ms) + " ms"),
           std::nullopt);
  }
};

Coordinator::Coordinator(CoordinatorOptions options, const RingSource* rings,
                         const Membership* membership, ReplicaTransport* transport,
                         HybridClock* clock, HintedHandoff* handoff, Counters* counters)
    : options_(std::move(options)),
      rings_(rings),
      membership_(membership),
      transport_(transport),
      clock_(clock),
      handoff_(handoff),
      counters_(counters) {}

void Coordinator::Replicas(const std::vector<std::string>& list, std::vector<std::string>* live,
                           std::vector<std::string>* down) const {
  bool self_live = false;
  for (const std::string& node : list) {
    if (node == options_.node_id) {
      self_live = true;  // this node is always up
    } else if (membership_->IsUp(node)) {
      live->push_back(node);
    } else if (down != nullptr) {
      down->push_back(node);
    }
  }
  if (self_live) live->push_back(options_.node_id);
}

void Coordinator::InBackground(std::function<void()> fn) {
  if (options_.background == nullptr) return fn();
  options_.background->Run(std::move(fn));
}

void Coordinator::Hint(const std::string& node, const std::string& key, const Record& record) {
  if (handoff_ == nullptr || node == options_.node_id) return;
  Status s = handoff_->AddHint(node, key, record);
  if (s.ok()) return;
  counters_->hints_failed.fetch_add(1, std::memory_order_relaxed);
  // At most one line a second: a full disk fails every hint.
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  auto last = last_hint_error_log_.load(std::memory_order_relaxed);
  constexpr int64_t kInterval =
      std::chrono::steady_clock::duration(std::chrono::seconds(1)).count();
  if (now - last >= kInterval && last_hint_error_log_.compare_exchange_strong(last, now)) {
    spdlog::error("[coordinator] cannot store hint for {}: {} (hints_failed={})", node,
                  s.ToString(), counters_->hints_failed.load(std::memory_order_relaxed));
  }
}

// Fills the round's replicas from the current ring: the write sets of the
// key's partition (old and new during a change), live and down, and the
// epoch. Unavailable (nothing changed in the round's counters) when either
// set has fewer than W live replicas.
Status Coordinator::RouteWrite(WriteRound* round) const {
  const Ring* ring = rings_->Current();
  const uint32_t p = ring->PartitionOf(round->key);
  const std::vector<std::string>& old_set = ring->WriteSet(p);
  const std::vector<std::string>& new_set = ring->NewWriteSet(p);
  std::vector<std::string> all = old_set;
  for (const std::string& node : new_set) {
    if (std::find(all.begin(), all.end(), node) == all.end()) all.push_back(node);
  }
  std::vector<std::string> live, down;
  Replicas(all, &live, &down);
  std::vector<uint8_t> sets;
  int live_old = 0, live_new = 0;
  for (const std::string& node : live) {
    uint8_t bits = 0;
    if (std::find(old_set.begin(), old_set.end(), node) != old_set.end()) bits |= 1;
    if (std::find(new_set.begin(), new_set.end(), node) != new_set.end()) bits |= 2;
    sets.push_back(bits);
    live_old += bits & 1;
    live_new += (bits >> 1) & 1;
  }
  const bool has_new = !new_set.empty();
  if (live_old < round->w || (has_new && live_new < round->w)) {
    const int n = has_new ? std::min(live_old, live_new) : live_old;
    return Status::Unavailable("write needs " + std::to_string(round->w) + " replicas; " +
                               std::to_string(n) + " of " + std::to_string(old_set.size()) +
                               " are up");
  }
  round->live = std::move(live);
  round->down = std::move(down);
  round->sets = std::move(sets);
  round->live_old = live_old;
  round->live_new = live_new;
  round->has_new = has_new;
  round->epoch = Epoch{ring->epoch()};
  return Status::OK();
}

void Coordinator::Write(const std::string& key, Record record, int w, uint64_t timeout_ms,
                        WriteDone done) {
  auto round = std::make_shared<WriteRound>();
  round->key = key;
  round->w = w;
  Status routed = RouteWrite(round.get());
  if (!routed.ok()) return done(routed, Version());
  record.version = {clock_->Now(), options_.node_id};
  auto stamped = std::make_shared<const Record>(std::move(record));
  round->counters = counters_;
  round->record = stamped;
  round->timeout_ms = timeout_ms;
  round->done = std::move(done);
  // Down replicas get their hint at once: they are not waited for.
  for (const std::string& node : round->down) Hint(node, key, *stamped);
  // Copied before anything is sent: once a reply can arrive, a reroute may
  // replace the round's lists (under its lock).
  std::vector<std::string> live = round->live;
  const Epoch epoch = round->epoch;
  if (options_.timer != nullptr) {
    round->keep_alive = round;
    options_.timer->ExpireAfter(timeout_ms, round);
  }
  SendWrites(round, 0, stamped, live, epoch);
}

// The maps are together again (CoordinatorOptions::catch_up): the same stamp
// goes to the replicas of the current ring, as a new attempt. Some replicas
// may hold the write already, so a route that cannot reach W now answers
// Timeout, never Unavailable.
void Coordinator::RerouteWrite(const std::shared_ptr<WriteRound>& round) {
  std::shared_ptr<const Record> record;
  int attempt = 0;
  Status failed;
  std::shared_ptr<WriteRound> release;
  std::vector<std::string> down, live;
  Epoch epoch;
  {
    std::lock_guard<std::mutex> l(round->mu);
    if (round->answered) return;
    Status routed = RouteWrite(round.get());
    if (!routed.ok()) {
      round->answered = true;
      release = std::move(round->keep_alive);
      failed = Status::Timeout("the write may be on some replicas: " + routed.message());
    } else {
      ++round->attempt;
      round->acks = round->acks_old = round->acks_new = 0;
      round->fails = round->fails_old = round->fails_new = 0;
      round->internal = false;
      round->stale_epoch = 0;
      round->last_error.clear();
      record = round->record;
      attempt = round->attempt;
      down = round->down;
      live = round->live;
      epoch = round->epoch;
    }
  }
  if (!failed.ok()) return round->done(failed, round->record->version);
  counters_->stale_epoch_retries.fetch_add(1, std::memory_order_relaxed);
  for (const std::string& node : down) Hint(node, round->key, *record);
  SendWrites(round, attempt, record, live, epoch);
}

void Coordinator::SendWrites(const std::shared_ptr<WriteRound>& round, int attempt,
                             const std::shared_ptr<const Record>& record,
                             const std::vector<std::string>& nodes, Epoch epoch) {
  for (const std::string& node : nodes) {
    transport_->Write(node, round->key, *record, epoch, round->timeout_ms,
                      [this, round, attempt, node](Status s) {
                        OnWriteReply(round, attempt, node, std::move(s));
                      });
  }
}

void Coordinator::OnWriteReply(const std::shared_ptr<WriteRound>& round, int attempt,
                               const std::string& node, Status s) {
  bool answer = false, restamp = false, hint = false;
  uint64_t reroute_epoch = 0;
  std::vector<std::string> send_to, hint_to;  // a restamp's, copied under the lock
  Epoch send_epoch;
  Status result;
  Version version;
  std::shared_ptr<const Record> record;
  std::shared_ptr<WriteRound> release;  // dropped after the lock, the caller holds `round`
  {
    std::lock_guard<std::mutex> l(round->mu);
    // A reply to an earlier stamp: the replica also has the current one on
    // its way, whose reply counts (and hints) instead.
    if (attempt != round->attempt) return;
    record = round->record;
    if (s.IsStale()) {
      Version held;
      if (!Version::Parse(s.message(), &held).ok() || held.hlc == 0) {
        s = Status::Internal("malformed stale reply from " + node + ": '" + s.message() + "'");
      } else if (held == record->version) {
        s = Status::OK();  // the replica holds this very write already
      } else if (round->answered) {
        return;  // answered already; the replica holds a newer write: no hint
      } else {
        // The replica holds a version at least as new as this stamp: stamp
        // above it and write again, unless newer writes keep winning.
        clock_->Observe(held.hlc);
        if (round->attempt < kMaxRestamps) {
          Record next = *record;
          next.version = {clock_->Now(), options_.node_id};
          record = std::make_shared<const Record>(std::move(next));
          round->record = record;
          ++round->attempt;
          round->acks = round->fails = 0;
          round->acks_old = round->acks_new = round->fails_old = round->fails_new = 0;
          round->internal = false;
          round->last_error.clear();
          restamp = true;
        } else {
          round->answered = answer = true;
          result = Status::Timeout("write lost to newer concurrent writes " +
                                   std::to_string(kMaxRestamps) + " times (" + node + " holds " +
                                   held.ToString() + ")");
        }
      }
    }
    uint8_t bits = 1;
    for (size_t i = 0; i < round->live.size(); ++i) {
      if (round->live[i] == node) bits = round->sets[i];
    }
    if (restamp || answer) {
      // handled above
    } else if (s.ok()) {
      ++round->acks;
      round->acks_old += bits & 1;
      round->acks_new += (bits >> 1) & 1;
    } else {
      ++round->fails;
      round->fails_old += bits & 1;
      round->fails_new += (bits >> 1) & 1;
      round->internal = round->internal || s.code() == Status::Code::kInternal;
      round->last_error = node + ": " + s.ToString();
      if (s.IsStaleEpoch()) {
        round->stale_epoch = std::max(round->stale_epoch, ParseEpoch(s));
      } else {
        hint = Hintable(s);
      }
    }
    const bool reached =
        round->acks_old >= round->w && (!round->has_new || round->acks_new >= round->w);
    const bool unreachable = round->live_old - round->fails_old < round->w ||
                             (round->has_new && round->live_new - round->fails_new < round->w);
    if (!restamp && !round->answered && reached) {
      round->answered = answer = true;
    } else if (!restamp && !round->answered && unreachable && round->stale_epoch != 0 &&
               options_.catch_up && round->reroutes < kMaxReroutes) {
      // Routed by another map than a replica's: catch up, then route again.
      ++round->reroutes;
      reroute_epoch = round->stale_epoch;
      round->stale_epoch = 0;
      ++round->attempt;  // this route's late replies are ignored
    } else if (!restamp && !round->answered && unreachable) {
      round->answered = answer = true;
      if (round->stale_epoch != 0 && round->reroutes > 0) {
        result = Status::Timeout(
            "the cluster map kept changing under the write (it may be on "
            "some replicas)");
      } else if (round->stale_epoch != 0) {
        result = Status::StaleEpoch(round->stale_epoch);
      } else {
        result =
            QuorumFailure(round->internal, "write reached " + std::to_string(round->acks) +
                                               " of the " + std::to_string(round->w) +
                                               " replicas it needs (" + round->last_error + ")");
      }
    }
    version = record->version;
    if (answer) release = std::move(round->keep_alive);
    if (restamp) {
      send_to = round->live;
      hint_to = round->down;
      send_epoch = round->epoch;
    }
  }
  if (restamp) {
    counters_->write_restamps.fetch_add(1, std::memory_order_relaxed);
    if (!hint_to.empty()) {
      InBackground([this, round, record, hint_to] {
        for (const std::string& n : hint_to) Hint(n, round->key, *record);
      });
    }
    return SendWrites(round, attempt + 1, record, send_to, send_epoch);
  }
  if (hint) InBackground([this, node, round, record] { Hint(node, round->key, *record); });
  if (reroute_epoch != 0) {
    return options_.catch_up(reroute_epoch, [this, round] { RerouteWrite(round); });
  }
  if (answer) round->done(result, version);
}

void Coordinator::Read(const std::string& key, int r, uint64_t timeout_ms, ReadDone done) {
  ReadAttempt(key, r, timeout_ms, std::move(done), 0);
}

void Coordinator::ReadAttempt(const std::string& key, int r, uint64_t timeout_ms, ReadDone done,
                              int reroutes) {
  std::vector<std::string> live;
  const Ring* ring = rings_->Current();
  Replicas(ring->PreferenceList(ring->PartitionOf(key)), &live, nullptr);
  const Epoch epoch{ring->epoch()};
  if (static_cast<int>(live.size()) < r) {
    return done(Status::Unavailable("read needs " + std::to_string(r) + " replicas; " +
                                    std::to_string(live.size()) + " are up"),
                std::nullopt);
  }
  if (live.size() == 1 && r == 1 && live[0] == options_.node_id) {
    // This node's replica is the only one (N = 1): nothing to compare or
    // repair and no remote reply to wait for, so no round state; the reply is
    // the answer. Same answers as a round of one (OnReadReply).
    return transport_->Read(
        live[0], key, epoch, timeout_ms,
        [this, key, r, timeout_ms, reroutes, done = std::move(done)](Status s,
                                                                     Record record) mutable {
          if (s.IsNotFound()) return done(Status::OK(), std::nullopt);
          if (s.IsStaleEpoch() && options_.catch_up && reroutes < kMaxReroutes) {
            uint64_t e = ParseEpoch(s);
            return options_.catch_up(
                e, [this, key, r, timeout_ms, reroutes, done = std::move(done)]() mutable {
                  counters_->stale_epoch_retries.fetch_add(1, std::memory_order_relaxed);
                  ReadAttempt(key, r, timeout_ms, std::move(done), reroutes + 1);
                });
          }
          if (s.IsStaleEpoch()) return done(s, std::nullopt);
          if (!s.ok()) {
            return done(QuorumFailure(s.code() == Status::Code::kInternal,
                                      "read got 0 of the 1 replies it needs (" + options_.node_id +
                                          ": " + s.ToString() + ")"),
                        std::nullopt);
          }
          clock_->Observe(record.version.hlc);
          done(Status::OK(), std::move(record));
        });
  }
  auto round = std::make_shared<ReadRound>();
  round->counters = counters_;
  round->key = key;
  round->r = r;
  round->live = static_cast<int>(live.size());
  round->timeout_ms = timeout_ms;
  round->epoch = epoch;
  round->reroutes = reroutes;
  round->done = std::move(done);
  if (options_.timer != nullptr) {
    round->keep_alive = round;
    options_.timer->ExpireAfter(timeout_ms, round);
  }
  SendReads(round, live, 0, epoch);
}

void Coordinator::SendReads(const std::shared_ptr<ReadRound>& round,
                            const std::vector<std::string>& live, int attempt, Epoch epoch) {
  for (const std::string& node : live) {
    transport_->Read(node, round->key, epoch, round->timeout_ms,
                     [this, round, node, attempt](Status s, Record record) {
                       OnReadReply(round, attempt, node, std::move(s), std::move(record));
                     });
  }
}

// As RerouteWrite: the read goes to the read set of the current ring.
void Coordinator::RerouteRead(const std::shared_ptr<ReadRound>& round) {
  std::vector<std::string> live;
  int attempt = 0;
  Epoch epoch;
  {
    std::lock_guard<std::mutex> l(round->mu);
    if (round->answered) return;
    const Ring* ring = rings_->Current();
    Replicas(ring->PreferenceList(ring->PartitionOf(round->key)), &live, nullptr);
    round->epoch = Epoch{ring->epoch()};
    epoch = round->epoch;
    round->live = static_cast<int>(live.size());
    round->answers.clear();
    round->fails = 0;
    round->internal = false;
    round->stale_epoch = 0;
    attempt = ++round->attempt;
  }
  counters_->stale_epoch_retries.fetch_add(1, std::memory_order_relaxed);
  if (static_cast<int>(live.size()) < round->r) {
    {
      std::lock_guard<std::mutex> l(round->mu);
      round->answered = true;
    }
    return round->Finish(
        Status::Unavailable("read needs " + std::to_string(round->r) + " replicas; " +
                            std::to_string(live.size()) + " are up"),
        std::nullopt);
  }
  SendReads(round, live, attempt, epoch);
}

// A reply either completes the quorum (answer, after repairing the stale
// replicas among the quorum), arrives late (repair in the background if it is
// stale, or spread it if it is newer than what was answered), or is a failure
// that may make the quorum unreachable.
void Coordinator::OnReadReply(const std::shared_ptr<ReadRound>& round, int attempt,
                              const std::string& node, Status s, Record record) {
  bool answer = false, failed = false;
  uint64_t reroute_epoch = 0;
  Epoch epoch;                     // the route's, for repairs (read under the lock)
  std::vector<std::string> stale;  // replicas to bring up to `newest`
  std::optional<Record> newest;
  {
    std::lock_guard<std::mutex> l(round->mu);
    if (attempt != round->attempt) return;  // a reply to an earlier route
    epoch = round->epoch;
    if (!s.ok() && !s.IsNotFound()) {
      ++round->fails;
      round->internal = round->internal || s.code() == Status::Code::kInternal;
      if (s.IsStaleEpoch()) round->stale_epoch = std::max(round->stale_epoch, ParseEpoch(s));
      if (!round->answered && round->live - round->fails < round->r) {
        if (round->stale_epoch != 0 && options_.catch_up && round->reroutes < kMaxReroutes) {
          ++round->reroutes;
          reroute_epoch = round->stale_epoch;
          ++round->attempt;
        } else {
          round->answered = failed = true;
        }
      }
    } else {
      std::optional<Record> got;
      if (s.ok()) got = std::move(record);
      if (!round->answered) {
        round->answers.emplace_back(node, std::move(got));
        if (static_cast<int>(round->answers.size()) == round->r) {
          round->answered = answer = true;
          for (const auto& [n, rec] : round->answers) {
            if (rec && Older(round->newest, *rec)) round->newest = rec;
          }
          newest = round->newest;
          if (newest) {
            for (const auto& [n, rec] : round->answers) {
              if (Older(rec, *newest)) stale.push_back(n);
            }
          }
        }
      } else {
        if (round->newest && Older(got, *round->newest)) {
          stale.push_back(node);  // late and stale
          newest = round->newest;
        } else if (got && Older(round->newest, *got)) {
          // Late and newer than what was answered: spread it to the others.
          round->newest = got;
          newest = got;
          for (const auto& [n, rec] : round->answers) stale.push_back(n);
        }
        round->answers.emplace_back(node, std::move(got));
      }
    }
  }
  if (reroute_epoch != 0) {
    return options_.catch_up(reroute_epoch, [this, round] { RerouteRead(round); });
  }
  if (failed) {
    if (round->stale_epoch != 0) {
      return round->Finish(Status::StaleEpoch(round->stale_epoch), std::nullopt);
    }
    return round->Finish(
        QuorumFailure(round->internal, "read got " + std::to_string(round->r - 1) +
                                           " or fewer of the " + std::to_string(round->r) +
                                           " replies it needs"),
        std::nullopt);
  }
  if (newest) clock_->Observe(newest->version.hlc);
  if (!answer) {
    for (const std::string& n : stale) {
      Repair(round->key, n, *newest, epoch, round->timeout_ms, [] {});
    }
    return;
  }
  if (stale.empty()) return round->Finish(Status::OK(), std::move(newest));
  // Answer once every stale replica of the quorum has the newest version (or
  // failed to take it), so that no later quorum read can see an older one.
  auto remaining = std::make_shared<std::atomic<int>>(static_cast<int>(stale.size()));
  auto then = [round, newest, remaining] {
    if (remaining->fetch_sub(1) == 1) round->Finish(Status::OK(), newest);
  };
  for (const std::string& n : stale) {
    Repair(round->key, n, *newest, epoch, round->timeout_ms, then);
  }
}

// One line per 10 s at most: a replica that comes back stale is repaired by
// every read that touches it, and a line per repair would flood the log.
void Coordinator::LogRepair(const std::string& key, const std::string& node) {
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  auto last = last_repair_log_.load(std::memory_order_relaxed);
  constexpr int64_t kInterval =
      std::chrono::steady_clock::duration(std::chrono::seconds(10)).count();
  if (now - last < kInterval || !last_repair_log_.compare_exchange_strong(last, now)) {
    repairs_unlogged_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  spdlog::info(
      "[coordinator] read repair brought {} up to date for key {} ({} more repairs "
      "since the last line; read_repairs={})",
      node, Printable(key), repairs_unlogged_.exchange(0),
      counters_->read_repairs.load(std::memory_order_relaxed));
}

void Coordinator::Repair(const std::string& key, const std::string& node, const Record& newest,
                         Epoch epoch, uint64_t timeout_ms, std::function<void()> then) {
  auto write = [this, key, node, newest, epoch, timeout_ms, then = std::move(then)]() mutable {
    transport_->Write(node, key, newest, epoch, timeout_ms,
                      [this, key, node, newest, then = std::move(then)](Status s) {
                        if (s.ok()) {
                          counters_->read_repairs.fetch_add(1, std::memory_order_relaxed);
                          LogRepair(key, node);
                        } else if (s.IsStale()) {
                          // The replica has caught up (or moved past) by itself.
                        } else if (Hintable(s) && !s.IsStaleEpoch()) {
                          InBackground([this, key, node, newest] { Hint(node, key, newest); });
                        }
                        then();
                      });
  };
  // This node's own replica is written on the background executor: the
  // caller may be the peer client's I/O thread, which must not block.
  if (node == options_.node_id) return InBackground(std::move(write));
  write();
}

}  // namespace ringkv::cluster
