// Overload (PROTOCOL.md §8): memory stays bounded and well-behaved clients are
// served promptly whatever other clients do. Each test runs a real kvd under
// one abusive load, while a fresh client pings it:
//   - 1,000 connections each pipelining 200 puts without reading, then
//     reading everything;
//   - 200 connections streaming 1 MiB puts without reading;
//   - 4 connections pipelining gets of a 1 MiB value without reading;
// and checks kvd's peak RSS (VmHWM) and the pings' p99. A last test checks
// --max-connections: one `overloaded` line, then end of stream.
//
// Every load loop is bounded in count and in time. The figures measured are
// printed (peak RSS, ping p50/p99, requests answered).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace ringkv::itest {
namespace {

using Clock = std::chrono::steady_clock;

// The promises checked in every load test.
constexpr int64_t kMaxPeakRssKiB = 1024 * 1024;  // 1 GiB
// Starvation (a fresh client queued behind the abusive connections' backlog)
// shows as seconds or timeouts; a fair loop keeps the p99 well under a
// second. The bound leaves room for this 2-core machine's speed, which varies
// about 2x from day to day (docs/benchmarks.md, issue #10).
constexpr double kMaxPingP99Ms = 1000;
constexpr int kPings = 100;
// Pings slower than this are printed one by one.
constexpr double kSlowPingMs = 50;

// Sanitizers multiply memory use and slow everything down: sanitized builds
// run the loads and print the figures, but hold them to no bound.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

double MillisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// Raises this process's soft limit on open files to the hard limit: the tests
// open over a thousand sockets.
void RaiseFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
}

// kvd's peak resident set size (VmHWM) in KiB, or -1.
int64_t PeakRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

int PortOf(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

// A non-blocking connection to kvd driven by the test's poll loops: bytes to
// send are queued in `out`, bytes received gather in `in`.
class RawConn {
 public:
  explicit RawConn(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~RawConn() { Close(); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  // Bytes queued and not yet sent.
  size_t unsent() const { return out.size() - sent_; }

  // Sends what the kernel takes now. False on a broken connection.
  bool TrySend() {
    while (unsent() > 0) {
      const ssize_t n = ::send(fd_, out.data() + sent_, unsent(), MSG_NOSIGNAL);
      if (n > 0) {
        sent_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    out.clear();
    sent_ = 0;
    return true;
  }

  // Receives what is there now. False on a broken connection; sets eof().
  bool TryRecv() {
    char buf[64 * 1024];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        eof_ = true;
        return true;
      }
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }
  bool eof() const { return eof_; }

  // Takes one complete line from `in`, without its "\n".
  bool TakeLine(std::string* line) {
    const size_t newline = in.find('\n', scan_);
    if (newline == std::string::npos) {
      scan_ = in.size();
      return false;
    }
    line->assign(in, 0, newline);
    in.erase(0, newline + 1);
    scan_ = 0;
    return true;
  }

  std::string out;
  std::string in;

 private:
  int fd_ = -1;
  size_t sent_ = 0;
  size_t scan_ = 0;  // in[0, scan_) holds no "\n"
  bool eof_ = false;
};

// Waits up to `timeout_ms` for `conns` to be ready as asked by `events_of`
// (0: not polled) and returns the indices of those that are (or have failed).
template <typename EventsOf>
std::vector<size_t> PollConns(const std::vector<std::unique_ptr<RawConn>>& conns,
                              EventsOf events_of, int timeout_ms) {
  std::vector<pollfd> fds;
  std::vector<size_t> index;
  for (size_t i = 0; i < conns.size(); ++i) {
    const short events = conns[i]->ok() ? events_of(*conns[i]) : 0;
    if (events == 0) continue;
    fds.push_back({conns[i]->fd(), events, 0});
    index.push_back(i);
  }
  std::vector<size_t> ready;
  if (fds.empty() || ::poll(fds.data(), fds.size(), timeout_ms) <= 0) return ready;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents != 0) ready.push_back(index[i]);
  }
  return ready;
}

// Runs `load` on a thread of its own at a lower CPU priority (nice 10) than
// the node and the pinger, and waits for it: on a machine of two cores the
// test's own load generator must not be what delays the pinger.
template <typename Load>
void RunLoad(Load load) {
  std::thread thread([&load] {
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
    load();
  });
  thread.join();
}

// A fresh, well-behaved client: one connection, kPings pings one after
// another, `interval` apart, each timed. Runs on its own thread.
class Pinger {
 public:
  Pinger(std::string address, std::chrono::milliseconds interval)
      : thread_([this, address = std::move(address), interval] { Run(address, interval); }) {}
  ~Pinger() { Join(); }

  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  // After Join().
  int answered() const { return static_cast<int>(latencies_ms_.size()); }
  // Which ping was the slowest (0 is the first, sent on a new connection).
  int slowest() const {
    return static_cast<int>(std::max_element(latencies_ms_.begin(), latencies_ms_.end()) -
                            latencies_ms_.begin());
  }
  const std::string& error() const { return error_; }
  double Percentile(double p) const {
    if (latencies_ms_.empty()) return 1e9;
    std::vector<double> sorted = latencies_ms_;
    std::sort(sorted.begin(), sorted.end());
    const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
    return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
  }

 private:
  void Run(const std::string& address, std::chrono::milliseconds interval) {
    std::unique_ptr<Client> client;
    Status s = Client::Connect(address, &client, 5000);
    if (!s.ok()) {
      error_ = "connect: " + s.ToString();
      return;
    }
    for (int i = 0; i < kPings; ++i) {
      const auto start = Clock::now();
      Json response;
      s = client->Call({{"op", "ping"}}, &response);
      const auto end = Clock::now();
      if (!s.ok() || !response.value("ok", false)) {
        error_ = "ping " + std::to_string(i) + ": " + (s.ok() ? response.dump() : s.ToString());
        return;
      }
      latencies_ms_.push_back(MillisBetween(start, end));
      if (latencies_ms_.back() > kSlowPingMs) {
        std::fprintf(stderr, "[overload] ping %d, %.0f ms into the load, took %.1f ms\n", i,
                     MillisBetween(start_, start), latencies_ms_.back());
      }
      std::this_thread::sleep_until(start + interval);  // pacing, not a wait
    }
  }

  std::vector<double> latencies_ms_;
  const Clock::time_point start_ = Clock::now();
  std::string error_;
  std::thread thread_;
};

class OverloadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { RaiseFileLimit(); }

  void StartNode(std::vector<std::string> args = {}) {
    node_ = std::make_unique<KvdProcess>(std::move(args));
    ASSERT_TRUE(node_->Start());
    port_ = PortOf(node_->address());
  }

  // Opens `n` connections; fails the test if one cannot be opened.
  std::vector<std::unique_ptr<RawConn>> Open(int n) {
    std::vector<std::unique_ptr<RawConn>> conns;
    for (int i = 0; i < n; ++i) {
      conns.push_back(std::make_unique<RawConn>(port_));
      if (!conns.back()->ok()) {
        ADD_FAILURE() << "connection " << i << " failed: " << std::strerror(errno);
        break;
      }
    }
    return conns;
  }

  // Checks and prints the figures every load test promises.
  void CheckFigures(const std::string& load, Pinger& pinger, const std::string& answered) {
    pinger.Join();
    const int64_t peak = PeakRssKiB(node_->pid());
    const double p50 = pinger.Percentile(0.50);
    const double p99 = pinger.Percentile(0.99);
    std::printf(
        "[overload] %s: kvd peak RSS %.1f MiB; fresh client's %d pings: p50 %.2f ms, p99 %.2f ms, "
        "max %.2f ms (ping #%d); %s\n",
        load.c_str(), static_cast<double>(peak) / 1024, pinger.answered(), p50, p99,
        pinger.Percentile(1.0), pinger.slowest(), answered.c_str());
    std::fflush(stdout);
    EXPECT_EQ(pinger.error(), "");
    EXPECT_EQ(pinger.answered(), kPings);
    EXPECT_GT(peak, 0);
    if (kSanitized) return;
    EXPECT_LT(peak, kMaxPeakRssKiB);
    EXPECT_LT(p99, kMaxPingP99Ms);
  }

  std::unique_ptr<KvdProcess> node_;
  int port_ = 0;
};

// 1,000 connections each pipeline 200 puts without reading a response, then
// read them all: every response arrives, in order (ids 0..199), all ok.
TEST_F(OverloadTest, ThousandConnectionsPipeliningPutsWithoutReading) {
  StartNode();
  constexpr int kConns = 1000;
  constexpr int kPuts = 200;
  auto conns = Open(kConns);
  ASSERT_EQ(conns.size(), static_cast<size_t>(kConns));
  for (int c = 0; c < kConns; ++c) {
    for (int i = 0; i < kPuts; ++i) {
      conns[c]->out += R"({"id":)" + std::to_string(i) + R"(,"op":"put","key":"c)" +
                       std::to_string(c) + "-" + std::to_string(i) + R"(","value":)" +
                       std::to_string(i) + "}\n";
    }
  }
  Pinger pinger(node_->address(), std::chrono::milliseconds(10));
  int answered = 0;
  RunLoad([&] {
    // Send everything, reading nothing.
    const auto send_deadline = Clock::now() + std::chrono::seconds(60);
    for (auto& c : conns) ASSERT_TRUE(c->TrySend()) << std::strerror(errno);
    for (;;) {
      const auto ready = PollConns(
          conns, [](const RawConn& c) { return c.unsent() > 0 ? POLLOUT : 0; }, 100);
      for (size_t c : ready) ASSERT_TRUE(conns[c]->TrySend()) << std::strerror(errno);
      if (std::all_of(conns.begin(), conns.end(), [](const auto& c) { return c->unsent() == 0; }))
        break;
      ASSERT_LT(Clock::now(), send_deadline) << "requests still unsent";
    }
    // Now read every response: {"id":<i>,"ok":true,...} for i = 0, 1, ...
    std::vector<int> next(kConns, 0);
    const auto read_deadline = Clock::now() + std::chrono::seconds(60);
    while (answered < kConns * kPuts) {
      ASSERT_LT(Clock::now(), read_deadline) << answered << " responses";
      for (size_t c : PollConns(
               conns, [](const RawConn& c) { return c.eof() ? 0 : POLLIN; }, 100)) {
        ASSERT_TRUE(conns[c]->TryRecv()) << std::strerror(errno);
        std::string line;
        while (conns[c]->TakeLine(&line)) {
          const std::string expected = R"({"id":)" + std::to_string(next[c]) + R"(,"ok":true,)";
          ASSERT_TRUE(line.starts_with(expected)) << "connection " << c << ": " << line;
          ++next[c];
          ++answered;
        }
        ASSERT_FALSE(conns[c]->eof()) << "connection " << c << " closed";
      }
    }
  });
  CheckFigures("1000 connections x 200 pipelined puts, unread then read", pinger,
               std::to_string(answered) + " of " + std::to_string(kConns * kPuts) +
                   " puts answered in order");
}

// 200 connections stream 1 MiB puts (for 8 s or 16 puts each, whichever
// comes first) and read nothing meanwhile; then every put sent is answered
// ok.
TEST_F(OverloadTest, TwoHundredConnectionsStreamingMebibytePutsWithoutReading) {
  StartNode();
  constexpr int kConns = 200;
  constexpr int kMaxPutsEach = 16;
  constexpr auto kLoadTime = std::chrono::seconds(8);
  const std::string value = "\"" + std::string(1'000'000, 'v') + "\"";
  auto conns = Open(kConns);
  ASSERT_EQ(conns.size(), static_cast<size_t>(kConns));
  std::vector<int> queued(kConns, 0);
  const auto queue_put = [&](size_t c) {
    conns[c]->out += R"({"op":"put","key":"big)" + std::to_string(c) + "-" +
                     std::to_string(queued[c] % 4) + R"(","value":)" + value + "}\n";
    ++queued[c];
  };

  Pinger pinger(node_->address(), kLoadTime / kPings);
  int answered = 0;
  int sent = 0;
  int64_t rss_end = 0;
  RunLoad([&] {
    // Until the time is up, each connection sends its next put as soon as
    // the last one is out; then the puts begun are finished (within a bound).
    const auto load_end = Clock::now() + kLoadTime;
    for (size_t c = 0; c < conns.size(); ++c) queue_put(c);
    for (;;) {
      const bool more = Clock::now() < load_end;
      const auto ready = PollConns(
          conns, [](const RawConn& c) { return c.unsent() > 0 ? POLLOUT : 0; }, 20);
      for (size_t c : ready) {
        ASSERT_TRUE(conns[c]->TrySend()) << std::strerror(errno);
        if (conns[c]->unsent() == 0 && more && queued[c] < kMaxPutsEach) queue_put(c);
      }
      if (std::all_of(conns.begin(), conns.end(), [](const auto& c) { return c->unsent() == 0; }))
        break;
      ASSERT_LT(Clock::now(), load_end + std::chrono::seconds(30)) << "puts still unsent";
    }
    rss_end = node_->RssKiB();
    for (int q : queued) sent += q;
    for (auto& c : conns) c->ShutdownWrite();
    const auto read_deadline = Clock::now() + std::chrono::seconds(60);
    std::vector<int> got(kConns, 0);
    while (answered < sent) {
      ASSERT_LT(Clock::now(), read_deadline) << answered << " of " << sent << " answered";
      for (size_t c : PollConns(
               conns, [](const RawConn& c) { return c.eof() ? 0 : POLLIN; }, 100)) {
        ASSERT_TRUE(conns[c]->TryRecv()) << std::strerror(errno);
        std::string line;
        while (conns[c]->TakeLine(&line)) {
          ASSERT_TRUE(line.starts_with(R"({"ok":true,)")) << "connection " << c << ": " << line;
          ++got[c];
          ++answered;
        }
        ASSERT_TRUE(!conns[c]->eof() || got[c] == queued[c]) << "connection " << c;
      }
    }
  });
  CheckFigures("200 connections streaming 1 MiB puts, unread", pinger,
               std::to_string(answered) + " of " + std::to_string(sent) + " puts answered ok (" +
                   std::to_string(sent) + " MB sent); RSS after the load " +
                   std::to_string(rss_end / 1024) + " MiB");
}

// 4 connections pipeline gets of a 1 MiB value for 3 s and never read: kvd
// stops reading them instead of piling up responses. Each connection's first
// responses are then read and are the value.
TEST_F(OverloadTest, FourConnectionsPipeliningMebibyteGetsWithoutReading) {
  StartNode();
  constexpr int kConns = 4;
  constexpr int kMaxGetsEach = 200'000;
  constexpr auto kLoadTime = std::chrono::seconds(3);
  const std::string value = "\"" + std::string(1'000'000, 'g') + "\"";
  ASSERT_TRUE(IsOk(node_->Call({{"op", "put"}, {"key", "big"}, {"value", Json::parse(value)}})));
  const std::string get = "{\"op\":\"get\",\"key\":\"big\"}\n";
  auto conns = Open(kConns);
  ASSERT_EQ(conns.size(), static_cast<size_t>(kConns));

  Pinger pinger(node_->address(), kLoadTime / kPings);
  int64_t gets_sent = 0;
  int64_t rss_end = 0;
  int checked = 0;
  RunLoad([&] {
    std::vector<int> sent(kConns, 0);
    const auto load_end = Clock::now() + kLoadTime;
    while (Clock::now() < load_end) {
      for (int c = 0; c < kConns; ++c) {
        // Keep a little queued so the socket always has something to take.
        while (conns[c]->unsent() < 64 * get.size() && sent[c] < kMaxGetsEach) {
          conns[c]->out += get;
          ++sent[c];
        }
        ASSERT_TRUE(conns[c]->TrySend()) << std::strerror(errno);
      }
      PollConns(
          conns, [](const RawConn&) { return POLLOUT; }, 20);
    }
    rss_end = node_->RssKiB();
    for (int c = 0; c < kConns; ++c) {
      gets_sent += sent[c] - static_cast<int64_t>(conns[c]->unsent() / get.size());
    }
    // The responses that were waiting are intact and in place.
    const auto read_deadline = Clock::now() + std::chrono::seconds(30);
    const std::string expected = R"({"ok":true,"found":true,"value":)" + value + ",";
    for (auto& c : conns) {
      std::string line;
      for (int i = 0; i < 3; ++i) {
        while (!c->TakeLine(&line)) {
          ASSERT_LT(Clock::now(), read_deadline);
          ASSERT_FALSE(c->eof());
          pollfd p{c->fd(), POLLIN, 0};
          ::poll(&p, 1, 100);
          ASSERT_TRUE(c->TryRecv());
        }
        ASSERT_TRUE(line.starts_with(expected)) << line.substr(0, 100);
        ++checked;
      }
    }
  });
  CheckFigures("4 connections pipelining gets of a 1 MiB value, unread", pinger,
               std::to_string(gets_sent) + " gets sent in 3 s, RSS after the load " +
                   std::to_string(rss_end / 1024) + " MiB, first " + std::to_string(checked) +
                   " responses read back intact");
  conns.clear();
  // The node lets go of the closed connections.
  EXPECT_TRUE(WaitFor(
      [&] {
        const Json stats = node_->Call({{"op", "stats"}});
        return stats.contains("stats") && stats["stats"].value("connections", -1) == 1;
      },
      std::chrono::milliseconds(10000)));
}

// The HTTP body of GET `path` from the metrics listener at `address`.
std::string HttpGet(const std::string& address, const std::string& path) {
  RawConn conn(PortOf(address));
  if (!conn.ok()) return "";
  conn.out = "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n";
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!conn.eof() && Clock::now() < deadline) {
    if (!conn.TrySend() || !conn.TryRecv()) break;
    pollfd p{conn.fd(), static_cast<short>(POLLIN | (conn.unsent() > 0 ? POLLOUT : 0)), 0};
    ::poll(&p, 1, 100);
  }
  const size_t body = conn.in.find("\r\n\r\n");
  return body == std::string::npos ? "" : conn.in.substr(body + 4);
}

// A connection's response line, with a bound; "" if none came.
std::string ReadLine(RawConn& conn, std::chrono::milliseconds timeout) {
  std::string line;
  const auto deadline = Clock::now() + timeout;
  while (!conn.TakeLine(&line)) {
    if (conn.eof() || Clock::now() >= deadline) return "";
    pollfd p{conn.fd(), POLLIN, 0};
    ::poll(&p, 1, 50);
    if (!conn.TryRecv()) return "";
  }
  return line;
}

// --max-connections 10: the 11th connection reads one `overloaded` line, then
// end of stream; stats and metrics count it; after one of the 10 closes, a
// new connection is served.
TEST_F(OverloadTest, ConnectionsPastMaxConnectionsAreRefusedWithOneOverloadedLine) {
  const std::string dir = MakeTempDir("overload-metrics");
  const std::string metrics_port_file = dir + "/metrics.port";
  // Started with a low soft limit on open files, which kvd raises itself.
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  rlimit low = limit;
  low.rlim_cur = std::min<rlim_t>(limit.rlim_max, 256);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  StartNode({"--max-connections", "10", "--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
             metrics_port_file});
  ::setrlimit(RLIMIT_NOFILE, &limit);
  std::string metrics_address;
  {
    std::ifstream in(metrics_port_file);
    std::getline(in, metrics_address);
  }
  std::filesystem::remove_all(dir);
  // kvd raised its soft limit on open files (256 here) to the hard limit.
  {
    std::ifstream in("/proc/" + std::to_string(node_->pid()) + "/limits");
    std::string soft, hard;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("Max open files", 0) != 0) continue;
      std::istringstream fields(line.substr(std::strlen("Max open files")));
      fields >> soft >> hard;
    }
    EXPECT_FALSE(soft.empty());
    EXPECT_EQ(soft, hard);
  }
  const auto stats_of = [](RawConn& conn) {
    conn.out += "{\"op\":\"stats\"}\n";
    conn.TrySend();
    const Json response = Json::parse(ReadLine(conn, std::chrono::seconds(10)), nullptr, false);
    return response.contains("stats") ? response["stats"] : Json();
  };
  // The harness's start-up probe may not be closed on the node's side yet.
  RawConn watcher(port_);
  ASSERT_TRUE(watcher.ok());
  ASSERT_TRUE(WaitFor([&] { return stats_of(watcher).value("connections", -1) == 1; },
                      std::chrono::milliseconds(10000)));
  std::vector<std::unique_ptr<RawConn>> served;
  for (int i = 0; i < 9; ++i) {
    served.push_back(std::make_unique<RawConn>(port_));
    ASSERT_TRUE(served.back()->ok());
    served.back()->out = "{\"op\":\"ping\"}\n";
    ASSERT_TRUE(served.back()->TrySend());
    ASSERT_TRUE(
        IsOk(Json::parse(ReadLine(*served.back(), std::chrono::seconds(10)), nullptr, false)))
        << "connection " << i + 2;
  }

  RawConn refused(port_);
  ASSERT_TRUE(refused.ok());
  refused.out = "{\"op\":\"ping\"}\n";
  ASSERT_TRUE(refused.TrySend());
  const std::string line = ReadLine(refused, std::chrono::seconds(10));
  EXPECT_TRUE(IsError(Json::parse(line, nullptr, false), "overloaded")) << line;
  EXPECT_EQ(ReadLine(refused, std::chrono::seconds(5)), "");
  EXPECT_TRUE(refused.eof()) << "no end of stream after the refusal";
  EXPECT_TRUE(refused.in.empty()) << refused.in;

  Json stats = stats_of(watcher);
  EXPECT_EQ(stats.value("connections", -1), 10);
  EXPECT_EQ(stats.value("connections_refused", -1), 1);
  const std::string metrics = HttpGet(metrics_address, "/metrics");
  EXPECT_NE(metrics.find("\nringkv_connections 10\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nringkv_connections_refused_total 1\n"), std::string::npos);

  // One of the ten closes; a new connection is served once the node has seen
  // it go (until then it may still be refused).
  served.front().reset();
  bool served_again = false;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int attempts = 0;
  while (!served_again && Clock::now() < deadline) {
    RawConn again(port_);
    ASSERT_TRUE(again.ok());
    ++attempts;
    again.out = "{\"op\":\"ping\"}\n";
    ASSERT_TRUE(again.TrySend());
    const Json response = Json::parse(ReadLine(again, std::chrono::seconds(10)), nullptr, false);
    served_again = IsOk(response);
    if (!served_again) {
      ASSERT_TRUE(IsError(response, "overloaded"));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // retry pacing
    }
  }
  EXPECT_TRUE(served_again);
  std::printf(
      "[overload] --max-connections 10: 11th connection refused with one overloaded "
      "line and EOF; served again after a close (%d attempt(s))\n",
      attempts);
}

}  // namespace
}  // namespace ringkv::itest
