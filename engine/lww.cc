#include "engine/lww.h"

#include "engine/record.h"

namespace ringkv {
namespace {

class LwwMergeOperator final : public rocksdb::MergeOperator {
 public:
  const char* Name() const override { return "ringkv.LwwMergeOperator"; }

  // Picks the newest of the existing value and all operands. The winner is
  // returned by reference (existing_operand) so no bytes are copied.
  bool FullMergeV2(const MergeOperationInput& in, MergeOperationOutput* out) const override {
    const rocksdb::Slice* best = in.existing_value;
    for (const rocksdb::Slice& op : in.operand_list) {
      if (best == nullptr || CompareEncodedVersions(ToView(op), ToView(*best)) > 0) best = &op;
    }
    if (best == nullptr) return false;  // cannot happen: there is at least one operand
    out->existing_operand = *best;
    return true;
  }

  bool PartialMergeMulti(const rocksdb::Slice& /*key*/, const std::deque<rocksdb::Slice>& operands,
                         std::string* new_value, rocksdb::Logger* /*logger*/) const override {
    if (operands.empty()) return false;
    const rocksdb::Slice* best = &operands.front();
    for (const rocksdb::Slice& op : operands) {
      if (CompareEncodedVersions(ToView(op), ToView(*best)) > 0) best = &op;
    }
    new_value->assign(best->data(), best->size());
    return true;
  }

  // Many operands of one key collapse to one; order does not matter.
  bool AllowSingleOperand() const override { return true; }

 private:
  static std::string_view ToView(const rocksdb::Slice& s) { return {s.data(), s.size()}; }
};

class PurgeFilter final : public rocksdb::CompactionFilter {
 public:
  PurgeFilter(uint64_t now_ms, uint64_t grace_ms) : now_ms_(now_ms), grace_ms_(grace_ms) {}
  const char* Name() const override { return "ringkv.PurgeFilter"; }

  Decision FilterV2(int /*level*/, const rocksdb::Slice& /*key*/, ValueType value_type,
                    const rocksdb::Slice& existing_value, std::string* /*new_value*/,
                    std::string* /*skip_until*/) const override {
    if (value_type != ValueType::kValue) return Decision::kKeep;
    return IsPurgeable({existing_value.data(), existing_value.size()}, now_ms_, grace_ms_)
               ? Decision::kRemove
               : Decision::kKeep;
  }

 private:
  uint64_t now_ms_;  // one reading of the clock per compaction
  uint64_t grace_ms_;
};

class PurgeFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  PurgeFilterFactory(const Clock* clock, uint64_t grace_ms) : clock_(clock), grace_ms_(grace_ms) {}
  const char* Name() const override { return "ringkv.PurgeFilterFactory"; }

  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& /*context*/) override {
    return std::make_unique<PurgeFilter>(clock_->NowMs(), grace_ms_);
  }

 private:
  const Clock* clock_;
  uint64_t grace_ms_;
};

}  // namespace

std::shared_ptr<rocksdb::MergeOperator> NewLwwMergeOperator() {
  return std::make_shared<LwwMergeOperator>();
}

std::shared_ptr<rocksdb::CompactionFilterFactory> NewPurgeFilterFactory(const Clock* clock,
                                                                        uint64_t grace_ms) {
  return std::make_shared<PurgeFilterFactory>(clock, grace_ms);
}

bool IsPurgeable(std::string_view encoded, uint64_t now_ms, uint64_t grace_ms) {
  Record r;
  // A record we cannot read is kept: purging is never worth losing data over.
  if (!DecodeRecordMeta(encoded, &r).ok()) return false;
  if (r.tombstone && HlcPhysicalMs(r.version.hlc) + grace_ms <= now_ms) return true;
  return r.expires_at_ms != 0 && r.expires_at_ms + grace_ms <= now_ms;
}

}  // namespace ringkv
