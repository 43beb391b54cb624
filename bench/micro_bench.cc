// Micro-benchmarks (Google Benchmark) of the pieces on a request's hot path:
// the store's write (one RocksDB write per record vs one per batch, as the
// WriteBatcher commits them), the store's read, and the protocol's parsing.
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

#include "engine/store.h"
#include "engine/version.h"
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

}  // namespace
}  // namespace ringkv

BENCHMARK_MAIN();
