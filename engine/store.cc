#include "engine/store.h"

#include <endian.h>
#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/transaction_log.h>
#include <rocksdb/utilities/backup_engine.h>
#include <rocksdb/write_buffer_manager.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/atomic_max.h"
#include "engine/lww.h"

namespace ringkv {
namespace {

constexpr char kMetaFamily[] = "meta";
constexpr char kHintsFamily[] = "hints";
constexpr char kMetaNodeId[] = "node_id";
constexpr char kMetaPartitions[] = "partitions";
constexpr char kMetaFormat[] = "format";
constexpr char kFormatVersion[] = "1";
// Anti-entropy state in the meta family: per partition the GC watermark
// (decimal HLC) and, written by a clean close only, the tree's segments
// followed by its dirty bitmap; the marker says those trees are current.
constexpr char kMetaGcWatermarkPrefix[] = "gc_watermark/";
constexpr char kMetaAaeTreePrefix[] = "aae_tree/";
constexpr char kMetaAaeCleanMarker[] = "aae_clean";
constexpr char kMetaNodeValuePrefix[] = "node/";
// The greatest version (HLC) of any record written to a partition family,
// kept as a record merged by the LWW operator: batches from several threads
// may reach RocksDB in any order, and the merge keeps the greatest whatever
// the order (see Store::RecordHlcWatermark).
constexpr char kMetaRecordHlc[] = "record_hlc";
constexpr size_t kDirtyWords = aae::kSegments / 64;
// Memtable arena block; see PartitionOptions().
constexpr size_t kArenaBlockBytes = 64ULL << 10;
// A thread's reusable write batch is replaced after a commit bigger than this.
constexpr size_t kKeepBatchBytes = 1ULL << 20;
// RocksDB's info log is started afresh (the old one kept) past this size.
constexpr size_t kInfoLogBytes = 8ULL << 20;

// After a failed Resume() on a disk that is still full, the next attempt waits
// this long at most (the wait doubles from resume_interval_ms)...
constexpr uint64_t kMaxResumeBackoffMs = 8000;
// ...unless free space grew by this much since the failed attempt.
constexpr uint64_t kFreedEnoughBytes = 1ULL << 20;
// At most one "still cannot write" line per this many ms.
constexpr uint64_t kResumeLogEveryMs = 30000;

// True if `s` reports a full disk: RocksDB's NoSpace (PosixWritableFile turns
// ENOSPC into it), or another status carrying its text, such as the stopped
// DB's background error or a write stall's Incomplete after one.
bool IsNoSpace(const rocksdb::Status& s) {
  if (s.IsNoSpace()) return true;
  std::string text = s.ToString();
  return text.find("No space left on device") != std::string::npos ||
         text.find("ENOSPC") != std::string::npos;
}

// The one place a rocksdb::Status becomes ours. A full disk is Internal with a
// message that begins "no space left on device" (PROTOCOL §3).
Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  if (s.IsNotFound()) return Status::NotFound();
  std::string msg = IsNoSpace(s) ? "no space left on device: " : "";
  msg += what;
  msg += ": ";
  msg += s.ToString();
  return Status::Internal(msg);
}

const char* ReasonName(rocksdb::BackgroundErrorReason r) {
  switch (r) {
    case rocksdb::BackgroundErrorReason::kFlush:
      return "flush";
    case rocksdb::BackgroundErrorReason::kCompaction:
      return "compaction";
    case rocksdb::BackgroundErrorReason::kWriteCallback:
      return "write";
    case rocksdb::BackgroundErrorReason::kMemTable:
      return "memtable switch";
    case rocksdb::BackgroundErrorReason::kManifestWrite:
      return "MANIFEST write";
    case rocksdb::BackgroundErrorReason::kFlushNoWAL:
      return "flush";
    case rocksdb::BackgroundErrorReason::kManifestWriteNoWAL:
      return "MANIFEST write";
  }
  return "background work";
}

// RocksDB's info log, "LOG" in the data dir (the previous one kept as
// "LOG.old"), written with plain write(2)s whose failures are ignored: on a
// full disk log lines are lost, nothing else. RocksDB's own file logger
// appends through a WritableFileWriter, and in 7.8 the first log line after a
// failed append aborts the process (AssertFalseAndGetStatusForPrevError).
class InfoLog : public rocksdb::Logger {
 public:
  InfoLog(std::string dir, size_t max_bytes)
      : path_(std::move(dir) + "/LOG"), max_bytes_(max_bytes) {
    Open(/*truncate=*/false);
  }
  ~InfoLog() override {
    if (fd_ >= 0) ::close(fd_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[8192];
    struct timeval now;
    ::gettimeofday(&now, nullptr);
    struct tm t;
    ::localtime_r(&now.tv_sec, &t);
    int n = std::snprintf(line, sizeof(line), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld ",
                          t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                          static_cast<long>(now.tv_usec));
    int m = std::vsnprintf(line + n, sizeof(line) - n - 1, format, ap);
    size_t len = std::min(sizeof(line) - 2, static_cast<size_t>(n + std::max(m, 0)));
    if (len == 0 || line[len - 1] != '\n') line[len++] = '\n';
    std::lock_guard<std::mutex> l(mu_);
    if (size_ >= max_bytes_) Roll();
    if (fd_ < 0) return;
    ssize_t w = ::write(fd_, line, len);
    if (w > 0) size_ += static_cast<size_t>(w);
  }
  size_t GetLogFileSize() const override { return size_; }

 private:
  void Open(bool truncate) {
    fd_ = ::open(path_.c_str(),
                 O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
    struct stat st;
    size_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
  }
  void Roll() {
    if (fd_ >= 0) ::close(fd_);
    ::rename(path_.c_str(), (path_ + ".old").c_str());
    Open(/*truncate=*/true);
  }

  const std::string path_;
  const size_t max_bytes_;
  std::mutex mu_;
  int fd_ = -1;
  std::atomic<size_t> size_{0};
};

uint64_t SteadyMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

std::string PartitionFamilyName(uint32_t p) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "p%04u", p);
  return buf;
}

// True if `name` is "pNNNN"; sets *p to NNNN.
bool ParsePartitionFamilyName(const std::string& name, uint32_t* p) {
  if (name.size() != 5 || name[0] != 'p') return false;
  auto [ptr, ec] = std::from_chars(name.data() + 1, name.data() + name.size(), *p);
  return ec == std::errc() && ptr == name.data() + name.size();
}

// A hint's RocksDB key: target node id, a NUL, then the client's key. Node ids
// never contain NUL, so each target's hints form one contiguous key range.
std::string HintKey(std::string_view target, std::string_view key) {
  std::string out;
  out.reserve(target.size() + 1 + key.size());
  out.append(target);
  out.push_back('\0');
  out.append(key);
  return out;
}

}  // namespace

// One partition's anti-entropy state.
struct PartitionAae {
  aae::DirtySet dirty;  // all dirty until a clean close's tree is loaded
  // mu protects the following: one settle at a time.
  std::mutex mu;
  aae::Tree tree;  // current for every segment not dirty
  // Serialises raises (persist, then publish).
  std::mutex watermark_mu;
  // The GC watermark, read by each compaction's filter.
  std::atomic<uint64_t> watermark{0};
};

class Store::Impl {
 public:
  explicit Impl(const StoreOptions& o) : opts_(o), partitions_(o.partitions) {
    aae_.reserve(o.partitions);
    for (uint32_t p = 0; p < o.partitions; ++p) aae_.push_back(std::make_unique<PartitionAae>());
  }
  ~Impl() { Close(); }

  Status Open();
  void Close();
  Status WriteMany(const std::vector<PartitionWrite>& writes);
  Status EnsurePartitions(const std::vector<uint32_t>& partitions);
  Status Get(uint32_t partition, std::string_view key, Record* out, bool meta_only = false);
  Status Backup(const std::string& dir, BackupResult* out);
  uint64_t KeysEstimate();
  StoreProperties Properties();
  Status PutHint(std::string_view target, std::string_view key, const Record& record);
  Status ListHints(std::string_view target, std::string_view after_key, size_t limit,
                   std::vector<Hint>* out);
  Status DeleteHint(const Hint& hint, bool* removed);
  Status CountHints(std::map<std::string, uint64_t>* per_target);
  Status FlushAll();
  Status CompactAll();

  Status AaeTree(uint32_t partition, aae::Tree* out);
  size_t AaeDirtySegments(uint32_t partition);
  Status AaeListKeys(uint32_t partition, const std::vector<uint32_t>& segments, size_t limit,
                     std::vector<aae::KeyVersion>* out, bool* truncated);
  Status AaeScanRecords(uint32_t partition, std::string_view after_key, size_t limit_keys,
                        size_t limit_bytes, std::vector<std::pair<std::string, Record>>* out,
                        std::string* next_key);
  uint64_t GcWatermark(uint32_t partition);
  Status RaiseGcWatermark(uint32_t partition, uint64_t watermark_hlc);
  Status CompactPartitions();
  Status ExportPartition(uint32_t partition, const std::string& path, PartitionExport* out);
  Status IngestPartition(uint32_t partition, const std::string& path);
  Status DropPartition(uint32_t partition);
  bool HasPartition(uint32_t partition) const {
    return partition < partitions_.size() &&
           partitions_[partition].load(std::memory_order_acquire) != nullptr;
  }
  Status GetNodeValue(std::string_view name, std::string* value);
  Status PutNodeValue(std::string_view name, std::string_view value);
  Status DeleteNodeValue(std::string_view name);
  bool created() const { return created_; }
  std::optional<uint64_t> RecordHlcWatermark() const;
  Status RaiseRecordHlcWatermark(uint64_t hlc);
  void SkipCleanClose() { skip_clean_close_.store(true); }

  const StoreOptions& opts() const { return opts_; }

  // Called by the ErrorListener (RocksDB's threads, DB mutex not held).
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, const rocksdb::Status& s);
  void OnRecovered();

 private:
  rocksdb::ColumnFamilyOptions PartitionOptions(uint32_t partition) const;
  rocksdb::ColumnFamilyOptions HintsOptions() const;
  rocksdb::ColumnFamilyOptions MetaOptions() const;
  Status CheckIdentity();
  Status LoadRecordHlc();
  Status LoadAae();
  void SaveAae();
  // Iterates partition `partition` in key order (total order: see
  // PartitionOptions()). *it is null when the family does not exist yet.
  Status PartitionIterator(uint32_t partition, std::unique_ptr<rocksdb::Iterator>* it);
  Status PartitionFamily(uint32_t partition, bool create, rocksdb::ColumnFamilyHandle** out);
  std::vector<rocksdb::ColumnFamilyHandle*> LiveFamilies();
  void BackgroundLoop();
  Status SyncWal();
  void MaybeResume(std::unique_lock<std::mutex>* l);
  void EnterWriteError(std::string message, uint64_t now);
  void LeaveWriteError();
  void NoteWriteFailure(const rocksdb::Status& s);
  Status RefuseInWriteError(std::string_view what);

  const StoreOptions opts_;
  // One per partition; declared before db_, whose compaction filters read
  // the watermarks.
  std::vector<std::unique_ptr<PartitionAae>> aae_;
  bool created_ = false;  // set by Open()
  // Store::RecordHlcWatermark: known once loaded, made by Open() for a new
  // database, or set by RaiseRecordHlcWatermark(); while unknown, WriteMany
  // does not write it (a value from this run's writes alone could be lower
  // than what older records hold).
  std::atomic<bool> record_hlc_known_{false};
  std::atomic<uint64_t> record_hlc_{0};
  std::atomic<bool> skip_clean_close_{false};
  std::shared_ptr<rocksdb::Cache> block_cache_;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffers_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* hints_ = nullptr;
  rocksdb::WriteOptions write_options_;
  // One slot per partition; null until the partition's family exists. Slots
  // are written under families_mu_ and read without it.
  std::vector<std::atomic<rocksdb::ColumnFamilyHandle*>> partitions_;
  std::vector<rocksdb::ColumnFamilyHandle*> owned_handles_;  // guarded by families_mu_
  std::mutex families_mu_;
  std::mutex backup_mu_;  // one backup at a time
  // Serialises DeleteHint's check-then-delete against PutHint, so a hint that
  // became newer between the check and the delete is never lost.
  std::mutex hints_mu_;

  rocksdb::Env* env_ = nullptr;
  // The last sequence number the WAL was synced up to (background thread, and
  // Close() after it stopped).
  uint64_t synced_seq_ = 0;

  // bg_mu_ protects the following: the background thread's stop flag and the
  // write error state.
  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool stopping_ = false;
  bool write_error_ = false;
  std::string write_error_message_;
  uint64_t write_error_since_ms_ = 0;  // opts_.clock time
  uint64_t write_error_since_steady_ = 0;
  // Bumped by every error notification, so that a Resume() that succeeded
  // does not clear an error that arrived while it ran.
  uint64_t error_generation_ = 0;
  bool recovered_ = false;  // RocksDB reported its error cleared; confirm at once
  uint64_t write_errors_ = 0;
  uint64_t resumes_ = 0;
  uint64_t resume_attempts_ = 0;
  uint64_t failed_attempts_in_row_ = 0;
  uint64_t next_resume_steady_ = 0;
  uint64_t free_at_failure_ = 0;
  uint64_t last_resume_log_steady_ = 0;
  uint64_t last_soft_log_steady_ = 0;
  std::thread bg_thread_;
};

namespace {

// Feeds RocksDB's background error notifications to the Store, and keeps
// RocksDB's SstFileManager from recovering hard NoSpace errors itself: it
// polls every 5 s, and while it is in charge DB::Resume() answers Busy.
// Soft errors (a compaction out of space; writes go on) are left to it: a
// manual Resume() cannot clear those in 7.8 (see BackgroundLoop()).
class ErrorListener : public rocksdb::EventListener {
 public:
  explicit ErrorListener(Store::Impl* store) : store_(store) {}
  const char* Name() const override { return "RingKvErrorListener"; }
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* s) override {
    store_->OnBackgroundError(reason, *s);
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status s,
                            bool* auto_recovery) override {
    if (s.severity() >= rocksdb::Status::Severity::kHardError) *auto_recovery = false;
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (info.new_bg_error.ok()) store_->OnRecovered();
  }

 private:
  Store::Impl* const store_;
};

}  // namespace

rocksdb::ColumnFamilyOptions Store::Impl::PartitionOptions(uint32_t partition) const {
  rocksdb::ColumnFamilyOptions cf;
  cf.merge_operator = NewLwwMergeOperator();
  // Each partition's own factory: a compaction purges what that partition's
  // watermark allows, read when the compaction starts.
  cf.compaction_filter_factory = NewPurgeFilterFactory(&aae_[partition]->watermark);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = block_cache_;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Each family's memtable is small; the WriteBufferManager bounds the total.
  cf.write_buffer_size = std::max<size_t>(4ULL << 20, opts_.write_buffer_bytes / 8);
  // The manager charges memtables by arena block. RocksDB's default block is
  // write_buffer_size / 8 (1 MiB here), so 64 families with one write each
  // already "use" the whole budget and every write triggered a flush of a
  // tiny memtable (80 entries, 11 KB): half the CPU went to flushes and
  // compactions. Small blocks make the charge follow the data.
  cf.arena_block_size = kArenaBlockBytes;
  // A hash-indexed memtable: every key is its own "prefix", so an insert
  // finds its key's bucket and a skip list of that key's few versions,
  // instead of searching one skip list of every key in the partition (the
  // largest item in the write path's profile: a dependent cache miss per
  // level). Point reads find the bucket the same way; the flush sorts the
  // memtable once. The anti-entropy scans iterate with
  // ReadOptions::total_order_seek (PartitionIterator()); a plain iterator
  // would not see the partition in key order. The bucket array comes out of
  // the memtable budget: at most 1/16 of a family's share of it.
  cf.prefix_extractor.reset(rocksdb::NewNoopTransform());
  const size_t share = opts_.write_buffer_bytes / std::max<uint32_t>(1, opts_.partitions);
  const size_t buckets = std::clamp<size_t>(share / 16 / sizeof(void*), 1024, 1 << 16);
  cf.memtable_factory.reset(rocksdb::NewHashSkipListRepFactory(buckets));
  if (opts_.compression) {
    // LZ4 at every level: with more keys than the caches hold, reads land on
    // the bottom level, and a ZSTD block costs several times LZ4's to
    // decompress (10M keys, workload C: see docs/benchmarks.md).
    cf.compression = rocksdb::kLZ4Compression;
    cf.bottommost_compression = rocksdb::kLZ4Compression;
  } else {
    cf.compression = rocksdb::kNoCompression;
    cf.bottommost_compression = rocksdb::kNoCompression;
  }
  return cf;
}

// Hints merge like records (the newest per target and key wins) but are never
// purged by the grace filter: the handoff loop ages them out itself.
// The meta family holds plain values (Put) and the record watermark, a
// record merged by the LWW operator.
rocksdb::ColumnFamilyOptions Store::Impl::MetaOptions() const {
  rocksdb::ColumnFamilyOptions cf;
  cf.merge_operator = NewLwwMergeOperator();
  return cf;
}

rocksdb::ColumnFamilyOptions Store::Impl::HintsOptions() const {
  rocksdb::ColumnFamilyOptions cf;
  cf.merge_operator = NewLwwMergeOperator();
  cf.write_buffer_size = std::max<size_t>(4ULL << 20, opts_.write_buffer_bytes / 8);
  cf.arena_block_size = kArenaBlockBytes;
  return cf;
}

Status Store::Impl::Open() {
  std::error_code ec;
  std::filesystem::create_directories(opts_.path, ec);
  if (ec) return Status::Internal("cannot create data dir " + opts_.path + ": " + ec.message());

  block_cache_ = rocksdb::NewLRUCache(opts_.block_cache_bytes);
  write_buffers_ = std::make_shared<rocksdb::WriteBufferManager>(opts_.write_buffer_bytes);
  rocksdb::DBOptions db_opts;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.write_buffer_manager = write_buffers_;
  db_opts.max_background_jobs = 2;
  db_opts.info_log = std::make_shared<InfoLog>(opts_.path, kInfoLogBytes);
  db_opts.avoid_unnecessary_blocking_io = true;
  // A writer that finds another thread's write in progress would spin and
  // sched_yield for up to 100 us before sleeping: on a box where the I/O
  // threads share few cores with everything else, that burned more CPU than
  // the writes themselves. Writes arrive in per-wake-up batches already
  // (server/write_batcher.h); a waiter sleeps at once.
  db_opts.enable_write_thread_adaptive_yield = false;
  // Only skip-list memtables can be written by several threads at once; the
  // partitions' hash memtables cannot (and batches make it rare anyway).
  db_opts.allow_concurrent_memtable_write = false;
  env_ = opts_.env != nullptr ? opts_.env : rocksdb::Env::Default();
  db_opts.env = env_;
  db_opts.listeners.push_back(std::make_shared<ErrorListener>(this));

  std::vector<std::string> names;
  rocksdb::Status ls = rocksdb::DB::ListColumnFamilies(db_opts, opts_.path, &names);
  if (!ls.ok()) names = {rocksdb::kDefaultColumnFamilyName};  // a new database
  for (const char* fixed : {kMetaFamily, kHintsFamily}) {
    if (std::find(names.begin(), names.end(), fixed) == names.end()) names.emplace_back(fixed);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const std::string& name : names) {
    uint32_t p = 0;
    bool partition = ParsePartitionFamilyName(name, &p);
    if (partition && p >= partitions_.size()) {
      return Status::Internal("data dir " + opts_.path + " holds partition " + name +
                              " beyond the ring size " + std::to_string(partitions_.size()));
    }
    descs.emplace_back(name, partition              ? PartitionOptions(p)
                             : name == kHintsFamily ? HintsOptions()
                             : name == kMetaFamily  ? MetaOptions()
                                                    : rocksdb::ColumnFamilyOptions());
  }
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s = rocksdb::DB::Open(db_opts, opts_.path, descs, &handles, &raw);
  if (!s.ok()) return FromRocks(s, "cannot open data dir " + opts_.path);
  db_.reset(raw);
  owned_handles_ = handles;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    if (name == kMetaFamily) meta_ = handles[i];
    if (name == kHintsFamily) hints_ = handles[i];
    uint32_t p = 0;
    if (ParsePartitionFamilyName(name, &p))
      partitions_[p].store(handles[i], std::memory_order_release);
  }
  RINGKV_RETURN_IF_ERROR(CheckIdentity());
  RINGKV_RETURN_IF_ERROR(LoadRecordHlc());
  RINGKV_RETURN_IF_ERROR(LoadAae());
  write_options_.sync = opts_.sync_writes;
  synced_seq_ = db_->GetLatestSequenceNumber();
  bg_thread_ = std::thread([this] { BackgroundLoop(); });
  return Status::OK();
}

// The meta family records whose data this is; a mismatch means the operator
// pointed kvd at the wrong directory, and serving it would mix up two nodes.
Status Store::Impl::CheckIdentity() {
  std::string node_id, partitions;
  rocksdb::ReadOptions ro;
  rocksdb::Status s = db_->Get(ro, meta_, kMetaNodeId, &node_id);
  if (s.IsNotFound()) {
    created_ = true;
    rocksdb::WriteBatch batch;
    batch.Put(meta_, kMetaNodeId, opts_.node_id);
    batch.Put(meta_, kMetaPartitions, std::to_string(opts_.partitions));
    batch.Put(meta_, kMetaFormat, kFormatVersion);
    // Nothing is held yet: the watermark is known, and 0.
    batch.Merge(meta_, kMetaRecordHlc, EncodeRecord(Record{}));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return FromRocks(db_->Write(wo, &batch), "cannot write identity");
  }
  if (!s.ok()) return FromRocks(s, "cannot read identity");
  if (node_id != opts_.node_id) {
    return Status::Internal("data dir " + opts_.path + " belongs to node '" + node_id + "', not '" +
                            opts_.node_id + "'");
  }
  s = db_->Get(ro, meta_, kMetaPartitions, &partitions);
  if (!s.ok()) return FromRocks(s, "cannot read identity");
  if (partitions != std::to_string(opts_.partitions)) {
    return Status::Internal("data dir " + opts_.path + " was made for " + partitions +
                            " partitions, not " + std::to_string(opts_.partitions));
  }
  return Status::OK();
}

Status Store::Impl::LoadRecordHlc() {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, kMetaRecordHlc, &v);
  if (s.IsNotFound()) return Status::OK();  // written before the watermark was kept
  if (!s.ok()) return FromRocks(s, "cannot read the record watermark");
  Record r;
  RINGKV_RETURN_IF_ERROR(DecodeRecordMeta(v, &r));
  record_hlc_.store(r.version.hlc, std::memory_order_relaxed);
  record_hlc_known_.store(true, std::memory_order_release);
  return Status::OK();
}

std::optional<uint64_t> Store::Impl::RecordHlcWatermark() const {
  if (!record_hlc_known_.load(std::memory_order_acquire)) return std::nullopt;
  return record_hlc_.load(std::memory_order_acquire);
}

Status Store::Impl::RaiseRecordHlcWatermark(uint64_t hlc) {
  Record r;
  r.version.hlc = hlc;
  rocksdb::WriteOptions wo;
  wo.sync = true;  // what it covers may be synced before it otherwise
  RINGKV_RETURN_IF_ERROR(FromRocks(db_->Merge(wo, meta_, kMetaRecordHlc, EncodeRecord(r)),
                                   "cannot write the record watermark"));
  AtomicRaise(record_hlc_, hlc);
  record_hlc_known_.store(true, std::memory_order_release);
  return Status::OK();
}

void Store::Impl::Close() {
  bool write_error = false;
  {
    std::lock_guard<std::mutex> l(bg_mu_);
    stopping_ = true;
    write_error = write_error_;
  }
  bg_cv_.notify_all();
  if (bg_thread_.joinable()) bg_thread_.join();
  if (!db_) return;
  if (!write_error && !skip_clean_close_.load()) SaveAae();
  if (!write_error) SyncWal().IgnoreError();
  for (rocksdb::ColumnFamilyHandle* h : owned_handles_) {
    db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  owned_handles_.clear();
  db_->Close().PermitUncheckedError();
  db_.reset();
}

// The background thread: fsyncs the WAL every wal_sync_interval_ms (unless
// sync_writes), and while RocksDB refuses writes after a storage error, tries
// DB::Resume() every resume_interval_ms with backoff (MaybeResume()).
//
// Why a manual Resume() and not RocksDB 7.8.3's own recovery (error_handler.cc):
// a NoSpace error (the WAL append of a write, a flush, a MANIFEST write) is a
// hard error that stops writes, and its only automatic recovery is the
// SstFileManager's, which polls free space every 5 s. The retryable-IO-error
// auto-resume (bgerror_resume_retry_interval) explicitly skips NoSpace. So the
// listener turns the SstFileManager's recovery off for hard errors and this
// thread resumes them: sooner, with a backoff we control, and with state we
// can report. Soft errors (a compaction out of space) do not stop writes; a
// manual Resume() is a no-op for them in 7.8 and the SstFileManager clears
// them, so they are only logged.
void Store::Impl::BackgroundLoop() {
  const bool periodic_sync = !opts_.sync_writes && opts_.wal_sync_interval_ms > 0;
  const auto sync_every =
      std::chrono::milliseconds(std::max<uint64_t>(1, opts_.wal_sync_interval_ms));
  const auto resume_every =
      std::chrono::milliseconds(std::max<uint64_t>(1, opts_.resume_interval_ms));
  auto next_sync = std::chrono::steady_clock::now() + sync_every;
  std::unique_lock<std::mutex> l(bg_mu_);
  while (!stopping_) {
    auto wake = std::chrono::steady_clock::now() + std::chrono::hours(1);
    if (periodic_sync) wake = std::min(wake, next_sync);
    if (write_error_) wake = std::min(wake, std::chrono::steady_clock::now() + resume_every);
    bg_cv_.wait_until(l, wake);
    if (stopping_) break;
    if (write_error_) {
      MaybeResume(&l);
    } else if (periodic_sync && std::chrono::steady_clock::now() >= next_sync) {
      next_sync = std::chrono::steady_clock::now() + sync_every;
      l.unlock();
      // A failed sync is retried on the next tick; writes are already in the
      // OS's page cache and survive a process crash either way.
      SyncWal().IgnoreError();
      l.lock();
    }
  }
}

// Makes the WAL durable up to the last write. Not DB::SyncWAL(): that syncs
// outside RocksDB's write thread, so a write whose WAL append fails meanwhile
// leaves it syncing a file with a failed append, which 7.8 answers with an
// assertion failure (WritableFileWriter::AssertFalseAndGetStatusForPrevError,
// an abort with Debian's build). An empty write with sync=true goes through
// the write thread instead: RocksDB refuses it while it holds a background
// error, and after a failed append in its own group it does not sync at all.
// The cost: writes queue behind the fsync, once per interval.
Status Store::Impl::SyncWal() {
  const uint64_t seq = db_->GetLatestSequenceNumber();
  if (seq == synced_seq_) return Status::OK();  // nothing written since
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::WriteBatch empty;
  RINGKV_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &empty), "WAL sync failed"));
  synced_seq_ = seq;
  return Status::OK();
}

// One step of the write error state, with bg_mu_ held (via *l): decides
// whether to try DB::Resume() now and tries it (without the lock).
void Store::Impl::MaybeResume(std::unique_lock<std::mutex>* l) {
  const uint64_t now = SteadyMs();
  uint64_t free = 0;
  const bool known_free = env_->GetFreeSpace(opts_.path, &free).ok();
  // A failed attempt on a full disk writes what it can of the memtables before
  // failing: back off, unless space was freed since.
  const bool freed =
      failed_attempts_in_row_ > 0 && known_free && free >= free_at_failure_ + kFreedEnoughBytes;
  if (now < next_resume_steady_ && !freed && !recovered_) return;
  recovered_ = false;
  const uint64_t generation = error_generation_;
  l->unlock();
  rocksdb::Status s = db_->Resume();
  if (s.ok()) {
    // Resume() also answers OK when RocksDB holds no error that stops writes:
    // it recovered by itself, or (the first attempt waits an interval for
    // this) the error being notified is not stored yet. An empty write is
    // refused while RocksDB holds one.
    rocksdb::WriteBatch empty;
    s = db_->Write(rocksdb::WriteOptions(), &empty);
  }
  l->lock();
  if (s.ok()) {
    if (generation == error_generation_ && write_error_) LeaveWriteError();
    return;
  }
  ++resume_attempts_;
  if (s.IsBusy()) return;  // RocksDB's own recovery is running; it ends in OnRecovered()
  ++failed_attempts_in_row_;
  const uint64_t backoff = std::min<uint64_t>(
      kMaxResumeBackoffMs, std::max<uint64_t>(1, opts_.resume_interval_ms)
                               << std::min<uint64_t>(failed_attempts_in_row_, 10));
  next_resume_steady_ = SteadyMs() + backoff;
  free_at_failure_ = known_free ? free : 0;
  if (last_resume_log_steady_ == 0 || now >= last_resume_log_steady_ + kResumeLogEveryMs) {
    last_resume_log_steady_ = now;
    spdlog::warn("[store] writes still refused after {} s ({} free bytes): resume failed: {}",
                 (now - write_error_since_steady_) / 1000, known_free ? free : 0, s.ToString());
  }
}

// With bg_mu_ held.
void Store::Impl::LeaveWriteError() {
  const uint64_t ms = SteadyMs() - write_error_since_steady_;
  write_error_ = false;
  write_error_message_.clear();
  write_error_since_ms_ = 0;
  failed_attempts_in_row_ = 0;
  last_resume_log_steady_ = 0;
  ++resumes_;
  spdlog::info("[store] writes resumed after {} ms refused", ms);
}

void Store::Impl::OnBackgroundError(rocksdb::BackgroundErrorReason reason,
                                    const rocksdb::Status& s) {
  if (s.ok()) return;
  std::lock_guard<std::mutex> l(bg_mu_);
  ++error_generation_;
  const uint64_t now = SteadyMs();
  // A compaction's error does not stop writes unless RocksDB deems it fatal.
  if (reason == rocksdb::BackgroundErrorReason::kCompaction &&
      s.severity() < rocksdb::Status::Severity::kHardError) {
    if (last_soft_log_steady_ == 0 || now >= last_soft_log_steady_ + kResumeLogEveryMs) {
      last_soft_log_steady_ = now;
      spdlog::warn("[store] compaction failed (writes go on): {}", s.ToString());
    }
    return;
  }
  if (write_error_) return;  // already in it; the first error is the one reported
  EnterWriteError(FromRocks(s, std::string(ReasonName(reason)) + " failed").message(), now);
}

// With bg_mu_ held.
void Store::Impl::EnterWriteError(std::string message, uint64_t now) {
  write_error_ = true;
  write_error_message_ = std::move(message);
  write_error_since_ms_ = opts_.clock->NowMs();
  write_error_since_steady_ = now;
  ++write_errors_;
  failed_attempts_in_row_ = 0;
  next_resume_steady_ = now + opts_.resume_interval_ms;
  recovered_ = false;
  spdlog::error(
      "[store] writes refused: {}; reads go on; writes resume by themselves once "
      "space is freed",
      write_error_message_);
  bg_cv_.notify_all();
}

// RocksDB cleared its background error (in our Resume(), or by its own
// recovery). It notifies with the DB mutex released, so an error may already
// have followed: the background thread confirms with a Resume() of its own.
void Store::Impl::OnRecovered() {
  std::lock_guard<std::mutex> l(bg_mu_);
  recovered_ = true;
  bg_cv_.notify_all();
}

// A write failed in a way that only a stopped DB answers. Normally the
// listener has already entered the write error state; this covers an error
// that raced with a recovery's notification (the DB, stopped again, reports
// no new one).
void Store::Impl::NoteWriteFailure(const rocksdb::Status& s) {
  if (!IsNoSpace(s) && !s.IsIOError()) return;
  std::lock_guard<std::mutex> l(bg_mu_);
  if (write_error_) return;
  EnterWriteError(FromRocks(s, "write failed").message(), SteadyMs());
}

Status Store::Impl::RefuseInWriteError(std::string_view what) {
  std::lock_guard<std::mutex> l(bg_mu_);
  if (!write_error_) return Status::OK();
  return Status::Internal(std::string(what) +
                          " refused while writes are refused: " + write_error_message_);
}

Status Store::Impl::PartitionFamily(uint32_t partition, bool create,
                                    rocksdb::ColumnFamilyHandle** out) {
  if (partition >= partitions_.size()) return Status::Internal("partition out of range");
  *out = partitions_[partition].load(std::memory_order_acquire);
  if (*out != nullptr) return Status::OK();
  if (!create) return Status::NotFound();
  std::lock_guard<std::mutex> l(families_mu_);
  *out = partitions_[partition].load(std::memory_order_acquire);
  if (*out != nullptr) return Status::OK();
  rocksdb::ColumnFamilyHandle* h = nullptr;
  rocksdb::Status s =
      db_->CreateColumnFamily(PartitionOptions(partition), PartitionFamilyName(partition), &h);
  if (!s.ok() && h != nullptr) {
    // Created, but a later step failed (the OPTIONS file on a full disk): keep
    // the handle, or the next attempt finds the family already there.
    owned_handles_.push_back(h);
    partitions_[partition].store(h, std::memory_order_release);
  }
  if (!s.ok()) return FromRocks(s, "cannot create partition family");
  owned_handles_.push_back(h);
  partitions_[partition].store(h, std::memory_order_release);
  *out = h;
  return Status::OK();
}

Status Store::Impl::EnsurePartitions(const std::vector<uint32_t>& partitions) {
  std::lock_guard<std::mutex> l(families_mu_);
  std::vector<uint32_t> missing;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (uint32_t p : partitions) {
    if (p >= partitions_.size()) return Status::Internal("partition out of range");
    if (partitions_[p].load(std::memory_order_acquire) == nullptr &&
        std::find(missing.begin(), missing.end(), p) == missing.end()) {
      missing.push_back(p);
      descs.emplace_back(PartitionFamilyName(p), PartitionOptions(p));
    }
  }
  if (missing.empty()) return Status::OK();
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s = db_->CreateColumnFamilies(descs, &handles);
  for (size_t i = 0; i < handles.size(); ++i) {
    owned_handles_.push_back(handles[i]);
    partitions_[missing[i]].store(handles[i], std::memory_order_release);
  }
  return FromRocks(s, "cannot create partition families");
}

Status Store::Impl::WriteMany(const std::vector<PartitionWrite>& writes) {
  // Reused per thread: a batch's buffer and the encoding scratch keep their
  // capacity, so a commit allocates nothing in the steady state.
  thread_local rocksdb::WriteBatch batch;
  thread_local std::string encoded;
  batch.Clear();
  uint64_t newest = 0;
  for (const PartitionWrite& w : writes) {
    rocksdb::ColumnFamilyHandle* cf = nullptr;
    RINGKV_RETURN_IF_ERROR(PartitionFamily(w.partition, /*create=*/true, &cf));
    encoded.clear();
    EncodeRecord(*w.record, &encoded);
    rocksdb::Status s = batch.Merge(cf, rocksdb::Slice(w.key.data(), w.key.size()), encoded);
    if (!s.ok()) return FromRocks(s, "write failed");
    newest = std::max(newest, w.record->version.hlc);
  }
  // The watermark rides in the same batch as the records it covers, so a
  // crash can lose both or neither; one merge entry per batch that raises it.
  const bool raises = record_hlc_known_.load(std::memory_order_acquire) &&
                      newest > record_hlc_.load(std::memory_order_acquire);
  if (raises) {
    Record mark;
    mark.version.hlc = newest;
    encoded.clear();
    EncodeRecord(mark, &encoded);
    rocksdb::Status s = batch.Merge(meta_, kMetaRecordHlc, encoded);
    if (!s.ok()) return FromRocks(s, "write failed");
  }
  rocksdb::Status rs = db_->Write(write_options_, &batch);
  if (rs.ok() && raises) AtomicRaise(record_hlc_, newest);
  // Marked after the write, never before: a settle takes the dirty bits
  // before its scan starts, so a write either is in that scan or marks its
  // segment again for the next one. (Marking after a failed write, which
  // may have been applied in part, costs at most one needless recompute.)
  for (const PartitionWrite& w : writes) aae_[w.partition]->dirty.Mark(aae::SegmentOfKey(w.key));
  if (!rs.ok()) NoteWriteFailure(rs);
  if (batch.GetDataSize() > kKeepBatchBytes) batch = rocksdb::WriteBatch();  // give back a big one
  return FromRocks(rs, "write failed");
}

Status Store::Impl::Get(uint32_t partition, std::string_view key, Record* out, bool meta_only) {
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  RINGKV_RETURN_IF_ERROR(PartitionFamily(partition, /*create=*/false, &cf));
  rocksdb::PinnableSlice value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf, rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return Status::NotFound();
  if (!s.ok()) return FromRocks(s, "read failed");
  if (meta_only) return DecodeRecordMeta({value.data(), value.size()}, out);
  return DecodeRecord({value.data(), value.size()}, out);
}

Status Store::Impl::Backup(const std::string& dir, BackupResult* out) {
  std::lock_guard<std::mutex> l(backup_mu_);
  // Its flush would switch memtables onto a WAL whose append failed, which
  // RocksDB 7.8 escalates to a fatal error that only a restart clears.
  RINGKV_RETURN_IF_ERROR(RefuseInWriteError("backup"));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Internal("cannot create backup dir " + dir + ": " + ec.message());
  rocksdb::BackupEngine* raw = nullptr;
  rocksdb::Status s =
      rocksdb::BackupEngine::Open(rocksdb::Env::Default(), rocksdb::BackupEngineOptions(dir), &raw);
  if (!s.ok()) return FromRocks(s, "cannot open backup dir " + dir);
  std::unique_ptr<rocksdb::BackupEngine> engine(raw);
  rocksdb::CreateBackupOptions cbo;
  cbo.flush_before_backup = true;
  rocksdb::BackupID id = 0;
  s = engine->CreateNewBackup(cbo, db_.get(), &id);
  if (!s.ok()) return FromRocks(s, "backup failed");
  rocksdb::BackupInfo info;
  s = engine->GetBackupInfo(id, &info);
  if (!s.ok()) return FromRocks(s, "cannot read backup info");
  out->backup_id = id;
  out->bytes = info.size;
  return Status::OK();
}

std::vector<rocksdb::ColumnFamilyHandle*> Store::Impl::LiveFamilies() {
  std::vector<rocksdb::ColumnFamilyHandle*> out;
  for (auto& slot : partitions_) {
    if (auto* h = slot.load(std::memory_order_acquire)) out.push_back(h);
  }
  return out;
}

uint64_t Store::Impl::KeysEstimate() {
  uint64_t total = 0;
  for (rocksdb::ColumnFamilyHandle* h : LiveFamilies()) {
    uint64_t n = 0;
    if (db_->GetIntProperty(h, "rocksdb.estimate-num-keys", &n)) total += n;
  }
  return total;
}

StoreProperties Store::Impl::Properties() {
  StoreProperties p;
  auto add = [this](rocksdb::ColumnFamilyHandle* h, const char* name, uint64_t* into) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, name, &v)) *into += v;
  };
  for (uint32_t i = 0; i < partitions_.size(); ++i) {
    rocksdb::ColumnFamilyHandle* h = partitions_[i].load(std::memory_order_acquire);
    if (h == nullptr) continue;
    add(h, "rocksdb.live-sst-files-size", &p.sst_bytes);
    add(h, "rocksdb.cur-size-all-mem-tables", &p.memtable_bytes);
    add(h, "rocksdb.estimate-pending-compaction-bytes", &p.pending_compaction_bytes);
    add(h, "rocksdb.estimate-num-keys", &p.partition_keys[i]);
  }
  for (rocksdb::ColumnFamilyHandle* h : {meta_, hints_}) {
    add(h, "rocksdb.live-sst-files-size", &p.sst_bytes);
    add(h, "rocksdb.cur-size-all-mem-tables", &p.memtable_bytes);
  }
  p.block_cache_usage_bytes = block_cache_->GetUsage();
  p.block_cache_capacity_bytes = block_cache_->GetCapacity();
  rocksdb::VectorLogPtr wal_files;
  if (db_->GetSortedWalFiles(wal_files).ok()) {
    for (const auto& f : wal_files) p.wal_bytes += f->SizeFileBytes();
  }
  std::lock_guard<std::mutex> l(bg_mu_);
  p.write_error = write_error_;
  p.write_error_message = write_error_message_;
  p.write_error_since_ms = write_error_since_ms_;
  p.write_errors = write_errors_;
  p.resumes = resumes_;
  p.resume_attempts = resume_attempts_;
  return p;
}

Status Store::Impl::PutHint(std::string_view target, std::string_view key, const Record& record) {
  std::string encoded;
  EncodeRecord(record, &encoded);
  std::lock_guard<std::mutex> l(hints_mu_);
  return FromRocks(db_->Merge(write_options_, hints_, HintKey(target, key), encoded),
                   "hint write failed");
}

Status Store::Impl::ListHints(std::string_view target, std::string_view after_key, size_t limit,
                              std::vector<Hint>* out) {
  out->clear();
  std::string prefix = HintKey(target, "");
  // The target's range ends where its id followed by \x01 begins: the scan
  // never wanders into the next target's hints (or their deletion markers).
  std::string upper = target.empty() ? std::string() : std::string(target) + '\x01';
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, hints_));
  std::string start = HintKey(target, after_key);
  for (it->Seek(start); it->Valid() && out->size() < limit; it->Next()) {
    rocksdb::Slice k = it->key();
    if (!k.starts_with(prefix)) break;
    if (!after_key.empty() && k == rocksdb::Slice(start)) continue;
    Hint h;
    h.target.assign(target);
    h.key.assign(k.data() + prefix.size(), k.size() - prefix.size());
    RINGKV_RETURN_IF_ERROR(DecodeRecord({it->value().data(), it->value().size()}, &h.record));
    out->push_back(std::move(h));
  }
  return FromRocks(it->status(), "hint scan failed");
}

Status Store::Impl::DeleteHint(const Hint& hint, bool* removed) {
  *removed = false;
  std::string key = HintKey(hint.target, hint.key);
  std::lock_guard<std::mutex> l(hints_mu_);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), hints_, key, &value);
  if (s.IsNotFound()) return Status::OK();
  if (!s.ok()) return FromRocks(s, "hint read failed");
  Record current;
  RINGKV_RETURN_IF_ERROR(DecodeRecordMeta(value, &current));
  if (current.version != hint.record.version) return Status::OK();
  RINGKV_RETURN_IF_ERROR(FromRocks(db_->Delete(write_options_, hints_, key), "hint delete failed"));
  *removed = true;
  return Status::OK();
}

Status Store::Impl::CountHints(std::map<std::string, uint64_t>* per_target) {
  per_target->clear();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), hints_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    const char* nul = static_cast<const char*>(memchr(k.data(), '\0', k.size()));
    if (nul == nullptr) continue;  // not ours; never written by PutHint
    (*per_target)[std::string(k.data(), nul - k.data())]++;
  }
  return FromRocks(it->status(), "hint scan failed");
}

Status Store::Impl::FlushAll() {
  RINGKV_RETURN_IF_ERROR(RefuseInWriteError("flush"));
  for (rocksdb::ColumnFamilyHandle* h : LiveFamilies()) {
    RINGKV_RETURN_IF_ERROR(FromRocks(db_->Flush(rocksdb::FlushOptions(), h), "flush failed"));
  }
  return Status::OK();
}

Status Store::Impl::CompactAll() {
  rocksdb::CompactRangeOptions o;
  o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (rocksdb::ColumnFamilyHandle* h : LiveFamilies()) {
    RINGKV_RETURN_IF_ERROR(
        FromRocks(db_->CompactRange(o, h, nullptr, nullptr), "compaction failed"));
  }
  return Status::OK();
}

// ---- Anti-entropy ----

namespace {

std::string PartitionMetaKey(const char* prefix, uint32_t p) { return prefix + std::to_string(p); }

bool BitSet(const std::array<uint64_t, kDirtyWords>& bits, uint32_t segment) {
  return (bits[segment / 64] >> (segment % 64)) & 1;
}

std::string_view View(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

}  // namespace

// At Open(): the watermarks, and the trees a clean close left. The marker is
// deleted (synced) before any write is taken, so a crash from here on finds
// none and the next Open() starts all dirty instead of trusting trees that
// missed this run's writes.
Status Store::Impl::LoadAae() {
  rocksdb::ReadOptions ro;
  for (uint32_t p = 0; p < aae_.size(); ++p) {
    std::string v;
    rocksdb::Status s = db_->Get(ro, meta_, PartitionMetaKey(kMetaGcWatermarkPrefix, p), &v);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return FromRocks(s, "cannot read GC watermark");
    uint64_t w = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), w);
    if (ec != std::errc() || ptr != v.data() + v.size()) {
      return Status::Internal("corrupt GC watermark of partition " + std::to_string(p) + ": " + v);
    }
    aae_[p]->watermark.store(w, std::memory_order_release);
  }
  // A partition with no family holds nothing: its empty tree is current.
  for (uint32_t p = 0; p < aae_.size(); ++p) {
    if (partitions_[p].load(std::memory_order_acquire) == nullptr) aae_[p]->dirty.TakeAll();
  }
  std::string marker;
  rocksdb::Status s = db_->Get(ro, meta_, kMetaAaeCleanMarker, &marker);
  if (s.IsNotFound()) return Status::OK();  // a crash, or a new database: all dirty
  if (!s.ok()) return FromRocks(s, "cannot read AAE marker");
  for (uint32_t p = 0; p < aae_.size(); ++p) {
    std::string v;
    s = db_->Get(ro, meta_, PartitionMetaKey(kMetaAaeTreePrefix, p), &v);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return FromRocks(s, "cannot read AAE tree");
    constexpr size_t kTreeBytes = aae::kSegments * 8;
    PartitionAae& a = *aae_[p];
    if (v.size() != kTreeBytes + kDirtyWords * 8) continue;  // stays all dirty
    if (!a.tree.Decode(std::string_view(v).substr(0, kTreeBytes)).ok()) continue;
    std::array<uint64_t, kDirtyWords> bits;
    std::memcpy(bits.data(), v.data() + kTreeBytes, sizeof(bits));
    for (uint64_t& w : bits) w = le64toh(w);
    a.dirty.TakeAll();
    a.dirty.MarkBitmap(bits);
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Delete(wo, meta_, kMetaAaeCleanMarker), "cannot clear AAE marker");
}

// At Close(), writes stopped: every existing partition's tree and dirty bits,
// and the marker, in one synced batch (so the marker implies the trees). A
// failure only costs a full recompute after the next Open().
void Store::Impl::SaveAae() {
  rocksdb::WriteBatch batch;
  for (uint32_t p = 0; p < aae_.size(); ++p) {
    if (partitions_[p].load(std::memory_order_acquire) == nullptr) continue;
    PartitionAae& a = *aae_[p];
    std::lock_guard<std::mutex> l(a.mu);
    std::array<uint64_t, kDirtyWords> bits = a.dirty.TakeAll();
    a.dirty.MarkBitmap(bits);
    std::string v = a.tree.Encode();
    for (uint64_t w : bits) {
      uint64_t le = htole64(w);
      v.append(reinterpret_cast<const char*>(&le), sizeof(le));
    }
    batch.Put(meta_, PartitionMetaKey(kMetaAaeTreePrefix, p), v);
  }
  batch.Put(meta_, kMetaAaeCleanMarker, "1");
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok())
    spdlog::warn("[store] cannot save AAE trees (rebuilt at next start): {}", s.ToString());
}

Status Store::Impl::PartitionIterator(uint32_t partition, std::unique_ptr<rocksdb::Iterator>* it) {
  it->reset();
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  Status s = PartitionFamily(partition, /*create=*/false, &cf);
  if (s.IsNotFound()) return Status::OK();
  RINGKV_RETURN_IF_ERROR(s);
  rocksdb::ReadOptions ro;
  // The families' hash memtables (a Noop prefix extractor) iterate in key
  // order only with a total-order seek.
  ro.total_order_seek = true;
  ro.fill_cache = false;  // a scan of the whole partition would evict the hot blocks
  it->reset(db_->NewIterator(ro, cf));
  return Status::OK();
}

// Settling: the dirty bits are taken BEFORE the iterator is created. A write
// marks after it is applied, so a write either happened before the
// iterator's snapshot (and is scanned) or marks its segment again after the
// take (and the next settle recomputes it). Either way nothing is missed.
Status Store::Impl::AaeTree(uint32_t partition, aae::Tree* out) {
  if (partition >= aae_.size()) return Status::Internal("partition out of range");
  PartitionAae& a = *aae_[partition];
  std::lock_guard<std::mutex> l(a.mu);
  if (!a.dirty.Any()) {
    *out = a.tree;
    return Status::OK();
  }
  const std::array<uint64_t, kDirtyWords> bits = a.dirty.TakeAll();
  std::unique_ptr<rocksdb::Iterator> it;
  Status s = PartitionIterator(partition, &it);
  if (!s.ok()) {
    a.dirty.MarkBitmap(bits);
    return s;
  }
  std::vector<uint64_t> hashes(aae::kSegments, 0);
  if (it != nullptr) {
    const uint64_t watermark = a.watermark.load(std::memory_order_acquire);
    Record meta;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key = View(it->key());
      const uint32_t segment = aae::SegmentOfKey(key);
      if (!BitSet(bits, segment)) continue;
      // A record that does not decode is left out (the filter keeps it too).
      if (!DecodeRecordMeta(View(it->value()), &meta).ok()) continue;
      if (aae::IsGcEligible(meta, watermark)) continue;
      hashes[segment] ^= aae::EntryHash(key, meta);
    }
    if (!it->status().ok()) {
      a.dirty.MarkBitmap(bits);
      return FromRocks(it->status(), "AAE scan failed");
    }
  }
  for (uint32_t seg = 0; seg < aae::kSegments; ++seg) {
    if (BitSet(bits, seg)) a.tree.SetSegment(seg, hashes[seg]);
  }
  *out = a.tree;
  return Status::OK();
}

size_t Store::Impl::AaeDirtySegments(uint32_t partition) {
  return partition < aae_.size() ? aae_[partition]->dirty.Count() : 0;
}

Status Store::Impl::AaeListKeys(uint32_t partition, const std::vector<uint32_t>& segments,
                                size_t limit, std::vector<aae::KeyVersion>* out, bool* truncated) {
  out->clear();
  *truncated = false;
  if (partition >= aae_.size()) return Status::Internal("partition out of range");
  std::array<uint64_t, kDirtyWords> wanted{};
  for (uint32_t seg : segments) {
    if (seg >= aae::kSegments) return Status::BadRequest("segment out of range");
    wanted[seg / 64] |= 1ULL << (seg % 64);
  }
  std::unique_ptr<rocksdb::Iterator> it;
  RINGKV_RETURN_IF_ERROR(PartitionIterator(partition, &it));
  if (it == nullptr || segments.empty()) return Status::OK();
  const uint64_t watermark = aae_[partition]->watermark.load(std::memory_order_acquire);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = View(it->key());
    if (!BitSet(wanted, aae::SegmentOfKey(key))) continue;
    aae::KeyVersion kv;
    if (!DecodeRecordMeta(View(it->value()), &kv.meta).ok()) continue;
    if (aae::IsGcEligible(kv.meta, watermark)) continue;
    if (out->size() >= limit) {
      *truncated = true;
      break;
    }
    kv.key.assign(key);
    out->push_back(std::move(kv));
  }
  return FromRocks(it->status(), "AAE key listing failed");
}

Status Store::Impl::AaeScanRecords(uint32_t partition, std::string_view after_key,
                                   size_t limit_keys, size_t limit_bytes,
                                   std::vector<std::pair<std::string, Record>>* out,
                                   std::string* next_key) {
  out->clear();
  next_key->clear();
  if (partition >= aae_.size()) return Status::Internal("partition out of range");
  std::unique_ptr<rocksdb::Iterator> it;
  RINGKV_RETURN_IF_ERROR(PartitionIterator(partition, &it));
  if (it == nullptr) return Status::OK();
  // At least one record per call, so that a caller paging on *next_key always
  // moves forward.
  limit_keys = std::max<size_t>(1, limit_keys);
  const uint64_t watermark = aae_[partition]->watermark.load(std::memory_order_acquire);
  size_t bytes = 0;
  bool full = false;
  for (it->Seek(rocksdb::Slice(after_key.data(), after_key.size())); it->Valid(); it->Next()) {
    std::string_view key = View(it->key());
    if (!after_key.empty() && key == after_key) continue;
    if (full) break;  // one more record exists: *next_key stays the last returned
    Record r;
    if (!DecodeRecord(View(it->value()), &r).ok()) continue;
    if (aae::IsGcEligible(r, watermark)) continue;
    bytes += r.value.size();
    out->emplace_back(std::string(key), std::move(r));
    full = out->size() >= limit_keys || bytes >= limit_bytes;
  }
  RINGKV_RETURN_IF_ERROR(FromRocks(it->status(), "AAE record scan failed"));
  if (full && it->Valid()) *next_key = out->back().first;
  return Status::OK();
}

uint64_t Store::Impl::GcWatermark(uint32_t partition) {
  return partition < aae_.size() ? aae_[partition]->watermark.load(std::memory_order_acquire) : 0;
}

// Persisted before it is published: no compaction purges under a watermark
// that a crash could forget. Then every segment is marked dirty, as records
// the new watermark makes eligible leave the tree.
Status Store::Impl::RaiseGcWatermark(uint32_t partition, uint64_t watermark_hlc) {
  if (partition >= aae_.size()) return Status::Internal("partition out of range");
  PartitionAae& a = *aae_[partition];
  std::lock_guard<std::mutex> l(a.watermark_mu);
  if (watermark_hlc <= a.watermark.load(std::memory_order_acquire)) return Status::OK();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RINGKV_RETURN_IF_ERROR(
      FromRocks(db_->Put(wo, meta_, PartitionMetaKey(kMetaGcWatermarkPrefix, partition),
                         std::to_string(watermark_hlc)),
                "cannot persist GC watermark"));
  a.watermark.store(watermark_hlc, std::memory_order_release);
  a.dirty.MarkAll();
  return Status::OK();
}

// Twice: every write is a merge operand, the filter sees only full values,
// and a compaction turns a key's operands into a full value without filtering
// its own output. The second pass filters what the first one merged.
Status Store::Impl::CompactPartitions() {
  RINGKV_RETURN_IF_ERROR(FlushAll());
  RINGKV_RETURN_IF_ERROR(CompactAll());
  return CompactAll();
}

// ---- Partition moves (issue #11) ----

// A snapshot of the partition written as one SST of Merge entries (each key's
// merged record as an operand), so that ingesting it anywhere lets the LWW
// operator decide against what the receiver holds: a Put would replace a
// newer version there.
Status Store::Impl::ExportPartition(uint32_t partition, const std::string& path,
                                    PartitionExport* out) {
  *out = PartitionExport();
  if (partition >= partitions_.size()) return Status::Internal("partition out of range");
  out->watermark = aae_[partition]->watermark.load(std::memory_order_acquire);
  std::unique_ptr<rocksdb::Iterator> it;
  RINGKV_RETURN_IF_ERROR(PartitionIterator(partition, &it));
  if (!it) return Status::OK();  // no family: nothing held
  rocksdb::Options options(rocksdb::DBOptions(), PartitionOptions(partition));
  rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), options);
  bool open = false;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!open) {
      RINGKV_RETURN_IF_ERROR(FromRocks(writer.Open(path), "cannot create " + path));
      open = true;
    }
    RINGKV_RETURN_IF_ERROR(FromRocks(writer.Merge(it->key(), it->value()), "cannot write " + path));
    ++out->keys;
  }
  RINGKV_RETURN_IF_ERROR(FromRocks(it->status(), "cannot scan partition"));
  if (!open) return Status::OK();
  rocksdb::ExternalSstFileInfo info;
  RINGKV_RETURN_IF_ERROR(FromRocks(writer.Finish(&info), "cannot finish " + path));
  out->bytes = info.file_size;
  return Status::OK();
}

Status Store::Impl::IngestPartition(uint32_t partition, const std::string& path) {
  RINGKV_RETURN_IF_ERROR(RefuseInWriteError("a partition import"));
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  RINGKV_RETURN_IF_ERROR(PartitionFamily(partition, /*create=*/true, &cf));
  rocksdb::IngestExternalFileOptions io;
  io.move_files = true;
  io.failed_move_fall_back_to_copy = true;
  io.verify_checksums_before_ingest = true;
  io.allow_blocking_flush = true;
  RINGKV_RETURN_IF_ERROR(
      FromRocks(db_->IngestExternalFile(cf, {path}, io), "cannot import " + path));
  // The tree knows nothing of what came in: recompute it all.
  aae_[partition]->dirty.MarkAll();
  return Status::OK();
}

// The family is dropped, but its handle is kept until Close(): a request that
// took it just before still reads from it safely (RocksDB serves a dropped
// family while a handle lives). A later write re-creates the family empty.
Status Store::Impl::DropPartition(uint32_t partition) {
  if (partition >= partitions_.size()) return Status::Internal("partition out of range");
  std::lock_guard<std::mutex> l(families_mu_);
  rocksdb::ColumnFamilyHandle* h = partitions_[partition].load(std::memory_order_acquire);
  if (h == nullptr) return Status::OK();
  RINGKV_RETURN_IF_ERROR(FromRocks(db_->DropColumnFamily(h), "cannot drop partition"));
  partitions_[partition].store(nullptr, std::memory_order_release);
  PartitionAae& a = *aae_[partition];
  std::lock_guard<std::mutex> tl(a.mu);
  a.dirty.TakeAll();
  a.tree.Clear();
  return Status::OK();
}

Status Store::Impl::GetNodeValue(std::string_view name, std::string* value) {
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), meta_, kMetaNodeValuePrefix + std::string(name), value);
  if (s.IsNotFound()) return Status::NotFound();
  return FromRocks(s, "cannot read node value");
}

Status Store::Impl::PutNodeValue(std::string_view name, std::string_view value) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Put(wo, meta_, kMetaNodeValuePrefix + std::string(name),
                            rocksdb::Slice(value.data(), value.size())),
                   "cannot write node value");
}

Status Store::Impl::DeleteNodeValue(std::string_view name) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Delete(wo, meta_, kMetaNodeValuePrefix + std::string(name)),
                   "cannot delete node value");
}

namespace {

// Reads the node id recorded in the meta family of the database at `path`.
// A normal (read-write) open: a backup of a live node flushes its column
// families one after another while writes go on, and RocksDB's read-only open
// refuses such a set ("SST file is ahead of WALs") although every family is
// consistent on its own, which is all a per-key store needs.
Status ReadStoredNodeId(const std::string& path, std::string* node_id) {
  rocksdb::DBOptions db_opts;
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_opts, path, &names);
  if (!s.ok()) return FromRocks(s, "restored data is unreadable");
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const std::string& n : names) {
    rocksdb::ColumnFamilyOptions cf;
    cf.merge_operator = NewLwwMergeOperator();  // families written with Merge need it to open
    descs.emplace_back(n, cf);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::Open(db_opts, path, descs, &handles, &raw);
  if (!s.ok()) return FromRocks(s, "restored data is unreadable");
  std::unique_ptr<rocksdb::DB> db(raw);
  node_id->clear();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == kMetaFamily) {
      db->Get(rocksdb::ReadOptions(), handles[i], kMetaNodeId, node_id).PermitUncheckedError();
    }
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  return FromRocks(db->Close(), "cannot close restored data");
}

}  // namespace

Status Store::Restore(const std::string& backup_dir, uint32_t backup_id,
                      const std::string& data_dir, const std::string& node_id, RestoreResult* out) {
  std::error_code ec;
  if (std::filesystem::exists(data_dir + "/CURRENT", ec)) {
    return Status::BadRequest("data dir " + data_dir + " already holds a database");
  }
  bool existed = std::filesystem::exists(data_dir, ec);
  if (existed && !std::filesystem::is_empty(data_dir, ec)) {
    return Status::BadRequest("data dir " + data_dir + " is not empty");
  }
  rocksdb::BackupEngineReadOnly* raw = nullptr;
  rocksdb::Status s = rocksdb::BackupEngineReadOnly::Open(
      rocksdb::Env::Default(), rocksdb::BackupEngineOptions(backup_dir), &raw);
  if (!s.ok()) return FromRocks(s, "cannot open backup " + backup_dir);
  std::unique_ptr<rocksdb::BackupEngineReadOnly> engine(raw);
  std::vector<rocksdb::BackupInfo> infos;
  engine->GetBackupInfo(&infos);
  std::vector<rocksdb::BackupID> corrupt;
  engine->GetCorruptedBackups(&corrupt);
  if (backup_id == 0 && !infos.empty()) backup_id = infos.back().backup_id;
  if (std::find(corrupt.begin(), corrupt.end(), backup_id) != corrupt.end()) {
    return Status::Internal("backup " + std::to_string(backup_id) + " in " + backup_dir +
                            " is corrupt (files missing); it failed verification");
  }
  if (infos.empty()) return Status::BadRequest("no backup in " + backup_dir);
  auto info = std::find_if(infos.begin(), infos.end(),
                           [&](const rocksdb::BackupInfo& i) { return i.backup_id == backup_id; });
  if (info == infos.end()) {
    return Status::BadRequest("backup " + std::to_string(backup_id) + " is not in " + backup_dir);
  }
  s = engine->VerifyBackup(backup_id, /*verify_with_checksum=*/true);
  if (!s.ok()) return FromRocks(s, "backup " + std::to_string(backup_id) + " failed verification");
  // From here on, a failure removes what this call wrote (only what it wrote:
  // the directory was empty or absent).
  auto fail = [&](Status st) {
    if (existed) {
      for (const auto& e : std::filesystem::directory_iterator(data_dir, ec)) {
        std::filesystem::remove_all(e.path(), ec);
      }
    } else {
      std::filesystem::remove_all(data_dir, ec);
    }
    return st;
  };
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return Status::Internal("cannot create data dir " + data_dir + ": " + ec.message());
  s = engine->RestoreDBFromBackup(backup_id, data_dir, data_dir);
  if (!s.ok()) return fail(FromRocks(s, "restore failed"));
  std::string stored_id;
  Status st = ReadStoredNodeId(data_dir, &stored_id);
  if (!st.ok()) return fail(st);
  if (stored_id != node_id) {
    return fail(Status::Internal("backup in " + backup_dir + " belongs to node '" + stored_id +
                                 "', not '" + node_id + "'"));
  }
  out->backup_id = backup_id;
  out->bytes = info->size;
  return Status::OK();
}

Status Store::Open(const StoreOptions& options, std::unique_ptr<Store>* out) {
  if (options.path.empty()) return Status::BadRequest("store path is empty");
  if (options.node_id.empty() || options.node_id.size() > 255) {
    return Status::BadRequest("store node id must be 1..255 bytes");
  }
  if (options.partitions == 0) return Status::BadRequest("partitions must be positive");
  auto impl = std::make_unique<Impl>(options);
  RINGKV_RETURN_IF_ERROR(impl->Open());
  out->reset(new Store(std::move(impl)));
  return Status::OK();
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Status Store::ExportPartition(uint32_t partition, const std::string& path, PartitionExport* out) {
  return impl_->ExportPartition(partition, path, out);
}
Status Store::IngestPartition(uint32_t partition, const std::string& path) {
  return impl_->IngestPartition(partition, path);
}
Status Store::DropPartition(uint32_t partition) { return impl_->DropPartition(partition); }
bool Store::HasPartition(uint32_t partition) const { return impl_->HasPartition(partition); }

Status Store::Write(uint32_t partition, std::string_view key, const Record& record) {
  return impl_->WriteMany({{partition, key, &record}});
}
Status Store::WriteMany(const std::vector<PartitionWrite>& writes) {
  return impl_->WriteMany(writes);
}
Status Store::EnsurePartitions(const std::vector<uint32_t>& partitions) {
  return impl_->EnsurePartitions(partitions);
}
Status Store::Get(uint32_t partition, std::string_view key, Record* out) {
  return impl_->Get(partition, key, out);
}
Status Store::GetMeta(uint32_t partition, std::string_view key, Record* out) {
  return impl_->Get(partition, key, out, /*meta_only=*/true);
}
Status Store::Backup(const std::string& dir, BackupResult* out) { return impl_->Backup(dir, out); }
uint64_t Store::KeysEstimate() { return impl_->KeysEstimate(); }
StoreProperties Store::Properties() { return impl_->Properties(); }
Status Store::PutHint(std::string_view target, std::string_view key, const Record& record) {
  return impl_->PutHint(target, key, record);
}
Status Store::ListHints(std::string_view target, std::string_view after_key, size_t limit,
                        std::vector<Hint>* out) {
  return impl_->ListHints(target, after_key, limit, out);
}
Status Store::DeleteHint(const Hint& hint, bool* removed) {
  return impl_->DeleteHint(hint, removed);
}
Status Store::CountHints(std::map<std::string, uint64_t>* per_target) {
  return impl_->CountHints(per_target);
}
uint32_t Store::partitions() const { return impl_->opts().partitions; }
const std::string& Store::node_id() const { return impl_->opts().node_id; }
Status Store::TEST_FlushAll() { return impl_->FlushAll(); }
Status Store::TEST_CompactAll() { return impl_->CompactAll(); }
void Store::TEST_SkipCleanClose() { impl_->SkipCleanClose(); }

Status Store::AaeTree(uint32_t partition, aae::Tree* out) { return impl_->AaeTree(partition, out); }
size_t Store::AaeDirtySegments(uint32_t partition) { return impl_->AaeDirtySegments(partition); }
Status Store::AaeListKeys(uint32_t partition, const std::vector<uint32_t>& segments, size_t limit,
                          std::vector<aae::KeyVersion>* out, bool* truncated) {
  return impl_->AaeListKeys(partition, segments, limit, out, truncated);
}
Status Store::AaeScanRecords(uint32_t partition, std::string_view after_key, size_t limit_keys,
                             size_t limit_bytes, std::vector<std::pair<std::string, Record>>* out,
                             std::string* next_key) {
  return impl_->AaeScanRecords(partition, after_key, limit_keys, limit_bytes, out, next_key);
}
uint64_t Store::GcWatermark(uint32_t partition) { return impl_->GcWatermark(partition); }
Status Store::RaiseGcWatermark(uint32_t partition, uint64_t watermark_hlc) {
  return impl_->RaiseGcWatermark(partition, watermark_hlc);
}
Status Store::CompactPartitions() { return impl_->CompactPartitions(); }
Status Store::GetNodeValue(std::string_view name, std::string* value) {
  return impl_->GetNodeValue(name, value);
}
Status Store::PutNodeValue(std::string_view name, std::string_view value) {
  return impl_->PutNodeValue(name, value);
}
Status Store::DeleteNodeValue(std::string_view name) { return impl_->DeleteNodeValue(name); }
bool Store::created() const { return impl_->created(); }
std::optional<uint64_t> Store::RecordHlcWatermark() const { return impl_->RecordHlcWatermark(); }
Status Store::RaiseRecordHlcWatermark(uint64_t hlc) { return impl_->RaiseRecordHlcWatermark(hlc); }

}  // namespace ringkv
