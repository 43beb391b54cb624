#include "engine/record_cache.h"

#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace ringkv {

// One shard: an intrusive hash table of nodes and a CLOCK (second chance)
// ring over them, under one mutex.
//
// Each node is one allocation (std::make_shared) holding the key, the record,
// the chain and ring links and the reference count that readers share: a
// lookup hashes the key once (RecordCache passes the hash down), walks one
// chain comparing stored hashes, sets the node's reference bit and returns an
// aliasing shared_ptr to its record. The std::unordered_map over a std::list
// that this replaces took three to five dependent cache misses a hit (bucket,
// the node before, the list node holding the key, both neighbours for the
// move to the front) and hashed the key twice: _M_find_before_node alone was
// 6.4 % of kvd's CPU under get p1 (docs/benchmarks.md, step 5).
//
// Eviction is CLOCK over insertion order: the oldest node goes unless it was
// read since it last came round, in which case it is moved to the newest end
// with its bit cleared. A hit therefore writes one byte of the node instead
// of relinking three, and the ring still keeps what is read out of the way of
// eviction like an LRU list does.
class RecordCache::Shard {
 public:
  explicit Shard(size_t capacity) : capacity_(capacity), buckets_(kInitialBuckets) {}

  ~Shard() {
    while (oldest_ != nullptr) Remove(oldest_);
  }

  std::shared_ptr<const Record> Lookup(std::string_view key, uint64_t hash) {
    std::lock_guard<std::mutex> l(mu_);
    Node* n = Find(key, hash);
    if (n == nullptr) return nullptr;
    n->referenced = true;
    return std::shared_ptr<const Record>(n->self, &n->record);
  }

  uint64_t Epoch() {
    std::lock_guard<std::mutex> l(mu_);
    return epoch_;
  }

  void Fill(std::string_view key, uint64_t hash, const Record& record, uint64_t token) {
    std::lock_guard<std::mutex> l(mu_);
    if (token != epoch_) return;  // a write raced with the store read
    Upsert(key, hash, record, /*insert_if_absent=*/true);
  }

  void OnWrite(std::string_view key, uint64_t hash, const Record& record) {
    std::lock_guard<std::mutex> l(mu_);
    ++epoch_;
    Upsert(key, hash, record, /*insert_if_absent=*/false);
  }

  void Erase(std::string_view key, uint64_t hash) {
    std::lock_guard<std::mutex> l(mu_);
    ++epoch_;
    if (Node* n = Find(key, hash)) Remove(n);
  }

  size_t EraseIf(const std::function<bool(std::string_view)>& pred) {
    std::lock_guard<std::mutex> l(mu_);
    ++epoch_;
    size_t n = 0;
    for (Node* it = oldest_; it != nullptr;) {
      Node* newer = it->newer;
      if (pred(it->key)) {
        Remove(it);
        ++n;
      }
      it = newer;
    }
    return n;
  }

  size_t bytes() {
    std::lock_guard<std::mutex> l(mu_);
    return usage_;
  }
  size_t entries() {
    std::lock_guard<std::mutex> l(mu_);
    return size_;
  }

 private:
  static constexpr size_t kInitialBuckets = 16;  // a power of two

  struct Node {
    Node* chain = nullptr;  // the next node of its bucket
    Node* older = nullptr;  // the ring, in insertion order (second chances move a node)
    Node* newer = nullptr;
    uint64_t hash = 0;
    size_t charge = 0;
    bool referenced = false;  // read since the clock last passed it
    std::string key;
    Record record;
    // The shard's reference; readers hold aliases of it to `record`, so a
    // removed node lives on until the last reader lets go.
    std::shared_ptr<Node> self;
  };

  // REQUIRES: mu_ held.
  Node* Find(std::string_view key, uint64_t hash) const {
    for (Node* n = buckets_[hash & (buckets_.size() - 1)]; n != nullptr; n = n->chain) {
      if (n->hash == hash && n->key == key) return n;
    }
    return nullptr;
  }

  // Caches `record` unless an equal or newer one is cached already.
  // REQUIRES: mu_ held.
  void Upsert(std::string_view key, uint64_t hash, const Record& record, bool insert_if_absent) {
    bool referenced = false;
    if (Node* old = Find(key, hash)) {
      if (old->record.version >= record.version) return;
      referenced = old->referenced;
      Remove(old);
    } else if (!insert_if_absent) {
      return;
    }
    const size_t charge = Charge(key, record);
    if (charge > capacity_) return;
    auto node = std::make_shared<Node>();
    node->hash = hash;
    node->charge = charge;
    node->referenced = referenced;
    node->key.assign(key);
    node->record = record;
    node->self = node;
    Insert(node.get());
    while (usage_ > capacity_) EvictOne();
  }

  // REQUIRES: mu_ held.
  void Insert(Node* n) {
    Node** bucket = &buckets_[n->hash & (buckets_.size() - 1)];
    n->chain = *bucket;
    *bucket = n;
    LinkNewest(n);
    usage_ += n->charge;
    if (++size_ > buckets_.size()) Grow();
  }

  // Gives the oldest node its second chance or removes it.
  // REQUIRES: mu_ held, the ring not empty.
  void EvictOne() {
    // Terminates: every node passed over has its bit cleared, so within one
    // turn of the ring an unreferenced node comes up.
    for (;;) {
      Node* n = oldest_;
      if (!n->referenced || n == newest_) return Remove(n);
      n->referenced = false;
      Unlink(n);
      LinkNewest(n);
    }
  }

  // REQUIRES: mu_ held.
  void Remove(Node* n) {
    Node** p = &buckets_[n->hash & (buckets_.size() - 1)];
    while (*p != n) p = &(*p)->chain;
    *p = n->chain;
    Unlink(n);
    usage_ -= n->charge;
    --size_;
    std::shared_ptr<Node> last = std::move(n->self);  // may free n here
  }

  void LinkNewest(Node* n) {
    n->older = newest_;
    n->newer = nullptr;
    (newest_ != nullptr ? newest_->newer : oldest_) = n;
    newest_ = n;
  }

  void Unlink(Node* n) {
    (n->older != nullptr ? n->older->newer : oldest_) = n->newer;
    (n->newer != nullptr ? n->newer->older : newest_) = n->older;
    n->older = n->newer = nullptr;
  }

  // Doubles the table (load factor 1).
  void Grow() {
    std::vector<Node*> next(buckets_.size() * 2, nullptr);
    for (Node* n = oldest_; n != nullptr; n = n->newer) {
      Node** bucket = &next[n->hash & (next.size() - 1)];
      n->chain = *bucket;
      *bucket = n;
    }
    buckets_.swap(next);
  }

  const size_t capacity_;
  // mu_ protects the following.
  std::mutex mu_;
  std::vector<Node*> buckets_;
  Node* oldest_ = nullptr;
  Node* newest_ = nullptr;
  size_t size_ = 0;
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
  // High bits pick the shard; the table inside uses the low bits.
  return *shards_[shard_bits_ == 0 ? 0 : (*hash >> (64 - shard_bits_))];
}

std::shared_ptr<const Record> RecordCache::Lookup(std::string_view key) {
  uint64_t h;
  auto rec = capacity_ == 0 ? nullptr : ShardFor(key, &h).Lookup(key, h);
  (rec ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  return rec;
}

std::shared_ptr<const Record> RecordCache::Peek(std::string_view key) {
  uint64_t h;
  return capacity_ == 0 ? nullptr : ShardFor(key, &h).Lookup(key, h);
}

uint64_t RecordCache::BeginFill(std::string_view key) {
  uint64_t h;
  return ShardFor(key, &h).Epoch();
}

void RecordCache::Fill(std::string_view key, const Record& record, uint64_t token) {
  uint64_t h;
  if (capacity_ > 0) ShardFor(key, &h).Fill(key, h, record, token);
}

void RecordCache::OnWrite(std::string_view key, const Record& record) {
  uint64_t h;
  if (capacity_ > 0) ShardFor(key, &h).OnWrite(key, h, record);
}

void RecordCache::Erase(std::string_view key) {
  uint64_t h;
  ShardFor(key, &h).Erase(key, h);
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
