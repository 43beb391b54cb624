// Unit tests of the network layer (server/net/): framing, limits and response
// ordering of Session, and the start/stop of Server, against fake
// RequestHandlers and raw POSIX sockets on 127.0.0.1.
//
// No test sleeps in place of a wait: every wait polls for its condition with a
// deadline (kWait) that a correct server never comes near, so that a broken
// one fails instead of hanging.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "server/net/server.h"
#include "server/request_handler.h"
#include "tests/util/loopback.h"
#include "tests/util/wait_for.h"

namespace ringkv::net {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// kWait is the deadline of every wait.
using testutil::kWait;
using testutil::MillisSince;
using testutil::WaitFor;

constexpr std::string_view kTooLarge = "TOO_LARGE";
constexpr size_t kBigResponseBytes = 64 * 1024;

// The fake handler. What it does with a line depends on how the line starts:
//   "async..."  echoed later by a worker thread; each worker takes everything
//               queued so far and answers it in a random order, so answers
//               come from several threads and out of order;
//   "hold..."   kept until the test takes it with TakeHeld();
//   "throw..."  throws from Handle();
//   "big <i>"   answered inline with "<i>" padded to kBigResponseBytes;
//   otherwise   echoed before Handle() returns.
// It records every line it is given.
class FakeHandler : public RequestHandler {
 public:
  struct Held {
    std::string line;
    Done done;
  };

  FakeHandler() {
    for (uint32_t seed = 1; seed <= 4; ++seed) workers_.emplace_back([this, seed] { Work(seed); });
  }

  ~FakeHandler() override { StopWorkers(); }

  void Handle(const std::shared_ptr<Connection>& /*conn*/, std::string_view line,
              Done done) override {
    std::unique_lock<std::mutex> lock(mu_);
    lines_.emplace_back(line);
    max_line_ = std::max(max_line_, line.size());
    if (line.starts_with("async")) {
      queue_.push_back({std::string(line), std::move(done)});
      work_cv_.notify_one();
    } else if (line.starts_with("hold")) {
      held_.push_back({std::string(line), std::move(done)});
    } else if (line == "thread") {
      lock.unlock();
      // The I/O thread that serves this connection.
      done(std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id())));
    } else if (line.starts_with("throw")) {
      throw std::runtime_error("fake handler failure");
    } else if (line.starts_with("big ")) {
      lock.unlock();
      // "big <i>": answered inline with <i> padded to kBigResponseBytes.
      std::string response(line.substr(4));
      response.resize(kBigResponseBytes, '.');
      done(std::move(response));
    } else {
      lock.unlock();
      done(std::string(line));
    }
  }

  std::string RequestTooLargeResponse() override { return std::string(kTooLarge); }

  // Joins the workers; queued "async" requests stay unanswered. Idempotent.
  void StopWorkers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    work_cv_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
  }

  // The "hold" requests received so far, in arrival order.
  std::vector<Held> TakeHeld() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(held_, {});
  }

  std::vector<std::string> lines() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }
  size_t calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_.size();
  }
  size_t max_line() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_line_;
  }

 private:
  void Work(uint32_t seed) {
    std::mt19937 rng(seed);
    for (;;) {
      std::vector<Held> batch;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [this] { return quit_ || !queue_.empty(); });
        if (quit_) return;
        batch.swap(queue_);
      }
      std::shuffle(batch.begin(), batch.end(), rng);
      for (auto& job : batch) job.done(std::move(job.line));
    }
  }

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::vector<Held> queue_;
  std::vector<Held> held_;
  std::vector<std::string> lines_;
  size_t max_line_ = 0;
  bool quit_ = false;
  std::vector<std::thread> workers_;
};

// A blocking client connection with bounded reads and writes.
using Conn = testutil::LoopbackConn;

class NetTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    options.io_threads = 3;
    server_ = std::make_unique<Server>(options, &handler_);
    const Status status = server_->Start();
    ASSERT_TRUE(status.ok()) << status.ToString();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    ASSERT_EQ(server_->BoundAddress(), "127.0.0.1:" + std::to_string(port_));
  }

  // `done` callbacks may run while the server stops, but not while it is
  // destroyed: stop it first, then the handler's workers, then destroy it.
  void DestroyServer() {
    if (server_) server_->Stop();
    handler_.StopWorkers();
    server_.reset();
  }

  void TearDown() override { DestroyServer(); }

  FakeHandler handler_;
  // Outlives server_, which counts into it until it is destroyed.
  ConnectionStats stats_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

// Requests "async <i>" or "<i>" (answered inline), about half of each, ending in
// "\n" or "\r\n". Returns the bytes to send; `expected` gets the responses.
std::string MixedRequests(int count, uint32_t seed, std::vector<std::string>* expected) {
  std::mt19937 rng(seed);
  std::string bytes;
  for (int i = 0; i < count; ++i) {
    std::string line = (rng() % 2 == 0 ? "async " : "inline ") + std::to_string(i);
    bytes += line;
    bytes += rng() % 4 == 0 ? "\r\n" : "\n";
    expected->push_back(std::move(line));
  }
  return bytes;
}

// Thousands of pipelined requests in one write, on several connections at once,
// answered from worker threads in random order: each connection gets its
// responses in request order, and nothing more.
TEST_F(NetTest, PipelinedResponsesComeBackInRequestOrder) {
  StartServer();
  constexpr int kConns = 3;
  constexpr int kRequests = 4000;
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<std::vector<std::string>> expected(kConns);
  std::vector<std::string> requests;
  for (int c = 0; c < kConns; ++c) {
    conns.push_back(std::make_unique<Conn>(port_));
    ASSERT_TRUE(conns.back()->connected());
    requests.push_back(MixedRequests(kRequests, 100 + c, &expected[c]));
  }
  std::vector<std::future<bool>> sent;
  for (int c = 0; c < kConns; ++c) {
    sent.push_back(std::async(std::launch::async, [&conn = *conns[c], &bytes = requests[c]] {
      return conn.Send(bytes);
    }));
  }
  for (int c = 0; c < kConns; ++c) {
    std::vector<std::string> got;
    std::string line;
    while (got.size() < expected[c].size() && conns[c]->ReadLine(&line)) got.push_back(line);
    ASSERT_EQ(got.size(), expected[c].size()) << "connection " << c;
    // Not EXPECT_EQ on the vectors: a failure would print 4000 lines.
    const auto mismatch = std::mismatch(got.begin(), got.end(), expected[c].begin());
    EXPECT_TRUE(mismatch.first == got.end())
        << "connection " << c << ": response " << (mismatch.first - got.begin()) << " is '"
        << *mismatch.first << "', expected '" << *mismatch.second << "'";
    EXPECT_TRUE(sent[c].get());
    conns[c]->ShutdownWrite();
    std::vector<std::string> extra;
    EXPECT_EQ(conns[c]->ReadUntilClosed(&extra), Conn::End::kEof);
    EXPECT_TRUE(extra.empty());
    EXPECT_TRUE(conns[c]->leftover().empty());
  }
  EXPECT_EQ(handler_.calls(), static_cast<size_t>(kConns * kRequests));
}

// Every answer is given only after all requests have arrived, in reverse
// order and from several threads at once, the first request's last: nothing
// may go out before it, and then everything goes out in request order.
TEST_F(NetTest, ResponsesCompletedInReverseComeBackInRequestOrder) {
  ServerOptions options;
  options.session.max_pending_requests = 10000;  // hold them all at once
  StartServer(options);
  constexpr int kRequests = 3000;
  std::string bytes;
  std::vector<std::string> expected;
  for (int i = 0; i < kRequests; ++i) {
    // Two in three are held (request 0 among them); the rest are answered
    // inline, behind held ones.
    expected.push_back((i % 3 != 2 ? "hold " : "inline ") + std::to_string(i));
    bytes += expected.back() + "\n";
  }
  Conn conn(port_);
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.Send(bytes));
  ASSERT_TRUE(WaitFor([&] { return handler_.calls() == kRequests; })) << handler_.calls();
  // The inline answers are in, but request 0 is not: nothing may be written.
  EXPECT_FALSE(conn.Readable());

  std::vector<FakeHandler::Held> held = handler_.TakeHeld();
  ASSERT_EQ(held.size(), static_cast<size_t>(kRequests * 2 / 3));
  std::reverse(held.begin(), held.end());
  // Four threads, each answering a quarter of the reversed list in order.
  constexpr size_t kThreads = 4;
  std::vector<std::thread> answerers;
  for (size_t t = 0; t < kThreads; ++t) {
    answerers.emplace_back([&held, t] {
      for (size_t i = t * held.size() / kThreads; i < (t + 1) * held.size() / kThreads; ++i) {
        held[i].done(held[i].line);
      }
    });
  }
  for (auto& thread : answerers) thread.join();

  std::vector<std::string> got;
  std::string line;
  while (got.size() < expected.size() && conn.ReadLine(&line)) got.push_back(line);
  ASSERT_EQ(got.size(), expected.size());
  const auto mismatch = std::mismatch(got.begin(), got.end(), expected.begin());
  EXPECT_TRUE(mismatch.first == got.end())
      << "response " << (mismatch.first - got.begin()) << " is '" << *mismatch.first
      << "', expected '" << *mismatch.second << "'";
}

// With tiny backpressure limits the session keeps pausing and resuming its
// reads; no request is lost or reordered.
TEST_F(NetTest, BackpressureKeepsEveryResponseInOrder) {
  ServerOptions options;
  options.session.max_pending_requests = 4;
  options.session.max_outbox_bytes = 64;
  StartServer(options);
  std::vector<std::string> expected;
  const std::string bytes = MixedRequests(3000, 7, &expected);
  Conn conn(port_);
  ASSERT_TRUE(conn.connected());
  auto sent = std::async(std::launch::async, [&] { return conn.Send(bytes); });
  std::vector<std::string> got;
  std::string line;
  while (got.size() < expected.size() && conn.ReadLine(&line)) got.push_back(line);
  EXPECT_TRUE(sent.get());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
}

// 1000 requests in one small write, each answered inline with 64 KiB, and a
// client that does not read: the session stops serving in the middle of its
// read buffer once its responses pass the bound, instead of serving all 1000
// (62 MiB) into memory. Once the client reads, every response arrives, in
// order.
TEST_F(NetTest, UnreadResponsesStopServingInTheMiddleOfARead) {
  ServerOptions options;
  options.session.max_outbox_bytes = 256 * 1024;
  StartServer(options);
  constexpr int kRequests = 1000;
  std::string bytes;
  for (int i = 0; i < kRequests; ++i) bytes += "big " + std::to_string(i) + "\n";
  ASSERT_LT(bytes.size(), 32u * 1024);  // one read of the session's buffer
  Conn conn(port_, kWait, /*receive_buffer=*/64 * 1024);
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.Send(bytes));
  ASSERT_TRUE(WaitFor([&] { return handler_.calls() > 0; }));
  // What is served now fills the bound and the kernel's socket buffers (a few
  // MiB on loopback), then stops: watch it for a while.
  const auto until = Clock::now() + milliseconds(300);
  while (Clock::now() < until) {
    ASSERT_LT(handler_.calls(), static_cast<size_t>(kRequests / 2));
    std::this_thread::sleep_for(milliseconds(5));
  }
  const size_t served_unread = handler_.calls();
  std::string line;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(conn.ReadLine(&line)) << "response " << i;
    ASSERT_EQ(line.size(), kBigResponseBytes);
    ASSERT_TRUE(line.starts_with(std::to_string(i) + ".")) << "response " << i;
  }
  EXPECT_EQ(handler_.calls(), static_cast<size_t>(kRequests));
  std::cout << "served while unread: " << served_unread << " of " << kRequests << "\n";
}

// Requests taken and not answered are bounded in bytes: with 10-byte lines
// ("hold" + padding) held by the handler and a 50-byte bound, the session
// hands over exactly five at a time, and serves the next five as soon as
// those are answered. Every response still comes back in order.
TEST_F(NetTest, UnansweredRequestBytesAreBounded) {
  ServerOptions options;
  options.session.max_unanswered_request_bytes = 50;
  StartServer(options);
  constexpr int kRequests = 40;
  std::string bytes;
  std::vector<std::string> expected;
  for (int i = 0; i < kRequests; ++i) {
    std::string line = "hold " + std::to_string(100 + i) + "x";  // 9 bytes, 10 with "\n"
    line += std::string(10 - line.size(), 'y');                  // 10 bytes
    bytes += line + "\n";
    expected.push_back(line);
  }
  Conn conn(port_);
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.Send(bytes));
  for (int answered = 0; answered < kRequests;) {
    ASSERT_TRUE(WaitFor([&] { return handler_.calls() == static_cast<size_t>(answered + 5); }))
        << handler_.calls() << " taken, " << answered << " answered";
    std::vector<FakeHandler::Held> held = handler_.TakeHeld();
    ASSERT_EQ(held.size(), 5u);
    EXPECT_EQ(handler_.calls(), static_cast<size_t>(answered + 5));
    for (auto& h : held) h.done(h.line);
    answered += 5;
  }
  std::string line;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(conn.ReadLine(&line));
    EXPECT_EQ(line, expected[i]);
  }
}

// Past max_connections a connection gets exactly one `overloaded` line and
// then end of stream (even when it has already sent a request); the counts
// are kept; once a connection closes, a new one is served.
TEST_F(NetTest, ConnectionsPastTheLimitGetOneOverloadedLineAndAreClosed) {
  ConnectionStats& stats = stats_;  // a local would die before the server
  ServerOptions options;
  options.max_connections = 2;
  options.stats = &stats;
  StartServer(options);
  auto first = std::make_unique<Conn>(port_);
  Conn second(port_);
  std::string line;
  for (Conn* conn : {first.get(), &second}) {
    ASSERT_TRUE(conn->connected());
    ASSERT_TRUE(conn->Send("hello\n"));
    ASSERT_TRUE(conn->ReadLine(&line));
    EXPECT_EQ(line, "hello");
  }
  EXPECT_EQ(stats.open.load(), 2u);
  for (int i = 0; i < 3; ++i) {
    Conn refused(port_);
    ASSERT_TRUE(refused.connected());
    ASSERT_TRUE(refused.Send("ignored\n"));
    std::vector<std::string> got;
    EXPECT_EQ(refused.ReadUntilClosed(&got), Conn::End::kEof);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].starts_with(R"({"ok":false,"error":{"code":"overloaded","message":")"))
        << got[0];
    EXPECT_TRUE(refused.leftover().empty());
  }
  EXPECT_EQ(stats.refused.load(), 3u);
  EXPECT_EQ(handler_.lines(), (std::vector<std::string>{"hello", "hello"}));

  first.reset();
  ASSERT_TRUE(WaitFor([&] { return server_->SessionCount() == 1 && stats.open.load() == 1; }));
  Conn later(port_);
  ASSERT_TRUE(later.connected());
  ASSERT_TRUE(later.Send("served\n"));
  ASSERT_TRUE(later.ReadLine(&line));
  EXPECT_EQ(line, "served");
  EXPECT_EQ(stats.refused.load(), 3u);
}

TEST_F(NetTest, EmptyLinesGetNoResponseAndCarriageReturnIsStripped) {
  StartServer();
  Conn conn(port_);
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.Send("\n\r\n\nfirst\r\n\n\r\n\nasync second\n\r\nthird\r\n\n"));
  conn.ShutdownWrite();
  std::vector<std::string> got;
  EXPECT_EQ(conn.ReadUntilClosed(&got), Conn::End::kEof);
  EXPECT_EQ(got, (std::vector<std::string>{"first", "async second", "third"}));
  EXPECT_TRUE(conn.leftover().empty()) << conn.leftover().size() << " bytes";
  EXPECT_EQ(handler_.lines(), (std::vector<std::string>{"first", "async second", "third"}));
}

TEST_F(NetTest, UnterminatedLastLineAtEndOfStreamIsServed) {
  StartServer();
  Conn conn(port_);
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.Send("one\nasync two\nasync last"));
  conn.ShutdownWrite();
  std::vector<std::string> got;
  EXPECT_EQ(conn.ReadUntilClosed(&got), Conn::End::kEof);
  EXPECT_EQ(got, (std::vector<std::string>{"one", "async two", "async last"}));
  EXPECT_TRUE(conn.leftover().empty()) << conn.leftover().size() << " bytes";
}

// A short line as is; a long one as its start and its size, so that failures
// stay readable.
std::string Summary(const std::string& line) {
  if (line.size() <= 40) return line;
  return line.substr(0, 10) + "... (" + std::to_string(line.size()) + " bytes)";
}

// A line of exactly `limit` bytes is served, with "\n" or "\r\n"; one of
// limit + 1 bytes is refused with RequestTooLargeResponse() after every earlier
// response, nothing after it is served, and the connection closes cleanly.
void CheckLimit(FakeHandler* handler, uint16_t port, size_t limit) {
  Conn conn(port);
  ASSERT_TRUE(conn.connected());
  const std::string at_limit_crlf(limit, 'a');
  const std::string at_limit_lf = "async " + std::string(limit - 6, 'b');
  const std::string over_limit(limit + 1, 'c');
  ASSERT_TRUE(conn.Send(at_limit_crlf + "\r\n" + at_limit_lf + "\n" + "hold first\n" + over_limit +
                        "\nnever\n"));
  // The refusal waits behind the held request.
  ASSERT_TRUE(WaitFor([&] { return handler->calls() == 3; }));
  std::vector<FakeHandler::Held> held = handler->TakeHeld();
  ASSERT_EQ(held.size(), 1u);
  held[0].done("first");

  std::vector<std::string> got;
  EXPECT_EQ(conn.ReadUntilClosed(&got), Conn::End::kEof);
  EXPECT_TRUE(conn.leftover().empty()) << conn.leftover().size() << " bytes";
  std::vector<std::string> summaries;
  for (const std::string& line : got) summaries.push_back(Summary(line));
  EXPECT_EQ(summaries, (std::vector<std::string>{Summary(at_limit_crlf), Summary(at_limit_lf),
                                                 "first", std::string(kTooLarge)}));
  if (got.size() == 4) {
    EXPECT_TRUE(got[0] == at_limit_crlf);
    EXPECT_TRUE(got[1] == at_limit_lf);
  }
  EXPECT_EQ(handler->calls(), 3u);  // neither the long line nor "never"
  EXPECT_EQ(handler->max_line(), limit);
}

TEST_F(NetTest, LineLimitIsExact) {
  ServerOptions options;
  options.session.max_request_bytes = 100;
  StartServer(options);
  CheckLimit(&handler_, port_, 100);
}

// A limit above the session's read buffer (32 KiB): the lines at the limit are
// assembled from several reads.
TEST_F(NetTest, LineLimitIsExactAcrossReads) {
  ServerOptions options;
  options.session.max_request_bytes = 100'000;
  StartServer(options);
  CheckLimit(&handler_, port_, 100'000);
}

// 20 MiB with no "\n" against a 1 KiB limit: the refusal arrives while the
// line is still unterminated, so the session did not wait for (or hold) the
// whole line; it discards the rest and closes cleanly.
TEST_F(NetTest, OversizedLineIsRefusedWithoutBeingBuffered) {
  ServerOptions options;
  options.session.max_request_bytes = 1024;
  StartServer(options);
  Conn conn(port_);
  ASSERT_TRUE(conn.connected());
  const std::string huge = "async before\n" + std::string(20 << 20, 'z');
  auto sent = std::async(std::launch::async, [&] { return conn.Send(huge); });
  std::string line;
  ASSERT_TRUE(conn.ReadLine(&line));
  EXPECT_EQ(line, "async before");
  ASSERT_TRUE(conn.ReadLine(&line));
  EXPECT_EQ(line, kTooLarge);
  // The session reads and discards the rest of the line.
  EXPECT_TRUE(sent.get());
  conn.ShutdownWrite();
  std::vector<std::string> extra;
  EXPECT_EQ(conn.ReadUntilClosed(&extra), Conn::End::kEof);
  EXPECT_TRUE(extra.empty());
  EXPECT_TRUE(conn.leftover().empty()) << conn.leftover().size() << " bytes";
  EXPECT_EQ(handler_.lines(), (std::vector<std::string>{"async before"}));
  EXPECT_LE(handler_.max_line(), 1024u);
  EXPECT_TRUE(WaitFor([&] { return server_->SessionCount() == 0; }));
}

// A handler that throws costs its connection (nothing after the failing request
// is served) and nothing else.
TEST_F(NetTest, HandlerThatThrowsClosesOnlyItsConnection) {
  StartServer();
  Conn other(port_);
  ASSERT_TRUE(other.connected());
  Conn conn(port_);
  ASSERT_TRUE(conn.connected());
  std::string line;
  ASSERT_TRUE(conn.Send("one\n"));
  ASSERT_TRUE(conn.ReadLine(&line));
  EXPECT_EQ(line, "one");
  ASSERT_TRUE(conn.Send("throw\nafter\n"));
  std::vector<std::string> got;
  const Conn::End end = conn.ReadUntilClosed(&got);
  EXPECT_TRUE(end == Conn::End::kEof || end == Conn::End::kReset);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(handler_.lines(), (std::vector<std::string>{"one", "throw"}));
  EXPECT_TRUE(WaitFor([&] { return server_->SessionCount() == 1; }));

  ASSERT_TRUE(other.Send("async still served\n"));
  ASSERT_TRUE(other.ReadLine(&line));
  EXPECT_EQ(line, "async still served");
  Conn later(port_);
  ASSERT_TRUE(later.connected());
  ASSERT_TRUE(later.Send("and new ones\n"));
  ASSERT_TRUE(later.ReadLine(&line));
  EXPECT_EQ(line, "and new ones");
}

// Stop() with an idle connection and a busy one: the idle one closes at once,
// the busy one gets its in-flight answers (including the one that completes
// during the drain) before it closes, and Stop() returns as soon as that is
// done, long before the drain timeout.
TEST_F(NetTest, StopDrainsInFlightRequests) {
  ServerOptions options;
  options.drain_timeout = std::chrono::seconds(5);
  StartServer(options);
  Conn idle(port_);
  Conn busy(port_);
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(busy.connected());
  ASSERT_TRUE(busy.Send("hold a\nasync b\nc\n"));
  ASSERT_TRUE(WaitFor([&] { return handler_.calls() == 3 && server_->SessionCount() == 2; }));

  const auto start = Clock::now();
  auto stopped = std::async(std::launch::async, [this] { server_->Stop(); });
  std::vector<std::string> got;
  EXPECT_EQ(idle.ReadUntilClosed(&got), Conn::End::kEof);
  EXPECT_TRUE(got.empty());
  // The server is draining: answer the held request now.
  std::vector<FakeHandler::Held> held = handler_.TakeHeld();
  ASSERT_EQ(held.size(), 1u);
  held[0].done("a");
  EXPECT_EQ(busy.ReadUntilClosed(&got), Conn::End::kEof);
  EXPECT_EQ(got, (std::vector<std::string>{"a", "async b", "c"}));
  ASSERT_EQ(stopped.wait_for(kWait), std::future_status::ready);
  stopped.get();
  EXPECT_LT(MillisSince(start), 2000);
  EXPECT_EQ(server_->SessionCount(), 0u);
  Conn refused(port_);
  EXPECT_FALSE(refused.connected());
}

// A request that is never answered: Stop() gives up after the drain timeout,
// closes the connection, and returns in bounded time. The late `done` is
// harmless even after the server is gone.
TEST_F(NetTest, StopIsBoundedWhenARequestIsNeverAnswered) {
  ServerOptions options;
  options.drain_timeout = milliseconds(200);
  StartServer(options);
  Conn idle(port_);
  Conn stuck(port_);
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(stuck.connected());
  ASSERT_TRUE(stuck.Send("hold forever\nanswered but behind\n"));
  ASSERT_TRUE(WaitFor([&] { return handler_.calls() == 2 && server_->SessionCount() == 2; }));

  const auto start = Clock::now();
  server_->Stop();
  const int64_t elapsed = MillisSince(start);
  EXPECT_GE(elapsed, 190);   // it did wait for the drain...
  EXPECT_LT(elapsed, 1500);  // ...but not much longer
  EXPECT_EQ(server_->SessionCount(), 0u);
  for (Conn* conn : {&idle, &stuck}) {
    std::vector<std::string> got;
    const Conn::End end = conn->ReadUntilClosed(&got);
    EXPECT_TRUE(end == Conn::End::kEof || end == Conn::End::kReset);
    EXPECT_TRUE(got.empty());
  }

  DestroyServer();
  std::vector<FakeHandler::Held> held = handler_.TakeHeld();
  ASSERT_EQ(held.size(), 1u);
  held[0].done("too late");
}

// Connections that arrive one at a time (each answered before the next
// connects, as TLS clients do: the handshake comes first) are spread over
// the I/O threads too, with an even number of threads as with an odd one.
TEST_F(NetTest, ConnectionsArrivingOneAtATimeAreSpreadOverTheIoThreads) {
  for (int threads : {2, 3}) {
    SCOPED_TRACE(threads);
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.io_threads = threads;
    Server server(options, &handler_);
    ASSERT_TRUE(server.Start().ok());
    std::vector<std::string> seen;
    std::vector<std::unique_ptr<Conn>> conns;
    for (int i = 0; i < 2 * threads; ++i) {
      conns.push_back(std::make_unique<Conn>(server.port()));
      ASSERT_TRUE(conns.back()->connected());
      ASSERT_TRUE(conns.back()->Send("thread\n"));
      std::string line;
      ASSERT_TRUE(conns.back()->ReadLine(&line));
      seen.push_back(line);
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::unique(seen.begin(), seen.end()) - seen.begin(), threads);
    conns.clear();
    server.Stop();
  }
}

TEST_F(NetTest, StopWithoutConnectionsIsImmediateAndIdempotent) {
  StartServer();
  const auto start = Clock::now();
  server_->Stop();
  server_->Stop();
  EXPECT_LT(MillisSince(start), 1000);
}

}  // namespace
}  // namespace ringkv::net
