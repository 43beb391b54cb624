#include "engine/lww.h"

#include "engine/aae_tree.h"
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
  explicit PurgeFilter(uint64_t watermark_hlc) : watermark_hlc_(watermark_hlc) {}
  const char* Name() const override { return "ringkv.PurgeFilter"; }

  Decision FilterV2(int /*level*/, const rocksdb::Slice& /*key*/, ValueType value_type,
                    const rocksdb::Slice& existing_value, std::string* /*new_value*/,
                    std::string* /*skip_until*/) const override {
    if (value_type != ValueType::kValue) return Decision::kKeep;
    return IsPurgeable({existing_value.data(), existing_value.size()}, watermark_hlc_)
               ? Decision::kRemove
               : Decision::kKeep;
  }

 private:
  const uint64_t watermark_hlc_;  // one reading per compaction
};

class PurgeFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  explicit PurgeFilterFactory(const std::atomic<uint64_t>* watermark_hlc)
      : watermark_hlc_(watermark_hlc) {}
  const char* Name() const override { return "ringkv.PurgeFilterFactory"; }

  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& /*context*/) override {
    return std::make_unique<PurgeFilter>(watermark_hlc_->load(std::memory_order_acquire));
  }

 private:
  const std::atomic<uint64_t>* const watermark_hlc_;
};

}  // namespace

std::shared_ptr<rocksdb::MergeOperator> NewLwwMergeOperator() {
  return std::make_shared<LwwMergeOperator>();
}

std::shared_ptr<rocksdb::CompactionFilterFactory> NewPurgeFilterFactory(
    const std::atomic<uint64_t>* watermark_hlc) {
  return std::make_shared<PurgeFilterFactory>(watermark_hlc);
}

bool IsPurgeable(std::string_view encoded, uint64_t watermark_hlc) {
  if (watermark_hlc == 0) return false;
  Record r;
  // A record we cannot read is kept: purging is never worth losing data over.
  if (!DecodeRecordMeta(encoded, &r).ok()) return false;
  return aae::IsGcEligible(r, watermark_hlc);
}

}  // namespace ringkv
