// Unit tests of net::MetricsServer (server/net/metrics_server.h): routing,
// status codes and headers, limits, deadlines and shutdown, against fake text
// and health functions and raw POSIX sockets on 127.0.0.1.
//
// No test sleeps in place of a wait: every wait polls for its condition with a
// deadline (kWait) that a correct server never comes near.
#include "server/net/metrics_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "tests/util/loopback.h"
#include "tests/util/wait_for.h"

namespace ringkv::net {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// kWait is the deadline of every wait.
using testutil::kWait;
using testutil::WaitFor;

constexpr char kMetricsType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kText[] =
    "# HELP fake_requests_total Requests.\n# TYPE fake_requests_total counter\n"
    "fake_requests_total 7\n";

// A blocking client connection to 127.0.0.1 with bounded reads.
using Conn = testutil::LoopbackConn;

struct HttpReply {
  bool complete = false;  // a whole response, then end of stream
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string raw;
};

// Parses a response read to end of stream.
HttpReply ParseReply(std::string raw) {
  HttpReply reply;
  reply.raw = std::move(raw);
  const size_t end = reply.raw.find("\r\n\r\n");
  if (end == std::string::npos || !reply.raw.starts_with("HTTP/1.1 ")) return reply;
  reply.status = std::atoi(reply.raw.c_str() + 9);
  size_t at = reply.raw.find("\r\n") + 2;
  while (at < end + 2) {
    const size_t eol = reply.raw.find("\r\n", at);
    const std::string line = reply.raw.substr(at, eol - at);
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return reply;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t value = line.find_first_not_of(' ', colon + 1);
    reply.headers[name] = value == std::string::npos ? "" : line.substr(value);
    at = eol + 2;
  }
  reply.body = reply.raw.substr(end + 4);
  reply.complete = true;
  return reply;
}

// Sends `request` on a new connection and reads the response to end of stream.
HttpReply Exchange(uint16_t port, std::string_view request) {
  Conn conn(port);
  std::string raw;
  if (!conn.connected() || !conn.Send(request) || !conn.ReadToEnd(&raw)) return {};
  return ParseReply(std::move(raw));
}

HttpReply Get(uint16_t port, const std::string& path, const std::string& method = "GET") {
  return Exchange(port, method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
}

class MetricsServerTest : public ::testing::Test {
 protected:
  // Starts a server on 127.0.0.1:0 with `options` (listen overridden).
  void StartServer(MetricsServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<MetricsServer>(
        options,
        [this] {
          ++text_calls_;
          if (throw_.load()) throw std::runtime_error("fake failure");
          return std::string(kText);
        },
        [this] { return healthy_.load(); });
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->port(), 0);
  }
  uint16_t port() const { return server_->port(); }

  std::atomic<bool> healthy_{true};
  std::atomic<bool> throw_{false};
  std::atomic<int> text_calls_{0};
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, ServesMetricsText) {
  StartServer();
  const HttpReply r = Get(port(), "/metrics");
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.at("content-type"), kMetricsType);
  EXPECT_EQ(r.headers.at("content-length"), std::to_string(r.body.size()));
  EXPECT_EQ(r.headers.at("connection"), "close");
  EXPECT_EQ(r.body, kText);
  EXPECT_TRUE(r.raw.starts_with("HTTP/1.1 200 OK\r\n")) << r.raw;
}

TEST_F(MetricsServerTest, QueryStringIsIgnoredAndHttp10Accepted) {
  StartServer();
  HttpReply r = Get(port(), "/metrics?name[]=x");
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kText);
  r = Exchange(port(), "GET /health HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r.raw;
}

TEST_F(MetricsServerTest, HealthFollowsTheHealthFunction) {
  StartServer();
  HttpReply r = Get(port(), "/health");
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
  EXPECT_EQ(r.headers.at("content-type"), "text/plain; charset=utf-8");

  healthy_ = false;
  r = Get(port(), "/health");
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(r.raw.starts_with("HTTP/1.1 503 Service Unavailable\r\n")) << r.raw;
  EXPECT_EQ(r.body, "unavailable\n");

  healthy_ = true;
  EXPECT_EQ(Get(port(), "/health").status, 200);
  EXPECT_EQ(text_calls_.load(), 0);  // health does not render the metrics
}

TEST_F(MetricsServerTest, HeadSendsHeadersOnly) {
  StartServer();
  const HttpReply r = Get(port(), "/metrics", "HEAD");
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.at("content-length"), std::to_string(std::string_view(kText).size()));
  EXPECT_EQ(r.body, "");
  const HttpReply h = Get(port(), "/health", "HEAD");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "");
  healthy_ = false;
  EXPECT_EQ(Get(port(), "/health", "HEAD").status, 503);
  // Error responses to HEAD have no body either.
  const HttpReply missing = Get(port(), "/nope", "HEAD");
  ASSERT_TRUE(missing.complete) << missing.raw;
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.headers.at("content-length"), "0");
  EXPECT_EQ(missing.body, "");
}

TEST_F(MetricsServerTest, UnknownPathIs404) {
  StartServer();
  for (const char* path : {"/", "/nope", "/metrics/", "/healthz", "/metricsx"}) {
    const HttpReply r = Get(port(), path);
    ASSERT_TRUE(r.complete) << path << ": " << r.raw;
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.headers.at("content-length"), std::to_string(r.body.size()));
  }
}

TEST_F(MetricsServerTest, OtherMethodsAre405) {
  StartServer();
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"}) {
    const HttpReply r = Get(port(), "/metrics", method);
    ASSERT_TRUE(r.complete) << method << ": " << r.raw;
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_EQ(r.headers.at("allow"), "GET, HEAD");
  }
  // A POST with a body the server does not read still gets its answer.
  const std::string body(100000, 'x');
  const HttpReply r =
      Exchange(port(), "POST /health HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\n\r\n" + body);
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(text_calls_.load(), 0);
}

TEST_F(MetricsServerTest, MalformedRequestsAre400) {
  StartServer();
  for (const char* request : {
           "GET\r\n\r\n",
           "GET /metrics\r\n\r\n",
           "GET  /metrics HTTP/1.1\r\n\r\n",
           "GET /metrics HTTP/1.1 extra\r\n\r\n",
           "GET metrics HTTP/1.1\r\n\r\n",
           "G(T /metrics HTTP/1.1\r\n\r\n",
           "GET /metrics FTP/1.1\r\n\r\n",
           "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
           "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
           "\r\n\r\n",
       }) {
    const HttpReply r = Exchange(port(), request);
    ASSERT_TRUE(r.complete) << request << ": " << r.raw;
    EXPECT_EQ(r.status, 400) << request;
  }
  EXPECT_EQ(Exchange(port(), "GET /metrics HTTP/2.0\r\n\r\n").status, 505);
  EXPECT_EQ(text_calls_.load(), 0);
}

TEST_F(MetricsServerTest, BareLineFeedsAndSplitWritesAreAccepted) {
  StartServer();
  HttpReply r = Exchange(port(), "GET /health HTTP/1.1\nHost: x\n\n");
  EXPECT_EQ(r.status, 200) << r.raw;

  Conn conn(port());
  ASSERT_TRUE(conn.connected());
  for (char c : std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")) {
    ASSERT_TRUE(conn.Send(std::string_view(&c, 1)));
  }
  std::string raw;
  ASSERT_TRUE(conn.ReadToEnd(&raw));
  r = ParseReply(raw);
  EXPECT_EQ(r.status, 200) << raw;
  EXPECT_EQ(r.body, kText);
}

TEST_F(MetricsServerTest, OversizedHeadIs431AndServerGoesOn) {
  MetricsServerOptions options;
  options.max_header_bytes = 1024;
  StartServer(options);
  // Just within the limit.
  std::string request = "GET /health HTTP/1.1\r\nX: ";
  request += std::string(1024 - request.size() - 4, 'a') + "\r\n\r\n";
  ASSERT_EQ(request.size(), 1024u);
  EXPECT_EQ(Exchange(port(), request).status, 200);
  // One byte over, complete.
  request.insert(request.size() - 4, "a");
  HttpReply r = Exchange(port(), request);
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 431);
  // Far over and never ending: answered without waiting for the end.
  r = Exchange(port(), "GET /health HTTP/1.1\r\nX: " + std::string(100000, 'b'));
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(Get(port(), "/health").status, 200);
}

TEST_F(MetricsServerTest, ThrowingTextFunctionIs500) {
  StartServer();
  throw_ = true;
  const HttpReply r = Get(port(), "/metrics");
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 500);
  throw_ = false;
  EXPECT_EQ(Get(port(), "/metrics").status, 200);
}

TEST_F(MetricsServerTest, SilentClientIsClosedAtTheReadDeadline) {
  MetricsServerOptions options;
  options.read_timeout = milliseconds(100);
  StartServer(options);
  Conn conn(port());
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.Send("GET /metrics HTTP/1.1\r\n"));  // never finished
  const auto start = Clock::now();
  std::string raw;
  EXPECT_TRUE(conn.ReadToEnd(&raw));  // end of stream, well before kWait
  EXPECT_EQ(raw, "");
  EXPECT_GE(Clock::now() - start, milliseconds(50));
  EXPECT_EQ(Get(port(), "/health").status, 200);
}

TEST_F(MetricsServerTest, ConnectionsBeyondTheLimitAreClosed) {
  MetricsServerOptions options;
  options.max_connections = 1;
  StartServer(options);
  auto idle = std::make_unique<Conn>(port());
  ASSERT_TRUE(idle->connected());
  // Accepted in order: the idle connection takes the only slot.
  const HttpReply refused = Get(port(), "/health");
  EXPECT_FALSE(refused.complete) << refused.raw;
  EXPECT_EQ(refused.raw, "");
  idle.reset();
  // Once the server has noticed the close, the slot is free again.
  EXPECT_TRUE(WaitFor([&] { return Get(port(), "/health").status == 200; }));
}

TEST_F(MetricsServerTest, StopClosesOpenConnectionsPromptly) {
  MetricsServerOptions options;
  options.read_timeout = std::chrono::minutes(10);
  StartServer(options);
  Conn conn(port());
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.Send("GET /met"));
  // The server has the connection once a request on another one is answered
  // (one thread, accepted in order).
  ASSERT_EQ(Get(port(), "/health").status, 200);
  const auto start = Clock::now();
  server_->Stop();
  EXPECT_LT(Clock::now() - start, kWait);
  std::string raw;
  EXPECT_TRUE(conn.ReadToEnd(&raw));
  EXPECT_EQ(raw, "");
  server_->Stop();  // idempotent
  EXPECT_FALSE(Conn(port()).connected());
}

TEST_F(MetricsServerTest, StartFailsOnAPortInUse) {
  StartServer();
  MetricsServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(port());
  MetricsServer second(
      options, [] { return std::string(); }, [] { return true; });
  const Status s = second.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kInternal);
  EXPECT_NE(s.message().find("cannot listen for metrics on " + options.listen), std::string::npos)
      << s.message();
  EXPECT_EQ(Get(port(), "/health").status, 200);  // the first one is unaffected
}

TEST_F(MetricsServerTest, BadAddressesAreRejected) {
  for (const char* bad : {"", "nope", ":80", "host:", "host:x", "host:65536", "host:-1"}) {
    EXPECT_EQ(MetricsServer::CheckAddress(bad).code(), Status::Code::kBadRequest) << bad;
    MetricsServerOptions options;
    options.listen = bad;
    MetricsServer server(
        options, [] { return std::string(); }, [] { return true; });
    EXPECT_EQ(server.Start().code(), Status::Code::kBadRequest) << bad;
  }
  for (const char* good : {"127.0.0.1:0", "[::1]:9100", "localhost:65535", "0.0.0.0:9100"}) {
    EXPECT_TRUE(MetricsServer::CheckAddress(good).ok()) << good;
  }
}

TEST_F(MetricsServerTest, StopWithoutStartIsHarmless) {
  MetricsServer server(
      {}, [] { return std::string(); }, [] { return true; });
  server.Stop();
  EXPECT_FALSE(server.Start().ok());  // stopped for good
}

}  // namespace
}  // namespace ringkv::net
