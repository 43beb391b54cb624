#include "server/local_replica.h"

#include <optional>
#include <utility>

#include "common/atomic_max.h"
#include "engine/version.h"

namespace ringkv {

LocalReplica::LocalReplica(const Options& options, uint32_t partitions,
                           cluster::Executor* background)
    : options_(options),
      partition_mask_(partitions - 1),
      background_(background),
      cache_(options.cache_bytes) {}

Status LocalReplica::Open(const Options& options, const StoreOptions& store_options,
                          cluster::Executor* background, std::unique_ptr<LocalReplica>* out) {
  std::unique_ptr<LocalReplica> r(new LocalReplica(options, store_options.partitions, background));
  RINGKV_RETURN_IF_ERROR(Store::Open(store_options, &r->store_));
  r->batcher_ = std::make_unique<WriteBatcher>(r->store_.get(), &r->cache_);
  if (std::optional<uint64_t> held = r->store_->RecordHlcWatermark()) {
    r->applied_hlc_ = *held;
  } else {
    RINGKV_RETURN_IF_ERROR(r->RaiseToClockCeiling());
  }
  *out = std::move(r);
  return Status::OK();
}

Status LocalReplica::RaiseToClockCeiling() {
  uint64_t ceiling = MakeHlc(options_.clock->NowMs() + options_.max_clock_skew_ms, kHlcLogicalMask);
  RINGKV_RETURN_IF_ERROR(store_->RaiseRecordHlcWatermark(ceiling));
  RaiseApplied(ceiling);
  return Status::OK();
}

void LocalReplica::RaiseApplied(uint64_t hlc) { AtomicRaise(applied_hlc_, hlc); }

// A write that is not newer than what this replica holds is not written: it
// is answered Stale with the held version (equal: OK, the replica has it), so
// that the coordinator can re-stamp above it (coordinator.h).
//
// The check costs a lookup (the cache, then the store; a write of the same key
// pending in this thread's group commit is committed first) only when it can
// matter: `applied_hlc_` is at least the version of every record this replica
// has taken, so a write stamped above it is newer than anything held and goes
// straight to the batcher. The watermark is raised before the write is
// acknowledged, so a write that starts after another was acknowledged here is
// either above it or checked.
void LocalReplica::WriteLocal(const std::string& key, const Record& record,
                              cluster::ReplicaTransport::WriteDone done) {
  const uint32_t partition = PartitionOf(key);
  uint64_t applied = applied_hlc_.load(std::memory_order_acquire);
  if (record.version.hlc <= applied) {
    version_checks_.fetch_add(1, std::memory_order_relaxed);
    batcher_->CommitIfPending(key);
    Record held;
    Status s;
    if (auto cached = cache_.Peek(key)) {
      held.version = cached->version;
    } else {
      s = store_->GetMeta(partition, key, &held);
    }
    if (s.ok() && !(held.version < record.version)) {
      if (held.version == record.version) return done(Status::OK());
      return done(Status::Stale(held.version.ToString()));
    }
    if (!s.ok() && !s.IsNotFound()) return done(s);
  }
  RaiseApplied(record.version.hlc);
  batcher_->Write(partition, key, record, std::move(done));
}

Status LocalReplica::ReadLocal(const std::string& key, Record* out) {
  if (gate_) {
    uint32_t p = PartitionOf(key);
    if (gate_(p)) {
      return Status::Unavailable("partition " + std::to_string(p) +
                                 " of this replica is being rebuilt");
    }
  }
  return ReadOwn(key, out);
}

Status LocalReplica::ReadOwn(const std::string& key, Record* out) {
  batcher_->CommitIfPending(key);  // a put pipelined before this get is seen
  if (auto cached = cache_.Lookup(key)) {
    *out = *cached;
    return Status::OK();
  }
  uint64_t token = cache_.BeginFill(key);
  RINGKV_RETURN_IF_ERROR(store_->Get(PartitionOf(key), key, out));
  cache_.Fill(key, *out, token);
  return Status::OK();
}

void LocalReplica::ForgetCached(uint32_t partition) {
  cache_.EraseIf([this, partition](std::string_view key) { return PartitionOf(key) == partition; });
}

Status LocalReplica::DropPartition(uint32_t partition) {
  Status s = store_->DropPartition(partition);
  ForgetCached(partition);
  return s;
}

Status LocalReplica::IngestPartition(uint32_t partition, const std::string& sst_path) {
  // The file's records were stamped elsewhere: until a write is above the
  // highest version they can carry, it is checked against what is held.
  RINGKV_RETURN_IF_ERROR(RaiseToClockCeiling());
  Status s = store_->IngestPartition(partition, sst_path);
  ForgetCached(partition);
  return s;
}

Status LocalReplica::TreeNow(uint32_t partition, aae::Tree* out) {
  return store_->AaeTree(partition, out);
}

Status LocalReplica::FetchNow(uint32_t partition, const std::vector<std::string>& keys,
                              cluster::AaeRecords* out) {
  for (const std::string& key : keys) {
    Record record;
    Status s = store_->Get(partition, key, &record);
    if (s.IsNotFound()) continue;
    RINGKV_RETURN_IF_ERROR(s);
    out->emplace_back(key, std::move(record));
  }
  return Status::OK();
}

Status LocalReplica::PutNow(uint32_t partition, const cluster::AaeRecords& records) {
  if (records.empty()) return Status::OK();
  std::vector<PartitionWrite> writes;
  writes.reserve(records.size());
  uint64_t newest = 0;
  for (const auto& [key, record] : records) {
    writes.push_back({partition, key, &record});
    newest = std::max(newest, record.version.hlc);
  }
  // Raised before the write, as WriteLocal() does: a coordinator's write
  // below it is then checked against what this one stores.
  RaiseApplied(newest);
  RINGKV_RETURN_IF_ERROR(store_->WriteMany(writes));
  for (const auto& [key, record] : records) cache_.OnWrite(key, record);
  return Status::OK();
}

void LocalReplica::Root(uint32_t partition, RootDone done) {
  background_->Run([this, partition, done = std::move(done)] {
    aae::Tree tree;
    Status s = TreeNow(partition, &tree);
    cluster::AaeRoot root;
    root.watermark = store_->GcWatermark(partition);
    if (s.ok()) root.branches = tree.branches();
    done(std::move(s), root);
  });
}

void LocalReplica::Branches(uint32_t partition, std::vector<uint32_t> branches, BranchesDone done) {
  background_->Run([this, partition, branches = std::move(branches), done = std::move(done)] {
    aae::Tree tree;
    Status s = TreeNow(partition, &tree);
    std::vector<cluster::AaeSegments> out;
    if (s.ok()) {
      for (uint32_t b : branches) {
        if (b >= aae::kBranches) {
          s = Status::BadRequest("branch out of range");
          break;
        }
        out.push_back(tree.BranchSegments(b));
      }
    }
    done(std::move(s), std::move(out));
  });
}

void LocalReplica::Keys(uint32_t partition, std::vector<uint32_t> segments, size_t limit,
                        KeysDone done) {
  background_->Run(
      [this, partition, segments = std::move(segments), limit, done = std::move(done)] {
        std::vector<aae::KeyVersion> keys;
        bool truncated = false;
        Status s = store_->AaeListKeys(partition, segments, limit, &keys, &truncated);
        done(std::move(s), std::move(keys), truncated);
      });
}

void LocalReplica::Fetch(uint32_t partition, std::vector<std::string> keys, RecordsDone done) {
  background_->Run([this, partition, keys = std::move(keys), done = std::move(done)] {
    cluster::AaeRecords out;
    Status s = FetchNow(partition, keys, &out);
    done(std::move(s), std::move(out));
  });
}

void LocalReplica::Scan(uint32_t partition, std::string after_key, size_t limit_keys,
                        size_t limit_bytes, ScanDone done) {
  background_->Run([this, partition, after_key = std::move(after_key), limit_keys, limit_bytes,
                    done = std::move(done)] {
    cluster::AaeRecords out;
    std::string next;
    Status s = store_->AaeScanRecords(partition, after_key, limit_keys, limit_bytes, &out, &next);
    done(std::move(s), std::move(out), std::move(next));
  });
}

void LocalReplica::Put(uint32_t partition, cluster::AaeRecords records, Done done) {
  background_->Run([this, partition, records = std::move(records), done = std::move(done)] {
    done(PutNow(partition, records));
  });
}

void LocalReplica::RaiseWatermark(uint32_t partition, uint64_t watermark_hlc, Done done) {
  background_->Run([this, partition, watermark_hlc, done = std::move(done)] {
    done(store_->RaiseGcWatermark(partition, watermark_hlc));
  });
}

}  // namespace ringkv
