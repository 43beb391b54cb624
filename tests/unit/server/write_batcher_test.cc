#include "server/write_batcher.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "engine/record_cache.h"
#include "engine/store.h"
#include "engine/version.h"
#include "server/deferrer.h"
#include "tests/util/store_fixture.h"

namespace ringkv {
namespace {

// Stands in for an I/O thread's event loop: deferred work runs when the test
// says the wake-up is over.
class QueueDeferrer final : public Deferrer {
 public:
  void Defer(std::function<void()> fn) override { queue_.push_back(std::move(fn)); }
  size_t size() const { return queue_.size(); }
  void RunAll() {
    while (!queue_.empty()) {
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      fn();
    }
  }

 private:
  std::deque<std::function<void()>> queue_;
};

class WriteBatcherTest : public testutil::StoreFixture {
 protected:
  WriteBatcherTest() : StoreFixture("ringkv-batcher") {}
  void SetUp() override { OpenStore(StoreOptionsFor("n1", 4)); }
  void TearDown() override {
    Deferrer::SetCurrent(nullptr);
    batcher_.reset();
    StoreFixture::TearDown();
  }
  void MakeBatcher(WriteBatcherOptions o = {}) {
    batcher_ = std::make_unique<WriteBatcher>(store_.get(), &cache_, o);
  }
  static Record Rec(uint64_t ms, std::string value) {
    Record r;
    r.version = {MakeHlc(ms, 0), "n1"};
    r.value = std::move(value);
    return r;
  }
  // Writes and records the completion order into done_.
  void Write(uint32_t p, const std::string& key, const Record& r) {
    batcher_->Write(p, key, r, [this, key](Status s) {
      EXPECT_TRUE(s.ok()) << s.ToString();
      done_.push_back(key);
    });
  }
  std::string StoredValue(uint32_t p, const std::string& key) {
    Record r;
    Status s = store_->Get(p, key, &r);
    return s.ok() ? r.value : "<" + std::string(Status::CodeName(s.code())) + ">";
  }

  RecordCache cache_{1 << 20};
  std::unique_ptr<WriteBatcher> batcher_;
  QueueDeferrer deferrer_;
  std::vector<std::string> done_;
};

TEST_F(WriteBatcherTest, OffTheIoThreadsWritesAtOnce) {
  MakeBatcher();
  Write(1, "a", Rec(10, "1"));
  EXPECT_EQ(done_, std::vector<std::string>{"a"});
  EXPECT_EQ(StoredValue(1, "a"), "1");
  EXPECT_EQ(batcher_->commits(), 1u);
}

TEST_F(WriteBatcherTest, OneWakeUpsWritesAreOneCommitCompletedInOrder) {
  Deferrer::SetCurrent(&deferrer_);
  MakeBatcher();
  Write(0, "a", Rec(10, "1"));
  Write(1, "b", Rec(10, "2"));
  Write(2, "c", Rec(10, "3"));
  // Nothing is written or answered before the wake-up's work is done.
  EXPECT_TRUE(done_.empty());
  EXPECT_EQ(StoredValue(0, "a"), "<not_found>");
  EXPECT_EQ(deferrer_.size(), 1u);  // one deferred commit, not one per write
  deferrer_.RunAll();
  EXPECT_EQ(done_, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(StoredValue(0, "a"), "1");
  EXPECT_EQ(StoredValue(2, "c"), "3");
  EXPECT_EQ(batcher_->commits(), 1u);
  EXPECT_EQ(batcher_->writes(), 3u);
  // The next wake-up starts a new batch.
  Write(3, "d", Rec(10, "4"));
  deferrer_.RunAll();
  EXPECT_EQ(batcher_->commits(), 2u);
  EXPECT_EQ(StoredValue(3, "d"), "4");
}

TEST_F(WriteBatcherTest, AReadOfAPendingKeyCommitsFirst) {
  Deferrer::SetCurrent(&deferrer_);
  MakeBatcher();
  Write(0, "a", Rec(10, "1"));
  batcher_->CommitIfPending("b");  // not pending: nothing happens
  EXPECT_TRUE(done_.empty());
  batcher_->CommitIfPending("a");
  EXPECT_EQ(done_, std::vector<std::string>{"a"});
  EXPECT_EQ(StoredValue(0, "a"), "1");
  deferrer_.RunAll();  // the deferred commit finds nothing left to do
  EXPECT_EQ(batcher_->commits(), 1u);
}

TEST_F(WriteBatcherTest, AFullBatchCommitsAtOnce) {
  Deferrer::SetCurrent(&deferrer_);
  WriteBatcherOptions o;
  o.max_writes = 2;
  MakeBatcher(o);
  Write(0, "a", Rec(10, "1"));
  EXPECT_TRUE(done_.empty());
  Write(0, "b", Rec(10, "2"));
  EXPECT_EQ(done_, (std::vector<std::string>{"a", "b"}));
  Write(0, "c", Rec(10, "3"));
  EXPECT_EQ(done_.size(), 2u);
  deferrer_.RunAll();
  EXPECT_EQ(done_.size(), 3u);
  EXPECT_EQ(batcher_->commits(), 2u);
}

TEST_F(WriteBatcherTest, CommitRaisesCachedRecordsAndKeepsTheNewest) {
  Deferrer::SetCurrent(&deferrer_);
  MakeBatcher();
  ASSERT_TRUE(store_->Write(1, "k", Rec(5, "old")).ok());
  cache_.Fill("k", Rec(5, "old"), cache_.BeginFill("k"));
  Write(1, "k", Rec(20, "new"));
  Write(1, "k", Rec(10, "older"));  // a late, older write in the same batch
  ASSERT_NE(cache_.Lookup("k"), nullptr);
  EXPECT_EQ(cache_.Lookup("k")->value, "old");  // not before the commit
  deferrer_.RunAll();
  EXPECT_EQ(cache_.Lookup("k")->value, "new");
  EXPECT_EQ(StoredValue(1, "k"), "new");
}

TEST_F(WriteBatcherTest, CallbacksMayWriteAgain) {
  Deferrer::SetCurrent(&deferrer_);
  MakeBatcher();
  batcher_->Write(0, "a", Rec(10, "1"), [this](Status s) {
    ASSERT_TRUE(s.ok());
    Write(0, "b", Rec(10, "2"));  // e.g. a repair started by a completion
  });
  deferrer_.RunAll();
  EXPECT_EQ(done_, std::vector<std::string>{"b"});
  EXPECT_EQ(StoredValue(0, "b"), "2");
  EXPECT_EQ(batcher_->commits(), 2u);
}

}  // namespace
}  // namespace ringkv
