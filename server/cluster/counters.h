// Counters kept by the cluster logic and reported by `stats`.
//
// Thread-safety: relaxed atomics; safe from any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace ringkv::cluster {

struct Counters {
  std::atomic<uint64_t> read_repairs{0};     // stale replicas written the newest version
  std::atomic<uint64_t> hints_written{0};    // hints stored for replicas that missed a write
  std::atomic<uint64_t> hints_delivered{0};  // hints acknowledged by their target and removed
  std::atomic<uint64_t> hints_dropped{0};    // hints older than the window, removed undelivered
  std::atomic<uint64_t> clock_skew_rejections{0};  // replica writes refused as too far ahead
  std::atomic<uint64_t> hints_failed{0};    // hints that could not be stored (disk full, I/O error)
  std::atomic<uint64_t> write_restamps{0};  // writes re-stamped above a newer replica version
  std::atomic<uint64_t> round_deadlines{0};  // rounds answered by their own deadline
  std::atomic<uint64_t> hints_retargeted{
      0};  // hints passed on: their target gave the partition away
  std::atomic<uint64_t> fenced_requests{0};      // peer requests refused as of another map epoch
  std::atomic<uint64_t> stale_epoch_retries{0};  // client requests retried after a map catch-up
};

}  // namespace ringkv::cluster
