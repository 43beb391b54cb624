// WriteBatcher: group commit of the local writes that one I/O thread's wake-up
// produces.
//
// With 50 connections at pipeline 1, each wake-up of an I/O thread hands it
// the requests of a dozen connections or more. Written one by one, every
// write paid a RocksDB write of its own: a WAL append (a write() syscall; an
// fsync with --sync-writes) and a write-group hand-off with the other I/O
// thread (futex, sched_yield). The batcher collects the writes of one wake-up
// and commits them as one WriteBatch once the ready handlers have run (see
// server/deferrer.h), then raises the record cache and completes them in
// order. Off the I/O threads (no Deferrer) a write is committed at once.
//
// Ordering: a read of a key with a write pending in this thread's batch must
// call CommitIfPending() first, so that a get pipelined after a put on one
// connection still sees the put.
//
// Thread-safety: safe from any thread; each thread has its own batch.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string_view>

#include "engine/record.h"
#include "engine/status.h"

namespace ringkv {

class RecordCache;
class Store;

struct WriteBatcherOptions {
  // A batch this full is committed at once rather than at the end of the wake-up.
  size_t max_writes = 256;
  size_t max_bytes = 1ULL << 20;  // keys + values
};

class WriteBatcher {
 public:
  using Done = std::function<void(Status)>;

  // REQUIRES: `store` and `cache` outlive the batcher, and the I/O threads
  // that batch through it are stopped before it is destroyed.
  WriteBatcher(Store* store, RecordCache* cache, WriteBatcherOptions options = {});
  // Commits this thread's batch, if it is ours.
  ~WriteBatcher();

  WriteBatcher(const WriteBatcher&) = delete;
  WriteBatcher& operator=(const WriteBatcher&) = delete;

  // Merges `record` into `key` of `partition` (Store::Write), raises the
  // cache (RecordCache::OnWrite) and calls done(status): later on this
  // thread if it has a Deferrer, else before returning. `done` may be called
  // from inside another call of this batcher (a commit runs the callbacks).
  void Write(uint32_t partition, std::string_view key, const Record& record, Done done);

  // If this thread's batch holds a write of `key`, commits the batch now.
  void CommitIfPending(std::string_view key);

  // Commits so far, and the writes they held (writes / commits = mean batch).
  uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }
  uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }

  struct Batch;  // a thread's pending writes (defined in the .cc)

 private:
  void Commit(Batch* batch);

  Store* const store_;
  RecordCache* const cache_;
  const WriteBatcherOptions options_;
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> writes_{0};
};

}  // namespace ringkv
