// PeerClient: the ReplicaTransport that reaches other nodes over TCP.
//
// One PeerClient per kvd talks to every peer of the (static) membership. Peer
// traffic uses the client framing on the peers' client port (PROTOCOL.md §3):
// one JSON line per request, answered in request order on each connection.
// The JSON itself is only ever built and parsed by server/protocol.h
// (EncodePeer*/ParsePeer*Reply); this class moves lines.
//
// Connections: per peer, a small pool (`connections_per_peer`) of persistent
// TCP connections (TCP_NODELAY), opened on demand. Requests are pipelined: each
// connection keeps a FIFO of the requests it sent and matches every response
// line to the oldest one. A new request goes to the connection with the fewest
// requests outstanding.
//
// Timeouts: every request has a deadline. When it passes, the request's
// callback gets Timeout, but the request keeps its FIFO slot: its late answer
// is read and discarded. A connection whose oldest request is unanswered for
// more than twice its timeout, or that holds more than
// `max_abandoned_per_connection` timed-out requests, is considered stalled
// (a SIGSTOPped peer, say) and is closed; a later request reconnects.
//
// Failures: a connection error fails every request on that connection with
// Unavailable. A failed connect puts the peer in backoff (`backoff_min`,
// doubling up to `backoff_max`); during backoff requests to the peer fail at
// once with Unavailable ("connection refused" after a refused connect) rather
// than waiting. A peer with more than `max_pending_bytes_per_peer` of requests
// outstanding fails new requests with Unavailable, at once and inline: the
// bound is reserved by the submitting thread before anything is queued, so
// it also bounds requests not yet taken up by the client's thread.
//
// Replies: a reply that cannot be parsed (or whose parser throws) fails its
// request with Internal; the connection goes on with the next reply.
//
// Threading: by default the client owns one io_context run by one thread of
// its own (started by Start()), so peer I/O never waits behind client
// sessions. Write(), Read() and Hello() are thread-safe; they post to that
// thread. With PeerClientOptions::io the client runs instead on an
// io_context whose one thread someone else runs (a server I/O thread, see
// server/net/peer_transport.h): a request made on that thread starts at once,
// without a hand-off, and a failure known at once (backoff, a full bound) is
// then delivered inline.
// Callbacks run on the client's thread without any lock held, or inline in
// the calling thread when the client has been stopped. Each callback is called
// exactly once, and never from inside the call that submitted it unless the
// client is stopped, the node is unknown or the peer's bound is full.
// Exceptions thrown by a callback are logged and swallowed. Callbacks must
// not block for long: every peer's I/O waits for them.
//
// Lifecycle:
//   PeerClient peers(options, membership, self, fingerprint);
//   peers.Start();
//   ... Write / Read / Hello from any thread ...
//   peers.Stop();   // fails what is pending with Unavailable("shutting down")
// Start() and Stop() must be called from one thread that is not the client's
// own (so never from a callback). Requests made before Start() wait for it.
// Requests made after Stop() fail inline with Unavailable("shutting down").
// With PeerClientOptions::io, Stop() must be called on that io_context's
// thread, or when no thread runs it; it does its work at once (nothing is
// joined), and the client must be destroyed before the io_context, once no
// thread runs the io_context any more (its handlers refer to the client).
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/record.h"
#include "engine/status.h"
#include "engine/version.h"
#include "server/cluster/membership.h"
#include "server/cluster/transport.h"
#include "server/net/peer_handshake.h"
#include "server/net/tls.h"

namespace ringkv::net {

struct PeerClientOptions {
  // Run on this io_context (its owner runs it with one thread) rather than on
  // a thread of the client's own. Default: null, a thread of its own.
  asio::io_context* io = nullptr;
  // Persistent connections per peer. Default: 2.
  int connections_per_peer = 2;
  // The timeout of a request that passes timeout_ms == 0. Default: 2000.
  uint64_t default_timeout_ms = 2000;
  // Backoff after a failed connect: starts at min, doubles up to max.
  // Defaults: 50 ms, 1 s.
  std::chrono::milliseconds backoff_min{50};
  std::chrono::milliseconds backoff_max{1000};
  // A connect that has not completed by then fails. Default: 1 s.
  std::chrono::milliseconds connect_timeout{1000};
  // How often deadlines are checked while requests are outstanding; the
  // granularity of timeouts. Default: 5 ms.
  std::chrono::milliseconds sweep_interval{5};
  // Requests outstanding to one peer, in bytes of request lines, beyond which
  // new ones fail with Unavailable. Default: 64 MiB.
  size_t max_pending_bytes_per_peer = 64ULL << 20;
  // Timed-out requests still awaiting their answer on one connection beyond
  // which the connection is considered stalled and reopened. Default: 1024.
  size_t max_abandoned_per_connection = 1024;
  // The longest response line accepted; longer closes the connection.
  // Default: 256 MiB.
  size_t max_response_bytes = 256ULL << 20;
  // TLS to every peer (PROTOCOL.md §11); null for plaintext. Each new
  // connection takes the client context current then.
  std::shared_ptr<TlsContext> tls;
  // What each new connection says before any request (the cluster-secret
  // proof); empty for nothing. The connect timeout covers TLS and this too.
  PeerHandshakeFactory handshake;
};

class PeerClient final : public cluster::ReplicaTransport {
 public:
  // `refused`: the peer refused or reset the connection (it is not running),
  // as opposed to not answering in time or another failure.
  using HelloDone = std::function<void(Status, bool refused)>;

  // Peers are membership->Peers() with their AddressOf(), read once here.
  // `self` and `fingerprint` are what Hello() sends. REQUIRES: `membership`
  // outlives this constructor (it is not kept).
  PeerClient(PeerClientOptions options, const cluster::Membership* membership, std::string self,
             std::string fingerprint);
  // The same with the peers given as (id, "HOST:PORT") pairs.
  PeerClient(PeerClientOptions options,
             const std::vector<std::pair<std::string, std::string>>& peers, std::string self,
             std::string fingerprint);
  // Stops the client if it is running.
  ~PeerClient() override;

  PeerClient(const PeerClient&) = delete;
  PeerClient& operator=(const PeerClient&) = delete;

  // The hybrid clock whose timestamps Hello() carries, so that peers keep
  // their clocks past this node's. REQUIRES: set before Start(); outlives
  // the client. Without one, Hello() carries none.
  void SetHybridClock(HybridClock* hlc) { hlc_ = hlc; }

  // Starts the client's I/O thread. Idempotent; no-op after Stop().
  void Start();

  // Fails every pending request with Unavailable("shutting down") (each
  // callback exactly once), closes the connections and joins the thread.
  // Idempotent. REQUIRES: not called from a callback.
  void Stop();

  // ReplicaTransport. timeout_ms == 0 means options.default_timeout_ms.
  void Write(const std::string& node, const std::string& key, const Record& record,
             cluster::Epoch epoch, uint64_t timeout_ms, WriteDone done) override;
  void Read(const std::string& node, const std::string& key, cluster::Epoch epoch,
            uint64_t timeout_ms, ReadDone done) override;

  // A node to reach from now on (a member the cluster map added, or a
  // --join seed). Known ids are left as they are. Any thread.
  void AddPeer(const std::string& id, const std::string& address);
  // The cluster map epoch Hello() carries. Set before Start().
  void SetEpochSource(std::function<uint64_t()> source) { epoch_source_ = std::move(source); }

  // Sends _hello (this node's id and cluster fingerprint) to `node`: OK if the
  // node answered that it agrees, BadRequest (with the node's message) if it
  // answered that the clusters differ, or the transport failure.
  void Hello(const std::string& node, uint64_t timeout_ms, HelloDone done);

  // Sends any request line to `node` and hands back its response line (or
  // the transport failure): for messages with no method of their own (the
  // anti-entropy ones, server/net/remote_aae_replica.h). Same guarantees as
  // Write(); `line` is valid only during the callback.
  using SendDone = std::function<void(Status, std::string_view line)>;
  void Send(const std::string& node, std::string line, uint64_t timeout_ms, SendDone done);

  // The data dir identity Hello() sends, and the listener called (on the
  // client's thread) with every successful hello's answer to "did you know
  // me with another data dir" (_hello's "dir_changed": a lost disk). Set
  // before Start().
  void SetDataDirId(std::string dir) { dir_id_ = std::move(dir); }
  // `epoch`: the peer's cluster map epoch from its answer (0 if none).
  using HelloListener =
      std::function<void(const std::string& node, bool dir_changed, uint64_t epoch)>;
  void SetHelloListener(HelloListener listener) { hello_listener_ = std::move(listener); }

  const std::string& self() const { return self_; }
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  using Clock = std::chrono::steady_clock;
  // Status is OK when `line` is the peer's response; otherwise the transport
  // failure, with `refused` as in HelloDone.
  using RawDone = std::function<void(Status, bool refused, std::string_view line)>;

  struct Call;
  struct Conn;
  struct Peer;

  // Any thread: reserves the request's bytes and posts it to the I/O thread,
  // or fails it inline.
  void Submit(const std::string& node, std::string line, uint64_t timeout_ms, RawDone done);
  bool Reserve(Peer* peer, size_t bytes) const;
  std::vector<Peer*> PeerList();
  // Calls `done`, logging (not propagating) what it throws. Any thread.
  static void Deliver(const RawDone& done, Status status, bool refused, std::string_view line);

  // I/O thread only below.
  void StartCall(Peer* peer, std::string line, uint64_t timeout_ms, RawDone done);
  // Flushes `conn` once the requests ready now have all been queued, so that
  // one write carries every request of a wake-up.
  void ScheduleFlush(Conn* conn);
  void Finish(Call* call, Status status, bool refused, std::string_view line);
  Conn* PickConn(Peer* peer);
  void Connect(Conn* conn);
  void OnConnected(Conn* conn, uint64_t gen, const std::error_code& ec);
  void StartHandshake(Conn* conn);
  bool HandshakeReply(Conn* conn, std::string_view line);
  void WriteHandshake(Conn* conn, std::string line);
  void HandshakeFailed(Conn* conn, const std::string& reason);
  void Opened(Conn* conn);
  void BeginReading(Conn* conn);
  template <typename Handler>
  void AsyncWrite(Conn* conn, const std::shared_ptr<std::string>& buf, Handler handler);
  void ConnectFailed(Conn* conn, const std::string& reason, bool refused);
  void Flush(Conn* conn);
  void DoRead(Conn* conn);
  void OnRead(Conn* conn, uint64_t gen, const std::error_code& ec, size_t n);
  bool TakeResponse(Conn* conn, std::string_view line);
  void CloseConn(Conn* conn, const Status& status, bool refused);
  void ArmSweep();
  void Sweep();
  void Shutdown();
  void RunIoThread();

  const PeerClientOptions options_;
  const std::string self_;
  const std::string fingerprint_;
  HybridClock* hlc_ = nullptr;
  HelloListener hello_listener_;
  std::function<uint64_t()> epoch_source_;
  std::string dir_id_;

  // Declared first among the asio members so that it is destroyed last;
  // null when options_.io is given.
  std::unique_ptr<asio::io_context> own_io_;
  asio::io_context& io_;  // *own_io_ or *options_.io
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;

  // Peers are only ever added (under peers_mu_; any thread may look up); the
  // peers' state is the I/O thread's, but for Peer::pending_bytes.
  std::shared_mutex peers_mu_;
  std::map<std::string, std::unique_ptr<Peer>> peers_;

  // I/O thread only (after construction).
  asio::steady_timer sweep_timer_;
  bool sweep_armed_ = false;
  bool shut_ = false;  // Shutdown() ran: fail whatever still arrives
  // Deadlines of outstanding calls, earliest on top; entries of calls that
  // finished meanwhile are skipped when they come up.
  struct DeadlineEntry {
    Clock::time_point deadline;
    std::weak_ptr<Call> call;
    bool operator>(const DeadlineEntry& o) const { return deadline > o.deadline; }
  };
  std::priority_queue<DeadlineEntry, std::vector<DeadlineEntry>, std::greater<>> deadlines_;

  // mu_ protects the following.
  std::mutex mu_;
  bool started_ = false;
  bool stopped_ = false;  // no new requests are posted
};

}  // namespace ringkv::net
