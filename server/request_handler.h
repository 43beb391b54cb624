// RequestHandler: what a connection hands each request line to.
//
// The network layer (server/net/) frames lines and keeps responses in request
// order; everything about what a line means lives behind this interface, which
// contains no asio, so it can be unit-tested with plain strings.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace ringkv {

// What a connection has proved about itself: one per connection, made by the
// network layer, kept alive by shared_ptr while any of its requests is in
// flight. The network layer sets the transport facts once, before the first
// request; the handler keeps the authentication state.
//
// Thread-safety: the session hands a connection's lines to the handler one at
// a time, in order, from its strand. A handler that finishes a request on
// another thread and changes the state there (auth: the password hash is
// checked on a worker) calls HoldUntilAnswered() inside Handle(): the session
// then serves no further line of the connection until that request's
// response has arrived, so the next request sees the new state. The fields
// are atomics or guarded by that ordering.
struct Connection : std::enable_shared_from_this<Connection> {
  // ---- Set by the network layer before the first request ----
  std::string remote;              // "ip:port" of the other end, for logs
  bool tls = false;                // the connection runs over TLS
  bool tls_peer_verified = false;  // the other end presented a certificate that --tls-ca verified

  // ---- The handler's (server/security) ----
  // Role of the authenticated user (0 = none), as server/security/role.h numbers them.
  std::atomic<int> role{0};
  std::string user;                        // the authenticated user's name ("" = none)
  std::atomic<bool> peer{false};           // authenticated as a cluster member
  std::string peer_id;                     // which member (once `peer`)
  std::string challenge;                   // the nonce this node sent in _challenge ("" = none)
  std::atomic<uint32_t> auth_failures{0};  // failed auth attempts on this connection

  // Asks the session to serve no further line until this request is answered.
  // Call only inside RequestHandler::Handle().
  void HoldUntilAnswered() { hold_ = true; }
  // The network layer's: whether the request just handed over asked to hold.
  bool TakeHold() {
    bool h = hold_;
    hold_ = false;
    return h;
  }

 private:
  bool hold_ = false;
};

class RequestHandler {
 public:
  // Receives the response line (JSON, without the trailing newline).
  using Done = std::function<void(std::string response)>;

  virtual ~RequestHandler() = default;

  // Handles one request line (without its "\n" or "\r\n") of `conn`. Calls
  // `done` exactly once, either before returning or later from any thread.
  // Thread-safe: called concurrently from every I/O thread (one connection's
  // lines one at a time).
  virtual void Handle(const std::shared_ptr<Connection>& conn, std::string_view line,
                      Done done) = 0;

  // The response to a request line longer than the node's limit, which the
  // network layer refused without reading it whole (request_too_large).
  virtual std::string RequestTooLargeResponse() = 0;
};

}  // namespace ringkv
