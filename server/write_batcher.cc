#include "server/write_batcher.h"

#include <string>
#include <utility>
#include <vector>

#include "engine/record_cache.h"
#include "engine/store.h"
#include "server/deferrer.h"

namespace ringkv {

struct WriteBatcher::Batch {
  struct Entry {
    uint32_t partition;
    std::string key;
    Record record;
    Done done;
  };
  WriteBatcher* owner = nullptr;  // whose writes `entries` are
  std::vector<Entry> entries;
  size_t bytes = 0;
  bool scheduled = false;  // a deferred commit is on its way
};

namespace {
// The calling thread's batch. One per thread, not per batcher: a thread
// serves one node (tests with several nodes in one process still work: a
// batcher commits another's batch before starting its own).
thread_local WriteBatcher::Batch t_batch;
}  // namespace

WriteBatcher::WriteBatcher(Store* store, RecordCache* cache, WriteBatcherOptions options)
    : store_(store), cache_(cache), options_(options) {}

WriteBatcher::~WriteBatcher() {
  if (t_batch.owner == this) {
    Commit(&t_batch);
    t_batch.owner = nullptr;
  }
}

void WriteBatcher::Write(uint32_t partition, std::string_view key, const Record& record,
                         Done done) {
  Deferrer* deferrer = Deferrer::Current();
  if (deferrer == nullptr) {
    Status s = store_->Write(partition, key, record);
    if (s.ok()) cache_->OnWrite(key, record);
    commits_.fetch_add(1, std::memory_order_relaxed);
    writes_.fetch_add(1, std::memory_order_relaxed);
    return done(std::move(s));
  }
  Batch& batch = t_batch;
  if (batch.owner != this) {
    if (batch.owner != nullptr && !batch.entries.empty()) batch.owner->Commit(&batch);
    batch.owner = this;
  }
  batch.entries.push_back({partition, std::string(key), record, std::move(done)});
  batch.bytes += key.size() + record.value.size();
  if (batch.entries.size() >= options_.max_writes || batch.bytes >= options_.max_bytes) {
    return Commit(&batch);
  }
  if (!batch.scheduled) {
    batch.scheduled = true;
    deferrer->Defer([] {
      Batch& b = t_batch;
      b.scheduled = false;
      if (b.owner != nullptr && !b.entries.empty()) b.owner->Commit(&b);
    });
  }
}

void WriteBatcher::CommitIfPending(std::string_view key) {
  if (t_batch.owner != this) return;
  for (const Batch::Entry& e : t_batch.entries) {
    if (e.key == key) return Commit(&t_batch);
  }
}

void WriteBatcher::Commit(Batch* batch) {
  // Taken out first: the callbacks below may start the next batch.
  std::vector<Batch::Entry> entries;
  entries.swap(batch->entries);
  batch->bytes = 0;
  if (entries.empty()) return;

  std::vector<PartitionWrite> writes;
  writes.reserve(entries.size());
  for (const Batch::Entry& e : entries) writes.push_back({e.partition, e.key, &e.record});
  Status s = store_->WriteMany(writes);
  // The cache is raised only once the store holds the records (its coherence
  // rule), and before anyone is told the writes are done.
  if (s.ok()) {
    for (const Batch::Entry& e : entries) cache_->OnWrite(e.key, e.record);
  }
  commits_.fetch_add(1, std::memory_order_relaxed);
  writes_.fetch_add(entries.size(), std::memory_order_relaxed);
  for (Batch::Entry& e : entries) e.done(s);
}

}  // namespace ringkv
