// Unit tests of net::PeerClient and net::FailureDetector against a real
// net::Server on 127.0.0.1 whose RequestHandler is a fake replica: it answers
// _write, _read and _hello from a map, and can hold requests unanswered.
//
// No test sleeps in place of a wait: every wait polls for its condition with a
// deadline (kWait) that a correct client never comes near, so that a broken
// one fails instead of hanging.
#include "server/net/peer_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "engine/record.h"
#include "engine/status.h"
#include "server/cluster/membership.h"
#include "server/net/failure_detector.h"
#include "server/net/peer_handshake.h"
#include "server/net/peer_transport.h"
#include "server/net/server.h"
#include "server/net/tls.h"
#include "server/protocol.h"
#include "server/request_handler.h"
#include "tests/util/loopback.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_ca.h"
#include "tests/util/wait_for.h"

namespace ringkv::net {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// kWait is the deadline of every wait.
using testutil::kWait;
using testutil::MillisSince;
using testutil::WaitFor;
constexpr char kFingerprint[] = "Q=8;N=2;self@x,srv@y,";

// A port on 127.0.0.1 that nothing listens on (bound, then released); 0 if none.
uint16_t DeadPort() {
  const int port = testutil::UnusedPort();
  return port > 0 ? static_cast<uint16_t>(port) : 0;
}

Record MakeRecord(uint64_t hlc, std::string value_json) {
  Record r;
  r.version.hlc = hlc;
  r.version.node = "self";
  r.value = std::move(value_json);
  return r;
}

// The fake replica. Keys starting with "hold" are kept unanswered until the
// test releases them; everything else is answered before Handle() returns.
class FakeReplica : public RequestHandler {
 public:
  // Requests that came over TLS, and over TLS with a verified certificate.
  std::atomic<int> tls_requests_{0};
  std::atomic<int> verified_requests_{0};

  void Handle(const std::shared_ptr<Connection>& conn, std::string_view line, Done done) override {
    if (conn->tls) tls_requests_.fetch_add(1);
    if (conn->tls_peer_verified) verified_requests_.fetch_add(1);
    Limits limits;
    limits.max_value_bytes = 64ULL << 20;
    Request req;
    const Status parsed = ParseRequest(line, limits, &req);
    if (!parsed.ok()) return done(RenderError(req.id_json, parsed));
    std::unique_lock<std::mutex> lock(mu_);
    ++requests_;
    if (req.key.starts_with("hold")) {
      held_.push_back(std::move(done));
      return;
    }
    std::string reply;
    switch (req.op) {
      case Op::kPeerWrite:
        records_[req.key] = req.record;
        reply = R"({"ok":true})";
        break;
      case Op::kPeerRead: {
        const auto it = records_.find(req.key);
        reply = RenderPeerRecord(req.id_json, it == records_.end() ? nullptr : &it->second);
        break;
      }
      case Op::kPeerHello:
        ++hellos_;
        reply =
            req.fingerprint == fingerprint_
                ? R"({"ok":true,"node":"srv"})"
                : RenderError(req.id_json, Status::BadRequest("cluster mismatch: this node has '" +
                                                              fingerprint_ + "', the caller '" +
                                                              req.fingerprint + "'"));
        break;
      default:
        reply = RenderError(req.id_json, Status::UnknownOp("not a peer op"));
    }
    lock.unlock();
    done(std::move(reply));
  }

  std::string RequestTooLargeResponse() override {
    return RenderError("", Status::RequestTooLarge("too large"));
  }

  // Answers every held request with `reply`.
  void ReleaseHeld(const std::string& reply = R"({"ok":true})") {
    std::vector<Done> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      held.swap(held_);
    }
    for (auto& done : held) done(reply);
  }

  void set_fingerprint(std::string fingerprint) {
    std::lock_guard<std::mutex> lock(mu_);
    fingerprint_ = std::move(fingerprint);
  }
  size_t held() const {
    std::lock_guard<std::mutex> lock(mu_);
    return held_.size();
  }
  size_t hellos() const {
    std::lock_guard<std::mutex> lock(mu_);
    return hellos_;
  }
  size_t requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, Record> records_;
  std::vector<Done> held_;
  std::string fingerprint_ = kFingerprint;
  size_t hellos_ = 0;
  size_t requests_ = 0;
};

// What one callback received, and how often it was called.
struct Outcome {
  mutable std::mutex mu;
  int calls = 0;
  Status status;
  Record record;
  bool refused = false;
  Clock::time_point at;

  void Set(Status s, Record r = Record(), bool was_refused = false) {
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
    status = std::move(s);
    record = std::move(r);
    refused = was_refused;
    at = Clock::now();
  }
  int Calls() const {
    std::lock_guard<std::mutex> lock(mu);
    return calls;
  }
  bool Wait() const {
    return WaitFor([this] { return Calls() > 0; });
  }
  Status Get() const {
    std::lock_guard<std::mutex> lock(mu);
    return status;
  }
};

class PeerClientTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(); }

  void TearDown() override {
    if (peers_) peers_->Stop();
    replica_.ReleaseHeld();
    if (server_) server_->Stop();
  }

  void StartServer(milliseconds drain = milliseconds(5000),
                   std::shared_ptr<TlsContext> tls = nullptr) {
    if (server_) server_->Stop();
    ServerOptions options;
    options.tls = std::move(tls);
    options.listen = "127.0.0.1:0";
    options.io_threads = 2;
    options.drain_timeout = drain;
    server_ = std::make_unique<Server>(options, &replica_);
    ASSERT_TRUE(server_->Start().ok());
    dead_port_ = DeadPort();
    ASSERT_NE(dead_port_, 0);
    membership_ = std::make_unique<cluster::Membership>(
        std::vector<std::pair<std::string, std::string>>{
            {"self", "127.0.0.1:1"},
            {"srv", server_->BoundAddress()},
            {"dead", "127.0.0.1:" + std::to_string(dead_port_)},
            {"named", "localhost:" + std::to_string(server_->port())},
        },
        "self");
  }

  PeerClient* MakeClient(PeerClientOptions options = {}, bool start = true) {
    peers_ = std::make_unique<PeerClient>(options, membership_.get(), "self", kFingerprint);
    if (start) peers_->Start();
    return peers_.get();
  }

  void Write(const std::string& node, const std::string& key, const Record& record,
             uint64_t timeout_ms, Outcome* out) {
    peers_->Write(node, key, record, cluster::Epoch{}, timeout_ms,
                  [out](Status s) { out->Set(std::move(s)); });
  }
  void Read(const std::string& node, const std::string& key, uint64_t timeout_ms, Outcome* out) {
    peers_->Read(node, key, cluster::Epoch{}, timeout_ms,
                 [out](Status s, Record r) { out->Set(std::move(s), std::move(r)); });
  }
  void Hello(const std::string& node, uint64_t timeout_ms, Outcome* out) {
    peers_->Hello(node, timeout_ms,
                  [out](Status s, bool refused) { out->Set(std::move(s), Record(), refused); });
  }

  FakeReplica replica_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<cluster::Membership> membership_;
  std::unique_ptr<PeerClient> peers_;
  uint16_t dead_port_ = 0;
};

TEST_F(PeerClientTest, WriteThenReadRoundTrip) {
  MakeClient();
  Record record = MakeRecord(12345, R"({"a":[1,2,"x"]})");
  record.expires_at_ms = 99999999;
  Outcome wrote;
  Write("srv", "k\u00e9y", record, 2000, &wrote);
  ASSERT_TRUE(wrote.Wait());
  EXPECT_TRUE(wrote.Get().ok()) << wrote.Get().ToString();

  Outcome read;
  Read("srv", "k\u00e9y", 2000, &read);
  ASSERT_TRUE(read.Wait());
  ASSERT_TRUE(read.Get().ok()) << read.Get().ToString();
  EXPECT_EQ(read.record, record);

  Record tombstone = MakeRecord(12346, "");
  tombstone.tombstone = true;
  Outcome deleted;
  Write("srv", "gone", tombstone, 2000, &deleted);
  ASSERT_TRUE(deleted.Wait());
  Outcome read_tombstone;
  Read("srv", "gone", 2000, &read_tombstone);
  ASSERT_TRUE(read_tombstone.Wait());
  ASSERT_TRUE(read_tombstone.Get().ok());
  EXPECT_EQ(read_tombstone.record, tombstone);
}

TEST_F(PeerClientTest, ReadOfMissingKeyIsNotFound) {
  MakeClient();
  Outcome read;
  Read("srv", "missing", 2000, &read);
  ASSERT_TRUE(read.Wait());
  EXPECT_TRUE(read.Get().IsNotFound()) << read.Get().ToString();
  EXPECT_EQ(read.record, Record());
}

TEST_F(PeerClientTest, HostNamesAreResolved) {
  MakeClient();
  Outcome hello;
  Hello("named", 2000, &hello);
  ASSERT_TRUE(hello.Wait());
  EXPECT_TRUE(hello.Get().ok()) << hello.Get().ToString();
}

TEST_F(PeerClientTest, LargeValuesSpanManyReads) {
  MakeClient();
  const std::string value = "\"" + std::string(700 << 10, 'v') + "\"";
  const Record record = MakeRecord(7, value);
  Outcome wrote;
  Write("srv", "big", record, 5000, &wrote);
  ASSERT_TRUE(wrote.Wait());
  ASSERT_TRUE(wrote.Get().ok()) << wrote.Get().ToString();
  Outcome read;
  Read("srv", "big", 5000, &read);
  ASSERT_TRUE(read.Wait());
  ASSERT_TRUE(read.Get().ok()) << read.Get().ToString();
  EXPECT_EQ(read.record.value.size(), value.size());
  EXPECT_EQ(read.record, record);
}

TEST_F(PeerClientTest, PipelinedConcurrentRequestsAreEachAnsweredOnce) {
  MakeClient();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  constexpr int kTotal = kThreads * kPerThread;
  std::vector<std::atomic<int>> calls(kTotal);
  std::atomic<int> ok{0};
  std::atomic<int> answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t * kPerThread; i < (t + 1) * kPerThread; ++i) {
        peers_->Write("srv", "key" + std::to_string(i), MakeRecord(1000 + i, std::to_string(i)),
                      cluster::Epoch{}, 5000, [&, i](Status s) {
                        calls[i].fetch_add(1);
                        if (s.ok()) ok.fetch_add(1);
                        answered.fetch_add(1);
                      });
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(WaitFor([&] { return answered.load() >= kTotal; }));
  EXPECT_EQ(ok.load(), kTotal);
  for (int i = 0; i < kTotal; ++i) EXPECT_EQ(calls[i].load(), 1) << "request " << i;

  // Reads, also pipelined, each get their own key's record back.
  std::vector<Outcome> reads(kTotal);
  for (int i = 0; i < kTotal; ++i) Read("srv", "key" + std::to_string(i), 5000, &reads[i]);
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& r : reads) {
      if (r.Calls() == 0) return false;
    }
    return true;
  }));
  for (int i = 0; i < kTotal; ++i) {
    ASSERT_EQ(reads[i].Calls(), 1);
    ASSERT_TRUE(reads[i].Get().ok()) << reads[i].Get().ToString();
    EXPECT_EQ(reads[i].record, MakeRecord(1000 + i, std::to_string(i)));
  }
}

TEST_F(PeerClientTest, TimeoutKeepsTheConnectionUsable) {
  PeerClientOptions options;
  options.connections_per_peer = 1;
  MakeClient(options);
  // Open the connection first, so that the timing below excludes connecting.
  Outcome warm;
  Hello("srv", 2000, &warm);
  ASSERT_TRUE(warm.Wait());
  ASSERT_TRUE(warm.Get().ok());

  constexpr int kTimeoutMs = 200;
  Outcome held;
  const auto start = Clock::now();
  Write("srv", "hold-1", MakeRecord(1, "1"), kTimeoutMs, &held);
  ASSERT_TRUE(held.Wait());
  const int64_t elapsed = MillisSince(start);
  EXPECT_EQ(held.Get().code(), Status::Code::kTimeout) << held.Get().ToString();
  EXPECT_GE(elapsed, kTimeoutMs - 5);
  EXPECT_LT(elapsed, kTimeoutMs + 1000);

  // The late answer takes the abandoned slot and is discarded; the next
  // request on the same connection gets its own answer.
  replica_.ReleaseHeld(R"({"ok":false,"error":{"code":"internal","message":"late"}})");
  Outcome next;
  Write("srv", "after", MakeRecord(2, "2"), 2000, &next);
  ASSERT_TRUE(next.Wait());
  EXPECT_TRUE(next.Get().ok()) << next.Get().ToString();
  EXPECT_EQ(held.Calls(), 1);
  EXPECT_EQ(server_->SessionCount(), 1u);  // no reconnection was needed
}

TEST_F(PeerClientTest, StalledConnectionIsReplaced) {
  PeerClientOptions options;
  options.connections_per_peer = 1;
  MakeClient(options);
  Outcome held;
  Write("srv", "hold-1", MakeRecord(1, "1"), 50, &held);
  ASSERT_TRUE(held.Wait());
  EXPECT_EQ(held.Get().code(), Status::Code::kTimeout);

  // The held request never gets answered, so the connection is stuck behind
  // it; the client must give up on it and open a new one. Requests queued
  // behind the stall may fail; one soon succeeds.
  bool succeeded = false;
  const auto deadline = Clock::now() + kWait;
  for (int i = 0; !succeeded && Clock::now() < deadline; ++i) {
    Outcome attempt;
    Write("srv", "after" + std::to_string(i), MakeRecord(2, "2"), 1000, &attempt);
    ASSERT_TRUE(attempt.Wait());
    succeeded = attempt.Get().ok();
    EXPECT_TRUE(succeeded || attempt.Get().code() == Status::Code::kUnavailable ||
                attempt.Get().code() == Status::Code::kTimeout)
        << attempt.Get().ToString();
  }
  EXPECT_TRUE(succeeded);
  EXPECT_EQ(held.Calls(), 1);
}

TEST_F(PeerClientTest, RefusedConnectionFailsFast) {
  MakeClient();
  Outcome first;
  auto start = Clock::now();
  Write("dead", "k", MakeRecord(1, "1"), 5000, &first);
  ASSERT_TRUE(first.Wait());
  EXPECT_LT(MillisSince(start), 1000);
  EXPECT_EQ(first.Get().code(), Status::Code::kUnavailable);
  EXPECT_NE(first.Get().message().find("connection refused"), std::string::npos)
      << first.Get().ToString();

  // In backoff: fails at once, and Hello says the peer refused.
  Outcome hello;
  start = Clock::now();
  Hello("dead", 5000, &hello);
  ASSERT_TRUE(hello.Wait());
  EXPECT_LT(MillisSince(start), 1000);
  EXPECT_EQ(hello.Get().code(), Status::Code::kUnavailable);
  EXPECT_TRUE(hello.refused);

  Outcome read;
  Read("dead", "k", 5000, &read);
  ASSERT_TRUE(read.Wait());
  EXPECT_EQ(read.Get().code(), Status::Code::kUnavailable);
}

TEST_F(PeerClientTest, UnknownNodeIsUnavailable) {
  MakeClient();
  Outcome out;
  Write("nobody", "k", MakeRecord(1, "1"), 1000, &out);
  ASSERT_TRUE(out.Wait());
  EXPECT_EQ(out.Get().code(), Status::Code::kUnavailable);
}

TEST_F(PeerClientTest, HelloReportsClusterMismatch) {
  MakeClient();
  Outcome ok;
  Hello("srv", 2000, &ok);
  ASSERT_TRUE(ok.Wait());
  EXPECT_TRUE(ok.Get().ok()) << ok.Get().ToString();

  replica_.set_fingerprint("something else");
  Outcome mismatch;
  Hello("srv", 2000, &mismatch);
  ASSERT_TRUE(mismatch.Wait());
  EXPECT_EQ(mismatch.Get().code(), Status::Code::kBadRequest);
  EXPECT_NE(mismatch.Get().message().find("cluster mismatch"), std::string::npos);
  EXPECT_FALSE(mismatch.refused);
}

TEST_F(PeerClientTest, StopFailsPendingRequestsExactlyOnce) {
  MakeClient();
  constexpr int kHeld = 10;
  std::vector<Outcome> outs(kHeld);
  for (int i = 0; i < kHeld; ++i) {
    Write("srv", "hold-" + std::to_string(i), MakeRecord(1, "1"), 30000, &outs[i]);
  }
  ASSERT_TRUE(WaitFor([&] { return replica_.held() == kHeld; }));
  peers_->Stop();
  for (int i = 0; i < kHeld; ++i) {
    ASSERT_EQ(outs[i].Calls(), 1);  // Stop() returned: every callback has run
    EXPECT_EQ(outs[i].Get().code(), Status::Code::kUnavailable);
    EXPECT_EQ(outs[i].Get().message(), "shutting down");
  }
  // Late answers reach nobody.
  replica_.ReleaseHeld();
  // After Stop, requests fail inline.
  Outcome after;
  Write("srv", "k", MakeRecord(1, "1"), 1000, &after);
  EXPECT_EQ(after.Calls(), 1);
  EXPECT_EQ(after.Get().code(), Status::Code::kUnavailable);
  peers_->Stop();  // idempotent
  for (const auto& out : outs) EXPECT_EQ(out.Calls(), 1);
}

TEST_F(PeerClientTest, StopRacingWithRequestsAnswersEachExactlyOnce) {
  MakeClient();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1000;
  constexpr int kTotal = kThreads * kPerThread;
  std::vector<std::atomic<int>> calls(kTotal);
  std::atomic<int> submitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t * kPerThread; i < (t + 1) * kPerThread; ++i) {
        // Some are held (pending at Stop), some answered, some refused.
        const std::string node = i % 5 == 0 ? "dead" : "srv";
        const std::string key = (i % 3 == 0 ? "hold-" : "key-") + std::to_string(i);
        peers_->Write(node, key, MakeRecord(1, "1"), cluster::Epoch{}, 30000,
                      [&, i](Status) { calls[i]++; });
        submitted.fetch_add(1);
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return submitted.load() >= kTotal / 4; }));
  peers_->Stop();
  for (auto& thread : threads) thread.join();
  // Every request was submitted either before Stop() returned (and Stop()
  // failed it if it was still pending) or after (and failed inline).
  for (int i = 0; i < kTotal; ++i) EXPECT_EQ(calls[i].load(), 1) << "request " << i;
}

TEST_F(PeerClientTest, StopWithoutStartFailsQueuedRequests) {
  MakeClient(PeerClientOptions{}, /*start=*/false);
  Outcome out;
  Write("srv", "k", MakeRecord(1, "1"), 1000, &out);
  EXPECT_EQ(out.Calls(), 0);
  peers_->Stop();
  EXPECT_EQ(out.Calls(), 1);
  EXPECT_EQ(out.Get().code(), Status::Code::kUnavailable);
}

TEST_F(PeerClientTest, LostConnectionFailsItsRequests) {
  server_->Stop();
  replica_.ReleaseHeld();
  StartServer(/*drain=*/milliseconds(50));
  MakeClient();
  constexpr int kHeld = 4;
  std::vector<Outcome> outs(kHeld);
  for (int i = 0; i < kHeld; ++i) {
    Write("srv", "hold-" + std::to_string(i), MakeRecord(1, "1"), 30000, &outs[i]);
  }
  ASSERT_TRUE(WaitFor([&] { return replica_.held() == kHeld; }));
  // The server gives up draining the held requests and closes the sessions.
  server_->Stop();
  for (int i = 0; i < kHeld; ++i) {
    ASSERT_TRUE(outs[i].Wait());
    EXPECT_EQ(outs[i].Calls(), 1);
    EXPECT_EQ(outs[i].Get().code(), Status::Code::kUnavailable) << outs[i].Get().ToString();
  }
  // Nothing listens any more: refused.
  Outcome hello;
  Hello("srv", 2000, &hello);
  ASSERT_TRUE(hello.Wait());
  EXPECT_EQ(hello.Get().code(), Status::Code::kUnavailable);
  EXPECT_TRUE(hello.refused);
}

TEST_F(PeerClientTest, PendingBytesAreBounded) {
  PeerClientOptions options;
  options.max_pending_bytes_per_peer = 4096;
  MakeClient(options);
  Outcome big;
  Write("srv", "hold-big", MakeRecord(1, "\"" + std::string(5000, 'x') + "\""), 1000, &big);
  ASSERT_TRUE(big.Wait());
  EXPECT_EQ(big.Get().code(), Status::Code::kUnavailable);
  Outcome small;
  Write("srv", "fine", MakeRecord(1, "1"), 1000, &small);
  ASSERT_TRUE(small.Wait());
  EXPECT_TRUE(small.Get().ok()) << small.Get().ToString();
}

// The bound is reserved when a request is submitted, before it is queued for
// the client's thread: with the thread not even started, requests past the
// bound fail at once, inline, and the ones within it still complete.
TEST_F(PeerClientTest, PendingBytesAreBoundedBeforeRequestsAreQueued) {
  PeerClientOptions options;
  options.max_pending_bytes_per_peer = 4096;
  MakeClient(options, /*start=*/false);
  const Record record = MakeRecord(1, "\"" + std::string(900, 'x') + "\"");
  constexpr int kRequests = 10;
  std::vector<Outcome> outs(kRequests);
  int accepted = 0;
  for (int i = 0; i < kRequests; ++i) {
    std::string key = "k";  // not "k" + ...: GCC 12 -O3 warns falsely (-Wrestrict)
    key += std::to_string(i);
    Write("srv", key, record, 2000, &outs[i]);
    if (outs[i].Calls() == 0) {
      ++accepted;
    } else {
      EXPECT_EQ(outs[i].Get().code(), Status::Code::kUnavailable) << outs[i].Get().ToString();
    }
  }
  EXPECT_GE(accepted, 3);
  EXPECT_LE(accepted, 4);  // 4096 bytes of ~1 KiB requests
  peers_->Start();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(outs[i].Wait());
    EXPECT_EQ(outs[i].Calls(), 1);
  }
  for (int i = 0; i < accepted; ++i) EXPECT_TRUE(outs[i].Get().ok()) << outs[i].Get().ToString();
  // Everything was released: the whole bound is available again.
  std::vector<Outcome> again(accepted);
  for (int i = 0; i < accepted; ++i) Write("srv", "again", record, 2000, &again[i]);
  for (int i = 0; i < accepted; ++i) {
    ASSERT_TRUE(again[i].Wait());
    EXPECT_TRUE(again[i].Get().ok()) << again[i].Get().ToString();
  }
}

// A reply of an unexpected shape (error.code a number: the reply parser
// throws on it) fails its request with Internal, exactly once, and the
// connection carries on: the next request on it gets its own answer.
TEST_F(PeerClientTest, MalformedReplyFailsItsRequestWithInternal) {
  PeerClientOptions options;
  options.connections_per_peer = 1;
  MakeClient(options);
  // (A message of the wrong type with a valid code keeps the code: see
  // PeerReplyTest in protocol_test.cc.)
  for (const std::string reply :
       {R"({"ok":false,"error":{"code":5}})", R"({"ok":false,"error":{"code":null,"message":7}})",
        "not json at all", R"({"ok":"yes"})"}) {
    SCOPED_TRACE(reply);
    Outcome wrote;
    Outcome read;
    Write("srv", "hold-w", MakeRecord(1, "1"), 2000, &wrote);
    Read("srv", "hold-r", 2000, &read);
    ASSERT_TRUE(WaitFor([&] { return replica_.held() == 2; }));
    replica_.ReleaseHeld(reply);
    ASSERT_TRUE(wrote.Wait());
    ASSERT_TRUE(read.Wait());
    EXPECT_EQ(wrote.Get().code(), Status::Code::kInternal) << wrote.Get().ToString();
    EXPECT_EQ(read.Get().code(), Status::Code::kInternal) << read.Get().ToString();
    EXPECT_EQ(read.record, Record());

    Outcome next;
    Write("srv", "after", MakeRecord(2, "2"), 2000, &next);
    ASSERT_TRUE(next.Wait());
    EXPECT_TRUE(next.Get().ok()) << next.Get().ToString();
    EXPECT_EQ(wrote.Calls(), 1);
    EXPECT_EQ(read.Calls(), 1);
  }
  EXPECT_EQ(server_->SessionCount(), 1u);  // never reconnected
}

// Callbacks that throw, on every path that fails a request early (unknown
// node, a peer in backoff, a full bound) and on an answered one: the
// exception goes no further than the client, which keeps serving.
TEST_F(PeerClientTest, CallbackThatThrowsIsContained) {
  PeerClientOptions options;
  options.max_pending_bytes_per_peer = 4096;
  MakeClient(options);
  std::atomic<int> thrown{0};
  const auto throwing = [&thrown](Status) {
    ++thrown;
    throw std::runtime_error("callback failure");
  };
  EXPECT_NO_THROW(peers_->Write("nope", "k", MakeRecord(1, "1"), cluster::Epoch{}, 1000, throwing));
  EXPECT_NO_THROW(peers_->Write("srv", "k", MakeRecord(1, "\"" + std::string(5000, 'x') + "\""),
                                cluster::Epoch{}, 1000, throwing));
  EXPECT_EQ(thrown.load(), 2);  // both failed inline
  Outcome first;
  Write("dead", "k", MakeRecord(1, "1"), 1000, &first);  // puts "dead" in backoff
  ASSERT_TRUE(first.Wait());
  peers_->Write("dead", "k", MakeRecord(1, "1"), cluster::Epoch{}, 1000, throwing);
  peers_->Write("srv", "k", MakeRecord(1, "1"), cluster::Epoch{}, 1000, throwing);
  ASSERT_TRUE(WaitFor([&] { return thrown.load() == 4; }));
  Outcome after;
  Write("srv", "after", MakeRecord(2, "2"), 2000, &after);
  ASSERT_TRUE(after.Wait());
  EXPECT_TRUE(after.Get().ok()) << after.Get().ToString();
}

// ---- FailureDetector ----

TEST_F(PeerClientTest, FailureDetectorTracksPeersAndTicks) {
  MakeClient();
  std::mutex mu;
  std::vector<std::pair<std::string, bool>> changes;
  membership_->SetListener([&](const std::string& node, bool up) {
    std::lock_guard<std::mutex> lock(mu);
    changes.emplace_back(node, up);
  });
  std::atomic<int> ticks{0};
  FailureDetectorOptions options;
  options.ping_interval = milliseconds(20);
  options.ping_timeout_ms = 500;
  options.tick_interval = milliseconds(10);
  FailureDetector detector(options, peers_.get(), membership_.get(), [&] { ticks.fetch_add(1); });
  detector.Start();

  // A refused peer is down after its first ping; a live one stays up.
  ASSERT_TRUE(WaitFor([&] { return !membership_->IsUp("dead"); }));
  ASSERT_TRUE(WaitFor([&] { return replica_.hellos() >= 3 && ticks.load() >= 3; }));
  EXPECT_TRUE(membership_->IsUp("srv"));

  // A peer whose cluster differs is down at once, and up again once it agrees.
  replica_.set_fingerprint("other");
  ASSERT_TRUE(WaitFor([&] { return !membership_->IsUp("srv"); }));
  replica_.set_fingerprint(kFingerprint);
  ASSERT_TRUE(WaitFor([&] { return membership_->IsUp("srv"); }));

  detector.Stop();
  detector.Stop();  // idempotent
  const int ticks_at_stop = ticks.load();
  peers_->Stop();
  EXPECT_EQ(ticks.load(), ticks_at_stop);
  std::lock_guard<std::mutex> lock(mu);
  const std::vector<std::pair<std::string, bool>> expected = {
      {"dead", false}, {"srv", false}, {"srv", true}};
  std::vector<std::pair<std::string, bool>> seen;
  for (const auto& change : changes) {
    if (change.first != "named") seen.push_back(change);
  }
  EXPECT_EQ(seen, expected);
}

}  // namespace
}  // namespace ringkv::net

namespace ringkv::net {
namespace {

// A handshake that sends one request the fake replica accepts (a _write) and
// wants "ok":true back, or fails at once.
class PingHandshake final : public PeerHandshake {
 public:
  explicit PingHandshake(bool fail) : fail_(fail) {}
  Status Step(const std::string* reply, std::string* send) override {
    send->clear();
    if (fail_) return Status::Unavailable("test handshake refuses");
    if (reply == nullptr) {
      *send = EncodePeerWrite("handshake", MakeRecord(1, "0"));
      return Status::OK();
    }
    if (reply->find("\"ok\":true") == std::string::npos) {
      return Status::Unavailable("test handshake got " + *reply);
    }
    return Status::OK();
  }

 private:
  const bool fail_;
};

// ---- PeerTransport: a client on each I/O thread ----

// Two io_contexts each run by a thread of the test, attached to a transport
// as a Server attaches its I/O threads.
class PeerTransportTest : public PeerClientTest {
 protected:
  static constexpr size_t kThreads = 2;

  void SetUp() override {
    PeerClientTest::SetUp();
    MakeClient();  // the fallback
    PeerClientOptions shard_options;
    shard_options.connections_per_peer = 1;  // as kvd's
    transport_ = std::make_unique<PeerTransport>(
        peers_.get(), shard_options,
        std::vector<std::pair<std::string, std::string>>{{"srv", server_->BoundAddress()}}, "self",
        kFingerprint);
    // Every io_context exists before any thread starts: a thread holds its
    // own by pointer, never reads ios_ while it grows.
    for (size_t i = 0; i < kThreads; ++i) {
      ios_.push_back(std::make_unique<asio::io_context>(1));
      work_.emplace_back(ios_[i]->get_executor());
    }
    for (size_t i = 0; i < kThreads; ++i) {
      std::promise<std::thread::id> attached;
      std::future<std::thread::id> id = attached.get_future();
      asio::io_context* io = ios_[i].get();
      threads_.emplace_back([this, i, io, &attached] {
        transport_->Attach(i, *io);
        attached.set_value(std::this_thread::get_id());
        io->run();
      });
      ids_.push_back(id.get());
    }
  }

  void TearDown() override {
    for (size_t i = 0; i < kThreads; ++i) RunOn(i, [this, i] { transport_->Detach(i); });
    work_.clear();
    for (auto& thread : threads_) thread.join();
    transport_.reset();  // before the io_contexts its clients' sockets use
    ios_.clear();
    PeerClientTest::TearDown();
  }

  // Runs `fn` on I/O thread `i` and waits for it.
  void RunOn(size_t i, const std::function<void()>& fn) {
    std::promise<void> ran;
    std::future<void> done = ran.get_future();
    asio::post(*ios_[i], [&] {
      fn();
      ran.set_value();
    });
    done.wait();
  }

  // A write through the transport made on `thread` (the test's own thread
  // when npos); records the thread its callback ran on.
  void WriteFrom(size_t thread, const std::string& node, const std::string& key, Outcome* out,
                 std::thread::id* called_on) {
    auto write = [this, node, key, out, called_on] {
      transport_->Write(node, key, MakeRecord(1, "1"), cluster::Epoch{}, 5000,
                        [out, called_on](Status s) {
                          *called_on = std::this_thread::get_id();
                          out->Set(std::move(s));
                        });
    };
    if (thread == std::string::npos) return write();
    RunOn(thread, write);
  }

  std::unique_ptr<PeerTransport> transport_;
  std::vector<std::unique_ptr<asio::io_context>> ios_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::vector<std::thread::id> ids_;
};

TEST_F(PeerTransportTest, AWriteOnAnIoThreadIsAnsweredOnThatThread) {
  EXPECT_EQ(transport_->attached(), kThreads);
  for (size_t i = 0; i < kThreads; ++i) {
    Outcome wrote;
    std::thread::id called_on;
    WriteFrom(i, "srv", "k" + std::to_string(i), &wrote, &called_on);
    ASSERT_TRUE(wrote.Wait());
    EXPECT_TRUE(wrote.Get().ok()) << wrote.Get().ToString();
    EXPECT_EQ(called_on, ids_[i]) << "thread " << i;
  }
  // Off the I/O threads, the shared client serves: its own thread answers.
  Outcome wrote;
  std::thread::id called_on;
  WriteFrom(std::string::npos, "srv", "k-main", &wrote, &called_on);
  ASSERT_TRUE(wrote.Wait());
  EXPECT_TRUE(wrote.Get().ok());
  EXPECT_NE(called_on, ids_[0]);
  EXPECT_NE(called_on, ids_[1]);
  EXPECT_NE(called_on, std::this_thread::get_id());

  Outcome read;
  std::promise<std::thread::id> read_on;
  std::future<std::thread::id> read_thread = read_on.get_future();
  RunOn(1, [&] {
    transport_->Read("srv", "k1", cluster::Epoch{}, 5000, [&](Status s, Record r) {
      read.Set(std::move(s), std::move(r));
      read_on.set_value(std::this_thread::get_id());
    });
  });
  ASSERT_TRUE(read.Wait());
  EXPECT_TRUE(read.Get().ok()) << read.Get().ToString();
  EXPECT_EQ(read_thread.get(), ids_[1]);
}

TEST_F(PeerTransportTest, ManyWritesOfOneHandlerAreAnsweredInOrderOnItsThread) {
  // Forty writes made by one handler (queued while the connection opens,
  // then flushed together) all complete, in order, on that thread.
  constexpr int kWrites = 40;
  std::vector<int> order;
  std::atomic<int> done{0};
  RunOn(0, [&] {
    for (int i = 0; i < kWrites; ++i) {
      transport_->Write("srv", "batch-" + std::to_string(i), MakeRecord(1, "1"), cluster::Epoch{},
                        5000, [&, i](Status s) {
                          EXPECT_TRUE(s.ok()) << s.ToString();
                          order.push_back(i);  // thread 0 only
                          done.fetch_add(1);
                        });
    }
  });
  ASSERT_TRUE(WaitFor([&] { return done.load() == kWrites; }));
  RunOn(0, [&] {
    ASSERT_EQ(order.size(), static_cast<size_t>(kWrites));
    for (int i = 0; i < kWrites; ++i) EXPECT_EQ(order[i], i);
  });
}

TEST_F(PeerTransportTest, DetachFailsWhatTheThreadHoldsThenTheSharedClientServesIt) {
  Outcome held;
  std::thread::id called_on;
  WriteFrom(0, "srv", "hold-at-detach", &held, &called_on);
  ASSERT_TRUE(WaitFor([&] { return replica_.held() == 1; }));
  EXPECT_EQ(held.Calls(), 0);
  RunOn(0, [this] { transport_->Detach(0); });
  ASSERT_EQ(held.Calls(), 1);  // failed inside Detach, on thread 0
  EXPECT_EQ(held.Get().code(), Status::Code::kUnavailable);
  EXPECT_EQ(called_on, ids_[0]);
  EXPECT_EQ(transport_->attached(), kThreads - 1);
  replica_.ReleaseHeld();  // its late answer reaches nobody

  Outcome after;
  WriteFrom(0, "srv", "after-detach", &after, &called_on);
  ASSERT_TRUE(after.Wait());
  EXPECT_TRUE(after.Get().ok()) << after.Get().ToString();
  EXPECT_NE(called_on, ids_[0]);  // the shared client's thread
  EXPECT_EQ(after.Calls(), 1);
}

TEST_F(PeerTransportTest, PeersAddedLaterReachEveryThreadsClient) {
  Outcome unknown;
  std::thread::id called_on;
  WriteFrom(1, "late", "k", &unknown, &called_on);
  ASSERT_EQ(unknown.Calls(), 1);  // inline: no such node
  EXPECT_EQ(unknown.Get().code(), Status::Code::kUnavailable);

  transport_->AddPeer("late", server_->BoundAddress());
  for (size_t thread : {size_t{0}, size_t{1}, std::string::npos}) {
    Outcome wrote;
    WriteFrom(thread, "late", "k", &wrote, &called_on);
    ASSERT_TRUE(wrote.Wait());
    EXPECT_TRUE(wrote.Get().ok()) << wrote.Get().ToString();
  }
}

// A Server runs its hooks on each I/O thread: Attach before anything, and
// Detach once the sessions have drained, on the same thread.
class RecordingHooks : public IoThreadHooks {
 public:
  explicit RecordingHooks(const FakeReplica* replica) : replica_(replica) {}
  void Attach(size_t index, asio::io_context&) override {
    std::lock_guard<std::mutex> lock(mu_);
    attached_[index] = std::this_thread::get_id();
  }
  void Detach(size_t index) override {
    std::lock_guard<std::mutex> lock(mu_);
    detached_[index] = std::this_thread::get_id();
    held_at_detach_ += replica_->held();
  }
  std::map<size_t, std::thread::id> attached() const {
    std::lock_guard<std::mutex> lock(mu_);
    return attached_;
  }
  std::map<size_t, std::thread::id> detached() const {
    std::lock_guard<std::mutex> lock(mu_);
    return detached_;
  }
  size_t held_at_detach() const {
    std::lock_guard<std::mutex> lock(mu_);
    return held_at_detach_;
  }

 private:
  const FakeReplica* const replica_;
  mutable std::mutex mu_;
  std::map<size_t, std::thread::id> attached_;
  std::map<size_t, std::thread::id> detached_;
  size_t held_at_detach_ = 0;
};

TEST_F(PeerClientTest, ServerRunsItsHooksOnEachIoThreadAroundTheDrain) {
  RecordingHooks hooks(&replica_);
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.io_threads = 3;
  options.hooks = &hooks;
  Server server(options, &replica_);
  ASSERT_TRUE(server.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return hooks.attached().size() == 3; }));
  EXPECT_TRUE(hooks.detached().empty());

  membership_ = std::make_unique<cluster::Membership>(
      std::vector<std::pair<std::string, std::string>>{{"self", "127.0.0.1:1"},
                                                       {"hooked", server.BoundAddress()}},
      "self");
  MakeClient();
  Outcome held;
  Write("hooked", "hold-over-stop", MakeRecord(1, "1"), 30000, &held);
  ASSERT_TRUE(WaitFor([&] { return replica_.held() == 1; }));
  std::thread stopper([&] { server.Stop(); });
  // The held request is answered during the drain, before any Detach.
  replica_.ReleaseHeld();
  stopper.join();
  ASSERT_TRUE(held.Wait());
  EXPECT_TRUE(held.Get().ok()) << held.Get().ToString();
  EXPECT_EQ(hooks.held_at_detach(), 0u);
  const auto attached = hooks.attached();
  const auto detached = hooks.detached();
  ASSERT_EQ(detached.size(), 3u);
  for (const auto& [index, id] : attached) {
    EXPECT_NE(id, std::this_thread::get_id());
    EXPECT_EQ(detached.at(index), id) << "I/O thread " << index;
  }
}

class PeerClientTlsTest : public PeerClientTest {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<testutil::TestCa>(dir_.path(), "ca");
    other_ = std::make_unique<testutil::TestCa>(dir_.path(), "other");
    ASSERT_TRUE(ca_->ok() && other_->ok()) << "openssl is needed";
    node_ = ca_->Issue("srv");
    stranger_ = other_->Issue("stranger");
    ASSERT_FALSE(node_.cert.empty());
    ASSERT_FALSE(stranger_.cert.empty());
    ASSERT_TRUE(TlsContext::Make({node_.cert, node_.key, ca_->cert()}, &server_tls_).ok());
    StartServer(milliseconds(5000), server_tls_);
  }

  std::shared_ptr<TlsContext> ClientTls(const testutil::CertFiles& files, const std::string& ca) {
    std::shared_ptr<TlsContext> tls;
    Status s = TlsContext::Make({files.cert, files.key, ca}, &tls);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return tls;
  }

  testutil::ScopedTempDir dir_{"ringkv-peer-tls"};
  std::unique_ptr<testutil::TestCa> ca_, other_;
  testutil::CertFiles node_, stranger_;
  std::shared_ptr<TlsContext> server_tls_;
};

TEST_F(PeerClientTlsTest, VerifiedTlsAndHandshakeBeforeRequests) {
  PeerClientOptions options;
  options.tls = ClientTls(node_, ca_->cert());
  std::atomic<int> handshakes{0};
  options.handshake = [&handshakes](const std::string& peer) -> std::unique_ptr<PeerHandshake> {
    EXPECT_EQ(peer, "srv");
    handshakes.fetch_add(1);
    return std::make_unique<PingHandshake>(false);
  };
  MakeClient(options);
  Outcome wrote;
  Write("srv", "k", MakeRecord(7, "1"), 2000, &wrote);
  ASSERT_TRUE(wrote.Wait());
  ASSERT_TRUE(wrote.Get().ok()) << wrote.Get().ToString();
  Outcome read;
  Read("srv", "k", 2000, &read);
  ASSERT_TRUE(read.Wait());
  ASSERT_TRUE(read.Get().ok()) << read.Get().ToString();
  EXPECT_EQ(read.record.value, "1");
  EXPECT_GE(handshakes.load(), 1);
  // The handshake's request, the write and the read, all over verified TLS.
  EXPECT_GE(replica_.tls_requests_.load(), 3);
  EXPECT_EQ(replica_.verified_requests_.load(), replica_.tls_requests_.load());
}

TEST_F(PeerClientTlsTest, UntrustedServerCertificateKeepsThePeerOut) {
  PeerClientOptions options;
  options.tls = ClientTls(stranger_, other_->cert());  // trusts only the other CA
  MakeClient(options);
  Outcome wrote;
  Write("srv", "k", MakeRecord(7, "1"), 2000, &wrote);
  ASSERT_TRUE(wrote.Wait());
  EXPECT_EQ(wrote.Get().code(), Status::Code::kUnavailable);
  EXPECT_NE(wrote.Get().message().find("certificate verify failed"), std::string::npos)
      << wrote.Get().ToString();
  EXPECT_EQ(replica_.tls_requests_.load(), 0);
}

TEST_F(PeerClientTlsTest, UntrustedClientCertificateIsRefusedByTheServer) {
  PeerClientOptions options;
  options.tls =
      ClientTls(stranger_, ca_->cert());  // trusts the server; the server does not trust it
  MakeClient(options);
  Outcome wrote;
  Write("srv", "k", MakeRecord(7, "1"), 2000, &wrote);
  ASSERT_TRUE(wrote.Wait());
  EXPECT_EQ(wrote.Get().code(), Status::Code::kUnavailable) << wrote.Get().ToString();
  EXPECT_EQ(replica_.tls_requests_.load(), 0);
}

TEST_F(PeerClientTlsTest, FailedHandshakeFailsRequestsWithItsReason) {
  PeerClientOptions options;
  options.tls = ClientTls(node_, ca_->cert());
  options.handshake = [](const std::string&) { return std::make_unique<PingHandshake>(true); };
  MakeClient(options);
  Outcome wrote;
  Write("srv", "k", MakeRecord(7, "1"), 2000, &wrote);
  ASSERT_TRUE(wrote.Wait());
  EXPECT_EQ(wrote.Get().code(), Status::Code::kUnavailable);
  EXPECT_NE(wrote.Get().message().find("test handshake refuses"), std::string::npos)
      << wrote.Get().ToString();
  EXPECT_EQ(replica_.tls_requests_.load(), 0);
}

TEST_F(PeerClientTlsTest, PlaintextToATlsPortGetsTheRefusalLine) {
  MakeClient();  // no TLS
  Outcome wrote;
  Write("srv", "k", MakeRecord(7, "1"), 2000, &wrote);
  ASSERT_TRUE(wrote.Wait());
  EXPECT_FALSE(wrote.Get().ok());
  EXPECT_NE(wrote.Get().message().find("requires TLS"), std::string::npos)
      << wrote.Get().ToString();
  // The server goes on serving TLS peers.
  peers_->Stop();
  PeerClientOptions options;
  options.tls = ClientTls(node_, ca_->cert());
  MakeClient(options);
  Outcome again;
  Write("srv", "k", MakeRecord(8, "2"), 2000, &again);
  ASSERT_TRUE(again.Wait());
  EXPECT_TRUE(again.Get().ok()) << again.Get().ToString();
}

}  // namespace
}  // namespace ringkv::net
