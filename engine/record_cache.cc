#include "engine/record_cache.h"

#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

namespace ringkv {
namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

}  // namespace

// One LRU list and index under one mutex.
class RecordCache::Shard {
 public:
  explicit Shard(size_t capacity) : capacity_(capacity) {}

  std::shared_ptr<const Record> Lookup(std::string_view key) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
    return it->second->record;
  }

  uint64_t Epoch() {
    std::lock_guard<std::mutex> l(mu_);
    return epoch_;
  }

  void Fill(std::string_view key, const Record& record, uint64_t token) {
    std::lock_guard<std::mutex> l(mu_);
    if (token != epoch_) return;  // a write raced with the store read
    Upsert(key, record, /*insert_if_absent=*/true);
  }

  void OnWrite(std::string_view key, const Record& record) {
    std::lock_guard<std::mutex> l(mu_);
    ++epoch_;
    Upsert(key, record, /*insert_if_absent=*/false);
  }

  void Erase(std::string_view key) {
    std::lock_guard<std::mutex> l(mu_);
    ++epoch_;
    auto it = index_.find(key);
    if (it != index_.end()) Remove(it->second);
  }

  size_t EraseIf(const std::function<bool(std::string_view)>& pred) {
    std::lock_guard<std::mutex> l(mu_);
    ++epoch_;
    size_t n = 0;
    for (auto it = lru_.begin(); it != lru_.end();) {
      auto next = std::next(it);
      if (pred(it->key)) {
        Remove(it);
        ++n;
      }
      it = next;
    }
    return n;
  }

  size_t bytes() {
    std::lock_guard<std::mutex> l(mu_);
    return usage_;
  }
  size_t entries() {
    std::lock_guard<std::mutex> l(mu_);
    return index_.size();
  }

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const Record> record;
    size_t charge;
  };
  using List = std::list<Entry>;

  // Caches `record` unless an equal or newer one is cached already.
  // REQUIRES: mu_ held.
  void Upsert(std::string_view key, const Record& record, bool insert_if_absent) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      if (it->second->record->version >= record.version) return;
      Remove(it->second);
    } else if (!insert_if_absent) {
      return;
    }
    size_t charge = Charge(key, record);
    if (charge > capacity_) return;
    lru_.push_front(Entry{std::string(key), std::make_shared<const Record>(record), charge});
    index_.emplace(lru_.front().key, lru_.begin());
    usage_ += charge;
    while (usage_ > capacity_) Remove(std::prev(lru_.end()));
  }

  // REQUIRES: mu_ held.
  void Remove(List::iterator it) {
    usage_ -= it->charge;
    index_.erase(std::string_view(it->key));
    lru_.erase(it);
  }

  const size_t capacity_;
  // mu_ protects the following.
  std::mutex mu_;
  List lru_;
  std::unordered_map<std::string_view, List::iterator, StringHash, std::equal_to<>> index_;
  size_t usage_ = 0;
  uint64_t epoch_ = 0;  // bumped by every write to the shard
};

RecordCache::RecordCache(size_t capacity_bytes, int shard_bits)
    : capacity_(capacity_bytes), shard_bits_(shard_bits) {
  size_t n = size_t{1} << shard_bits;
  for (size_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(capacity_bytes / n));
}

RecordCache::~RecordCache() = default;

RecordCache::Shard& RecordCache::ShardFor(std::string_view key, uint64_t* hash) {
  *hash = std::hash<std::string_view>()(key);
  // High bits pick the shard; the map inside uses the (mixed) full hash.
  return *shards_[shard_bits_ == 0 ? 0 : (*hash >> (64 - shard_bits_))];
}

std::shared_ptr<const Record> RecordCache::Lookup(std::string_view key) {
  uint64_t h;
  auto rec = capacity_ == 0 ? nullptr : ShardFor(key, &h).Lookup(key);
  (rec ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  return rec;
}

std::shared_ptr<const Record> RecordCache::Peek(std::string_view key) {
  uint64_t h;
  return capacity_ == 0 ? nullptr : ShardFor(key, &h).Lookup(key);
}

uint64_t RecordCache::BeginFill(std::string_view key) {
  uint64_t h;
  return ShardFor(key, &h).Epoch();
}

void RecordCache::Fill(std::string_view key, const Record& record, uint64_t token) {
  uint64_t h;
  if (capacity_ > 0) ShardFor(key, &h).Fill(key, record, token);
}

void RecordCache::OnWrite(std::string_view key, const Record& record) {
  uint64_t h;
  if (capacity_ > 0) ShardFor(key, &h).OnWrite(key, record);
}

void RecordCache::Erase(std::string_view key) {
  uint64_t h;
  ShardFor(key, &h).Erase(key);
}

size_t RecordCache::EraseIf(const std::function<bool(std::string_view)>& pred) {
  size_t n = 0;
  for (auto& shard : shards_) n += shard->EraseIf(pred);
  return n;
}

size_t RecordCache::bytes() const {
  size_t total = 0;
  for (const auto& s : shards_) total += s->bytes();
  return total;
}

size_t RecordCache::entries() const {
  size_t total = 0;
  for (const auto& s : shards_) total += s->entries();
  return total;
}

}  // namespace ringkv
