// The history checker on hand-made histories: each anomaly it must find, and
// the concurrent cases it must accept.
#include "tests/fault/checker.h"

#include <gtest/gtest.h>

#include "engine/version.h"

namespace ringkv::fault {
namespace {

std::string V(uint64_t hlc, const std::string& node = "n1") {
  return Version{hlc, node}.ToString();
}

Op Put(const std::string& value, int64_t invoke, int64_t complete, const std::string& version,
       Outcome outcome = Outcome::kOk, int client = 0) {
  Op op;
  op.type = OpType::kWrite;
  op.client = client;
  op.key = "k";
  op.invoke_ns = invoke;
  op.complete_ns = complete;
  op.outcome = outcome;
  op.code = outcome == Outcome::kOk ? "" : (outcome == Outcome::kFail ? "unavailable" : "timeout");
  op.value = value;
  op.version = outcome == Outcome::kOk ? version : "";
  return op;
}

// A successful read; value "" means it found nothing.
Op Get(const std::string& value, int64_t invoke, int64_t complete, const std::string& version,
       int client = 1) {
  Op op;
  op.type = OpType::kRead;
  op.client = client;
  op.key = "k";
  op.invoke_ns = invoke;
  op.complete_ns = complete;
  op.outcome = Outcome::kOk;
  op.found = !value.empty();
  op.value = value;
  op.version = op.found ? version : "";
  return op;
}

FinalState Final(const std::string& value, const std::string& version) {
  return {true, value, version};
}

std::map<std::string, FinalState> Finals(FinalState f) { return {{"k", std::move(f)}}; }

TEST(CheckerTest, SequentialHistoryIsClean) {
  std::vector<Op> h = {Get("", 0, 5, ""),        Put("a", 10, 20, V(100)),
                       Get("a", 30, 40, V(100)), Put("b", 50, 60, V(200)),
                       Get("b", 70, 80, V(200)), Get("b", 90, 95, V(200))};
  CheckResult r = Check(h, Finals(Final("b", V(200))));
  EXPECT_EQ(r.violations(), 0) << r.Summary() << " " << ::testing::PrintToString(r.examples);
  EXPECT_EQ(r.writes, 2);
  EXPECT_EQ(r.acknowledged, 2);
  EXPECT_EQ(r.reads, 4);
}

TEST(CheckerTest, ConcurrentOperationsMayGoEitherWay) {
  // Two overlapping writes: either may win. Reads overlapping a write may see
  // the old or the new value.
  std::vector<Op> h = {Put("a", 0, 10, V(100)), Put("b", 5, 30, V(150, "n2")),
                       Put("c", 8, 40, V(90)), Get("a", 12, 50, V(100)),
                       Get("b", 15, 45, V(150, "n2"))};
  CheckResult r = Check(h, Finals(Final("b", V(150, "n2"))));
  EXPECT_EQ(r.violations(), 0) << ::testing::PrintToString(r.examples);
}

TEST(CheckerTest, FinalValueOlderThanAnAcknowledgedWriteIsLost) {
  std::vector<Op> h = {Put("a", 0, 10, V(100)), Put("b", 20, 30, V(200))};
  CheckResult r = Check(h, Finals(Final("a", V(100))));
  EXPECT_EQ(r.lost, 1) << ::testing::PrintToString(r.examples);
  ASSERT_FALSE(r.examples.empty());
  EXPECT_NE(r.examples[0].find("value b"), std::string::npos) << r.examples[0];
}

TEST(CheckerTest, WriteLostToAnEarlierWriteWithAHigherVersion) {
  // Clock skew: "a" was stamped by a fast clock, "b" began after "a" was
  // acknowledged but got a lower version, and "a" stayed.
  std::vector<Op> h = {Put("a", 0, 10, V(900, "n5")), Put("b", 20, 30, V(200, "n1"))};
  CheckResult r = Check(h, Finals(Final("a", V(900, "n5"))));
  EXPECT_EQ(r.lost, 1) << ::testing::PrintToString(r.examples);
}

TEST(CheckerTest, MissingOrUnknownFinalValueLosesEveryAcknowledgedWrite) {
  std::vector<Op> h = {Put("a", 0, 10, V(100)), Put("b", 20, 30, V(200))};
  EXPECT_EQ(Check(h, Finals(FinalState{})).lost, 2);
  EXPECT_EQ(Check(h, Finals(Final("zzz", V(300)))).lost, 2);
  // Keys without a final state are not checked for loss.
  EXPECT_EQ(Check(h, {}).lost, 0);
}

TEST(CheckerTest, LaterUnacknowledgedWriteMayWin) {
  // "b" timed out but took effect with a higher version: not a loss of "a".
  std::vector<Op> h = {Put("a", 0, 10, V(100)), Put("b", 20, 1020, "", Outcome::kUnknown)};
  CheckResult r = Check(h, Finals(Final("b", V(200))));
  EXPECT_EQ(r.violations(), 0) << ::testing::PrintToString(r.examples);
}

TEST(CheckerTest, ReadOlderThanAnAcknowledgedWriteIsStale) {
  std::vector<Op> h = {Put("a", 0, 10, V(100)), Put("b", 20, 30, V(200)), Get("a", 40, 50, V(100)),
                       Get("", 60, 70, "")};
  CheckResult r = Check(h, Finals(Final("b", V(200))));
  EXPECT_EQ(r.stale, 2) << ::testing::PrintToString(r.examples);
  EXPECT_EQ(r.lost, 0);
}

TEST(CheckerTest, ReadOfAValueSupersededInRealTimeIsStale) {
  // x -> w -> r in real time, but x has the higher version (skew): the read
  // returning x is stale even though versions alone would allow it.
  std::vector<Op> h = {Put("x", 0, 10, V(900, "n5")), Put("w", 20, 30, V(200, "n1")),
                       Get("x", 40, 50, V(900, "n5"))};
  CheckResult r = Check(h, Finals(Final("x", V(900, "n5"))));
  EXPECT_EQ(r.stale, 1) << ::testing::PrintToString(r.examples);
  EXPECT_EQ(r.lost, 1);
}

TEST(CheckerTest, ReadGoingBackIsNonMonotonic) {
  // The write of "b" timed out, so readers may see "a" or "b"; but once a
  // read of "b" has completed, a read that starts later (whichever client)
  // must not go back to "a".
  std::vector<Op> h = {Put("a", 0, 10, V(100)), Put("b", 20, 5000, "", Outcome::kUnknown),
                       Get("b", 30, 40, V(200), /*client=*/1),
                       Get("a", 50, 60, V(100), /*client=*/2),
                       // Overlaps the read of "b": allowed.
                       Get("a", 35, 70, V(100), /*client=*/3)};
  CheckResult r = Check(h, Finals(Final("b", V(200))));
  EXPECT_EQ(r.nonmonotonic, 1) << ::testing::PrintToString(r.examples);
  EXPECT_EQ(r.stale, 0);
  EXPECT_EQ(r.lost, 0);
}

TEST(CheckerTest, PhantomReads) {
  std::vector<Op> h = {Put("a", 0, 10, V(100)), Put("f", 20, 30, "", Outcome::kFail),
                       Get("never", 40, 50, V(300)), Get("f", 60, 70, V(310)),
                       Get("a", 80, 90, V(101))};
  CheckResult r = Check(h, {});
  EXPECT_EQ(r.phantom, 3) << ::testing::PrintToString(r.examples);
}

TEST(CheckerTest, VersionsCompareByClockThenNodeId) {
  // Same HLC: the node id breaks the tie ("n2" > "n1"); the HLC decides first
  // even when the text would order the node ids the other way.
  std::vector<Op> h = {Put("a", 0, 10, V(100, "n2")), Put("b", 20, 30, V(100, "n1"))};
  EXPECT_EQ(Check(h, Finals(Final("a", V(100, "n2")))).lost, 1);
  std::vector<Op> h2 = {Put("a", 0, 10, V(0xff, "n9")), Put("b", 20, 30, V(0x100, "n1"))};
  EXPECT_EQ(Check(h2, Finals(Final("b", V(0x100, "n1")))).violations(), 0);
  EXPECT_EQ(Check(h2, Finals(Final("a", V(0xff, "n9")))).lost, 1);
}

TEST(CheckerTest, KeysAreIndependent) {
  std::vector<Op> h = {Put("a", 0, 10, V(100)), Put("b", 20, 30, V(200))};
  h[1].key = "other";
  std::map<std::string, FinalState> finals = {{"k", Final("a", V(100))},
                                              {"other", Final("b", V(200))}};
  EXPECT_EQ(Check(h, finals).violations(), 0);
}

}  // namespace
}  // namespace ringkv::fault
