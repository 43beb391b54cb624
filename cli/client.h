// Client: a small blocking RingKV client over one TCP connection.
//
// Shared by kvctl, kvbench and the integration tests. One request line out, one
// response line in; Send()/Receive() also allow pipelining.
//
// Thread-safety: a Client is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/status.h"

namespace ringkv {

class Client {
 public:
  // Connects to "HOST:PORT" (IPv4 address or name). Unavailable with the OS's
  // reason (e.g. "connection refused") on failure; BadRequest for a malformed
  // address. timeout_ms bounds connect and each Receive (0 = no bound).
  static Status Connect(std::string_view host_port, std::unique_ptr<Client>* out,
                        int timeout_ms = 10000);
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

  // True once the server has closed the connection (seen by a read).
  bool closed() const { return closed_; }

 private:
  explicit Client(int fd, int timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {}
  int fd_;
  int timeout_ms_;
  bool closed_ = false;
  std::string inbuf_;
};

}  // namespace ringkv
