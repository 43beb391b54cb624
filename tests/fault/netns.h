// Network namespaces for fault tests: a private network per test run.
//
// Topology builds, with iproute2 (`ip netns`, veth, a bridge):
//
//   <p>-br   a namespace holding only the bridge br0
//   <p>-c    the clients' namespace (the test's own sockets), address .250
//   <p>-nI   one namespace per node I (1-based), address .(10+I), its veth eth0
//
// where <p> is "rkvf<pid>" and every address lies in a random 10.A.B.0/24 that
// exists only inside these namespaces. Each node and the client namespace
// are joined to br0 by a veth pair.
//
// Faults are routes and link states inside the namespaces:
//   - Blackhole(from, to): packets from node `from` to node `to` are dropped
//     (a blackhole route in `from`'s namespace: local sends fail at once).
//     Two of them make a symmetric cut; one alone cuts one direction.
//   - DropSilently(from, to): packets from node `from` to node `to` vanish
//     on the wire (a permanent neighbour entry in `from`'s namespace maps
//     `to`'s address to a MAC address nobody has): sends succeed, answers
//     never come, the sender sees timeouts. One direction only.
//   - LinkDown(i): node i's interface goes down: it reaches nothing and
//     nothing reaches it (clients' packets vanish; they see timeouts).
//   - Heal(): every blackhole removed and every link up.
// `tc netem` (delay, loss) is not available in the kernel these tests run on
// ("Specified qdisc kind is unknown"), so there are no delay or loss faults.
//
// Cleanup: the destructor deletes every namespace (which removes the veths
// and the bridge with them). Create() first sweeps namespaces left by earlier
// runs whose process is gone (a run killed with SIGKILL, as CTest's timeout
// does). While a Topology exists, SIGTERM, SIGINT, SIGHUP and SIGALRM delete
// its namespaces (umount + unlink of /run/netns/NAME, what `ip netns del`
// does; async-signal-safe) before the signal takes its default action.
//
// Thread-safety: a Topology is used by the test's main thread; NetnsScope may
// be used by any thread (it moves only the calling thread).
#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace ringkv::fault {

// Why namespace tests cannot run here (not root, no `ip`, `ip netns add`
// refused), or "" if they can. Checked once per process.
const std::string& NetnsUnsupportedReason();

// Absolute path of the `ip` program, or "".
const std::string& IpPath();

// Runs `ip args...`; fails with its stderr.
::testing::AssertionResult RunIp(const std::vector<std::string>& args);

// Deletes namespaces named rkvf<pid>-* whose process no longer exists (or is
// a zombie).
// Returns how many were deleted.
int SweepStaleNamespaces();

// Moves the calling thread into a named network namespace for its lifetime
// and back to the namespace it was in. Sockets created inside keep the
// namespace after the scope ends.
class NetnsScope {
 public:
  explicit NetnsScope(const std::string& name);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;
  // False if setns() failed (the thread stayed where it was); error() says why.
  bool ok() const { return entered_; }
  const std::string& error() const { return error_; }

 private:
  int saved_fd_ = -1;
  bool entered_ = false;
  std::string error_;
};

class Topology {
 public:
  explicit Topology(int nodes);
  // Deletes every namespace this object created.
  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  // Sweeps stale namespaces, then builds the network. On failure, what was
  // built is deleted again by the destructor.
  ::testing::AssertionResult Create();

  int nodes() const { return nodes_; }
  // "10.A.B.0/24"
  const std::string& subnet() const { return subnet_; }
  std::string node_ns(int i) const { return prefix_ + "-n" + std::to_string(i + 1); }
  std::string client_ns() const { return prefix_ + "-c"; }
  std::string bridge_ns() const { return prefix_ + "-br"; }
  // Node i's (0-based) address and the clients'.
  std::string node_ip(int i) const { return base_ + std::to_string(11 + i); }
  std::string client_ip() const { return base_ + "250"; }

  // Faults (see the file comment). Idempotent.
  ::testing::AssertionResult Blackhole(int from, int to);
  // Both directions between node i and every other node; clients unaffected.
  ::testing::AssertionResult IsolateFromPeers(int i);
  // Every other node's packets to node i are dropped; node i's packets still
  // reach them (so i's requests arrive, but their answers do not).
  ::testing::AssertionResult CutPeersToNode(int i);
  ::testing::AssertionResult DropSilently(int from, int to);
  // Every other node's packets to node i vanish (DropSilently); node i's
  // packets still reach them.
  ::testing::AssertionResult DropPeersToNode(int i);
  ::testing::AssertionResult LinkDown(int i);
  // Removes every blackhole and bogus neighbour entry; brings every link up.
  ::testing::AssertionResult Heal();

 private:
  ::testing::AssertionResult AddNamespace(const std::string& name);
  ::testing::AssertionResult Attach(const std::string& ns, const std::string& bridge_port,
                                    const std::string& ip);
  void DeleteAll();

  int nodes_;
  std::string prefix_;
  std::string base_;  // "10.A.B."
  std::string subnet_;
  std::vector<std::string> created_;          // namespaces, in creation order
  std::set<std::pair<int, int>> blackholes_;  // (from, to)
  std::set<std::pair<int, int>> silent_;      // (from, to)
  std::set<int> links_down_;
};

}  // namespace ringkv::fault
