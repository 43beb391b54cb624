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

bool Older(const std::optional<Record>& a, const Record& b) {
  return !a.has_value() || a->version < b.version;
}

}  // namespace

struct Coordinator::WriteRound {
  std::string key;
  Record record;
  int w = 0;
  int live = 0;
  WriteDone done;
  // mu protects the following.
  std::mutex mu;
  int acks = 0;
  int fails = 0;
  bool answered = false;
  std::string last_error;
};

struct Coordinator::ReadRound {
  std::string key;
  int r = 0;
  int live = 0;
  uint64_t timeout_ms = 0;
  ReadDone done;
  // mu protects the following.
  std::mutex mu;
  std::vector<std::pair<std::string, std::optional<Record>>> answers;  // in arrival order
  int fails = 0;
  bool answered = false;
  std::optional<Record> newest;  // what was (or is being) answered
};

Coordinator::Coordinator(CoordinatorOptions options, const Ring* ring, const Membership* membership,
                         ReplicaTransport* transport, HybridClock* clock, HintedHandoff* handoff,
                         Counters* counters)
    : options_(std::move(options)),
      ring_(ring),
      membership_(membership),
      transport_(transport),
      clock_(clock),
      handoff_(handoff),
      counters_(counters) {}

size_t Coordinator::Replicas(const std::string& key, std::vector<std::string>* live,
                             std::vector<std::string>* down) const {
  const auto& pref = ring_->PreferenceList(ring_->PartitionOf(key));
  bool self_live = false;
  for (const std::string& node : pref) {
    if (node == options_.node_id) {
      self_live = true;  // this node is always up
    } else if (membership_->IsUp(node)) {
      live->push_back(node);
    } else if (down != nullptr) {
      down->push_back(node);
    }
  }
  if (self_live) live->push_back(options_.node_id);
  return pref.size();
}

void Coordinator::Write(const std::string& key, Record record, int w, uint64_t timeout_ms,
                        WriteDone done) {
  std::vector<std::string> live, down;
  size_t n = Replicas(key, &live, &down);
  if (static_cast<int>(live.size()) < w) {
    return done(
        Status::Unavailable("write needs " + std::to_string(w) + " replicas; " +
                            std::to_string(live.size()) + " of " + std::to_string(n) + " are up"),
        Version());
  }
  record.version = {clock_->Now(), options_.node_id};
  auto round = std::make_shared<WriteRound>();
  round->key = key;
  round->record = std::move(record);
  round->w = w;
  round->live = static_cast<int>(live.size());
  round->done = std::move(done);
  // Down replicas get their hint at once: they are not waited for.
  if (handoff_ != nullptr) {
    for (const std::string& node : down) handoff_->AddHint(node, key, round->record).IgnoreError();
  }
  for (const std::string& node : live) {
    transport_->Write(node, key, round->record, timeout_ms,
                      [this, round, node](Status s) { OnWriteReply(round, node, std::move(s)); });
  }
}

void Coordinator::OnWriteReply(const std::shared_ptr<WriteRound>& round, const std::string& node,
                               Status s) {
  bool answer = false;
  Status result;
  {
    std::lock_guard<std::mutex> l(round->mu);
    if (s.ok()) {
      ++round->acks;
    } else {
      ++round->fails;
      round->last_error = node + ": " + s.ToString();
    }
    if (!round->answered && round->acks >= round->w) {
      round->answered = answer = true;
    } else if (!round->answered && round->live - round->fails < round->w) {
      round->answered = answer = true;
      result = Status::Timeout("write reached " + std::to_string(round->acks) + " of the " +
                               std::to_string(round->w) + " replicas it needs (" +
                               round->last_error + ")");
    }
  }
  if (!s.ok() && handoff_ != nullptr && Hintable(s)) {
    Status hs = handoff_->AddHint(node, round->key, round->record);
    if (!hs.ok()) spdlog::error("[coordinator] cannot store hint for {}: {}", node, hs.ToString());
  }
  if (answer) round->done(result, round->record.version);
}

void Coordinator::Read(const std::string& key, int r, uint64_t timeout_ms, ReadDone done) {
  std::vector<std::string> live;
  Replicas(key, &live, nullptr);
  if (static_cast<int>(live.size()) < r) {
    return done(Status::Unavailable("read needs " + std::to_string(r) + " replicas; " +
                                    std::to_string(live.size()) + " are up"),
                std::nullopt);
  }
  if (live.size() == 1 && r == 1) {
    // One replica (N = 1): nothing to compare or repair, so no round state;
    // the reply is the answer.
    // Same answers as a round of one (OnReadReply).
    return transport_->Read(
        live[0], key, timeout_ms, [this, done = std::move(done)](Status s, Record record) {
          if (s.IsNotFound()) return done(Status::OK(), std::nullopt);
          if (!s.ok()) {
            return done(Status::Timeout("read got 0 or fewer of the 1 replies it needs"),
                        std::nullopt);
          }
          clock_->Observe(record.version.hlc);
          done(Status::OK(), std::move(record));
        });
  }
  auto round = std::make_shared<ReadRound>();
  round->key = key;
  round->r = r;
  round->live = static_cast<int>(live.size());
  round->timeout_ms = timeout_ms;
  round->done = std::move(done);
  for (const std::string& node : live) {
    transport_->Read(node, key, timeout_ms, [this, round, node](Status s, Record record) {
      OnReadReply(round, node, std::move(s), std::move(record));
    });
  }
}

// A reply either completes the quorum (answer, after repairing the stale
// replicas among the quorum), arrives late (repair in the background if it is
// stale, or spread it if it is newer than what was answered), or is a failure
// that may make the quorum unreachable.
void Coordinator::OnReadReply(const std::shared_ptr<ReadRound>& round, const std::string& node,
                              Status s, Record record) {
  bool answer = false, failed = false;
  std::vector<std::string> stale;  // replicas to bring up to `newest`
  std::optional<Record> newest;
  {
    std::lock_guard<std::mutex> l(round->mu);
    if (!s.ok() && !s.IsNotFound()) {
      ++round->fails;
      if (!round->answered && round->live - round->fails < round->r) {
        round->answered = failed = true;
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
  if (failed) {
    return round->done(
        Status::Timeout("read got " + std::to_string(round->r - 1) + " or fewer of the " +
                        std::to_string(round->r) + " replies it needs"),
        std::nullopt);
  }
  if (newest) clock_->Observe(newest->version.hlc);
  if (!answer) {
    for (const std::string& n : stale) Repair(round->key, n, *newest, round->timeout_ms, [] {});
    return;
  }
  if (stale.empty()) return round->done(Status::OK(), std::move(newest));
  // Answer once every stale replica of the quorum has the newest version (or
  // failed to take it), so that no later quorum read can see an older one.
  auto remaining = std::make_shared<std::atomic<int>>(static_cast<int>(stale.size()));
  auto then = [round, newest, remaining] {
    if (remaining->fetch_sub(1) == 1) round->done(Status::OK(), newest);
  };
  for (const std::string& n : stale) Repair(round->key, n, *newest, round->timeout_ms, then);
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
                         uint64_t timeout_ms, std::function<void()> then) {
  transport_->Write(node, key, newest, timeout_ms,
                    [this, key, node, newest, then = std::move(then)](Status s) {
                      if (s.ok()) {
                        counters_->read_repairs.fetch_add(1, std::memory_order_relaxed);
                        LogRepair(key, node);
                      } else if (handoff_ != nullptr && Hintable(s)) {
                        handoff_->AddHint(node, key, newest).IgnoreError();
                      }
                      then();
                    });
}

}  // namespace ringkv::cluster
