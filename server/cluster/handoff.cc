#include "server/cluster/handoff.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

#include "engine/version.h"

namespace ringkv::cluster {
namespace {

// Failures that will never succeed on retry: the target refuses the record.
bool Permanent(const Status& s) {
  return s.code() == Status::Code::kBadRequest || s.code() == Status::Code::kValueTooLarge ||
         s.code() == Status::Code::kKeyTooLarge;
}

}  // namespace

HintedHandoff::HintedHandoff(HandoffOptions options, Store* store, ReplicaTransport* transport,
                             const Membership* membership, const RingSource* rings,
                             const Clock* clock, Counters* counters)
    : options_(options),
      store_(store),
      transport_(transport),
      membership_(membership),
      rings_(rings),
      clock_(clock),
      counters_(counters) {}

Status HintedHandoff::Init() {
  std::map<std::string, uint64_t> counts;
  RINGKV_RETURN_IF_ERROR(store_->CountHints(&counts));
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [target, n] : counts) pending_[target] = n;
  return Status::OK();
}

Status HintedHandoff::AddHint(const std::string& target, const std::string& key,
                              const Record& record) {
  RINGKV_RETURN_IF_ERROR(store_->PutHint(target, key, record));
  counters_->hints_written.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(mu_);
  ++pending_[target];
  ++added_[target];
  return Status::OK();
}

void HintedHandoff::Tick() {
  std::vector<std::string> targets;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [target, n] : pending_) {
      if (n > 0) targets.push_back(target);
    }
  }
  const Ring* ring = rings_->Current();
  const std::vector<std::string>& members = ring->members();
  for (const std::string& target : targets) {
    // A node that is no longer a member gets nothing: its hints follow its
    // partitions to their new replicas (Retarget), whether it is up or not.
    const bool member = std::find(members.begin(), members.end(), target) != members.end();
    if (member && !membership_->IsUp(target)) continue;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (in_flight_[target] || pending_[target] == 0) continue;
      in_flight_[target] = true;
    }
    InBackground([this, target] { DeliverBatch(target); });
  }
}

void HintedHandoff::InBackground(std::function<void()> fn) {
  if (options_.background == nullptr) return fn();
  options_.background->Run(std::move(fn));
}

// One batch: list up to `batch` hints after the target's cursor, drop the
// expired ones, send the rest, and delete each once acknowledged.
// FinishBatch() runs when the last reply is in.
//
// Why a cursor: delivered hints leave deletion markers behind, and listing
// from the start of the target's range every time would step over all of
// them again and again (quadratic in the backlog). A pass walks the range
// once; a hint that failed, or arrived behind the cursor, is picked up by
// the next pass.
void HintedHandoff::DeliverBatch(const std::string& target) {
  std::string cursor;
  {
    std::lock_guard<std::mutex> l(mu_);
    Pass& pass = passes_[target];
    if (pass.cursor.empty()) {
      pass.added_at_start = added_[target];
      pass.delivered_at_start = counters_->hints_delivered.load(std::memory_order_relaxed);
      pass.all_ok = true;
    }
    cursor = pass.cursor;
  }
  std::vector<Hint> hints;
  Status s = store_->ListHints(target, cursor, options_.batch, &hints);
  if (!s.ok()) {
    spdlog::error("[handoff] cannot list hints for {}: {}", target, s.ToString());
    return FinishBatch(target, false, "", true);
  }
  if (hints.empty()) return FinishBatch(target, true, "", true);

  struct Batch {
    std::atomic<size_t> remaining;
    std::atomic<bool> all_ok{true};
    std::string last_key;
    bool end_of_pass;
  };
  auto batch = std::make_shared<Batch>();
  batch->remaining = hints.size();
  batch->last_key = hints.back().key;
  batch->end_of_pass = hints.size() < options_.batch;
  auto finish_one = [this, target, batch] {
    if (batch->remaining.fetch_sub(1) == 1) {
      FinishBatch(target, batch->all_ok.load(), batch->end_of_pass ? "" : batch->last_key,
                  batch->end_of_pass);
    }
  };
  uint64_t now = clock_->NowMs();
  for (Hint& hint : hints) {
    if (HlcPhysicalMs(hint.record.version.hlc) + options_.max_age_ms < now) {
      Remove(hint, &counters_->hints_dropped);
      finish_one();
      continue;
    }
    if (Retarget(hint, finish_one)) continue;
    auto h = std::make_shared<Hint>(std::move(hint));
    transport_->Write(target, h->key, h->record, Epoch{}, options_.timeout_ms,
                      [this, h, batch, finish_one](Status ws) {
                        InBackground([this, h, batch, finish_one, ws = std::move(ws)] {
                          if (ws.ok() || ws.IsStale()) {
                            Remove(*h, &counters_->hints_delivered);
                          } else if (Permanent(ws)) {
                            spdlog::warn("[handoff] {} refused a hint, dropped: {}", h->target,
                                         ws.ToString());
                            Remove(*h, &counters_->hints_dropped);
                          } else {
                            batch->all_ok = false;
                          }
                          finish_one();
                        });
                      });
  }
}

bool HintedHandoff::Retarget(const Hint& hint, std::function<void()> then) {
  const Ring* ring = rings_->Current();
  const uint32_t p = ring->PartitionOf(hint.key);
  if (ring->epoch() == 0 || ring->Replicates(hint.target, p)) return false;
  // The target gave the partition away (a membership change): every replica
  // that holds it now gets the hint instead (a hint of its own, or this
  // node's write). LWW makes extra copies harmless. The hint is removed once
  // all have it; a failure keeps it for the next pass.
  std::vector<std::string> nodes = ring->WriteSet(p);
  for (const std::string& n : ring->NewWriteSet(p)) nodes.push_back(n);
  auto state = std::make_shared<std::pair<std::atomic<int>, std::atomic<bool>>>();
  state->first = 1;
  state->second = true;
  auto one_done = [this, state, hint, then](bool ok) {
    if (!ok) state->second = false;
    if (state->first.fetch_sub(1) != 1) return;
    if (state->second.load()) {
      counters_->hints_retargeted.fetch_add(1, std::memory_order_relaxed);
      Remove(hint, &counters_->hints_delivered);
    }
    then();
  };
  for (const std::string& n : nodes) {
    if (n == hint.target) continue;
    if (n == membership_->self()) {
      state->first.fetch_add(1);
      transport_->Write(n, hint.key, hint.record, Epoch{}, options_.timeout_ms,
                        [this, one_done](Status s) {
                          InBackground([one_done, ok = s.ok() || s.IsStale()] { one_done(ok); });
                        });
      continue;
    }
    Status s = AddHint(n, hint.key, hint.record);
    if (!s.ok()) {
      spdlog::error("[handoff] cannot pass a hint for {} on to {}: {}", hint.target, n,
                    s.ToString());
      state->second = false;
    }
  }
  one_done(true);
  return true;
}

void HintedHandoff::Remove(const Hint& hint, std::atomic<uint64_t>* counter) {
  bool removed = false;
  Status s = store_->DeleteHint(hint, &removed);
  if (!s.ok()) {
    spdlog::error("[handoff] cannot delete hint: {}", s.ToString());
    return;
  }
  if (!removed) return;  // a newer hint for the key arrived; it stays
  counter->fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(mu_);
  uint64_t& p = pending_[hint.target];
  if (p > 0) --p;
}

// Continues at once while the target keeps taking batches; otherwise waits
// for the next Tick(). A failure ends the pass, so the next one starts over.
void HintedHandoff::FinishBatch(const std::string& target, bool ok, const std::string& next_cursor,
                                bool end_of_pass) {
  bool more = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    Pass& pass = passes_[target];
    pass.all_ok = pass.all_ok && ok;
    if (!ok) end_of_pass = true;
    if (end_of_pass) {
      // A clean pass delivered every hint it listed; only hints added since
      // it began can remain.
      if (pass.all_ok) pending_[target] = added_[target] - pass.added_at_start;
      uint64_t delivered = counters_->hints_delivered.load(std::memory_order_relaxed);
      if (delivered > pass.delivered_at_start) {
        spdlog::info("[handoff] delivered {} hints to {}; {} pending",
                     delivered - pass.delivered_at_start, target, pending_[target]);
      }
      pass.cursor.clear();
    } else {
      pass.cursor = next_cursor;
    }
    more = ok && !end_of_pass;
    if (!more) in_flight_[target] = false;
  }
  if (more) DeliverBatch(target);
}

uint64_t HintedHandoff::pending() const {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t total = 0;
  for (const auto& [t, n] : pending_) total += n;
  return total;
}

std::map<std::string, uint64_t> HintedHandoff::pending_per_target() const {
  std::lock_guard<std::mutex> l(mu_);
  return pending_;
}

}  // namespace ringkv::cluster
