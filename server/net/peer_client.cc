#include "server/net/peer_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <asio/ip/address.hpp>
#include <asio/post.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <exception>
#include <utility>

#include "common/host_port.h"
#include "server/net/address.h"
#include "server/protocol.h"

namespace ringkv::net {
namespace {

using std::chrono::milliseconds;

// The target of each read; longer lines accumulate in Conn::partial.
constexpr size_t kReadBufferBytes = 32 * 1024;

// One write gathers queued requests up to about this many bytes.
constexpr size_t kMaxWriteBatchBytes = 1 << 20;

// A partial-line buffer that grew past this for one huge response is released
// afterwards instead of being kept for the life of the connection.
constexpr size_t kKeepCapacityBytes = 256 * 1024;

// Longest timeout honoured: keeps deadline arithmetic far from overflow.
constexpr uint64_t kMaxTimeoutMs = 24ULL * 3600 * 1000;

// Splits "HOST:PORT" ("[V6]:PORT" for IPv6 literals) into host, without
// brackets, and port text. False if malformed.
bool SplitHostPort(const std::string& address, std::string* host, std::string* port) {
  HostPort hp;
  if (!ParseHostPort(address, &hp).ok()) return false;
  *host = hp.host;
  *port = std::to_string(hp.port);
  return true;
}

// Runs a reply parser. One that throws (a reply of an unexpected shape) is a
// malformed reply, Internal, like one the parser rejects: the caller's `done`
// is called either way.
template <typename Parse>
Status ParseSafely(Parse&& parse) {
  try {
    return parse();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("malformed peer reply: ") + e.what());
  } catch (...) {
    return Status::Internal("malformed peer reply");
  }
}

// The peer went away (its process is not running): the connection was
// refused, reset or closed from its end.
bool IsGone(const std::error_code& ec) {
  return ec == asio::error::connection_refused || ec == asio::error::connection_reset ||
         ec == asio::error::eof || ec == asio::error::broken_pipe ||
         ec == asio::ssl::error::stream_truncated;  // TLS: closed without close_notify
}

// A handshake failure is logged at most this often per peer.
constexpr auto kHandshakeLogInterval = std::chrono::minutes(1);

}  // namespace

// A connection's TLS stream over its socket, with the context it was made
// with. Completion handlers hold it, so that an operation still pending when
// the connection closes never outlives the stream it runs on.
struct TlsStream {
  TlsStream(std::shared_ptr<asio::ssl::context> c, asio::ip::tcp::socket& socket)
      : context(std::move(c)), stream(socket, *context) {}
  std::shared_ptr<asio::ssl::context> context;
  asio::ssl::stream<asio::ip::tcp::socket&> stream;
};

// One request. Owned by its connection's FIFO until it leaves it (answered,
// dropped unsent, or failed with the connection); the deadline heap holds it
// weakly.
struct PeerClient::Call {
  RawDone done;      // moved out when the call finishes
  std::string line;  // the wire bytes, "\n" included, until sent
  size_t bytes = 0;  // reserved in Peer::pending_bytes until it leaves its FIFO
  Clock::time_point start;
  Clock::time_point deadline;
  milliseconds timeout{0};
  Conn* conn = nullptr;
  bool sent = false;      // in conn->inflight
  bool finished = false;  // `done` has been called
};

struct PeerClient::Conn {
  // kHandshaking: connected, TLS and/or the peer handshake under way.
  enum class State { kClosed, kConnecting, kHandshaking, kOpen };

  Conn(asio::io_context& io, Peer* p) : peer(p), socket(io), resolver(io) {}

  size_t outstanding() const { return unsent.size() + inflight.size(); }

  Peer* const peer;
  asio::ip::tcp::socket socket;
  asio::ip::tcp::resolver resolver;
  State state = State::kClosed;
  // Bumped whenever the connection closes or starts connecting, so that
  // completions of an earlier incarnation are recognised and ignored.
  uint64_t gen = 0;
  Clock::time_point connect_deadline;
  // Invariant: both are empty while kClosed.
  std::deque<std::shared_ptr<Call>> unsent;    // queued, not yet written
  std::deque<std::shared_ptr<Call>> inflight;  // written, in response order
  size_t abandoned = 0;                        // finished calls in `inflight`
  bool writing = false;
  bool flush_posted = false;  // a ScheduleFlush() is queued
  std::shared_ptr<std::vector<char>> read_buf;
  std::string partial;                       // an incomplete response line
  std::shared_ptr<TlsStream> tls;            // null for plaintext
  std::unique_ptr<PeerHandshake> handshake;  // while kHandshaking
};

struct PeerClient::Peer {
  enum class Link { kUnknown, kUp, kDown };  // for logging state changes

  std::string id;
  std::string address;
  std::vector<std::unique_ptr<Conn>> conns;
  // Bytes of the request lines accepted for this peer and not finished with:
  // reserved by Submit() on any thread (so the bound holds before anything is
  // queued), released on the I/O thread when a request leaves its FIFO or
  // fails before reaching one.
  std::atomic<size_t> pending_bytes{0};
  // After a failed connect, requests fail at once until retry_at.
  Clock::time_point retry_at{};
  milliseconds backoff{0};
  Status backoff_status;
  bool backoff_refused = false;
  Link link = Link::kUnknown;
  // A connection to the peer stalled and the peer has not answered since:
  // further stalls (while it stays frozen) are not logged again.
  bool stalled = false;
  std::chrono::steady_clock::time_point next_handshake_log{};
};

namespace {

std::vector<std::pair<std::string, std::string>> PeersOf(const cluster::Membership* membership) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& id : membership->Peers()) out.emplace_back(id, membership->AddressOf(id));
  return out;
}

}  // namespace

PeerClient::PeerClient(PeerClientOptions options, const cluster::Membership* membership,
                       std::string self, std::string fingerprint)
    : PeerClient(std::move(options), PeersOf(membership), std::move(self),
                 std::move(fingerprint)) {}

PeerClient::PeerClient(PeerClientOptions options,
                       const std::vector<std::pair<std::string, std::string>>& peers,
                       std::string self, std::string fingerprint)
    : options_(std::move(options)),
      self_(std::move(self)),
      fingerprint_(std::move(fingerprint)),
      own_io_(options_.io == nullptr ? std::make_unique<asio::io_context>() : nullptr),
      io_(options_.io == nullptr ? *own_io_ : *options_.io),
      sweep_timer_(io_) {
  if (own_io_ != nullptr) work_.emplace(io_.get_executor());
  for (const auto& [id, address] : peers) AddPeer(id, address);
}

void PeerClient::AddPeer(const std::string& id, const std::string& address) {
  std::unique_lock<std::shared_mutex> lock(peers_mu_);
  if (peers_.count(id) > 0) return;
  auto peer = std::make_unique<Peer>();
  peer->id = id;
  peer->address = address;
  peer->backoff = options_.backoff_min;
  const int per_peer = std::max(1, options_.connections_per_peer);
  for (int i = 0; i < per_peer; ++i) {
    peer->conns.push_back(std::make_unique<Conn>(io_, peer.get()));
  }
  peers_.emplace(id, std::move(peer));
}

std::vector<PeerClient::Peer*> PeerClient::PeerList() {
  std::shared_lock<std::shared_mutex> lock(peers_mu_);
  std::vector<Peer*> out;
  for (const auto& [id, peer] : peers_) out.push_back(peer.get());
  return out;
}

PeerClient::~PeerClient() { Stop(); }

void PeerClient::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_ || stopped_) return;
    started_ = true;
  }
  if (own_io_ != nullptr) thread_ = std::thread([this] { RunIoThread(); });
}

void PeerClient::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (own_io_ == nullptr) {
    // On the io_context's thread (or with none running it): what is queued
    // there and still arrives fails once it runs, as shut_ says.
    return Shutdown();
  }
  asio::post(io_, [this] { Shutdown(); });
  work_.reset();
  if (thread_.joinable()) {
    thread_.join();
  } else {
    // Never started: run what was posted here, failing it.
    io_.restart();
    RunIoThread();
  }
}

void PeerClient::RunIoThread() { RunIoContext(io_, "[peer]"); }

// ---- Requests ----

void PeerClient::Write(const std::string& node, const std::string& key, const Record& record,
                       cluster::Epoch epoch, uint64_t timeout_ms, WriteDone done) {
  Submit(node, EncodePeerWrite(key, record, epoch.value), timeout_ms,
         [done = std::move(done)](Status s, bool /*refused*/, std::string_view line) {
           if (s.ok()) s = ParseSafely([line] { return ParsePeerWriteReply(line); });
           done(std::move(s));
         });
}

void PeerClient::Read(const std::string& node, const std::string& key, cluster::Epoch epoch,
                      uint64_t timeout_ms, ReadDone done) {
  Submit(node, EncodePeerRead(key, epoch.value), timeout_ms,
         [done = std::move(done)](Status s, bool /*refused*/, std::string_view line) {
           if (!s.ok()) return done(std::move(s), Record());
           Record record;
           Status parsed =
               ParseSafely([line, &record] { return ParsePeerReadReply(line, &record); });
           if (!parsed.ok()) record = Record();
           done(std::move(parsed), std::move(record));
         });
}

void PeerClient::Hello(const std::string& node, uint64_t timeout_ms, HelloDone done) {
  const uint64_t epoch = epoch_source_ ? epoch_source_() : 0;
  Submit(node,
         EncodePeerHello(self_, fingerprint_, hlc_ != nullptr ? hlc_->Now() : 0, dir_id_, epoch),
         timeout_ms,
         [this, node, done = std::move(done)](Status s, bool refused, std::string_view line) {
           if (!s.ok()) return done(std::move(s), refused);
           bool changed = false;
           uint64_t their_epoch = 0;
           Status parsed = ParseSafely([line, &changed, &their_epoch] {
             return ParsePeerHelloReply(line, &changed, &their_epoch);
           });
           if (parsed.ok() && hello_listener_) hello_listener_(node, changed, their_epoch);
           done(std::move(parsed), false);
         });
}

void PeerClient::Send(const std::string& node, std::string line, uint64_t timeout_ms,
                      SendDone done) {
  Submit(node, std::move(line), timeout_ms,
         [done = std::move(done)](Status s, bool /*refused*/, std::string_view reply) {
           done(std::move(s), reply);
         });
}

// Reserves `bytes` of the peer's bound; false (nothing reserved) if they do
// not fit.
bool PeerClient::Reserve(Peer* peer, size_t bytes) const {
  size_t pending = peer->pending_bytes.load(std::memory_order_relaxed);
  do {
    if (bytes > options_.max_pending_bytes_per_peer ||
        pending > options_.max_pending_bytes_per_peer - bytes) {
      return false;
    }
  } while (!peer->pending_bytes.compare_exchange_weak(pending, pending + bytes,
                                                      std::memory_order_relaxed));
  return true;
}

void PeerClient::Submit(const std::string& node, std::string line, uint64_t timeout_ms,
                        RawDone done) {
  line += '\n';
  // Peers are added, never removed: a Peer* stays valid.
  Peer* peer = nullptr;
  {
    std::shared_lock<std::shared_mutex> lock(peers_mu_);
    const auto it = peers_.find(node);
    if (it != peers_.end()) peer = it->second.get();
  }
  if (peer == nullptr) {
    return Deliver(done, Status::Unavailable("unknown node '" + node + "'"), false, {});
  }
  const size_t bytes = line.size();
  if (!Reserve(peer, bytes)) {
    return Deliver(done, Status::Unavailable("too many requests pending for node " + node), false,
                   {});
  }
  if (own_io_ == nullptr && io_.get_executor().running_in_this_thread()) {
    // On the thread that runs the client: no hand-off. Stop() runs on this
    // thread too, so stopped_ cannot change under us.
    bool stopped = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped = stopped_;
    }
    if (!stopped) return StartCall(peer, std::move(line), timeout_ms, std::move(done));
  } else {
    // Posting under the lock orders every accepted request before the
    // Shutdown() that Stop() posts, so none is left unanswered.
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopped_) {
      asio::post(
          io_, [this, peer, line = std::move(line), timeout_ms, done = std::move(done)]() mutable {
            StartCall(peer, std::move(line), timeout_ms, std::move(done));
          });
      return;
    }
  }
  peer->pending_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  Deliver(done, Status::Unavailable("shutting down"), false, {});
}

// `line`'s bytes are reserved in peer->pending_bytes.
void PeerClient::StartCall(Peer* peer, std::string line, uint64_t timeout_ms, RawDone done) {
  const auto now = Clock::now();
  if (shut_ || now < peer->retry_at) {
    peer->pending_bytes.fetch_sub(line.size(), std::memory_order_relaxed);
    if (shut_) return Deliver(done, Status::Unavailable("shutting down"), false, {});
    return Deliver(done, peer->backoff_status, peer->backoff_refused, {});
  }

  if (timeout_ms == 0) timeout_ms = options_.default_timeout_ms;
  timeout_ms = std::clamp<uint64_t>(timeout_ms, 1, kMaxTimeoutMs);
  // Not make_shared: the deadline heap's weak_ptr would keep the whole Call
  // allocated until its deadline, instead of only the control block.
  std::shared_ptr<Call> call(new Call);
  call->done = std::move(done);
  call->bytes = line.size();
  call->line = std::move(line);
  call->start = now;
  call->timeout = milliseconds(timeout_ms);
  call->deadline = now + call->timeout;
  Conn* conn = PickConn(peer);
  call->conn = conn;
  deadlines_.push({call->deadline, call});
  conn->unsent.push_back(std::move(call));
  ArmSweep();
  if (conn->state == Conn::State::kClosed) {
    Connect(conn);
  } else {
    ScheduleFlush(conn);
  }
}

void PeerClient::ScheduleFlush(Conn* conn) {
  if (conn->flush_posted || conn->writing) return;  // a write's completion flushes too
  conn->flush_posted = true;
  asio::post(io_, [this, conn, gen = conn->gen] {
    if (gen != conn->gen) return;  // closed meanwhile: CloseConn reset the flag
    conn->flush_posted = false;
    Flush(conn);
  });
}

// The connection with the fewest requests outstanding; among equals, one that
// is open or opening, so that idle connections are opened only under load.
PeerClient::Conn* PeerClient::PickConn(Peer* peer) {
  Conn* best = nullptr;
  for (const auto& conn : peer->conns) {
    if (best == nullptr || conn->outstanding() < best->outstanding() ||
        (conn->outstanding() == best->outstanding() && best->state == Conn::State::kClosed &&
         conn->state != Conn::State::kClosed)) {
      best = conn.get();
    }
  }
  return best;
}

void PeerClient::Finish(Call* call, Status status, bool refused, std::string_view line) {
  if (call->finished) return;
  call->finished = true;
  RawDone done = std::move(call->done);
  call->done = nullptr;
  Deliver(done, std::move(status), refused, line);
}

// Every callback is called through here: an exception it lets out is logged,
// never thrown into the I/O loop or the caller of Write()/Read()/Hello().
void PeerClient::Deliver(const RawDone& done, Status status, bool refused, std::string_view line) {
  try {
    done(std::move(status), refused, line);
  } catch (const std::exception& e) {
    spdlog::error("[peer] a request callback threw: {}", e.what());
  } catch (...) {
    spdlog::error("[peer] a request callback threw");
  }
}

// ---- Connecting ----

void PeerClient::Connect(Conn* conn) {
  conn->state = Conn::State::kConnecting;
  const uint64_t gen = ++conn->gen;
  conn->connect_deadline = Clock::now() + options_.connect_timeout;
  std::string host;
  std::string port;
  if (!SplitHostPort(conn->peer->address, &host, &port)) {
    return ConnectFailed(conn, "address '" + conn->peer->address + "' is not HOST:PORT", false);
  }
  std::error_code ec;
  const asio::ip::address literal = asio::ip::make_address(host, ec);
  if (!ec) {
    const asio::ip::tcp::endpoint endpoint(literal, static_cast<uint16_t>(std::stoul(port)));
    conn->socket.async_connect(
        endpoint, [this, conn, gen](const std::error_code& e) { OnConnected(conn, gen, e); });
    return;
  }
  conn->resolver.async_resolve(
      host, port,
      [this, conn, gen](const std::error_code& e, asio::ip::tcp::resolver::results_type results) {
        if (gen != conn->gen || shut_) return;
        if (e || results.empty()) {
          return ConnectFailed(conn, "cannot resolve: " + (e ? e.message() : "no addresses"),
                               false);
        }
        // Prefer IPv4, as the server does when it listens on a name.
        auto chosen = results.begin();
        for (auto it = results.begin(); it != results.end(); ++it) {
          if (it->endpoint().address().is_v4()) {
            chosen = it;
            break;
          }
        }
        conn->socket.async_connect(
            chosen->endpoint(),
            [this, conn, gen](const std::error_code& e2) { OnConnected(conn, gen, e2); });
      });
}

void PeerClient::OnConnected(Conn* conn, uint64_t gen, const std::error_code& ec) {
  if (gen != conn->gen || shut_) return;
  if (ec) return ConnectFailed(conn, ec.message(), ec == asio::error::connection_refused);
  std::error_code ignored;
  conn->socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  conn->partial.clear();
  if (options_.tls == nullptr) return StartHandshake(conn);
  conn->state = Conn::State::kHandshaking;
  conn->connect_deadline = Clock::now() + options_.connect_timeout;
  conn->tls = std::make_shared<TlsStream>(options_.tls->client(), conn->socket);
  conn->tls->stream.async_handshake(
      asio::ssl::stream_base::client, [this, conn, gen, tls = conn->tls](const std::error_code& e) {
        if (gen != conn->gen || shut_) return;
        if (e) {
          std::string reason = "TLS handshake failed: " + e.message();
          const long verify = SSL_get_verify_result(tls->stream.native_handle());
          if (verify != X509_V_OK) {
            reason += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
          }
          return HandshakeFailed(conn, reason);
        }
        StartHandshake(conn);
      });
}

// After TCP (and TLS): the peer handshake if there is one, then requests.
void PeerClient::StartHandshake(Conn* conn) {
  if (options_.handshake) conn->handshake = options_.handshake(conn->peer->id);
  if (conn->handshake == nullptr) return Opened(conn);
  conn->state = Conn::State::kHandshaking;
  conn->connect_deadline = Clock::now() + options_.connect_timeout;
  BeginReading(conn);
  std::string send;
  Status s = conn->handshake->Step(nullptr, &send);
  if (!s.ok()) return HandshakeFailed(conn, s.message());
  if (send.empty()) return Opened(conn);
  WriteHandshake(conn, std::move(send));
}

// A reply during the handshake. False if the connection had to be closed.
bool PeerClient::HandshakeReply(Conn* conn, std::string_view line) {
  const std::string reply(line);
  std::string send;
  Status s = conn->handshake->Step(&reply, &send);
  if (!s.ok()) {
    HandshakeFailed(conn, s.message());
    return false;
  }
  if (send.empty()) {
    Opened(conn);
  } else {
    WriteHandshake(conn, std::move(send));
  }
  return true;
}

void PeerClient::WriteHandshake(Conn* conn, std::string line) {
  auto buf = std::make_shared<std::string>(std::move(line));
  buf->push_back('\n');
  conn->writing = true;
  AsyncWrite(conn, buf, [this, conn, gen = conn->gen](const std::error_code& ec, size_t) {
    if (gen != conn->gen) return;
    conn->writing = false;
    if (ec) return HandshakeFailed(conn, "connection lost during the handshake: " + ec.message());
    Flush(conn);  // the handshake may have completed meanwhile
  });
}

void PeerClient::HandshakeFailed(Conn* conn, const std::string& reason) {
  Peer* peer = conn->peer;
  const auto now = Clock::now();
  if (now >= peer->next_handshake_log) {
    peer->next_handshake_log = now + kHandshakeLogInterval;
    spdlog::warn("[peer] {} at {} kept out: {}", peer->id, peer->address, reason);
    peer->link = Peer::Link::kDown;  // ConnectFailed need not log it again
  }
  ConnectFailed(conn, reason, false);
}

void PeerClient::Opened(Conn* conn) {
  conn->state = Conn::State::kOpen;
  conn->handshake.reset();
  Peer* peer = conn->peer;
  peer->retry_at = {};
  peer->backoff = options_.backoff_min;
  if (peer->link != Peer::Link::kUp) {
    spdlog::info("[peer] connected to {} at {}{}", peer->id, peer->address,
                 conn->tls != nullptr ? " (TLS)" : "");
    peer->link = Peer::Link::kUp;
  }
  BeginReading(conn);
  Flush(conn);
}

void PeerClient::BeginReading(Conn* conn) {
  if (conn->read_buf != nullptr) return;
  conn->read_buf = std::make_shared<std::vector<char>>(kReadBufferBytes);
  DoRead(conn);
}

template <typename Handler>
void PeerClient::AsyncWrite(Conn* conn, const std::shared_ptr<std::string>& buf, Handler handler) {
  if (conn->tls != nullptr) {
    asio::async_write(conn->tls->stream, asio::buffer(*buf),
                      [tls = conn->tls, buf, handler = std::move(handler)](
                          const std::error_code& ec, size_t n) mutable { handler(ec, n); });
  } else {
    asio::async_write(conn->socket, asio::buffer(*buf),
                      [buf, handler = std::move(handler)](const std::error_code& ec,
                                                          size_t n) mutable { handler(ec, n); });
  }
}

void PeerClient::ConnectFailed(Conn* conn, const std::string& reason, bool refused) {
  Peer* peer = conn->peer;
  const Status status =
      refused ? Status::Unavailable("connection refused by " + peer->id + " at " + peer->address)
              : Status::Unavailable("cannot connect to " + peer->id + " at " + peer->address +
                                    ": " + reason);
  const auto now = Clock::now();
  if (now >= peer->retry_at) {  // not already in backoff (the pool's other connection)
    peer->retry_at = now + peer->backoff;
    peer->backoff = std::min(peer->backoff * 2, options_.backoff_max);
  }
  peer->backoff_status = status;
  peer->backoff_refused = refused;
  if (peer->link != Peer::Link::kDown) {
    spdlog::warn("[peer] cannot connect to {} at {}: {}; retrying with backoff", peer->id,
                 peer->address, reason);
    peer->link = Peer::Link::kDown;
  }
  CloseConn(conn, status, refused);
}

// ---- Writing ----

void PeerClient::Flush(Conn* conn) {
  if (conn->writing || conn->state != Conn::State::kOpen) return;
  auto buf = std::make_shared<std::string>();
  while (!conn->unsent.empty() && buf->size() < kMaxWriteBatchBytes) {
    std::shared_ptr<Call> call = std::move(conn->unsent.front());
    conn->unsent.pop_front();
    if (call->finished) {  // timed out before it could be sent
      conn->peer->pending_bytes.fetch_sub(call->bytes, std::memory_order_relaxed);
      continue;
    }
    if (buf->empty()) {
      buf->swap(call->line);
    } else {
      buf->append(call->line);
    }
    std::string().swap(call->line);
    call->sent = true;
    conn->inflight.push_back(std::move(call));
  }
  if (buf->empty()) return;
  conn->writing = true;
  AsyncWrite(conn, buf, [this, conn, gen = conn->gen](const std::error_code& ec, size_t) {
    if (gen != conn->gen) return;
    conn->writing = false;
    if (ec) {
      spdlog::info("[peer] connection to {} lost: {}", conn->peer->id, ec.message());
      conn->peer->link = Peer::Link::kUnknown;
      return CloseConn(
          conn, Status::Unavailable("connection to " + conn->peer->id + " lost: " + ec.message()),
          IsGone(ec));
    }
    Flush(conn);
  });
}

// ---- Reading ----

void PeerClient::DoRead(Conn* conn) {
  auto buf = conn->read_buf;
  auto on_read = [this, conn, gen = conn->gen, buf](const std::error_code& ec, size_t n) {
    OnRead(conn, gen, ec, n);
  };
  if (conn->tls != nullptr) {
    conn->tls->stream.async_read_some(asio::buffer(*buf),
                                      [tls = conn->tls, on_read = std::move(on_read)](
                                          const std::error_code& ec, size_t n) { on_read(ec, n); });
  } else {
    conn->socket.async_read_some(asio::buffer(*buf), std::move(on_read));
  }
}

void PeerClient::OnRead(Conn* conn, uint64_t gen, const std::error_code& ec, size_t n) {
  if (gen != conn->gen) return;
  Peer* peer = conn->peer;
  if (ec) {
    const std::string reason = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated
                                   ? "closed by the peer"
                                   : ec.message();
    if (peer->link == Peer::Link::kUp) {
      spdlog::info("[peer] connection to {} lost: {}", peer->id, reason);
      peer->link = Peer::Link::kUnknown;
    }
    return CloseConn(conn, Status::Unavailable("connection to " + peer->id + " lost: " + reason),
                     IsGone(ec));
  }
  std::string_view data(conn->read_buf->data(), n);
  while (!data.empty()) {
    const size_t newline = data.find('\n');
    const size_t take = newline == std::string_view::npos ? data.size() : newline;
    if (conn->partial.size() + take > options_.max_response_bytes) {
      spdlog::warn("[peer] response from {} longer than {} bytes; reconnecting", peer->id,
                   options_.max_response_bytes);
      return CloseConn(conn, Status::Unavailable("oversized response from " + peer->id), false);
    }
    if (newline == std::string_view::npos) {
      conn->partial.append(data);
      break;
    }
    std::string_view line = data.substr(0, newline);
    data.remove_prefix(newline + 1);
    if (!conn->partial.empty()) {
      conn->partial.append(line);
      line = conn->partial;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool keep = line.empty() || TakeResponse(conn, line);
    if (!keep || gen != conn->gen) return;  // closed
    conn->partial.clear();
    if (conn->partial.capacity() > kKeepCapacityBytes) std::string().swap(conn->partial);
  }
  DoRead(conn);
}

// Matches `line` to the oldest request in flight. False if the connection had
// to be closed.
bool PeerClient::TakeResponse(Conn* conn, std::string_view line) {
  if (conn->state == Conn::State::kHandshaking) return HandshakeReply(conn, line);
  Peer* peer = conn->peer;
  if (conn->inflight.empty()) {
    spdlog::warn("[peer] unexpected response from {}; reconnecting", peer->id);
    CloseConn(conn, Status::Unavailable("unexpected response from " + peer->id), false);
    return false;
  }
  std::shared_ptr<Call> call = std::move(conn->inflight.front());
  conn->inflight.pop_front();
  peer->pending_bytes.fetch_sub(call->bytes, std::memory_order_relaxed);
  if (peer->stalled) {
    spdlog::info("[peer] {} answers again", peer->id);
    peer->stalled = false;
  }
  if (call->finished) {  // timed out: discard its late answer
    if (conn->abandoned > 0) --conn->abandoned;
    return true;
  }
  Finish(call.get(), Status::OK(), false, line);
  return true;
}

// ---- Closing, deadlines, shutdown ----

void PeerClient::CloseConn(Conn* conn, const Status& status, bool refused) {
  if (conn->state == Conn::State::kClosed) return;
  conn->state = Conn::State::kClosed;
  ++conn->gen;
  conn->writing = false;
  conn->flush_posted = false;
  conn->abandoned = 0;
  std::error_code ignored;
  conn->resolver.cancel();
  conn->socket.close(ignored);
  conn->tls.reset();  // pending operations hold it until they complete
  conn->handshake.reset();
  std::string().swap(conn->partial);
  conn->read_buf.reset();
  std::deque<std::shared_ptr<Call>> calls;
  calls.swap(conn->inflight);
  for (auto& call : conn->unsent) calls.push_back(std::move(call));
  conn->unsent.clear();
  for (const auto& call : calls) {
    conn->peer->pending_bytes.fetch_sub(call->bytes, std::memory_order_relaxed);
    Finish(call.get(), status, refused, {});
  }
}

void PeerClient::ArmSweep() {
  if (sweep_armed_ || shut_) return;
  sweep_armed_ = true;
  sweep_timer_.expires_after(options_.sweep_interval);
  sweep_timer_.async_wait([this](const std::error_code& ec) {
    sweep_armed_ = false;
    if (ec || shut_) return;
    Sweep();
  });
}

void PeerClient::Sweep() {
  const auto now = Clock::now();
  while (!deadlines_.empty() && deadlines_.top().deadline <= now) {
    std::shared_ptr<Call> call = deadlines_.top().call.lock();
    deadlines_.pop();
    if (call == nullptr || call->finished) continue;
    if (call->sent) ++call->conn->abandoned;
    Finish(call.get(),
           Status::Timeout("node " + call->conn->peer->id + " did not answer within " +
                           std::to_string(call->timeout.count()) + " ms"),
           false, {});
  }

  bool busy = !deadlines_.empty();
  for (Peer* peer : PeerList()) {
    const std::string& id = peer->id;
    for (const auto& owned : peer->conns) {
      Conn* conn = owned.get();
      if (conn->state == Conn::State::kConnecting || conn->state == Conn::State::kHandshaking) {
        if (now >= conn->connect_deadline) {
          if (conn->state == Conn::State::kHandshaking) {
            HandshakeFailed(conn, "the TLS or peer handshake timed out");
          } else {
            ConnectFailed(conn, "connect timed out", false);
          }
        } else {
          busy = true;
        }
      } else if (conn->state == Conn::State::kOpen && !conn->inflight.empty()) {
        const Call& oldest = *conn->inflight.front();
        const auto waited = now - oldest.start;
        if (waited > 2 * oldest.timeout ||
            conn->abandoned > options_.max_abandoned_per_connection) {
          if (!peer->stalled) {
            spdlog::warn(
                "[peer] connection to {} stalled ({} ms without an answer, {} requests "
                "abandoned); reconnecting",
                id, std::chrono::duration_cast<milliseconds>(waited).count(), conn->abandoned);
            peer->stalled = true;
          }
          CloseConn(conn, Status::Unavailable("connection to " + id + " stalled"), false);
        } else {
          busy = true;
        }
      }
    }
  }
  if (busy) ArmSweep();
}

void PeerClient::Shutdown() {
  shut_ = true;
  sweep_timer_.cancel();
  const Status status = Status::Unavailable("shutting down");
  for (Peer* peer : PeerList()) {
    for (const auto& conn : peer->conns) CloseConn(conn.get(), status, false);
  }
  deadlines_ = {};
}

}  // namespace ringkv::net
