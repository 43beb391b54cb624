// FailureDetector: pings every peer and tells Membership who is up; also
// drives hint delivery.
//
// Every `ping_interval` it sends _hello (PeerClient::Hello) to each peer that
// has no hello outstanding, with a `ping_timeout_ms` timeout, and reports the
// outcome: OK -> Membership::ReportSuccess; a failure -> ReportFailure, which
// is definitive when the connection was refused or reset. A peer that answers
// that its cluster differs (bad_request to _hello: other members, partitions
// or replicas) is treated as down (definitive), and an error naming the peer
// and both fingerprints is logged once each time that condition starts.
//
// Every `tick_interval` it calls `tick` (HintedHandoff::Tick in kvd), if set.
//
// Threading: one thread of its own, started by Start() and joined by Stop();
// `tick` runs on it. Hello outcomes are reported on the PeerClient's thread.
// Start() and Stop() must be called from one thread, not from `tick`.
//
// Lifetime: `peers` and `membership` must outlive the detector and must stay
// valid until `peers` has been stopped (hello callbacks still outstanding when
// the detector stops are completed by PeerClient::Stop() and report nothing).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "server/cluster/membership.h"
#include "server/net/peer_client.h"

namespace ringkv::net {

struct FailureDetectorOptions {
  // How often each peer is pinged. Default: 250 ms.
  std::chrono::milliseconds ping_interval{250};
  // How long a ping waits for its answer. Default: 500 ms.
  uint64_t ping_timeout_ms = 500;
  // How often `tick` is called. Default: 100 ms.
  std::chrono::milliseconds tick_interval{100};
};

class FailureDetector {
 public:
  using Tick = std::function<void()>;

  FailureDetector(FailureDetectorOptions options, PeerClient* peers,
                  cluster::Membership* membership, Tick tick);
  // Stops the detector if it is running.
  ~FailureDetector();

  FailureDetector(const FailureDetector&) = delete;
  FailureDetector& operator=(const FailureDetector&) = delete;

  // Starts pinging and ticking: the first ping is sent at once, the first
  // tick after one tick_interval. Idempotent; no-op after Stop().
  void Start();
  // Stops pinging and ticking and joins the thread. Idempotent.
  void Stop();

 private:
  struct Shared;

  void Run();
  void PingAll();

  const FailureDetectorOptions options_;
  PeerClient* const peers_;
  const Tick tick_;
  // Shared with hello callbacks, which may outlive the detector.
  const std::shared_ptr<Shared> shared_;
  std::thread thread_;
};

}  // namespace ringkv::net
