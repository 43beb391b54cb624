// FaultCluster: a ClusterProcess whose nodes live in their own network
// namespaces (Topology), optionally with their wall clocks shifted by
// libfaketime.
//
// Each kvd runs as `ip netns exec <node ns> env [faketime vars] kvd ...`
// (each step execs the next, so the PID the harness holds is kvd's and
// SIGKILL/SIGSTOP through ClusterProcess reach it) and listens on
// <node ip>:7700. A clock offset sets LD_PRELOAD=libfaketimeMT, FAKETIME=+Xs
// and DONT_FAKE_MONOTONIC=1 (wall clock shifted; steady timers untouched).
//
// The test's main thread is moved into the client namespace by Start() and
// stays there until the FaultCluster is destroyed, so that the harness's own
// connections (ClusterProcess::Call, View, Stat...) reach the nodes. Worker
// threads enter it with EnterClients() for the lifetime of the returned scope.
//
// Destruction order: the nodes are killed, the main thread returns to its
// original namespace, then the namespaces are deleted.
//
// Thread-safety: like ClusterProcess, owned by the test's main thread.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/fault/netns.h"
#include "tests/integration/cluster_harness.h"

namespace ringkv::fault {

using itest::ClusterOptions;
using itest::ClusterProcess;

// libfaketime's multi-threaded build (Debian's faketime package), or "" if
// not installed.
const std::string& FaketimeLibrary();

// Why fault tests cannot run here, or "" if they can: no namespaces (see
// NetnsUnsupportedReason) or, if `need_faketime`, no libfaketime.
std::string FaultTestsUnsupportedReason(bool need_faketime);

struct FaultClusterOptions {
  // nodes, quorums and extra flags; addresses and command prefixes are filled
  // in by FaultCluster.
  ClusterOptions cluster;
  // Per node (missing = 0): wall-clock offset in milliseconds.
  std::vector<int64_t> clock_offset_ms;
};

class FaultCluster {
 public:
  static constexpr int kPort = 7700;

  explicit FaultCluster(FaultClusterOptions options);
  ~FaultCluster();
  FaultCluster(const FaultCluster&) = delete;
  FaultCluster& operator=(const FaultCluster&) = delete;

  // Builds the network, enters the client namespace and starts the cluster
  // (waits until every node sees every node up).
  ::testing::AssertionResult Start();

  ClusterProcess& cluster() { return *cluster_; }
  Topology& net() { return net_; }
  int size() const { return options_.cluster.nodes; }
  const std::vector<std::string>& addresses() const { return addresses_; }

  // Moves the calling (worker) thread into the client namespace while the
  // returned scope lives. Check ok().
  std::unique_ptr<NetnsScope> EnterClients() const {
    return std::make_unique<NetnsScope>(net_.client_ns());
  }

 private:
  FaultClusterOptions options_;
  Topology net_;
  std::vector<std::string> addresses_;
  std::unique_ptr<NetnsScope> main_scope_;
  std::unique_ptr<ClusterProcess> cluster_;
};

}  // namespace ringkv::fault
