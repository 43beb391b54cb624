#include "server/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "common/atomic_max.h"

namespace ringkv {

int Histogram::BucketOf(uint64_t value) {
  constexpr uint64_t kSub = 1u << kSubBits;
  if (value < kSub) return static_cast<int>(value);
  int exp = 63 - std::countl_zero(value);  // value in [2^exp, 2^(exp+1))
  if (exp > kMaxExponent) return kBuckets - 1;
  int sub = static_cast<int>((value >> (exp - kSubBits)) & (kSub - 1));
  return ((exp - kSubBits + 1) << kSubBits) + sub;
}

uint64_t Histogram::BucketUpperBound(int bucket) {
  constexpr int kSub = 1 << kSubBits;
  if (bucket < kSub) return static_cast<uint64_t>(bucket);
  int exp = (bucket >> kSubBits) + kSubBits - 1;
  uint64_t sub = static_cast<uint64_t>(bucket & (kSub - 1));
  uint64_t width = uint64_t{1} << (exp - kSubBits);
  return (uint64_t{1} << exp) + (sub + 1) * width - 1;
}

void Histogram::Record(uint64_t value) {
  buckets_[BucketOf(value)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  AtomicRaise(max_, value, std::memory_order_relaxed);
}

void Histogram::Merge(const Histogram& other) {
  for (int i = 0; i < kBuckets; ++i) {
    if (uint64_t n = other.BucketCount(i)) buckets_[i].fetch_add(n, std::memory_order_relaxed);
  }
  count_.fetch_add(other.count(), std::memory_order_relaxed);
  sum_.fetch_add(other.sum(), std::memory_order_relaxed);
  AtomicRaise(max_, other.max(), std::memory_order_relaxed);
}

uint64_t Histogram::Percentile(double q) const {
  // Sum the buckets rather than trusting count_: a concurrent Record() may
  // have bumped one and not yet the other.
  uint64_t total = 0;
  for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
  if (total == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * total)));
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    // The last bucket is open-ended: its best estimate is the maximum itself.
    if (seen >= rank) return i == kBuckets - 1 ? max() : std::min(BucketUpperBound(i), max());
  }
  return max();
}

}  // namespace ringkv
