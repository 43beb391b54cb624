// Targets: how kvbench speaks to each system it can load.
//
// A Target turns one operation into request bytes (EncodeRequest) and hands
// out, per connection, a ResponseParser that cuts the bytes coming back into
// responses. Every target is pipelining-safe: responses come back in request
// order on a connection, so the n-th response answers the n-th request.
//
//   ringkv  JSON lines (docs/protocol.md): put / get / ping.
//   redis   RESP: SET / GET / PING, parsed with hiredis's redisReader.
//   etcd    HTTP/1.1 keep-alive to etcd's v3 JSON gateway: POST /v3/kv/put,
//           POST /v3/kv/range, and GET /version for ping.
//
// The same operation on the same key with the same value bytes is sent to
// every target; only the encoding differs (a JSON string for RingKV, base64
// for etcd, a bulk string for Redis).
//
// Thread-safety: a Target is immutable after construction and may be shared;
// a ResponseParser belongs to one connection.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace ringkv::bench {

enum class Op { kRead, kWrite, kPing };

// The outcome of one ResponseParser::Parse call.
struct Reply {
  enum Kind {
    kNeedMore,  // no complete response yet: read more bytes, then call again
    kOk,        // one response, a success (a read of a missing key included)
    kError,     // one response, a failure; `code` names it
    kBroken,    // the byte stream cannot be parsed; the connection is unusable
  };
  Kind kind = kNeedMore;
  // Bytes of the input the parser took; the caller drops them before the next
  // call. A parser may take bytes without producing a response (it buffers
  // them itself), so a caller loops until kNeedMore.
  size_t consumed = 0;
  std::string code;  // kError: e.g. "timeout", "http_503", "err"; kBroken: why
};

class ResponseParser {
 public:
  virtual ~ResponseParser() = default;
  // Looks for the next response at the front of `in`. Call again with the
  // rest of the input (after dropping `consumed` bytes) until kNeedMore.
  virtual Reply Parse(std::string_view in) = 0;
};

class Target {
 public:
  virtual ~Target() = default;
  virtual const char* name() const = 0;
  // Appends the request for `op` to `out`. `value` (raw bytes) is used by
  // kWrite only; `key` by kRead and kWrite.
  virtual void EncodeRequest(Op op, std::string_view key, std::string_view value,
                             std::string* out) const = 0;
  virtual std::unique_ptr<ResponseParser> NewParser() const = 0;
};

// "ringkv", "redis" or "etcd"; nullptr for any other name. `host` is the
// HOST:PORT the target is reached at (etcd sends it as the Host header).
std::unique_ptr<Target> MakeTarget(std::string_view name, std::string_view host);

// Helpers, exposed for tests.
std::string Base64(std::string_view bytes);
// Appends `s` as a JSON string literal (quotes included).
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace ringkv::bench
