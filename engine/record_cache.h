// RecordCache: the in-memory cache of records in front of the Store.
//
// Sharded by key hash (each shard a hash table and a CLOCK ring, an
// approximation of LRU that costs a hit one write, under its own mutex);
// capacity is in bytes, charged as key + value + node id + a fixed per-entry
// overhead.
//
// Coherence: the cache never returns a record older than the store holds once
// the write that stored the newer record has returned from OnWrite(). Reads that
// miss fill the cache through BeginFill()/Fill(): a fill is dropped if any write
// to the same shard happened between BeginFill() and Fill(), because the record
// read from the store may predate that write. Writes never insert a record into
// a shard that lacks the key (the store may already hold a newer one); they only
// raise a cached record to the newer version.
//
// Thread-safety: all methods are safe to call concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "engine/record.h"

namespace ringkv {

class RecordCache {
 public:
  // Per-entry bookkeeping charged on top of key and value bytes.
  static constexpr size_t kEntryOverhead = 96;

  // capacity_bytes == 0 disables caching. shard_bits: 2^shard_bits shards.
  explicit RecordCache(size_t capacity_bytes, int shard_bits = 6);
  ~RecordCache();
  RecordCache(const RecordCache&) = delete;
  RecordCache& operator=(const RecordCache&) = delete;

  // The cached record of `key`, or nullptr (counted as a miss).
  std::shared_ptr<const Record> Lookup(std::string_view key);
  // Lookup() for a writer that checks the held version: not counted in
  // hits() and misses(), which describe reads.
  std::shared_ptr<const Record> Peek(std::string_view key);

  // Call before reading `key` from the store after a miss; pass the result to Fill().
  uint64_t BeginFill(std::string_view key);
  // Caches `record` (read from the store) unless a write to the shard has
  // happened since BeginFill() returned `token`, or a newer record is cached.
  void Fill(std::string_view key, const Record& record, uint64_t token);

  // Call after `record` has been written to the store.
  void OnWrite(std::string_view key, const Record& record);

  // Removes `key`, if cached.
  void Erase(std::string_view key);
  // Erases every entry whose key `pred` accepts (a partition dropped or
  // imported under the cache); fills begun before are dropped. Returns how
  // many were erased.
  size_t EraseIf(const std::function<bool(std::string_view key)>& pred);

  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  size_t bytes() const;
  size_t capacity_bytes() const { return capacity_; }
  size_t entries() const;

  static size_t Charge(std::string_view key, const Record& record) {
    return key.size() + record.value.size() + record.version.node.size() + kEntryOverhead;
  }

 private:
  class Shard;
  Shard& ShardFor(std::string_view key, uint64_t* hash);

  size_t capacity_;
  std::vector<std::unique_ptr<Shard>> shards_;
  int shard_bits_;
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
};

}  // namespace ringkv
