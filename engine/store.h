// Store: one node's durable storage, on RocksDB.
//
// One RocksDB database per node with one column family per ring partition
// ("p0000".."pNNNN", created the first time the partition is written), a "meta"
// family holding the node's identity (node id, partition count, format), and a
// "hints" family reserved for hinted handoff.
//
// Writes are last-writer-wins without a read: each write is a RocksDB Merge of
// the encoded record, and the merge operator keeps the record with the greater
// version (see engine/lww.h). A compaction filter purges tombstones and expired
// records once the partition's GC watermark allows it (aae::IsGcEligible).
//
// Durability: every write goes to the write-ahead log before Write() returns, so
// an acknowledged write survives kill -9 of the process. With sync_writes the
// WAL is fsynced on every write; otherwise a background thread fsyncs it every
// wal_sync_interval_ms, bounding what a machine crash can lose.
//
// A full disk (or another storage error while writing): the write that hit it,
// and every write after it, fails with Internal whose message begins "no space
// left on device" (for ENOSPC); nothing that failed was acknowledged. RocksDB
// then refuses writes ("write error" state, see StoreProperties) while reads go
// on. The background thread retries DB::Resume() every resume_interval_ms
// (backing off while the disk stays full) and writes resume by themselves once
// space is freed. The WAL is never synced while RocksDB holds a background
// error (RocksDB 7.8 asserts on syncing a WAL whose last append failed), and
// RocksDB's info log ("LOG", the previous one "LOG.old") is written by the
// store with its write errors ignored (7.8's own logger asserts likewise).
//
// Thread-safety: all public methods are safe to call concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/aae_tree.h"
#include "engine/clock.h"
#include "engine/record.h"
#include "engine/status.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace ringkv {

struct StoreOptions {
  // Directory of the database; created (with parents) if absent. Required.
  std::string path;
  // The owning node's id; a data dir made for another id is refused. Required.
  std::string node_id;
  // Ring partitions (Q); a data dir made for another Q is refused. Default: 64.
  uint32_t partitions = 64;
  // Source of wall-clock time (the write error state's start time). Purging
  // does not read it: it follows the GC watermarks. Default: the system clock.
  // REQUIRES: outlives the Store.
  const Clock* clock = SystemClock::Default();
  // RocksDB's block cache, shared by every column family. Default: 64 MiB.
  size_t block_cache_bytes = 64ULL << 20;
  // Memtable budget across all column families (WriteBufferManager). Default: 64 MiB.
  size_t write_buffer_bytes = 64ULL << 20;
  // fsync the WAL on every write. Default: false.
  bool sync_writes = false;
  // With !sync_writes, fsync the WAL this often; 0 disables it. Default: 1000.
  uint64_t wal_sync_interval_ms = 1000;
  // LZ4 on every level when true, none when false. Default: true.
  bool compression = true;
  // After a storage error that stops writes, DB::Resume() is tried this often
  // (a failed attempt on a still-full disk doubles the wait, up to 8 s, unless
  // free space grows meanwhile). Default: 500.
  uint64_t resume_interval_ms = 500;
  // RocksDB's Env (file system), a seam for tests that inject storage
  // faults. Default: nullptr, rocksdb::Env::Default(). REQUIRES: outlives the
  // Store.
  rocksdb::Env* env = nullptr;
};

// A write kept for a replica that did not take it (hinted handoff).
struct Hint {
  std::string target;  // the replica's node id
  std::string key;
  Record record;
};

// One write of a WriteMany() batch. The key and record must stay valid for
// the call.
struct PartitionWrite {
  uint32_t partition = 0;
  std::string_view key;
  const Record* record = nullptr;
};

// What Backup() made.
struct BackupResult {
  uint32_t backup_id = 0;
  uint64_t bytes = 0;  // size of this backup's files (shared files included)
};

// RocksDB's own figures that operators watch (engine-level metrics).
struct StoreProperties {
  uint64_t sst_bytes = 0;                 // live SST files, all partitions
  uint64_t memtable_bytes = 0;            // all memtables
  uint64_t pending_compaction_bytes = 0;  // estimated bytes compaction must rewrite
  uint64_t block_cache_usage_bytes = 0;
  uint64_t block_cache_capacity_bytes = 0;
  uint64_t wal_bytes = 0;                       // write-ahead log files on disk
  std::map<uint32_t, uint64_t> partition_keys;  // estimate per partition this node holds
  // Write error state (see the header comment): true while RocksDB refuses
  // writes after a storage error, with that error's text ("no space left on
  // device: ..." for a full disk) and when it began (ms since the epoch).
  bool write_error = false;
  std::string write_error_message;
  uint64_t write_error_since_ms = 0;
  uint64_t write_errors = 0;     // times the store entered the write error state
  uint64_t resumes = 0;          // times it left it (writes resumed) without a restart
  uint64_t resume_attempts = 0;  // DB::Resume() calls that did not (yet) succeed
};

// What Restore() restored.
struct RestoreResult {
  uint32_t backup_id = 0;
  uint64_t bytes = 0;
};

// What ExportPartition() wrote.
struct PartitionExport {
  uint64_t keys = 0;       // records in the file (0: no file was written)
  uint64_t bytes = 0;      // the file's size
  uint64_t watermark = 0;  // the partition's GC watermark at the export
};

class Store {
 public:
  // Opens (creating if needed) the database at options.path. Fails with a
  // clear message if the directory is unusable or belongs to another node id
  // or partition count.
  static Status Open(const StoreOptions& options, std::unique_ptr<Store>* out);

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  // Stops background work, syncs the WAL and closes RocksDB.
  ~Store();

  // Merges `record` into `key` of `partition`: afterwards the key holds
  // whichever of the old and new records has the greater version.
  // REQUIRES: partition < partitions.
  Status Write(uint32_t partition, std::string_view key, const Record& record);

  // Write() for many keys at once: one RocksDB write (one WAL append, one
  // fsync with sync_writes), all applied or none. Writes to one key apply in
  // order, each merging like Write().
  // REQUIRES: every partition < partitions.
  Status WriteMany(const std::vector<PartitionWrite>& writes);

  // Creates the column families of `partitions` that do not exist yet, all at
  // once. Call at start-up with the partitions this node replicates, so that
  // no request pays for a family's creation (a MANIFEST write).
  Status EnsurePartitions(const std::vector<uint32_t>& partitions);

  // Reads the record of `key`, tombstones and expired records included.
  // Returns NotFound if the key has no record at all.
  Status Get(uint32_t partition, std::string_view key, Record* out);
  // As Get(), but leaves out->value untouched: the version, flags and expiry
  // without copying the value (a replica's "what do I hold" check).
  Status GetMeta(uint32_t partition, std::string_view key, Record* out);

  // Takes an online, consistent backup of the whole database into the RocksDB
  // BackupEngine directory `dir` (created if absent; incremental when it
  // already holds backups). Safe while writes go on. Blocks: call it off the
  // I/O threads. Refused (Internal) in the write error state: its flush would
  // turn RocksDB's recoverable error into one that needs a restart.
  Status Backup(const std::string& dir, BackupResult* out);

  // Hints: at most one per (target, key), holding the newest record written
  // for it (LWW, like partitions). Durable in the WAL like any write.
  // REQUIRES: target contains no '\0'.
  Status PutHint(std::string_view target, std::string_view key, const Record& record);
  // Up to `limit` hints for `target`, in key order, starting after
  // `after_key` ("" = from the first).
  Status ListHints(std::string_view target, std::string_view after_key, size_t limit,
                   std::vector<Hint>* out);
  // Removes the hint for (hint.target, hint.key) if it still holds exactly
  // hint.record's version; a newer hint written meanwhile is kept. Sets
  // *removed to whether it was removed.
  Status DeleteHint(const Hint& hint, bool* removed);
  // Hints stored per target, counted by a scan (for start-up and tests).
  Status CountHints(std::map<std::string, uint64_t>* per_target);

  // Restores backup `backup_id` (0 = the latest) from the BackupEngine
  // directory `backup_dir` into `data_dir`, after verifying every file's
  // checksum. Refuses (BadRequest) if data_dir already holds a database, and
  // refuses (Internal) a backup whose identity is not `node_id`. Does not
  // need (or touch) a running node.
  static Status Restore(const std::string& backup_dir, uint32_t backup_id,
                        const std::string& data_dir, const std::string& node_id,
                        RestoreResult* out);

  // ---- Anti-entropy (engine/aae_tree.h) ----
  //
  // Every partition write (WriteMany) marks its segment dirty. The tree of a
  // partition is persisted by a clean close and loaded by the next Open();
  // after a crash (no clean-close marker) every segment starts dirty (except
  // in partitions with no family yet: they hold nothing). Settles scan with
  // ReadOptions::total_order_seek (the partition memtables are hashed).

  // Settles partition `partition`'s tree (one scan recomputing its dirty
  // segments, if any) and copies it to *out. A partition with no family yet
  // has the empty tree. Blocks for the scan: call it off the I/O threads.
  Status AaeTree(uint32_t partition, aae::Tree* out);
  // Segments of `partition` currently dirty (for stats and tests).
  size_t AaeDirtySegments(uint32_t partition);
  // The keys of `partition` in the given segments (sorted, distinct), with
  // versions and flags, GC-eligible records left out (as in the tree). At
  // most `limit` entries; *truncated says whether there were more.
  Status AaeListKeys(uint32_t partition, const std::vector<uint32_t>& segments, size_t limit,
                     std::vector<aae::KeyVersion>* out, bool* truncated);
  // Up to `limit_keys` records (values included) of `partition` in key
  // order after `after_key` ("" = from the first), stopping once
  // `limit_bytes` of values were taken; GC-eligible records left out.
  // *next_key is the last key returned, or "" when the scan reached the end.
  Status AaeScanRecords(uint32_t partition, std::string_view after_key, size_t limit_keys,
                        size_t limit_bytes, std::vector<std::pair<std::string, Record>>* out,
                        std::string* next_key);

  // The partition's tombstone GC watermark (an HLC; 0 = none): compaction
  // purges exactly the records IsGcEligible() under it, and trees leave them
  // out. Persisted; only ever raised. Raising it marks the tree dirty.
  uint64_t GcWatermark(uint32_t partition);
  Status RaiseGcWatermark(uint32_t partition, uint64_t watermark_hlc);

  // Full manual compaction of every partition family (purges what the
  // watermarks allow). Blocks until done.
  Status CompactPartitions();

  // ---- Partition moves (issue #11) ----
  //
  // ExportPartition writes a consistent snapshot of `partition` to one SST
  // file at `path` (no file when the partition holds nothing), every record
  // as a Merge entry. IngestPartition imports such a file into the
  // partition (creating its family), moving the file: the LWW merge keeps
  // the newer of what the file and the store hold, so an import can overlap
  // writes arriving meanwhile. The partition's tree is recomputed. Blocking:
  // call off the I/O threads.
  Status ExportPartition(uint32_t partition, const std::string& path, PartitionExport* out);
  Status IngestPartition(uint32_t partition, const std::string& path);
  // Drops the partition's family and its tree (a partition given away).
  Status DropPartition(uint32_t partition);
  bool HasPartition(uint32_t partition) const;

  // Small persistent values of the node's own (the meta family under a
  // "node/" prefix): NotFound when absent.
  Status GetNodeValue(std::string_view name, std::string* value);
  Status PutNodeValue(std::string_view name, std::string_view value);
  Status DeleteNodeValue(std::string_view name);

  // The greatest version (HLC) of any record written to a partition since
  // the watermark has been kept: persisted in the same WriteBatch as the
  // records, so it holds after a crash too. nullopt when unknown: a database
  // written before it was kept, until RaiseRecordHlcWatermark() sets a floor.
  // Records brought in by IngestPartition() are not covered: raise it for
  // them. (LocalReplica's write check starts from it; local_replica.h.)
  std::optional<uint64_t> RecordHlcWatermark() const;
  // Raises the watermark to at least `hlc` (synced) and makes it known.
  Status RaiseRecordHlcWatermark(uint64_t hlc);

  // True when Open() created this database (the data dir held none): a new
  // node, or one whose disk was lost.
  bool created() const;

  StoreProperties Properties();

  // RocksDB's estimate of the number of keys across all partitions.
  uint64_t KeysEstimate();

  uint32_t partitions() const;
  const std::string& node_id() const;

  // Test hooks: flush every memtable (refused in the write error state, as
  // Backup()) / compact every partition fully.
  Status TEST_FlushAll();
  Status TEST_CompactAll();
  // Makes the coming close behave like a crash for anti-entropy: the trees
  // and the clean-close marker are not written, so the next Open() starts
  // every segment dirty. (The WAL is still synced: the data survives.)
  void TEST_SkipCleanClose();

  class Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringkv
