#include "engine/aae_tree.h"

#include <xxhash.h>

#include <bit>
#include <cstring>

namespace ringkv::aae {
namespace {

void PutFixed32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutFixed64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

}  // namespace

uint32_t SegmentOfKey(std::string_view key) { return SegmentOf(XXH64(key.data(), key.size(), 0)); }

// The hashed bytes: len32(key) key hlc64 len32(node) node flags8 expiry64, all
// little-endian. The lengths make the encoding injective, so two different
// (key, version, flags, expiry) tuples never hash the same bytes.
uint64_t EntryHash(std::string_view key, const Record& meta) {
  thread_local std::string buf;
  buf.clear();
  PutFixed32(static_cast<uint32_t>(key.size()), &buf);
  buf.append(key);
  PutFixed64(meta.version.hlc, &buf);
  PutFixed32(static_cast<uint32_t>(meta.version.node.size()), &buf);
  buf.append(meta.version.node);
  buf.push_back(meta.tombstone ? 1 : 0);
  PutFixed64(meta.expires_at_ms, &buf);
  return XXH64(buf.data(), buf.size(), 0);
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
  branches_[BranchOf(segment)] ^= segments_[segment] ^ hash;
  segments_[segment] = hash;
}

std::array<uint64_t, kSegmentsPerBranch> Tree::BranchSegments(uint32_t b) const {
  std::array<uint64_t, kSegmentsPerBranch> out;
  std::memcpy(out.data(), segments_.data() + b * kSegmentsPerBranch, sizeof(out));
  return out;
}

uint64_t Tree::Root() const {
  uint64_t root = 0;
  for (uint64_t b : branches_) root ^= b;
  return root;
}

std::string Tree::Encode() const {
  std::string out;
  out.reserve(kSegments * 8);
  for (uint64_t s : segments_) PutFixed64(s, &out);
  return out;
}

Status Tree::Decode(std::string_view data) {
  if (data.size() != kSegments * 8) {
    return Status::Internal("AAE tree of " + std::to_string(data.size()) + " bytes, expected " +
                            std::to_string(kSegments * 8));
  }
  Clear();
  for (uint32_t s = 0; s < kSegments; ++s) SetSegment(s, GetFixed64(data.data() + 8 * s));
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
  for (size_t i = 0; i < words_.size(); ++i)
    out[i] = words_[i].exchange(0, std::memory_order_acq_rel);
  return out;
}

void DirtySet::MarkBitmap(const std::array<uint64_t, kSegments / 64>& bitmap) {
  for (size_t i = 0; i < words_.size(); ++i) {
    if (bitmap[i] != 0) words_[i].fetch_or(bitmap[i], std::memory_order_release);
  }
}

}  // namespace ringkv::aae
