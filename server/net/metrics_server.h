// MetricsServer: kvd's HTTP endpoint for monitoring (--metrics-listen).
//
//   GET /metrics  200, the node's metrics in the Prometheus text exposition
//                 format (Content-Type: text/plain; version=0.0.4; charset=utf-8)
//   GET /health   200 "ok\n" while the node serves clients, 503 "unavailable\n"
//                 while it does not (starting up or shutting down)
//   other paths   404;  other methods on these paths: 405 (Allow: GET, HEAD)
//   HEAD          as GET, without the body
//
// A deliberately minimal HTTP/1.1 server: one request per connection, answered
// with "Connection: close" and then closed. The request head (request line and
// headers) must arrive within `read_timeout` and fit in `max_header_bytes`
// (else 431, or 400 if it is malformed); a request body is ignored. The
// response must be taken by the client within `write_timeout`.
//
// It runs on its own io_context and thread, so a slow or hostile scraper
// never delays client traffic; the text and health functions are called on
// that thread.
//
// Lifecycle:
//   MetricsServer metrics(options, text_fn, health_fn);
//   metrics.Start();   // binds (port 0 = kernel's choice) and serves
//   ...
//   metrics.Stop();    // closes the listener and every connection, joins
//
// Thread-safety: Start() and Stop() must be called from one thread, not the
// server's own. port() and BoundAddress() are safe from any thread after
// Start() succeeded.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>

#include "engine/status.h"

namespace ringkv::net {

struct MetricsServerOptions {
  // "HOST:PORT" to listen on; HOST is an IP address, "[v6 address]" or a
  // name; PORT 0 lets the kernel choose.
  std::string listen = "127.0.0.1:9700";
  // The request line and headers, "\r\n\r\n" included, may be at most this
  // long; a longer head is answered 431. Default: 8 KiB.
  size_t max_header_bytes = 8 * 1024;
  // How long a client has, from connecting, to send its request head.
  // Default: 5 s.
  std::chrono::milliseconds read_timeout{5000};
  // How long a client has to take the response. Default: 5 s.
  std::chrono::milliseconds write_timeout{5000};
  // Connections served at once; further ones are closed on accept.
  // Default: 64.
  size_t max_connections = 64;
};

class MetricsServer {
 public:
  // The body of GET /metrics.
  using TextFunction = std::function<std::string()>;
  // Whether the node serves (GET /health: 200 if true, 503 if false).
  using HealthFunction = std::function<bool()>;

  // REQUIRES: `text` and `healthy` may be called until Stop() returns.
  MetricsServer(MetricsServerOptions options, TextFunction text, HealthFunction healthy);
  // Stops the server if it is running.
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // OK if `address` has the form HOST:PORT with a port in 0..65535 (the host
  // is not resolved); otherwise BadRequest saying what is wrong.
  static Status CheckAddress(std::string_view address);

  // Resolves, binds (SO_REUSEADDR), listens and starts serving on the
  // server's thread. BadRequest if `listen` is malformed or cannot be
  // resolved, Internal naming the address and the reason if it cannot be
  // bound (in use, not local, ...). REQUIRES: called at most once.
  Status Start();

  // Closes the listener and every open connection and joins the thread.
  // Idempotent.
  void Stop();

  // The bound port. REQUIRES: Start() succeeded.
  uint16_t port() const { return port_; }

  // "HOST:PORT" with HOST as given in `listen` and the bound port.
  // REQUIRES: Start() succeeded.
  std::string BoundAddress() const;

 private:
  class Connection;

  void Run();
  void DoAccept();
  void OnAccept(const std::error_code& ec, asio::ip::tcp::socket socket);
  void CloseAll();
  void Forget(const std::shared_ptr<Connection>& connection);

  const MetricsServerOptions options_;
  const TextFunction text_;
  const HealthFunction healthy_;

  // Declared first so that it is destroyed last: the handlers it may still
  // hold own connections whose sockets need it.
  asio::io_context io_{1};
  asio::ip::tcp::acceptor acceptor_{io_};
  asio::steady_timer accept_retry_timer_{io_};
  // The open connections; used on the server's thread only.
  std::unordered_set<std::shared_ptr<Connection>> connections_;
  std::thread thread_;

  std::string host_;   // as given in options_.listen
  uint16_t port_ = 0;  // bound port
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace ringkv::net
