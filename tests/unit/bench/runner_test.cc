#include "bench/runner.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cli/client_security.h"
#include "tests/util/tls_test_server.h"

namespace ringkv::bench {
namespace {

// A fake RingKV node on a loopback port: answers every request line with
// {"ok":true}, except that every `fail_every`-th request (counted over the
// whole server) gets a "timeout" error. Records the keys it was sent.
class FakeNode {
 public:
  explicit FakeNode(int fail_every = 0) : fail_every_(fail_every) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 128), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    address_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~FakeNode() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    for (auto& t : conns_) t.join();
  }

  const std::string& address() const { return address_; }
  std::vector<std::string> keys() {
    std::lock_guard<std::mutex> l(mu_);
    return keys_;
  }
  int requests() const { return requests_.load(); }

 private:
  void Accept() {
    while (true) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      conns_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    std::string in;
    char buf[4096];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      std::string out;
      size_t nl;
      while ((nl = in.find('\n')) != std::string::npos) {
        std::string line = in.substr(0, nl);
        in.erase(0, nl + 1);
        size_t k = line.find("\"key\":\"");
        if (k != std::string::npos) {
          std::lock_guard<std::mutex> l(mu_);
          keys_.push_back(line.substr(k + 7, line.find('"', k + 7) - k - 7));
        }
        int i = ++requests_;
        if (fail_every_ > 0 && i % fail_every_ == 0) {
          out += "{\"ok\":false,\"error\":{\"code\":\"timeout\",\"message\":\"slow\"}}\n";
        } else {
          out += "{\"ok\":true}\n";
        }
      }
      if (::write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) break;
    }
    ::close(fd);
  }

  int fail_every_;
  int listen_fd_;
  std::string address_;
  std::thread acceptor_;
  std::vector<std::thread> conns_;
  std::mutex mu_;
  std::vector<std::string> keys_;
  std::atomic<int> requests_{0};
};

RunSpec Spec(const Target* target, const KeyChooser* keys, const std::string& address) {
  RunSpec spec;
  spec.target = target;
  spec.addresses = {address};
  spec.keys = keys;
  spec.key_count = keys->size();
  spec.value = std::string(100, 'v');
  spec.read_percent = 50;
  return spec;
}

TEST(RunnerTest, OpsModeCountsExactlyAndSplitsReadsAndWrites) {
  FakeNode node;
  auto target = MakeTarget("ringkv", node.address());
  KeyChooser keys(1000, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, node.address());
  spec.sessions = 5;
  spec.pipeline = 8;
  spec.threads = 2;
  spec.ops = 4000;
  RunResult r;
  ASSERT_TRUE(RunBenchmark(spec, &r)) << r.fatal;
  EXPECT_EQ(r.all.ops, 4000u);
  EXPECT_EQ(r.read.ops + r.write.ops, 4000u);
  EXPECT_GT(r.read.ops, 1600u);
  EXPECT_GT(r.write.ops, 1600u);
  EXPECT_EQ(r.error_count, 0u);
  EXPECT_EQ(r.all.latency_us.count(), 4000u);
  EXPECT_GT(r.seconds, 0);
  // No more than the quota and what was in flight when it ran out.
  EXPECT_LE(node.requests(), 4000 + 5 * 8);
}

TEST(RunnerTest, ErrorsAreCountedByCode) {
  FakeNode node(/*fail_every=*/10);
  auto target = MakeTarget("ringkv", node.address());
  KeyChooser keys(100, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, node.address());
  spec.sessions = 1;
  spec.pipeline = 4;
  spec.ops = 1000;
  RunResult r;
  ASSERT_TRUE(RunBenchmark(spec, &r)) << r.fatal;
  EXPECT_EQ(r.all.ops, 1000u);
  EXPECT_EQ(r.error_count, 100u);
  EXPECT_EQ(r.errors["timeout"], 100u);
}

TEST(RunnerTest, LoadWritesEveryKeyOnce) {
  FakeNode node;
  auto target = MakeTarget("ringkv", node.address());
  KeyChooser keys(5000, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, node.address());
  spec.load = true;
  spec.sessions = 7;
  spec.pipeline = 16;
  spec.threads = 2;
  RunResult r;
  ASSERT_TRUE(RunBenchmark(spec, &r)) << r.fatal;
  EXPECT_EQ(r.all.ops, 5000u);
  EXPECT_EQ(r.write.ops, 5000u);
  std::vector<std::string> seen = node.keys();
  std::sort(seen.begin(), seen.end());
  ASSERT_EQ(seen.size(), 5000u);
  for (uint64_t i = 0; i < 5000; ++i) EXPECT_EQ(seen[i], KeyName(i));
}

TEST(RunnerTest, KeyStreamIsTheSameEveryRun) {
  KeyChooser keys(100000, Distribution::kZipfian);
  std::vector<std::string> first;
  for (int round = 0; round < 2; ++round) {
    FakeNode node;
    auto target = MakeTarget("ringkv", node.address());
    RunSpec spec = Spec(target.get(), &keys, node.address());
    spec.sessions = 1;
    spec.pipeline = 1;
    spec.ops = 300;
    RunResult r;
    ASSERT_TRUE(RunBenchmark(spec, &r)) << r.fatal;
    std::vector<std::string> seen = node.keys();
    ASSERT_GE(seen.size(), 300u);
    seen.resize(300);
    if (round == 0) {
      first = seen;
    } else {
      EXPECT_EQ(seen, first);
    }
  }
}

TEST(RunnerTest, DurationModeStopsAndExcludesWarmup) {
  FakeNode node;
  auto target = MakeTarget("ringkv", node.address());
  KeyChooser keys(1000, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, node.address());
  spec.sessions = 2;
  spec.pipeline = 2;
  spec.warmup_s = 0.2;
  spec.duration_s = 0.3;
  RunResult r;
  ASSERT_TRUE(RunBenchmark(spec, &r)) << r.fatal;
  EXPECT_GT(r.all.ops, 0u);
  EXPECT_LT(r.all.ops, static_cast<uint64_t>(node.requests()));  // the warm-up is not counted
  EXPECT_NEAR(r.seconds, 0.3, 0.05);
}

// --cpu-pid: the CPU of the given processes over the measured window. This
// process stands in for the server (its FakeNode threads do the serving),
// so its reading and the client's own must both have moved.
TEST(RunnerTest, CpuOfTheGivenProcessesIsReadOverTheWindow) {
  EXPECT_LT(ProcessCpuSeconds(-1), 0);  // no such process: unreadable, not 0
  double before = ProcessCpuSeconds(getpid());
  ASSERT_GE(before, 0);
  FakeNode node;
  auto target = MakeTarget("ringkv", node.address());
  KeyChooser keys(1000, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, node.address());
  spec.sessions = 4;
  spec.warmup_s = 0.1;
  spec.duration_s = 0.5;
  spec.cpu_pids = {getpid()};
  RunResult r;
  ASSERT_TRUE(RunBenchmark(spec, &r)) << r.fatal;
  EXPECT_NEAR(r.cpu_window_s, 0.5, 0.1);
  EXPECT_GT(r.client_cpu_s, 0);
  EXPECT_GT(r.server_cpu_s, 0);  // ticks of 10 ms: half a second of a busy loop shows
  EXPECT_GE(ProcessCpuSeconds(getpid()), before + r.server_cpu_s - 0.02);
  RunResult without;
  spec.cpu_pids.clear();
  spec.duration_s = 0.1;
  ASSERT_TRUE(RunBenchmark(spec, &without)) << without.fatal;
  EXPECT_LT(without.server_cpu_s, 0);  // nothing asked: no figure
}

TEST(RunnerTest, UnreachableIsFatal) {
  std::string why;
  int fd;
  {
    FakeNode node;  // a port that was just free
    why = node.address();
  }
  std::string address = why;
  fd = ConnectTcp(address, 1000, &why);
  EXPECT_LT(fd, 0);
  EXPECT_EQ(why, "connection refused");
  auto target = MakeTarget("ringkv", address);
  KeyChooser keys(10, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, address);
  spec.ops = 10;
  RunResult r;
  EXPECT_FALSE(RunBenchmark(spec, &r));
  EXPECT_NE(r.fatal.find("connection refused"), std::string::npos) << r.fatal;
}

TEST(RunnerTest, LatencyPercentilesOfKnownData) {
  // The histogram kvbench reports from: p50/p99/p99.9 of 1..100000 us.
  OpStats s;
  for (uint64_t v = 1; v <= 100000; ++v) s.latency_us.Record(v);
  auto within = [](uint64_t got, double want) {
    EXPECT_GE(static_cast<double>(got), want);
    EXPECT_LE(static_cast<double>(got), want * 1.0625 + 1) << want;
  };
  within(s.latency_us.Percentile(0.5), 50000);
  within(s.latency_us.Percentile(0.99), 99000);
  within(s.latency_us.Percentile(0.999), 99900);
  EXPECT_EQ(s.latency_us.max(), 100000u);
}

// With RunSpec::security, every connection does its TLS handshake and `auth`
// before the run, and the epoll loop speaks TLS: big pipelined values (many
// records, partial writes) and small answers (several per record) all count.
class RunnerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!certs_.ok()) GTEST_SKIP() << "the openssl command could not make certificates";
    sec_.tls = true;
    sec_.tls_ca = certs_.cert();
    sec_.user = "bench";
    sec_.password = "right";
    ASSERT_TRUE(PrepareTls(&sec_).ok());
  }
  // {"ok":true} for every request; `auth` checks the password and counts.
  testutil::LineServer::Handler Handler() {
    return [this](const std::string& line) -> std::string {
      if (line.find(R"("op":"auth")") == std::string::npos) return R"({"ok":true})";
      auths_++;
      if (line.find(R"("password":"right")") != std::string::npos) return R"({"ok":true})";
      return R"({"ok":false,"error":{"code":"unauthenticated","message":"wrong user or password"}})";
    };
  }
  testutil::TestCertificates certs_;
  ClientSecurity sec_;
  std::atomic<int> auths_{0};
};

TEST_F(RunnerTlsTest, RunsOverTlsAfterAuthenticating) {
  testutil::LineServer server(certs_.cert(), certs_.key(), Handler());
  ASSERT_TRUE(server.ok());
  auto target = MakeTarget("ringkv", server.address());
  KeyChooser keys(1000, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, server.address());
  spec.security = &sec_;
  spec.sessions = 4;
  spec.pipeline = 16;
  spec.threads = 2;
  spec.ops = 3000;
  spec.value = std::string(20000, 'v');
  RunResult r;
  ASSERT_TRUE(RunBenchmark(spec, &r)) << r.fatal;
  EXPECT_EQ(r.all.ops, 3000u);
  EXPECT_EQ(r.error_count, 0u);
  EXPECT_EQ(r.sessions_lost, 0);
  EXPECT_EQ(auths_.load(), 4);
  EXPECT_EQ(server.handshakes(), 4);
}

TEST_F(RunnerTlsTest, RefusedCredentialsAreFatal) {
  testutil::LineServer server(certs_.cert(), certs_.key(), Handler());
  ASSERT_TRUE(server.ok());
  sec_.password = "wrong";
  auto target = MakeTarget("ringkv", server.address());
  KeyChooser keys(10, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, server.address());
  spec.security = &sec_;
  spec.ops = 10;
  RunResult r;
  EXPECT_FALSE(RunBenchmark(spec, &r));
  EXPECT_NE(r.fatal.find("unauthenticated: wrong user or password"), std::string::npos) << r.fatal;
}

TEST_F(RunnerTlsTest, AnUntrustedCertificateIsFatal) {
  testutil::LineServer server(certs_.cert(), certs_.key(), Handler());
  ASSERT_TRUE(server.ok());
  ClientSecurity wrong_ca;
  wrong_ca.tls = true;
  wrong_ca.tls_ca = certs_.other_cert();
  auto target = MakeTarget("ringkv", server.address());
  KeyChooser keys(10, Distribution::kUniform);
  RunSpec spec = Spec(target.get(), &keys, server.address());
  spec.security = &wrong_ca;
  spec.ops = 10;
  RunResult r;
  EXPECT_FALSE(RunBenchmark(spec, &r));
  EXPECT_NE(r.fatal.find("certificate verify failed"), std::string::npos) << r.fatal;
  EXPECT_EQ(auths_.load(), 0);
}

}  // namespace
}  // namespace ringkv::bench
