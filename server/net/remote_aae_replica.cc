#include "server/net/remote_aae_replica.h"

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>

#include "server/protocol_aae.h"

namespace ringkv::net {
namespace {

// The parsers never throw; this keeps a bug in one from escaping into the
// peer client's I/O loop.
template <typename Parse>
Status Safely(Parse&& parse) {
  try {
    return parse();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("malformed peer reply: ") + e.what());
  }
}

}  // namespace

void RemoteAaeReplica::Root(uint32_t partition, RootDone done) {
  peers_->Send(node_, EncodeAaeRoot(partition), timeout_ms_,
               [done = std::move(done)](Status s, std::string_view line) {
                 cluster::AaeRoot root;
                 if (s.ok()) s = Safely([&] { return ParseAaeRootReply(line, &root); });
                 done(std::move(s), root);
               });
}

void RemoteAaeReplica::Branches(uint32_t partition, std::vector<uint32_t> branches,
                                BranchesDone done) {
  peers_->Send(node_, EncodeAaeBranches(partition, branches), timeout_ms_,
               [n = branches.size(), done = std::move(done)](Status s, std::string_view line) {
                 std::vector<cluster::AaeSegments> out;
                 if (s.ok()) s = Safely([&] { return ParseAaeBranchesReply(line, &out); });
                 if (s.ok() && out.size() != n) {
                   s = Status::Internal("malformed peer reply: wrong number of branches");
                 }
                 done(std::move(s), std::move(out));
               });
}

void RemoteAaeReplica::Keys(uint32_t partition, std::vector<uint32_t> segments, size_t limit,
                            KeysDone done) {
  peers_->Send(node_, EncodeAaeKeys(partition, segments, limit), timeout_ms_,
               [done = std::move(done)](Status s, std::string_view line) {
                 std::vector<aae::KeyVersion> out;
                 bool truncated = false;
                 if (s.ok()) s = Safely([&] { return ParseAaeKeysReply(line, &out, &truncated); });
                 done(std::move(s), std::move(out), truncated);
               });
}

void RemoteAaeReplica::Fetch(uint32_t partition, std::vector<std::string> keys, RecordsDone done) {
  peers_->Send(node_, EncodeAaeFetch(partition, keys), timeout_ms_,
               [done = std::move(done)](Status s, std::string_view line) {
                 cluster::AaeRecords out;
                 if (s.ok()) s = Safely([&] { return ParseAaeRecordsReply(line, &out, nullptr); });
                 done(std::move(s), std::move(out));
               });
}

void RemoteAaeReplica::Scan(uint32_t partition, std::string after_key, size_t limit_keys,
                            size_t limit_bytes, ScanDone done) {
  peers_->Send(node_, EncodeAaeScan(partition, after_key, limit_keys, limit_bytes), timeout_ms_,
               [done = std::move(done)](Status s, std::string_view line) {
                 cluster::AaeRecords out;
                 std::string next;
                 if (s.ok()) s = Safely([&] { return ParseAaeRecordsReply(line, &out, &next); });
                 done(std::move(s), std::move(out), std::move(next));
               });
}

// One _write per record, pipelined; done once all have answered, with the
// first failure. Stale (the replica already holds as new a version) is not a
// failure: the repair's goal is met.
void RemoteAaeReplica::Put(uint32_t /*partition*/, cluster::AaeRecords records, Done done) {
  if (records.empty()) return done(Status::OK());
  struct Join {
    std::atomic<size_t> left;
    std::mutex mu;
    Status first;
    Done done;
  };
  auto join = std::make_shared<Join>();
  join->left = records.size();
  join->done = std::move(done);
  for (const auto& [key, record] : records) {
    peers_->Write(node_, key, record, cluster::Epoch{}, timeout_ms_, [join](Status s) {
      if (!s.ok() && !s.IsStale()) {
        std::lock_guard<std::mutex> l(join->mu);
        if (join->first.ok()) join->first = std::move(s);
      }
      if (join->left.fetch_sub(1) == 1) {
        Status result;
        {
          std::lock_guard<std::mutex> l(join->mu);
          result = join->first;
        }
        join->done(std::move(result));
      }
    });
  }
}

void RemoteAaeReplica::RaiseWatermark(uint32_t partition, uint64_t watermark_hlc, Done done) {
  peers_->Send(node_, EncodeAaeGc(partition, watermark_hlc), timeout_ms_,
               [done = std::move(done)](Status s, std::string_view line) {
                 if (s.ok()) s = Safely([&] { return ParseOkReply(line); });
                 done(std::move(s));
               });
}

}  // namespace ringkv::net
