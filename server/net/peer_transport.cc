#include "server/net/peer_transport.h"

namespace ringkv::net {
namespace {

// The transport an I/O thread is attached to, and its client there.
struct ThreadShard {
  const void* owner = nullptr;
  PeerClient* client = nullptr;
};
thread_local ThreadShard t_shard;

}  // namespace

PeerTransport::PeerTransport(PeerClient* fallback, PeerClientOptions shard_options,
                             std::vector<std::pair<std::string, std::string>> peers,
                             std::string self, std::string fingerprint)
    : fallback_(fallback),
      shard_options_(std::move(shard_options)),
      self_(std::move(self)),
      fingerprint_(std::move(fingerprint)),
      peers_(std::move(peers)) {}

PeerTransport::~PeerTransport() {
  // Detached already when the server stopped; a client never detached (its
  // server never started) has nothing running its io_context, so stopping it
  // here is safe.
  for (auto& shard : shards_) {
    if (shard != nullptr) shard->Stop();
  }
}

void PeerTransport::AddPeer(const std::string& id, const std::string& address) {
  fallback_->AddPeer(id, address);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [known, ignored] : peers_) {
    if (known == id) return;
  }
  peers_.emplace_back(id, address);
  for (auto& shard : shards_) {
    if (shard != nullptr) shard->AddPeer(id, address);
  }
}

PeerClient* PeerTransport::ClientHere() const {
  return t_shard.owner == this ? t_shard.client : fallback_;
}

void PeerTransport::Write(const std::string& node, const std::string& key, const Record& record,
                          cluster::Epoch epoch, uint64_t timeout_ms, WriteDone done) {
  ClientHere()->Write(node, key, record, epoch, timeout_ms, std::move(done));
}

void PeerTransport::Read(const std::string& node, const std::string& key, cluster::Epoch epoch,
                         uint64_t timeout_ms, ReadDone done) {
  ClientHere()->Read(node, key, epoch, timeout_ms, std::move(done));
}

void PeerTransport::Attach(size_t index, asio::io_context& io) {
  PeerClientOptions options = shard_options_;
  options.io = &io;
  PeerClient* client = nullptr;
  {
    // Under the lock, so that an AddPeer() racing with this reaches the new
    // client either through the list or directly.
    std::lock_guard<std::mutex> lock(mu_);
    if (shards_.size() <= index) {
      shards_.resize(index + 1);
      live_.resize(index + 1, false);
    }
    if (shards_[index] != nullptr) return;  // attached once only (a server starts once)
    shards_[index] = std::make_unique<PeerClient>(options, peers_, self_, fingerprint_);
    client = shards_[index].get();
    client->Start();
    live_[index] = true;
  }
  t_shard = {this, client};
}

void PeerTransport::Detach(size_t index) {
  PeerClient* client = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index >= shards_.size() || !live_[index]) return;
    live_[index] = false;
    client = shards_[index].get();
  }
  if (t_shard.owner == this) t_shard = {};
  client->Stop();  // fails what is pending: callbacks run here, on its thread
}

size_t PeerTransport::attached() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (bool live : live_) n += live ? 1 : 0;
  return n;
}

}  // namespace ringkv::net
