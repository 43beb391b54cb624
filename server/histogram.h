// Histogram: a fixed-memory, log-linear latency histogram (HdrHistogram-style).
//
// Values 0..15 have a bucket each; every power-of-two range above that is cut
// into 16 equal sub-buckets, so any recorded value is reported within 1/16
// (6.25 %) of its true value. Memory is fixed (kBuckets counters) whatever is
// recorded; values beyond the top range land in the last bucket.
//
// Thread-safety: Record() and the readers are safe to call concurrently
// (relaxed atomics; a reader may see a histogram mid-update, never a torn one).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace ringkv {

class Histogram {
 public:
  static constexpr int kSubBits = 4;       // 16 sub-buckets per power of two
  static constexpr int kMaxExponent = 44;  // up to ~1.7e13
  static constexpr int kBuckets = (kMaxExponent - kSubBits + 2) << kSubBits;

  void Record(uint64_t value);
  // Adds every count of `other` into this one.
  void Merge(const Histogram& other);

  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  uint64_t sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t max() const { return max_.load(std::memory_order_relaxed); }
  // The value at quantile q in [0, 1]: the upper bound of the bucket holding
  // the ceil(q * count)-th smallest value, capped at max(). 0 when empty.
  uint64_t Percentile(double q) const;

  // Bucket arithmetic, exposed for tests and for exposition formats.
  static int BucketOf(uint64_t value);
  static uint64_t BucketUpperBound(int bucket);  // largest value in the bucket
  uint64_t BucketCount(int bucket) const {
    return buckets_[bucket].load(std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
  std::atomic<uint64_t> max_{0};
};

}  // namespace ringkv
