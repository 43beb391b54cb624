// RequestHandler: what a connection hands each request line to.
//
// The network layer (server/net/) frames lines and keeps responses in request
// order; everything about what a line means lives behind this interface, which
// contains no asio, so it can be unit-tested with plain strings.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace ringkv {

class RequestHandler {
 public:
  // Receives the response line (JSON, without the trailing newline).
  using Done = std::function<void(std::string response)>;

  virtual ~RequestHandler() = default;

  // Handles one request line (without its "\n" or "\r\n"). Calls `done` exactly
  // once, either before returning or later from any thread.
  // Thread-safe: called concurrently from every I/O thread.
  virtual void Handle(std::string_view line, Done done) = 0;

  // The response to a request line longer than the node's limit, which the
  // network layer refused without reading it whole (request_too_large).
  virtual std::string RequestTooLargeResponse() = 0;
};

}  // namespace ringkv
