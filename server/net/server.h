// Server: kvd's TCP listener. Accepts connections and runs one Session per
// connection on one of `io_threads` io_contexts, each run by one thread of
// its own.
//
// Lifecycle:
//   Server server(options, &handler);
//   server.Listen();     // binds; port() is known (port 0 = kernel's choice)
//   server.Start();      // runs the I/O threads and accepts connections
//   ...
//   server.Stop();       // stops accepting, drains sessions, joins threads
//
// Start() alone also binds if Listen() was not called. Connections that
// arrive between Listen() and Start() wait in the kernel's backlog, so a
// caller can finish getting ready (e.g. learn its address) before serving.
//
// Connection limit (PROTOCOL.md §8 "Overload"): a connection accepted while
// `max_connections` are open gets exactly one response line,
// {"ok":false,"error":{"code":"overloaded",...}}, and is closed: the server
// sends it, shuts down its sending side, discards whatever the client sends
// until the client closes or kRefusalLinger passes, and then closes (closing
// with unread input would make the kernel reset the connection, which can
// destroy the line before the client reads it). At most kMaxLingering
// refusals linger at once; beyond that the line is sent and the socket closed
// at once.
//
// Thread-safety: Listen(), Start() and Stop() must be called from one thread
// that is not an I/O thread of this server (Stop() joins them). port(),
// BoundAddress() and SessionCount() are safe from any thread after Listen().
#pragma once

#include <asio/basic_socket_acceptor.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/status.h"
#include "server/connection_stats.h"
#include "server/net/session.h"
#include "server/net/tls.h"
#include "server/request_handler.h"

namespace ringkv::net {

// Work that lives on every I/O thread beside its sessions (the per-thread
// peer clients of server/net/peer_transport.h).
class IoThreadHooks {
 public:
  virtual ~IoThreadHooks() = default;
  // On I/O thread `index` (0 .. io_threads - 1), before it runs anything.
  virtual void Attach(size_t index, asio::io_context& io) = 0;
  // On I/O thread `index`, once Stop() has drained the sessions (or given up
  // on them) and before the thread's loop stops: the last handler that is
  // sure to run there, to finish or fail what the thread still holds. Once
  // per Attach().
  virtual void Detach(size_t index) = 0;
};

struct ServerOptions {
  // "HOST:PORT" to listen on; HOST is an IP address, "[v6 address]" or a
  // name; PORT 0 lets the kernel choose. Default: 127.0.0.1:7700.
  std::string listen = "127.0.0.1:7700";
  // Threads running the io_context. Default: 2.
  int io_threads = 2;
  // Framing limits and backpressure of each connection.
  SessionOptions session;
  // How long Stop() waits for connections to answer their in-flight requests
  // and flush before closing them regardless. Default: 5 s.
  std::chrono::milliseconds drain_timeout{5000};
  // Connections served at once; more are refused with `overloaded`.
  // Default: 10000.
  size_t max_connections = 10000;
  // Where the server keeps its connection counts; null for none.
  // REQUIRES: outlives the server's I/O (until Stop() returns).
  ConnectionStats* stats = nullptr;
  // TLS for every connection (PROTOCOL.md §11); null for plaintext. Each
  // new connection takes the context current then (SIGHUP reloads it).
  std::shared_ptr<TlsContext> tls;
  // A TLS handshake not done by then closes the connection. Default: 10 s.
  std::chrono::milliseconds tls_handshake_timeout{10000};
  // Called on every I/O thread as it starts and stops; null for none.
  // REQUIRES: outlives the server's I/O (until Stop() returns).
  IoThreadHooks* hooks = nullptr;
};

class Server {
 public:
  // REQUIRES: `handler` outlives the Server's I/O (until Stop() returns).
  // `done` callbacks may be invoked or destroyed at any time, even after the
  // Server is destroyed, except concurrently with ~Server.
  Server(ServerOptions options, RequestHandler* handler);
  // Stops the server if it is running.
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Resolves, binds (SO_REUSEADDR) and listens. BadRequest if `listen` is
  // malformed, Internal naming the address and the reason if it cannot be
  // bound (in use, not local, ...).
  Status Listen();

  // Listen()s if not yet done, then starts the I/O threads and accepting.
  // Returns the Listen() error, if any.
  Status Start();

  // Graceful stop: closes the listener, asks every session to stop reading,
  // waits up to `drain_timeout` for in-flight requests to be answered and
  // flushed, closes what remains, runs the hooks' Detach() on every I/O
  // thread, and joins the I/O threads. Idempotent.
  void Stop();

  // The bound port. REQUIRES: Listen() succeeded.
  uint16_t port() const { return port_; }

  // "HOST:PORT" with HOST as given in `listen` and the bound port: the address
  // to advertise and to write into port files. REQUIRES: Listen() succeeded.
  std::string BoundAddress() const;

  // Connections currently open.
  size_t SessionCount() const;

 private:
  using Acceptor = asio::basic_socket_acceptor<asio::ip::tcp, IoExecutor>;

  void RunIoThread(size_t index, asio::io_context* io);
  void DetachHooks();
  void DoAccept();
  void OnAccept(const std::error_code& ec, Socket socket);
  void ServeOrLog(Socket socket);
  void Serve(Socket socket);
  void Refuse(Socket socket);
  void RetryAcceptLater();
  void CloseAcceptor();
  void OnSessionClosed(Session* session);
  std::vector<std::shared_ptr<Session>> LiveSessions() const;
  bool WaitForSessions(std::chrono::steady_clock::time_point deadline);

  const ServerOptions options_;
  RequestHandler* const handler_;
  const std::string overloaded_line_;    // the refusal, "\n" included
  const std::string plaintext_refusal_;  // to a plaintext client on a TLS port, no "\n"

  // One io_context per I/O thread (concurrency hint 1: no internal locking
  // for its own thread's work), each session pinned to one of them: a
  // session's reads, handling and writes never hop threads. The acceptor runs
  // on the first. Declared first among the asio members so that they are
  // destroyed last: the handlers they still hold own sessions whose sockets
  // need them.
  std::vector<std::unique_ptr<asio::io_context>> ios_;
  IoExecutor accept_executor_;  // the first I/O thread's
  Acceptor acceptor_;
  Timer accept_retry_timer_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  size_t next_io_ = 0;  // round-robin over ios_; used on accept_executor_ only
  std::chrono::steady_clock::time_point next_refusal_log_{};  // accept_executor_ only

  std::string host_;   // as given in options_.listen, brackets kept for IPv6
  uint16_t port_ = 0;  // bound port
  bool listening_ = false;
  bool started_ = false;
  bool stopped_ = false;

  // mu_ protects the following.
  mutable std::mutex mu_;
  std::condition_variable sessions_changed_;
  // Owns every open session until it reports itself closed.
  std::unordered_map<Session*, std::shared_ptr<Session>> sessions_;
  bool stopping_ = false;  // no new sessions are registered

  // Refused connections still lingering (see "Connection limit").
  std::shared_ptr<std::atomic<size_t>> lingering_ = std::make_shared<std::atomic<size_t>>(0);
};

}  // namespace ringkv::net
