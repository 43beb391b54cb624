#include "tests/fault/checker.h"

#include <algorithm>
#include <sstream>
#include <unordered_map>

#include "engine/version.h"

namespace ringkv::fault {

namespace {

// A version, or the lowest one for "" (nothing found).
bool ParseVersion(const std::string& text, Version* out) {
  *out = Version();
  if (text.empty()) return true;
  return Version::Parse(text, out).ok();
}

std::string Describe(const Op& op) {
  std::ostringstream s;
  s << (op.type == OpType::kWrite ? "put" : "get") << " by client " << op.client << " via "
    << (op.node.empty() ? "?" : op.node) << " [" << op.invoke_ns << ".." << op.complete_ns
    << " ns] ";
  if (op.type == OpType::kWrite) {
    s << "value " << op.value;
  } else {
    s << (op.found ? "read " + op.value : std::string("found nothing"));
  }
  if (!op.version.empty()) s << " version " << op.version;
  if (op.outcome != Outcome::kOk) s << " (" << op.code << ")";
  return s.str();
}

// Prefix maxima over acknowledged writes sorted by completion, so that "the
// acknowledged writes that completed before time t" is a binary search.
struct AckedIndex {
  std::vector<int64_t> complete;    // sorted
  std::vector<size_t> max_version;  // index into `writes` of the highest version so far
  std::vector<size_t> max_invoke;   // index of the latest-invoked so far
};

class KeyChecker {
 public:
  KeyChecker(const std::vector<const Op*>& ops, CheckResult* result, size_t max_examples)
      : result_(result), max_examples_(max_examples) {
    for (const Op* op : ops) {
      if (op->type == OpType::kWrite) {
        writes_.push_back(op);
      } else if (op->outcome == Outcome::kOk) {
        reads_.push_back(op);
      }
    }
    versions_.resize(writes_.size());
    for (size_t i = 0; i < writes_.size(); ++i) {
      by_value_[writes_[i]->value] = i;
      if (writes_[i]->outcome == Outcome::kOk &&
          !ParseVersion(writes_[i]->version, &versions_[i])) {
        Report(&result_->phantom, "malformed version: " + Describe(*writes_[i]));
      }
    }
    BuildAckedIndex();
  }

  void CheckReads() {
    std::vector<Version> read_versions(reads_.size());
    for (size_t i = 0; i < reads_.size(); ++i) {
      const Op& r = *reads_[i];
      if (!ParseVersion(r.found ? r.version : "", &read_versions[i])) {
        Report(&result_->phantom, "malformed version: " + Describe(r));
      }
      CheckPhantom(r, read_versions[i]);
      CheckStale(r, read_versions[i]);
    }
    CheckMonotonic(read_versions);
  }

  void CheckLost(const FinalState& final_state) {
    Version final_version;
    const Op* f = nullptr;
    if (final_state.found) {
      auto it = by_value_.find(final_state.value);
      if (it != by_value_.end()) f = writes_[it->second];
      ParseVersion(final_state.version, &final_version);
    }
    for (size_t i = 0; i < writes_.size(); ++i) {
      const Op& w = *writes_[i];
      if (w.outcome != Outcome::kOk || f == &w) continue;
      std::string why;
      if (!final_state.found) {
        why = "the key has no final value";
      } else if (f == nullptr) {
        why = "the final value " + final_state.value + " was never written";
      } else if (final_version < versions_[i]) {
        why = "the final value " + final_state.value + " has the lower version " +
              final_state.version;
      } else if (f->complete_ns < w.invoke_ns) {
        why = "the final value comes from " + Describe(*f) + ", which completed before it began";
      }
      if (!why.empty()) Report(&result_->lost, "lost " + Describe(w) + ": " + why);
    }
  }

 private:
  void Report(int64_t* counter, const std::string& text) {
    ++*counter;
    if (result_->examples.size() < max_examples_) result_->examples.push_back(text);
  }

  void BuildAckedIndex() {
    std::vector<size_t> acked;
    for (size_t i = 0; i < writes_.size(); ++i) {
      if (writes_[i]->outcome == Outcome::kOk) acked.push_back(i);
    }
    std::sort(acked.begin(), acked.end(), [&](size_t a, size_t b) {
      return writes_[a]->complete_ns < writes_[b]->complete_ns;
    });
    for (size_t k = 0; k < acked.size(); ++k) {
      size_t i = acked[k];
      index_.complete.push_back(writes_[i]->complete_ns);
      size_t best_v = i, best_inv = i;
      if (k > 0) {
        size_t pv = index_.max_version.back(), pi = index_.max_invoke.back();
        if (versions_[pv] > versions_[i]) best_v = pv;
        if (writes_[pi]->invoke_ns > writes_[i]->invoke_ns) best_inv = pi;
      }
      index_.max_version.push_back(best_v);
      index_.max_invoke.push_back(best_inv);
    }
  }

  // How many acknowledged writes completed strictly before `t`.
  size_t AckedBefore(int64_t t) const {
    return static_cast<size_t>(std::lower_bound(index_.complete.begin(), index_.complete.end(), t) -
                               index_.complete.begin());
  }

  void CheckPhantom(const Op& r, const Version& version) {
    if (!r.found) return;
    auto it = by_value_.find(r.value);
    if (it == by_value_.end()) {
      Report(&result_->phantom, "never written: " + Describe(r));
      return;
    }
    const Op& w = *writes_[it->second];
    if (w.outcome == Outcome::kFail) {
      Report(&result_->phantom, Describe(r) + " was written by failed " + Describe(w));
    } else if (w.outcome == Outcome::kOk && !(versions_[it->second] == version)) {
      Report(&result_->phantom, Describe(r) + " differs in version from " + Describe(w));
    }
  }

  void CheckStale(const Op& r, const Version& version) {
    size_t n = AckedBefore(r.invoke_ns);
    if (n == 0) return;
    const Op& newest = *writes_[index_.max_version[n - 1]];
    if (version < versions_[index_.max_version[n - 1]]) {
      Report(&result_->stale, "stale " + Describe(r) + ": older than " + Describe(newest) +
                                  ", acknowledged before it began");
      return;
    }
    if (!r.found) return;
    auto it = by_value_.find(r.value);
    if (it == by_value_.end()) return;
    const Op& x = *writes_[it->second];
    const Op& latest = *writes_[index_.max_invoke[n - 1]];
    if (x.complete_ns < latest.invoke_ns) {
      Report(&result_->stale, "stale " + Describe(r) + ": its write completed before " +
                                  Describe(latest) + " began, which completed before the read");
    }
  }

  void CheckMonotonic(const std::vector<Version>& read_versions) {
    std::vector<size_t> order(reads_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return reads_[a]->complete_ns < reads_[b]->complete_ns; });
    std::vector<int64_t> complete;
    std::vector<size_t> max_version;  // index into reads_
    for (size_t k = 0; k < order.size(); ++k) {
      complete.push_back(reads_[order[k]]->complete_ns);
      size_t best = order[k];
      if (k > 0 && read_versions[max_version.back()] > read_versions[best]) {
        best = max_version.back();
      }
      max_version.push_back(best);
    }
    for (size_t i = 0; i < reads_.size(); ++i) {
      size_t n = static_cast<size_t>(
          std::lower_bound(complete.begin(), complete.end(), reads_[i]->invoke_ns) -
          complete.begin());
      if (n == 0) continue;
      size_t prior = max_version[n - 1];
      if (read_versions[i] < read_versions[prior]) {
        Report(&result_->nonmonotonic, "non-monotonic " + Describe(*reads_[i]) + ": after " +
                                           Describe(*reads_[prior]) + " had completed");
      }
    }
  }

  CheckResult* result_;
  size_t max_examples_;
  std::vector<const Op*> writes_;
  std::vector<Version> versions_;  // of writes_ (lowest for unacknowledged ones)
  std::vector<const Op*> reads_;   // successful reads only
  std::unordered_map<std::string, size_t> by_value_;
  AckedIndex index_;
};

}  // namespace

std::string CheckResult::Summary() const {
  std::ostringstream s;
  s << "writes=" << writes << " acknowledged=" << acknowledged << " reads=" << reads
    << " lost=" << lost << " stale=" << stale << " nonmonotonic=" << nonmonotonic
    << " phantom=" << phantom;
  return s.str();
}

CheckResult Check(const std::vector<Op>& history,
                  const std::map<std::string, FinalState>& final_state, size_t max_examples) {
  CheckResult result;
  std::map<std::string, std::vector<const Op*>> by_key;
  for (const Op& op : history) {
    by_key[op.key].push_back(&op);
    if (op.type == OpType::kWrite) {
      ++result.writes;
      result.acknowledged += op.outcome == Outcome::kOk;
    } else {
      result.reads += op.outcome == Outcome::kOk;
    }
  }
  for (const auto& [key, ops] : by_key) {
    KeyChecker checker(ops, &result, max_examples);
    checker.CheckReads();
    auto it = final_state.find(key);
    if (it != final_state.end()) checker.CheckLost(it->second);
  }
  return result;
}

}  // namespace ringkv::fault
