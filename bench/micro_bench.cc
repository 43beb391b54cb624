// Micro-benchmarks (Google Benchmark) of the pieces on a request's hot path:
// the store's write (one RocksDB write per record vs one per batch, as the
// WriteBatcher commits them), the store's read, the anti-entropy costs (the
// write path's dirty mark against a read before each write, and a tree's
// settle), and the protocol's parsing.
//
//   build/bin/micro_bench                       # all
//   build/bin/micro_bench --benchmark_filter=Store
//
// Real RocksDB in a temporary directory (64 partitions like kvd, WAL on, no
// fsync: the WAL append is what batching saves, an fsync would swamp it).
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/aae_tree.h"
#include "engine/store.h"
#include "engine/version.h"
#include "server/cluster/cluster_map.h"
#include "server/cluster/ring.h"
#include "server/cluster/router.h"
#include "server/protocol.h"
#include "tests/util/temp_dir.h"

namespace ringkv {
namespace {

constexpr uint32_t kPartitions = 64;
constexpr int kKeys = 100'000;

class TempStore {
 public:
  TempStore() {
    StoreOptions o;
    o.path = dir_.path() + "/db";
    o.node_id = "n1";
    o.partitions = kPartitions;
    o.wal_sync_interval_ms = 0;
    if (!Store::Open(o, &store_).ok()) abort();
    std::vector<uint32_t> all(kPartitions);
    for (uint32_t p = 0; p < kPartitions; ++p) all[p] = p;
    if (!store_->EnsurePartitions(all).ok()) abort();
  }
  ~TempStore() { store_.reset(); }
  Store* get() { return store_.get(); }

 private:
  testutil::ScopedTempDir dir_{"ringkv-micro"};  // removed after the store closes
  std::unique_ptr<Store> store_;
};

std::string KeyOf(uint64_t i) { return "key-" + std::to_string(i); }

Record RecordOf(uint64_t ms) {
  Record r;
  r.version = {MakeHlc(ms, 0), "n1"};
  r.value = '"' + std::string(98, 'v') + '"';  // 100-byte JSON string
  return r;
}

// range(0): writes per RocksDB write (1 = Store::Write, else WriteMany).
void BM_StoreWrite(benchmark::State& state) {
  TempStore store;
  const size_t batch = static_cast<size_t>(state.range(0));
  std::mt19937_64 rng(42);
  std::vector<std::string> keys(batch);
  std::vector<Record> records(batch);
  std::vector<PartitionWrite> writes(batch);
  uint64_t ms = 1;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      keys[i] = KeyOf(rng() % kKeys);
      records[i] = RecordOf(++ms);
      writes[i] = {static_cast<uint32_t>(rng() % kPartitions), keys[i], &records[i]};
    }
    Status s = batch == 1 ? store.get()->Write(writes[0].partition, keys[0], records[0])
                          : store.get()->WriteMany(writes);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch));
}
BENCHMARK(BM_StoreWrite)->Arg(1)->Arg(8)->Arg(32)->Arg(128)->MinTime(1.0);

void BM_StoreGet(benchmark::State& state) {
  TempStore store;
  for (int i = 0; i < kKeys; ++i) {
    Record r = RecordOf(i + 1);
    std::string key = KeyOf(i);
    PartitionWrite w{static_cast<uint32_t>(i % kPartitions), key, &r};
    if (!store.get()->WriteMany({w}).ok()) abort();
  }
  std::mt19937_64 rng(7);
  Record out;
  for (auto _ : state) {
    uint64_t i = rng() % kKeys;
    Status s = store.get()->Get(static_cast<uint32_t>(i % kPartitions), KeyOf(i), &out);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StoreGet)->MinTime(1.0);

// ---- Anti-entropy (docs/benchmarks.md, "anti-entropy") ----
//
// What keeping the trees current costs, in one run: the write path as it is
// (one WriteMany of 1 record, which now includes the dirty mark), the
// alternative design that reads the old version before every write (a
// GetMeta of the key, then the same write), and the settle that the dirty
// marks defer the work to (one scan of a whole partition, all dirty).

// A store whose keys 0..kKeys-1 all exist (key i in partition i % 64), so
// that a read before a write finds the version it would have to unhash.
class LoadedStore : public TempStore {
 public:
  LoadedStore() {
    std::vector<Record> records(1000);
    std::vector<std::string> keys(1000);
    std::vector<PartitionWrite> writes;
    for (int i = 0; i < kKeys; i += 1000) {
      writes.clear();
      for (int j = 0; j < 1000; ++j) {
        keys[j] = KeyOf(i + j);
        records[j] = RecordOf(1);
        writes.push_back({static_cast<uint32_t>((i + j) % kPartitions), keys[j], &records[j]});
      }
      if (!get()->WriteMany(writes).ok()) abort();
    }
  }
};

// One record per RocksDB write, with or without reading the key's version
// first (range(0) = 1: the read-before-write alternative).
void BM_AaeWriteOne(benchmark::State& state) {
  LoadedStore store;
  const bool read_first = state.range(0) == 1;
  std::mt19937_64 rng(42);
  uint64_t ms = 2;
  Record old;
  for (auto _ : state) {
    const uint64_t i = rng() % kKeys;
    const std::string key = KeyOf(i);
    const Record r = RecordOf(++ms);
    const PartitionWrite w{static_cast<uint32_t>(i % kPartitions), key, &r};
    if (read_first) {
      Status g = store.get()->GetMeta(w.partition, key, &old);
      if (!g.ok()) state.SkipWithError(g.ToString().c_str());
      benchmark::DoNotOptimize(old);
    }
    Status s = store.get()->WriteMany({w});
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(read_first ? "GetMeta + WriteMany" : "WriteMany (dirty mark)");
}
BENCHMARK(BM_AaeWriteOne)->Arg(0)->Arg(1);

// Settling one partition of range(0) keys with every segment dirty (after a
// restart without a clean close, or a watermark raise): items = keys
// scanned. The keys are flushed and compacted, as a partition at rest is.
void BM_AaeSettle(benchmark::State& state) {
  TempStore store;
  const int keys = static_cast<int>(state.range(0));
  std::vector<Record> records(1000);
  std::vector<std::string> names(1000);
  std::vector<PartitionWrite> writes;
  for (int i = 0; i < keys; i += 1000) {
    writes.clear();
    for (int j = 0; j < 1000 && i + j < keys; ++j) {
      names[j] = KeyOf(i + j);
      records[j] = RecordOf(1'000'000 + i + j);
      writes.push_back({0, names[j], &records[j]});
    }
    if (!store.get()->WriteMany(writes).ok()) abort();
  }
  if (!store.get()->CompactPartitions().ok()) abort();
  aae::Tree tree;
  uint64_t watermark = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // Marks every segment dirty; below every record's version, so all count.
    if (!store.get()->RaiseGcWatermark(0, ++watermark).ok()) abort();
    state.ResumeTiming();
    Status s = store.get()->AaeTree(0, &tree);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(tree);
  }
  state.SetItemsProcessed(state.iterations() * keys);
}
BENCHMARK(BM_AaeSettle)->Arg(20'000)->Arg(200'000)->Unit(benchmark::kMillisecond);

// A 100-byte put through ParseRequest (the flat-request scanner takes it)
// and through the full JSON parser alone (what every request paid before).
void BM_ParsePut(benchmark::State& state,
                 Status (*parse)(std::string_view, const Limits&, Request*)) {
  const std::string line =
      R"({"op":"put","key":"key-12345","value":")" + std::string(98, 'v') + R"(","id":17})";
  Limits limits;
  for (auto _ : state) {
    Request req;
    Status s = parse(line, limits, &req);
    benchmark::DoNotOptimize(req);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_ParsePut, scanner, &ParseRequest);
BENCHMARK_CAPTURE(BM_ParsePut, full_parser, &protocol_internal::ParseRequestFull);

// What membership (issue #11) adds to every request: taking the current ring
// (an atomic<shared_ptr> load, which also counts a reference) and, on a
// replica, the fencing check. Threads: the I/O threads take it at once.
static void BM_RingCurrent(benchmark::State& state) {
  static cluster::RingHolder* holder = [] {
    cluster::ClusterMap map;
    std::vector<std::pair<std::string, std::string>> members = {
        {"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}};
    if (!cluster::InitialMap("c", members, 64, 3, &map).ok()) std::abort();
    return new cluster::RingHolder(cluster::Ring::FromMap(map));
  }();
  for (auto _ : state) {
    const cluster::Ring* ring = holder->Current();
    benchmark::DoNotOptimize(ring->PreferenceList(ring->PartitionOf("key0000012345")));
  }
}
BENCHMARK(BM_RingCurrent)->Threads(1)->Threads(2);

static void BM_RingFenceCheck(benchmark::State& state) {
  cluster::ClusterMap map;
  std::vector<std::pair<std::string, std::string>> members = {
      {"n1", "a:1"}, {"n2", "a:2"}, {"n3", "a:3"}};
  if (!cluster::InitialMap("c", members, 64, 3, &map).ok()) std::abort();
  cluster::Ring ring = cluster::Ring::FromMap(map);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cluster::CheckFence(ring, "n1", ring.PartitionOf("key0000012345"),
                                                 cluster::Epoch{1}, true));
  }
}
BENCHMARK(BM_RingFenceCheck);

}  // namespace
}  // namespace ringkv

BENCHMARK_MAIN();
