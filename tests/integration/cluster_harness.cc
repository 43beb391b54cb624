#include "tests/integration/cluster_harness.h"

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

namespace ringkv::itest {

namespace {

// True if a node's log says it could not bind its address.
bool SaysAddressInUse(const std::string& log) {
  std::string lower = log;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower.find("in use") != std::string::npos;
}

// `count` distinct free ports on 127.0.0.1, or an empty vector.
std::vector<int> DistinctUnusedPorts(int count) {
  std::set<int> ports;
  for (int attempt = 0; attempt < count * 10 && static_cast<int>(ports.size()) < count; ++attempt) {
    int port = UnusedPort();
    if (port > 0) ports.insert(port);
  }
  if (static_cast<int>(ports.size()) < count) return {};
  return {ports.begin(), ports.end()};
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

ClusterProcess::ClusterProcess(ClusterOptions options) : options_(std::move(options)) {
  for (int i = 0; i < options_.nodes; ++i) ids_.push_back("n" + std::to_string(i + 1));
}

ClusterProcess::~ClusterProcess() {
  // KvdProcess's destructor SIGKILLs (which also ends a stopped process),
  // checks for sanitizer reports and prints the log if the test failed.
  nodes_.clear();
}

std::vector<std::string> ClusterProcess::NodeArgs() const {
  std::string members;
  for (size_t i = 0; i < ids_.size(); ++i) {
    if (i > 0) members += ",";
    members += ids_[i] + "=" + addresses_[i];
  }
  std::vector<std::string> args = {"--cluster", members};
  auto add = [&](const char* flag, int value) {
    if (value > 0) {
      args.push_back(flag);
      args.push_back(std::to_string(value));
    }
  };
  add("--replicas", options_.replicas);
  add("--read-quorum", options_.read_quorum);
  add("--write-quorum", options_.write_quorum);
  add("--partitions", options_.partitions);
  if (!options_.hinted_handoff) args.push_back("--no-hinted-handoff");
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  return args;
}

::testing::AssertionResult ClusterProcess::StartOnce(bool* address_in_use) {
  *address_in_use = false;
  nodes_.clear();
  if (!options_.addresses.empty()) {
    addresses_ = options_.addresses;
  } else {
    std::vector<int> ports = DistinctUnusedPorts(options_.nodes);
    if (ports.empty()) return ::testing::AssertionFailure() << "cannot find free ports";
    addresses_.clear();
    for (int port : ports) addresses_.push_back("127.0.0.1:" + std::to_string(port));
  }
  std::vector<std::string> args = NodeArgs();
  stopped_.assign(ids_.size(), false);
  for (size_t i = 0; i < ids_.size(); ++i) {
    nodes_.push_back(std::make_unique<KvdProcess>(args, ids_[i]));
    nodes_.back()->set_listen(addresses_[i]);
    if (i < options_.command_prefixes.size()) {
      nodes_.back()->set_command_prefix(options_.command_prefixes[i]);
    }
  }
  for (size_t i = 0; i < ids_.size(); ++i) {
    ::testing::AssertionResult started = nodes_[i]->Start();
    if (!started) {
      *address_in_use = SaysAddressInUse(nodes_[i]->ReadLog());
      return started;
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult ClusterProcess::Start() {
  bool address_in_use = false;
  ::testing::AssertionResult started = StartOnce(&address_in_use);
  if (!started && address_in_use) {
    std::fprintf(stderr, "[cluster] a port was taken before kvd bound it; starting again\n");
    started = StartOnce(&address_in_use);
  }
  if (!started) return started;
  return WaitUntilAllUp();
}

int ClusterProcess::IndexOf(const std::string& id) const {
  auto it = std::find(ids_.begin(), ids_.end(), id);
  return it == ids_.end() ? -1 : static_cast<int>(it - ids_.begin());
}

void ClusterProcess::Kill(int i, int sig) {
  nodes_[i]->Kill(sig);
  if (sig == SIGSTOP) stopped_[i] = true;
  if (sig == SIGCONT || sig == SIGKILL) stopped_[i] = false;
}

::testing::AssertionResult ClusterProcess::Restart(int i) {
  if (stopped_[i]) Cont(i);
  return nodes_[i]->Restart();
}

::testing::AssertionResult ClusterProcess::TerminateAll() {
  std::ostringstream bad;
  for (int i = 0; i < size(); ++i) {
    if (stopped_[i]) Cont(i);
    if (!nodes_[i]->running()) continue;
    int status = nodes_[i]->Terminate();
    if (status != 0) bad << " " << ids_[i] << " exited with " << status << ";";
  }
  if (bad.str().empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "SIGTERM:" << bad.str();
}

std::vector<std::pair<std::string, std::string>> ClusterProcess::View(int i) {
  std::vector<std::pair<std::string, std::string>> view;
  Json resp = Call(i, {{"op", "cluster"}});
  if (!resp.is_object() || !resp.contains("nodes") || !resp["nodes"].is_array()) return view;
  for (const Json& n : resp["nodes"]) {
    if (!n.is_object() || !n.contains("id") || !n.contains("status") || !n["id"].is_string() ||
        !n["status"].is_string()) {
      return {};
    }
    view.emplace_back(n["id"].get<std::string>(), n["status"].get<std::string>());
  }
  return view;
}

bool ClusterProcess::AllUpNow(std::string* why) {
  for (int i = 0; i < size(); ++i) {
    if (!serving(i)) continue;
    Json resp = Call(i, {{"op", "cluster"}});
    int up = 0;
    if (resp.is_object() && resp.contains("nodes") && resp["nodes"].is_array()) {
      for (const Json& n : resp["nodes"]) {
        if (n.is_object() && n.value("status", "") == "up" && IndexOf(n.value("id", "")) >= 0) {
          ++up;
        }
      }
    }
    if (up != size()) {
      *why = ids_[i] + " sees " + Dump(resp);
      return false;
    }
  }
  return true;
}

::testing::AssertionResult ClusterProcess::WaitUntilAllUp(milliseconds timeout,
                                                          milliseconds stable) {
  using SteadyClock = std::chrono::steady_clock;
  std::string last;
  bool holding = false;
  SteadyClock::time_point since;
  bool ok = WaitFor(
      [&] {
        if (!AllUpNow(&last)) {
          holding = false;
          return false;
        }
        if (!holding) since = SteadyClock::now();
        holding = true;
        return SteadyClock::now() - since >= stable;
      },
      timeout + stable);
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "not every node sees every node up"
                                       << (holding ? " for long enough" : "") << "; last: " << last;
}

::testing::AssertionResult ClusterProcess::StaysAllUp(milliseconds period) {
  std::string why;
  bool broke = WaitFor([&] { return !AllUpNow(&why); }, period);
  if (!broke) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "a node stopped seeing every node up: " << why;
}

::testing::AssertionResult ClusterProcess::WaitUntilSeenDown(int down, milliseconds timeout) {
  std::string last;
  bool ok = WaitFor(
      [&] {
        for (int i = 0; i < size(); ++i) {
          if (i == down || !serving(i)) continue;
          bool seen = false;
          for (const auto& [id, status] : View(i)) seen |= (id == ids_[down] && status == "down");
          if (!seen) {
            last = ids_[i] + " sees " + Dump(Call(i, {{"op", "cluster"}}));
            return false;
          }
        }
        return true;
      },
      timeout);
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "the others do not see " << ids_[down] << " down; last: " << last;
}

int64_t ClusterProcess::Stat(int i, const std::string& field) {
  Json resp = Call(i, {{"op", "stats"}});
  if (!resp.is_object() || !resp.contains("stats") || !resp["stats"].is_object()) return -1;
  const Json& stats = resp["stats"];
  if (!stats.contains(field) || !stats[field].is_number()) return -1;
  return stats[field].get<int64_t>();
}

int64_t ClusterProcess::SumStat(const std::string& field) {
  int64_t sum = 0;
  for (int i = 0; i < size(); ++i) {
    if (serving(i)) sum += std::max<int64_t>(0, Stat(i, field));
  }
  return sum;
}

::testing::AssertionResult ClusterProcess::WaitForHintsDrained(milliseconds timeout) {
  std::string last;
  bool ok = WaitFor(
      [&] {
        for (int i = 0; i < size(); ++i) {
          if (!serving(i)) continue;
          int64_t pending = Stat(i, "hints_pending");
          if (pending != 0) {
            last = ids_[i] + " hints_pending=" + std::to_string(pending);
            return false;
          }
        }
        return true;
      },
      timeout);
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "hints did not drain; last: " << last;
}

}  // namespace ringkv::itest
