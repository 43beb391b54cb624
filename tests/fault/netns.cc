#include "tests/fault/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>

#include "tests/integration/harness.h"

namespace ringkv::fault {

namespace {

constexpr char kPrefix[] = "rkvf";
constexpr char kNetnsDir[] = "/run/netns";

// ---- Signal-time cleanup ---------------------------------------------------
//
// Paths of live namespaces, kept in fixed storage that a signal handler can
// read. Slots are claimed and released under g_mu in normal context; the
// handler only reads the `used` flags and the paths.
constexpr int kSlots = 64;
constexpr size_t kPathMax = 128;
char g_paths[kSlots][kPathMax];
std::atomic<bool> g_used[kSlots];
std::mutex g_mu;
int g_live_topologies = 0;  // under g_mu
struct sigaction g_old_actions[4];
constexpr int kCleanupSignals[4] = {SIGTERM, SIGINT, SIGHUP, SIGALRM};

void OnFatalSignal(int sig) {
  for (int i = 0; i < kSlots; ++i) {
    if (!g_used[i].load()) continue;
    ::umount2(g_paths[i], MNT_DETACH);
    ::unlink(g_paths[i]);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

int ClaimSlot(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mu);
  for (int i = 0; i < kSlots; ++i) {
    if (g_used[i].load()) continue;
    std::snprintf(g_paths[i], kPathMax, "%s", path.c_str());
    g_used[i].store(true);
    return i;
  }
  return -1;
}

void ReleaseSlot(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mu);
  for (int i = 0; i < kSlots; ++i) {
    if (g_used[i].load() && path == g_paths[i]) g_used[i].store(false);
  }
}

void InstallHandlers() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_live_topologies++ > 0) return;
  struct sigaction sa {};
  sa.sa_handler = OnFatalSignal;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 4; ++i) ::sigaction(kCleanupSignals[i], &sa, &g_old_actions[i]);
}

void RestoreHandlers() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (--g_live_topologies > 0) return;
  for (int i = 0; i < 4; ++i) ::sigaction(kCleanupSignals[i], &g_old_actions[i], nullptr);
}

// The pid in "rkvf<pid>-...", or -1.
long OwnerPid(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0) return -1;
  size_t pos = sizeof(kPrefix) - 1;
  size_t end = name.find('-', pos);
  if (end == std::string::npos || end == pos) return -1;
  long pid = 0;
  for (size_t i = pos; i < end; ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

// True if process `pid` exists and has not exited (a zombie has exited: its
// parent just has not reaped it yet).
bool ProcessAlive(long pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return false;
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // "PID (COMM) STATE ...": COMM may contain spaces and parentheses.
  const char* close = std::strrchr(buf, ')');
  return close == nullptr || close[1] == '\0' || close[2] != 'Z';
}

}  // namespace

const std::string& IpPath() {
  static const std::string path = [] {
    for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
      if (::access(p, X_OK) == 0) return std::string(p);
    }
    return std::string();
  }();
  return path;
}

::testing::AssertionResult RunIp(const std::vector<std::string>& args) {
  if (IpPath().empty()) return ::testing::AssertionFailure() << "no ip program";
  itest::ProcessResult r = itest::RunProgram(IpPath(), args, "", std::chrono::milliseconds(10000));
  if (r.exit_code == 0) return ::testing::AssertionSuccess();
  std::string cmd = "ip";
  for (const auto& a : args) cmd += " " + a;
  return ::testing::AssertionFailure() << cmd << ": exit " << r.exit_code << ": " << r.err;
}

const std::string& NetnsUnsupportedReason() {
  static const std::string reason = []() -> std::string {
    if (::geteuid() != 0) return "needs root (network namespaces)";
    if (IpPath().empty()) return "no ip program (iproute2)";
    std::string probe = std::string(kPrefix) + std::to_string(::getpid()) + "-probe";
    ::testing::AssertionResult added = RunIp({"netns", "add", probe});
    if (!added) return std::string("ip netns add fails: ") + added.message();
    ::testing::AssertionResult deleted = RunIp({"netns", "del", probe});
    if (!deleted) return std::string("ip netns del fails: ") + deleted.message();
    return "";
  }();
  return reason;
}

int SweepStaleNamespaces() {
  int swept = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kNetnsDir, ec)) {
    std::string name = entry.path().filename().string();
    long pid = OwnerPid(name);
    if (pid <= 0 || pid == ::getpid()) continue;
    if (ProcessAlive(pid)) continue;
    if (RunIp({"netns", "del", name})) {
      ++swept;
      std::fprintf(stderr, "[netns] removed %s, left by dead process %ld\n", name.c_str(), pid);
    }
  }
  return swept;
}

NetnsScope::NetnsScope(const std::string& name) {
  saved_fd_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = ::open((std::string(kNetnsDir) + "/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (saved_fd_ < 0 || target < 0) {
    error_ = "cannot open the namespaces: " + std::string(std::strerror(errno));
  } else if (::setns(target, CLONE_NEWNET) != 0) {
    error_ = "setns " + name + ": " + std::strerror(errno);
  } else {
    entered_ = true;
  }
  if (target >= 0) ::close(target);
}

NetnsScope::~NetnsScope() {
  if (entered_ && ::setns(saved_fd_, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "[netns] cannot return to the original namespace: %s\n",
                 std::strerror(errno));
    std::abort();  // sockets made later would silently land in the test network
  }
  if (saved_fd_ >= 0) ::close(saved_fd_);
}

Topology::Topology(int nodes) : nodes_(nodes) {
  static std::atomic<int> serial{0};
  prefix_ = std::string(kPrefix) + std::to_string(::getpid()) + "-" + std::to_string(serial++);
  std::random_device rd;
  std::mt19937 rng(rd());
  int a = 16 + static_cast<int>(rng() % 235);
  int b = static_cast<int>(rng() % 256);
  base_ = "10." + std::to_string(a) + "." + std::to_string(b) + ".";
  subnet_ = base_ + "0/24";
  InstallHandlers();
}

Topology::~Topology() {
  DeleteAll();
  RestoreHandlers();
}

void Topology::DeleteAll() {
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    ::testing::AssertionResult r = RunIp({"netns", "del", *it});
    if (!r) std::fprintf(stderr, "[netns] %s\n", r.message());
    ReleaseSlot(std::string(kNetnsDir) + "/" + *it);
  }
  created_.clear();
}

::testing::AssertionResult Topology::AddNamespace(const std::string& name) {
  // Claimed before it exists, so that a signal in between still removes it.
  int slot = ClaimSlot(std::string(kNetnsDir) + "/" + name);
  if (slot < 0) return ::testing::AssertionFailure() << "too many namespaces";
  ::testing::AssertionResult r = RunIp({"netns", "add", name});
  if (!r) {
    ReleaseSlot(std::string(kNetnsDir) + "/" + name);
    return r;
  }
  created_.push_back(name);
  return RunIp({"-n", name, "link", "set", "lo", "up"});
}

// A veth pair: "eth0" inside `ns` with `ip`/24, `bridge_port` on br0.
::testing::AssertionResult Topology::Attach(const std::string& ns, const std::string& bridge_port,
                                            const std::string& ip) {
  const std::string br = bridge_ns();
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"-n", br, "link", "add", bridge_port, "type", "veth", "peer", "name", "eth0", "netns",
            ns},
           {"-n", br, "link", "set", bridge_port, "master", "br0"},
           {"-n", br, "link", "set", bridge_port, "up"},
           {"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
           {"-n", ns, "link", "set", "eth0", "up"},
       }) {
    ::testing::AssertionResult r = RunIp(args);
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Topology::Create() {
  SweepStaleNamespaces();
  ::testing::AssertionResult r = AddNamespace(bridge_ns());
  if (r) r = RunIp({"-n", bridge_ns(), "link", "add", "br0", "type", "bridge"});
  if (r) r = RunIp({"-n", bridge_ns(), "link", "set", "br0", "up"});
  if (r) r = AddNamespace(client_ns());
  if (r) r = Attach(client_ns(), "vc", client_ip());
  for (int i = 0; r && i < nodes_; ++i) {
    r = AddNamespace(node_ns(i));
    if (r) r = Attach(node_ns(i), "vn" + std::to_string(i + 1), node_ip(i));
  }
  return r;
}

::testing::AssertionResult Topology::Blackhole(int from, int to) {
  if (!blackholes_.insert({from, to}).second) return ::testing::AssertionSuccess();
  return RunIp({"-n", node_ns(from), "route", "add", "blackhole", node_ip(to) + "/32"});
}

::testing::AssertionResult Topology::IsolateFromPeers(int i) {
  for (int j = 0; j < nodes_; ++j) {
    if (j == i) continue;
    ::testing::AssertionResult r = Blackhole(i, j);
    if (r) r = Blackhole(j, i);
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Topology::CutPeersToNode(int i) {
  for (int j = 0; j < nodes_; ++j) {
    if (j == i) continue;
    ::testing::AssertionResult r = Blackhole(j, i);
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Topology::DropSilently(int from, int to) {
  if (!silent_.insert({from, to}).second) return ::testing::AssertionSuccess();
  // A locally administered unicast MAC that no interface has.
  return RunIp({"-n", node_ns(from), "neigh", "replace", node_ip(to), "lladdr",
                "02:00:00:00:0f:" + std::to_string(10 + to), "nud", "permanent", "dev", "eth0"});
}

::testing::AssertionResult Topology::DropPeersToNode(int i) {
  for (int j = 0; j < nodes_; ++j) {
    if (j == i) continue;
    ::testing::AssertionResult r = DropSilently(j, i);
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Topology::LinkDown(int i) {
  if (!links_down_.insert(i).second) return ::testing::AssertionSuccess();
  return RunIp({"-n", node_ns(i), "link", "set", "eth0", "down"});
}

::testing::AssertionResult Topology::Heal() {
  ::testing::AssertionResult result = ::testing::AssertionSuccess();
  for (const auto& [from, to] : blackholes_) {
    ::testing::AssertionResult r =
        RunIp({"-n", node_ns(from), "route", "del", "blackhole", node_ip(to) + "/32"});
    if (!r) result = r;
  }
  blackholes_.clear();
  for (const auto& [from, to] : silent_) {
    ::testing::AssertionResult r =
        RunIp({"-n", node_ns(from), "neigh", "del", node_ip(to), "dev", "eth0"});
    if (!r) result = r;
  }
  silent_.clear();
  for (int i : links_down_) {
    ::testing::AssertionResult r = RunIp({"-n", node_ns(i), "link", "set", "eth0", "up"});
    if (!r) result = r;
  }
  links_down_.clear();
  return result;
}

}  // namespace ringkv::fault
