#include "tests/fault/fault_cluster.h"

#include <unistd.h>

#include <cstdio>

namespace ringkv::fault {

const std::string& FaketimeLibrary() {
  static const std::string path = [] {
    for (const char* p : {"/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                          "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                          "/usr/lib/faketime/libfaketimeMT.so.1"}) {
      if (::access(p, R_OK) == 0) return std::string(p);
    }
    return std::string();
  }();
  return path;
}

std::string FaultTestsUnsupportedReason(bool need_faketime) {
  const std::string& netns = NetnsUnsupportedReason();
  if (!netns.empty()) return netns;
  if (need_faketime && FaketimeLibrary().empty()) return "libfaketime is not installed (faketime)";
  return "";
}

namespace {

// "+2.000s": libfaketime's relative offset syntax.
std::string FaketimeOffset(int64_t ms) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%c%lld.%03llds", ms < 0 ? '-' : '+',
                static_cast<long long>((ms < 0 ? -ms : ms) / 1000),
                static_cast<long long>((ms < 0 ? -ms : ms) % 1000));
  return buf;
}

}  // namespace

FaultCluster::FaultCluster(FaultClusterOptions options)
    : options_(std::move(options)), net_(options_.cluster.nodes) {
  for (int i = 0; i < options_.cluster.nodes; ++i) {
    addresses_.push_back(net_.node_ip(i) + ":" + std::to_string(kPort));
  }
}

FaultCluster::~FaultCluster() {
  cluster_.reset();     // kills the nodes (and prints their logs on failure)
  main_scope_.reset();  // back to the original namespace
  // net_'s destructor deletes the namespaces.
}

::testing::AssertionResult FaultCluster::Start() {
  ::testing::AssertionResult built = net_.Create();
  if (!built) return built;
  main_scope_ = std::make_unique<NetnsScope>(net_.client_ns());
  if (!main_scope_->ok()) return ::testing::AssertionFailure() << main_scope_->error();

  ClusterOptions copts = options_.cluster;
  copts.addresses = addresses_;
  copts.command_prefixes.clear();
  for (int i = 0; i < options_.cluster.nodes; ++i) {
    std::vector<std::string> prefix = {IpPath(), "netns", "exec", net_.node_ns(i), "/usr/bin/env"};
    int64_t offset =
        i < static_cast<int>(options_.clock_offset_ms.size()) ? options_.clock_offset_ms[i] : 0;
    if (offset != 0) {
      if (FaketimeLibrary().empty()) return ::testing::AssertionFailure() << "no libfaketime";
      prefix.push_back("LD_PRELOAD=" + FaketimeLibrary());
      prefix.push_back("FAKETIME=" + FaketimeOffset(offset));
      prefix.push_back("DONT_FAKE_MONOTONIC=1");
    }
    copts.command_prefixes.push_back(std::move(prefix));
  }
  cluster_ = std::make_unique<ClusterProcess>(copts);
  return cluster_->Start();
}

}  // namespace ringkv::fault
