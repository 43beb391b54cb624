// Multi-node integration-test harness: a whole RingKV cluster of real kvd
// processes on 127.0.0.1.
//
// ClusterProcess picks a free port for every member up front (bind port 0, read
// it, close), starts one KvdProcess per member with the same --cluster list and
// fixed --listen addresses, and retries the whole start once if a node could
// not bind its port (the small race between closing the probe socket and kvd
// binding it). Nodes keep their port and data dir across Kill()/Restart().
// Every node's log is printed when the test has failed (by KvdProcess).
//
// All waiting is polling with deadlines (WaitFor), never sleeping.
//
// Thread-safety: like KvdProcess, a ClusterProcess belongs to the test's main
// thread (started nodes die with the thread that started them). Addresses are
// fixed at Start(), so other threads may connect to them with their own
// Clients.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringkv::itest {

// How long failure detection and recovery may take before a wait gives up.
// Detection takes about a second (pings every ~250 ms, down after 3 misses);
// the margin is for sanitizer builds on a loaded 2-core machine.
constexpr milliseconds kClusterDeadline{20000};
// How long "every node sees every node up" must hold before the cluster counts
// as settled: a few ping intervals.
constexpr milliseconds kSettle{600};

struct ClusterOptions {
  int nodes = 3;
  // --replicas, --read-quorum, --write-quorum; 0 leaves kvd's default.
  int replicas = 3;
  int read_quorum = 2;
  int write_quorum = 2;
  // --partitions; 0 leaves kvd's default.
  int partitions = 0;
  bool hinted_handoff = true;
  // More flags for every node.
  std::vector<std::string> extra_args;
  // Fixed "HOST:PORT" of each member (e.g. addresses inside network
  // namespaces); empty: free ports on 127.0.0.1 picked at Start().
  std::vector<std::string> addresses;
  // Per member (empty: none): what kvd runs under (KvdProcess::set_command_prefix).
  std::vector<std::vector<std::string>> command_prefixes;
};

class ClusterProcess {
 public:
  explicit ClusterProcess(ClusterOptions options = {});
  // SIGKILLs every node still running (KvdProcess prints logs on failure).
  ~ClusterProcess();
  ClusterProcess(const ClusterProcess&) = delete;
  ClusterProcess& operator=(const ClusterProcess&) = delete;

  // Starts every node, then waits until every node sees every other one up.
  ::testing::AssertionResult Start();

  int size() const { return static_cast<int>(nodes_.size()); }
  KvdProcess& node(int i) { return *nodes_[i]; }
  const std::string& id(int i) const { return ids_[i]; }
  const std::string& address(int i) const { return addresses_[i]; }
  const std::vector<std::string>& addresses() const { return addresses_; }
  // The index of the node with this id, or -1.
  int IndexOf(const std::string& id) const;
  // Running and not SIGSTOPped: can answer requests.
  bool serving(int i) const { return nodes_[i]->running() && !stopped_[i]; }

  // SIGKILL (waits for the exit) or any other signal. SIGSTOP/SIGCONT are
  // tracked so that waits skip stopped nodes.
  void Kill(int i, int sig = SIGKILL);
  void Stop(int i) { Kill(i, SIGSTOP); }
  void Cont(int i) { Kill(i, SIGCONT); }
  // Starts node i again on its port and data dir (terminating it first if it
  // is running). Does not wait for the others to see it up.
  ::testing::AssertionResult Restart(int i);
  // SIGTERMs every running node; succeeds if each exits 0.
  ::testing::AssertionResult TerminateAll();

  // The `cluster` view of node i: id -> status ("up"/"down"), empty on error.
  std::vector<std::pair<std::string, std::string>> View(int i);
  // Waits until every serving node reports every node up, without a break,
  // for `stable` (polled about every 10 ms; 0: the first time it holds).
  ::testing::AssertionResult WaitUntilAllUp(milliseconds timeout = kClusterDeadline,
                                            milliseconds stable = kSettle);
  // Checks, by polling for `period`, that every serving node keeps reporting
  // every node up; fails at the first view that does not.
  ::testing::AssertionResult StaysAllUp(milliseconds period);
  // Waits until every serving node other than `down` reports node `down` down.
  ::testing::AssertionResult WaitUntilSeenDown(int down, milliseconds timeout = kClusterDeadline);
  // Waits until hints_pending is 0 on every serving node.
  ::testing::AssertionResult WaitForHintsDrained(milliseconds timeout = kClusterDeadline);

  // One request to node i over the harness's kept connection.
  Json Call(int i, const Json& request) { return nodes_[i]->Call(request); }
  // A numeric field of node i's stats, or -1 if it cannot be read.
  int64_t Stat(int i, const std::string& field);
  // The sum of a stats field over the serving nodes (missing counts as 0).
  int64_t SumStat(const std::string& field);

 private:
  // Builds the node objects for the current ports_ and starts them in order.
  ::testing::AssertionResult StartOnce(bool* address_in_use);
  std::vector<std::string> NodeArgs() const;
  // True if every serving node sees every node up; else describes a view.
  bool AllUpNow(std::string* why);

  ClusterOptions options_;
  std::vector<std::string> ids_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<KvdProcess>> nodes_;
  std::vector<bool> stopped_;
};

}  // namespace ringkv::itest
