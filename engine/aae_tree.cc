// MINIMAL STAND-IN for the aae-exchange branch only: just enough of
// engine/aae_tree.h to link and test the exchange logic. The aae-engine
// branch owns the real implementation; drop this commit at merge.
#include "engine/aae_tree.h"

#include <xxhash.h>

#include <bit>
#include <cstring>

namespace ringkv::aae {

uint32_t SegmentOfKey(std::string_view key) { return SegmentOf(XXH64(key.data(), key.size(), 0)); }

uint64_t EntryHash(std::string_view key, const Record& meta) {
  std::string buf(key);
  auto put64 = [&buf](uint64_t v) {
    for (int i = 0; i < 8; ++i) buf.push_back(static_cast<char>(v >> (8 * i)));
  };
  put64(meta.version.hlc);
  buf.append(meta.version.node);
  buf.push_back(static_cast<char>(meta.version.node.size()));
  buf.push_back(meta.tombstone ? 1 : 0);
  put64(meta.expires_at_ms);
  uint64_t h = XXH64(buf.data(), buf.size(), 0);
  return h == 0 ? 1 : h;
}

bool IsGcEligible(const Record& meta, uint64_t watermark_hlc) {
  if (watermark_hlc == 0) return false;
  if (meta.tombstone && meta.version.hlc < watermark_hlc) return true;
  return meta.expires_at_ms != 0 && meta.expires_at_ms < HlcPhysicalMs(watermark_hlc);
}

void Tree::Clear() {
  segments_.fill(0);
  branches_.fill(0);
}

void Tree::Toggle(uint32_t segment, uint64_t hash) {
  segments_[segment] ^= hash;
  branches_[BranchOf(segment)] ^= hash;
}

void Tree::SetSegment(uint32_t segment, uint64_t hash) {
  Toggle(segment, segments_[segment] ^ hash);
}

std::array<uint64_t, kSegmentsPerBranch> Tree::BranchSegments(uint32_t b) const {
  std::array<uint64_t, kSegmentsPerBranch> out;
  std::memcpy(out.data(), &segments_[b * kSegmentsPerBranch], sizeof(out));
  return out;
}

uint64_t Tree::Root() const {
  uint64_t r = 0;
  for (uint64_t b : branches_) r ^= b;
  return r;
}

std::string Tree::Encode() const {
  std::string out(sizeof(segments_), '\0');
  std::memcpy(out.data(), segments_.data(), sizeof(segments_));
  return out;
}

Status Tree::Decode(std::string_view data) {
  if (data.size() != sizeof(segments_)) return Status::Internal("aae tree: wrong size");
  Clear();
  std::array<uint64_t, kSegments> s;
  std::memcpy(s.data(), data.data(), sizeof(s));
  for (uint32_t i = 0; i < kSegments; ++i) SetSegment(i, s[i]);
  return Status::OK();
}

void DirtySet::MarkAll() {
  for (auto& w : words_) w.store(~0ULL, std::memory_order_release);
}

bool DirtySet::Any() const {
  for (const auto& w : words_) {
    if (w.load(std::memory_order_acquire) != 0) return true;
  }
  return false;
}

size_t DirtySet::Count() const {
  size_t n = 0;
  for (const auto& w : words_) n += std::popcount(w.load(std::memory_order_acquire));
  return n;
}

std::array<uint64_t, kSegments / 64> DirtySet::TakeAll() {
  std::array<uint64_t, kSegments / 64> out;
  for (size_t i = 0; i < out.size(); ++i) out[i] = words_[i].exchange(0, std::memory_order_acq_rel);
  return out;
}

void DirtySet::MarkBitmap(const std::array<uint64_t, kSegments / 64>& bitmap) {
  for (size_t i = 0; i < bitmap.size(); ++i) {
    words_[i].fetch_or(bitmap[i], std::memory_order_release);
  }
}

}  // namespace ringkv::aae
