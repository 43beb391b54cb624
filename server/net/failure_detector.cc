#include "server/net/failure_detector.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ringkv::net {

struct FailureDetector::Shared {
  struct PeerState {
    bool in_flight = false;  // a hello is outstanding
    bool mismatch = false;   // the peer's last answer: its cluster differs
  };

  cluster::Membership* membership;
  std::string fingerprint;  // this node's, for the mismatch error

  std::mutex mu;  // protects the following
  std::condition_variable wake;
  bool started = false;
  bool stopping = false;
  std::map<std::string, PeerState> peers;

  // A hello's outcome; runs on the PeerClient's thread (or inline).
  void OnHello(const std::string& peer, const Status& status, bool refused) {
    const bool mismatch =
        status.code() == Status::Code::kBadRequest || status.code() == Status::Code::kUnknownOp;
    bool mismatch_began = false;
    bool mismatch_ended = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      PeerState& state = peers[peer];
      state.in_flight = false;
      if (stopping) return;
      // A transport failure says nothing about the peer's configuration.
      if (mismatch && !state.mismatch) {
        mismatch_began = true;
        state.mismatch = true;
      } else if (status.ok() && state.mismatch) {
        mismatch_ended = true;
        state.mismatch = false;
      }
    }
    if (mismatch_began) {
      spdlog::error(
          "[membership] node {} refuses to form a cluster with this node: {} (this node's "
          "cluster fingerprint: '{}'); every node must be started with the same --cluster, "
          "--partitions and --replicas. Treating {} as down.",
          peer, status.message(), fingerprint, peer);
    }
    if (mismatch_ended) {
      spdlog::info("[membership] node {} now agrees on the cluster configuration", peer);
    }
    if (status.ok()) {
      membership->ReportSuccess(peer);
    } else {
      membership->ReportFailure(peer, refused || mismatch);
    }
  }
};

FailureDetector::FailureDetector(FailureDetectorOptions options, PeerClient* peers,
                                 cluster::Membership* membership, Tick tick)
    : options_(options),
      peers_(peers),
      tick_(std::move(tick)),
      shared_(std::make_shared<Shared>()) {
  shared_->membership = membership;
  shared_->fingerprint = peers->fingerprint();
  for (const std::string& peer : membership->Peers()) shared_->peers[peer];
}

FailureDetector::~FailureDetector() { Stop(); }

void FailureDetector::Start() {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (shared_->started || shared_->stopping) return;
    shared_->started = true;
  }
  thread_ = std::thread([this] { Run(); });
}

void FailureDetector::Stop() {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->stopping = true;
  }
  shared_->wake.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FailureDetector::Run() {
  using Clock = std::chrono::steady_clock;
  auto next_ping = Clock::now();
  auto next_tick = next_ping + options_.tick_interval;
  std::unique_lock<std::mutex> lock(shared_->mu);
  while (!shared_->stopping) {
    auto now = Clock::now();
    if (now >= next_ping) {
      lock.unlock();
      PingAll();
      lock.lock();
      next_ping += options_.ping_interval;
      if (next_ping <= now) next_ping = now + options_.ping_interval;  // fell behind
      continue;  // re-check stopping and the clock
    }
    if (now >= next_tick) {
      if (tick_) {
        lock.unlock();
        try {
          tick_();
        } catch (const std::exception& e) {
          spdlog::error("[membership] hint delivery tick failed: {}", e.what());
        }
        lock.lock();
      }
      next_tick += options_.tick_interval;
      if (next_tick <= now) next_tick = now + options_.tick_interval;
      continue;
    }
    shared_->wake.wait_until(lock, std::min(next_ping, next_tick));
  }
}

void FailureDetector::PingAll() {
  std::vector<std::string> to_ping;
  // The members follow the cluster map: ping whoever is a peer now.
  const std::vector<std::string> current = shared_->membership->Peers();
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    for (auto it = shared_->peers.begin(); it != shared_->peers.end();) {
      bool keep = std::find(current.begin(), current.end(), it->first) != current.end();
      it = keep || it->second.in_flight ? std::next(it) : shared_->peers.erase(it);
    }
    for (const std::string& peer : current) shared_->peers[peer];
    for (auto& [peer, state] : shared_->peers) {
      if (std::find(current.begin(), current.end(), peer) == current.end()) continue;
      if (state.in_flight) continue;
      state.in_flight = true;
      to_ping.push_back(peer);
    }
  }
  // Without the lock: a stopped PeerClient calls back inline.
  for (const std::string& peer : to_ping) {
    peers_->Hello(peer, options_.ping_timeout_ms,
                  [shared = shared_, peer](Status status, bool refused) {
                    shared->OnHello(peer, status, refused);
                  });
  }
}

}  // namespace ringkv::net
