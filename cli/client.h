// Client: a small blocking RingKV client over one TCP connection.
//
// Shared by kvctl, kvbench and the integration tests. One request line out, one
// response line in; Send()/Receive() also allow pipelining. Optionally over
// TLS and authenticated (PROTOCOL.md §11; cli/client_security.h).
//
// Thread-safety: a Client is used by one thread at a time (without TLS, one
// thread may send while another receives; with TLS, not: an SSL is one
// object for both directions).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "cli/client_security.h"
#include "engine/status.h"

namespace ringkv {

class Client {
 public:
  // Connects to "HOST:PORT" (IPv4 address or name). Unavailable with the OS's
  // reason (e.g. "connection refused") on failure; BadRequest for a malformed
  // address. timeout_ms bounds connect, the TLS handshake, authentication and
  // each Receive (0 = no bound).
  //
  // With security.tls, a TLS handshake follows (TlsHandshake: the server's
  // certificate verified and matched against HOST); Unavailable saying why
  // if it fails, e.g. "TLS handshake with 127.0.0.1:7700 failed: certificate
  // verify failed (self-signed certificate)". security.tls_context is used if
  // set, else one is made for this connection (BadRequest if tls_ca cannot be
  // loaded). With a non-empty security.user, Authenticate() follows; its
  // error is returned as is. The default `security` is plaintext without
  // authentication.
  static Status Connect(std::string_view host_port, std::unique_ptr<Client>* out,
                        int timeout_ms = 10000, const ClientSecurity& security = {});
  // True if `host_port` is an address Connect() accepts ("HOST:PORT",
  // "[V6]:PORT", a port 1..65535); Connect() answers BadRequest otherwise.
  static bool ValidAddress(std::string_view host_port);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `request` as one line and waits for the response object.
  // Unavailable on a broken connection, Timeout if no answer in time,
  // Internal if the answer is not a JSON object.
  Status Call(const nlohmann::json& request, nlohmann::json* response);

  // Raw pipelining: SendLine() writes line + "\n" (no framing checks, so tests
  // can send malformed input); ReceiveLine() reads one response line.
  Status SendLine(std::string_view line);
  Status SendRaw(std::string_view bytes);
  Status ReceiveLine(std::string* line);

  // Sends {"op":"auth","user":U,"password":P} and reads the answer. OK if the
  // server accepted it; otherwise the server's error as a Status of its code
  // (Unauthenticated "wrong user or password", BadRequest "this port
  // requires TLS ...") or the transport's error. The password appears in no
  // message.
  Status Authenticate(std::string_view user, std::string_view password);

  // Hands the connection over to the caller (kvbench's event loop, after
  // Connect() did the TLS handshake and authentication): *fd (close it) and
  // *ssl (SSL_free it; nullptr without TLS). The Client is unusable after.
  // Internal if bytes were received that no caller has read (they would be
  // lost).
  Status Release(int* fd, ssl_st** ssl);

  // True once the server has closed the connection (seen by a read).
  bool closed() const { return closed_; }
  // True if the connection is TLS.
  bool tls() const { return ssl_ != nullptr; }

 private:
  explicit Client(int fd, int timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {}
  Status CallLine(const std::string& line, nlohmann::json* response);
  Status SendTls(std::string_view bytes);
  // Reads what the SSL has into inbuf_. OK with *wait = 0 after reading bytes
  // or seeing the close (closed_); *wait = POLLIN / POLLOUT when the socket
  // must be ready first.
  Status ReadTls(short* wait);

  int fd_;
  int timeout_ms_;
  ssl_st* ssl_ = nullptr;  // owned; null without TLS
  bool closed_ = false;
  std::string inbuf_;
};

}  // namespace ringkv
