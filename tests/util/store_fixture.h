// A gtest fixture with a Store on a fresh temporary directory and a manual
// clock: no sleeps for time to pass, nothing left behind.
//
// The store is opened by the test (OpenStore), so that a test can first adjust
// the options; StoreOptionsFor() gives the defaults: this fixture's clock,
// small RocksDB caches (tests hold little data), and no background WAL sync.
// Derived fixtures that own objects pointing into the store reset them in
// their TearDown() before calling StoreFixture::TearDown().
//
// Thread-safety: as for any gtest fixture; the Store itself is thread-safe.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "engine/clock.h"
#include "engine/store.h"
#include "tests/util/temp_dir.h"

namespace ringkv::testutil {

// The options of a test store in `dir`/db: small caches, no WAL sync thread.
inline StoreOptions SmallStoreOptions(const std::string& dir, std::string node = "n1",
                                      uint32_t partitions = 8) {
  StoreOptions o;
  o.path = dir + "/db";
  o.node_id = std::move(node);
  o.partitions = partitions;
  o.block_cache_bytes = 1ULL << 20;
  o.write_buffer_bytes = 8ULL << 20;
  o.wal_sync_interval_ms = 0;
  return o;
}

class StoreFixture : public ::testing::Test {
 protected:
  explicit StoreFixture(const char* prefix = "ringkv-store") : temp_dir_(prefix) {}

  void TearDown() override { store_.reset(); }

  // SmallStoreOptions() in dir(), on this fixture's clock.
  StoreOptions StoreOptionsFor(std::string node = "n1", uint32_t partitions = 8) {
    StoreOptions o = SmallStoreOptions(temp_dir_.path(), std::move(node), partitions);
    o.clock = &clock_;
    return o;
  }
  // Opens store_ with `o`; fails the test if it cannot.
  void OpenStore(const StoreOptions& o) {
    Status s = Store::Open(o, &store_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  const std::string& dir() const { return temp_dir_.path(); }

  // Declared first: destroyed after the store is closed.
  ScopedTempDir temp_dir_;
  ManualClock clock_{1'700'000'000'000ULL};
  std::unique_ptr<Store> store_;
};

}  // namespace ringkv::testutil
