// A Jepsen-style checker for histories of puts and gets against RingKV.
//
// Concurrent clients record every operation they issue (Op): when it was
// sent and answered, its outcome, the value written or read and the version
// answered. Every write writes a value unique within its key, so a read's
// value names the write it came from. Versions are ordered as the engine
// orders them (engine/version.h: HLC, then node id); a read that found nothing
// has the lowest version of all.
//
// Anomalies, for one key k (w, x, f: writes of k; r, r1, r2: successful reads of k):
//
//   lost          An acknowledged write w is lost if the key's final value
//                 (read after the cluster has converged) is not w's and was
//                 written by a write f with a lower version than w's, or by a
//                 write f that completed before w was invoked; or if the final
//                 state has no value, or a value no write of the history wrote.
//                 I.e. a final value may only be the acknowledged write with
//                 the highest version, or a later one that may have happened.
//   stale         A read r is stale if an acknowledged write w completed before
//                 r was invoked and r's version is lower than w's, or r's value
//                 came from a write x that completed before w was invoked
//                 (x -> w -> r in real time: x was superseded before r began).
//   non-monotonic A read r2 is non-monotonic if a read r1 (by any client)
//                 completed before r2 was invoked with a higher version.
//   phantom       A read returned a value no write of the history wrote, one
//                 written by a write answered as definitely failed (e.g.
//                 `unavailable`: nothing was written), or a version other than
//                 the one its acknowledged write answered.
//
// Pure: no I/O, no clocks. Thread-safety: History::Add may be called from any
// thread; Check() reads only its arguments.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ringkv::fault {

enum class OpType { kWrite, kRead };

enum class Outcome {
  kOk,       // acknowledged
  kFail,     // definitely not applied (`unavailable`, `bad_request`, ...)
  kUnknown,  // may or may not have been applied (`timeout`, transport error)
};

struct Op {
  OpType type = OpType::kWrite;
  int client = 0;
  std::string key;
  // When the request was sent and when its answer arrived (or the client gave
  // up), in nanoseconds of a steady clock: fine enough that a client's next
  // request is always invoked strictly after its previous one completed.
  int64_t invoke_ns = 0;
  int64_t complete_ns = 0;
  Outcome outcome = Outcome::kUnknown;
  std::string code;  // the error code when not ok ("transport" for no answer)
  // A write: the value written. A read that found one: the value read.
  std::string value;
  bool found = false;   // a read found a value
  std::string version;  // the version answered (ok writes, found reads)
  std::string node;     // the coordinator, for reports
};

// A key's state once the cluster has converged (e.g. read with r:"all").
struct FinalState {
  bool found = false;
  std::string value;
  std::string version;
};

struct CheckResult {
  int64_t writes = 0;
  int64_t acknowledged = 0;
  int64_t reads = 0;  // successful reads
  int64_t lost = 0;
  int64_t stale = 0;
  int64_t nonmonotonic = 0;
  int64_t phantom = 0;
  std::vector<std::string> examples;  // the first anomalies, described

  int64_t violations() const { return lost + stale + nonmonotonic + phantom; }
  // "writes=... acknowledged=... reads=... lost=... stale=... nonmonotonic=... phantom=..."
  std::string Summary() const;
};

// Checks `history`. Lost writes are checked only for keys in `final_state`.
// REQUIRES: values of the writes of one key are unique; versions are
// well-formed (a malformed one is reported as phantom).
CheckResult Check(const std::vector<Op>& history,
                  const std::map<std::string, FinalState>& final_state, size_t max_examples = 10);

// A thread-safe log that worker threads append to.
class History {
 public:
  void Add(Op op) {
    std::lock_guard<std::mutex> lock(mu_);
    ops_.push_back(std::move(op));
  }
  // REQUIRES: no concurrent Add().
  const std::vector<Op>& ops() const { return ops_; }

 private:
  std::mutex mu_;
  std::vector<Op> ops_;
};

}  // namespace ringkv::fault
