// Session: one client (or peer) TCP connection speaking the line protocol.
//
// A session frames the bytes it reads into request lines, hands each line to
// the RequestHandler, and writes the responses back in request order, however
// the handler's `done` callbacks are ordered or threaded (PROTOCOL.md §3).
//
// Framing: a request is a line ending in "\n"; a trailing "\r" is stripped.
// Empty lines are ignored (no response). A non-empty unterminated line at
// end-of-stream is served as a last request. A line longer than
// `max_request_bytes` is refused without being held whole: once the pending
// partial line exceeds the limit, the session answers
// RequestTooLargeResponse() after every earlier response, stops serving the
// connection, and closes it (see "Lingering close" in session.cc).
//
// Ordering: every request takes the next sequence slot; a response fills its
// slot, and the contiguous prefix of filled slots goes out in one batched
// write. Only one write is in flight at a time.
//
// Backpressure (PROTOCOL.md §8 "Overload"): the session stops serving lines,
// and so stops reading, while it is backlogged:
//   - more than `max_pending_requests` requests await their response or
//     their turn to be written;
//   - more than `max_unanswered_request_bytes` of request lines have been
//     handed to the handler and not answered yet;
//   - more than `max_outbox_bytes` of responses await the socket, counting
//     those held in order behind an unanswered request, those gathered for
//     the next write and the one being written.
// The check comes before every line, so a pipeline packed into one read
// stops at the bound: what is left of the read is kept and served once the
// backlog drains (a response arrives or a write completes), and only then is
// the socket read again. A client that never reads its responses therefore
// costs at most the bounds plus one request and one response, and the kernel's
// buffers then push back on it (TCP backpressure). A request answered after
// the check (asynchronously) is not known in size beforehand: the count bound
// caps those.
//
// Fairness: a session serves its input in turns, then queues the rest of its
// work behind the other connections' on its I/O thread; the more connections
// are busy, the shorter the turns (see kLinesPerPass in session.cc). A fresh
// client's request waits for about one short turn of each busy connection,
// not for their whole pipelines.
//
// Threading: every member runs on the connection's I/O thread (the executor
// of the socket passed in, an io_context that one thread runs). Start(),
// Stop() and Abort() are thread-safe: they post to that executor. The handler's `done` may be
// called from any thread, before or after Handle() returns.
//
// Lifetime: a Session is always owned by shared_ptr. Its owner (the Server's
// registry) must hold it until `on_closed` runs; pending asynchronous
// operations also hold it. A `done` callback holds it only weakly, so once a
// session is closed and gone a late `done` is a no-op, and destroying an
// unused `done` never destroys asio objects.
#pragma once

#include <asio/basic_stream_socket.hpp>
#include <asio/basic_waitable_timer.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/request_handler.h"

namespace ringkv::net {

// Every connection's handlers run on the io_context of its I/O thread, which
// one thread runs (server.h): they never run concurrently and never move
// between threads, with no strand's lock and queue per handler. Typing the
// socket and timer on that executor lets the session ask
// running_in_this_thread().
using IoExecutor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<asio::ip::tcp, IoExecutor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, IoExecutor>;

struct SessionOptions {
  // The longest request line, "\r\n" excluded. Default: 8 MiB.
  uint64_t max_request_bytes = 8ULL << 20;
  // Stop reading while more requests than this await their response.
  // Default: 1024.
  size_t max_pending_requests = 1024;
  // Stop reading while the request lines taken but not answered total more
  // than this many bytes. Default: 4 MiB.
  size_t max_unanswered_request_bytes = 4ULL << 20;
  // Stop reading while more response bytes than this await the socket
  // (answered but held in order, queued, or being written). Default: 4 MiB.
  size_t max_outbox_bytes = 4ULL << 20;
};

// TLS on a session (PROTOCOL.md §11 "TLS"). With a context, the session peeks
// at the first byte: a TLS handshake starts with 0x16 (a handshake record);
// anything else is a plaintext client, which gets `plaintext_refusal` (one
// response line) in plaintext and is closed as after request_too_large. A
// handshake that has not completed within `handshake_timeout` (or fails)
// closes the connection. The verified certificate, if any, is recorded in the
// Connection (a peer's --tls-ca proof).
//
// No close_notify is sent when the server closes: every close the server
// starts is either after the client finished (its EOF) or a shutdown, where a
// client sees the same as after a crash.
struct SessionTls {
  std::shared_ptr<asio::ssl::context> context;  // null: plaintext
  std::string plaintext_refusal;                // the response line, without "\n"
  std::chrono::milliseconds handshake_timeout{10000};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // Called once, on the session's I/O thread, when the socket has been closed.
  // The session takes no further requests after that, but may still be alive
  // until its outstanding `done` callbacks have run.
  using ClosedCallback = std::function<void(Session*)>;

  // `socket` is connected; its executor's one thread runs all of the
  // session's work.
  // REQUIRES: `handler` outlives the session's requests; `on_closed` stays
  // callable while the socket's io_context runs.
  Session(Socket socket, RequestHandler* handler, SessionOptions options, ClosedCallback on_closed,
          SessionTls tls = {});
  ~Session();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts reading requests. Call once, after construction.
  void Start();

  // Graceful stop: reads no further requests, answers those already taken,
  // flushes, then closes. Thread-safe; idempotent.
  void Stop();

  // Closes the socket now, dropping unsent responses. Thread-safe; idempotent.
  void Abort();

  // What the transport proved (TLS, a verified certificate), for the
  // handler's Connection. Called by the TLS handshake; tests may call it
  // before Start().
  void SetTransport(bool tls, bool peer_verified);

  // "ip:port" of the remote end, for logs.
  const std::string& peer() const { return peer_; }

 private:
  // TLS.
  void StartTls();
  void OnPeeked(const std::error_code& ec, size_t n);
  void OnHandshake(const std::error_code& ec);

  // Reading and framing.
  void Resume();  // serves a turn of what is buffered, flushes, reads more, may close
  void PostResume();
  void Yield();
  bool HasUnserved() const;
  void DoRead();  // reads more unless stopped, backlogged or input is left
  void ReadSome();
  void OnRead(const std::error_code& ec, size_t n);
  void ServeBuffered(int* budget);
  void ServeLine(std::string_view line);
  void RefuseTooLarge();
  void StopReading();

  // Responses.
  uint64_t TakeSlot(size_t request_bytes);
  void OnResponse(uint64_t seq, std::string response);  // any thread
  void StoreResponse(uint64_t seq, std::string response);
  void Flush();
  void DoWrite();
  void OnWrite(const std::error_code& ec);
  bool Backlogged() const;

  // Closing.
  void MaybeFinish();
  void LingerThenClose();
  void DiscardInput();
  void Close();

  Socket socket_;
  // Over socket_ once the first byte says TLS; null for plaintext. Declared
  // after socket_, which it refers to.
  const SessionTls tls_options_;
  std::unique_ptr<asio::ssl::stream<Socket&>> tls_;
  bool handshaken_ = false;
  char peek_byte_ = 0;
  RequestHandler* const handler_;
  const SessionOptions options_;
  const ClosedCallback on_closed_;
  std::string peer_;
  // The connection's authentication state, handed to every request.
  const std::shared_ptr<Connection> conn_;
  Timer linger_timer_;

  // All of the following are touched only on the session's I/O thread.

  // Reads. read_buf_ is the fixed-size target of async_read_some; bytes
  // [read_begin_, read_end_) of it are read but not yet served (left by a
  // backlog). partial_ holds the start of a line that has not ended yet
  // (bounded by the limit).
  std::vector<char> read_buf_;
  size_t read_begin_ = 0;
  size_t read_end_ = 0;
  std::string partial_;
  bool read_pending_ = false;
  bool read_eof_ = false;       // the stream ended; serve what is left, then stop
  bool in_handle_ = false;      // inside handler_->Handle() of this session
  bool resume_posted_ = false;  // a Resume() is queued on the executor
  bool read_closed_ = false;    // no further requests will be taken
  // The last response is a refusal after which the client may still be
  // sending (request_too_large, or plaintext on a TLS port): close by
  // lingering (LingerThenClose), not at once.
  bool linger_on_close_ = false;
  // A request asked to be answered before the next line (Connection::HoldUntilAnswered).
  bool holding_ = false;
  uint64_t hold_seq_ = 0;

  // Responses. pending_[i] is the slot of request number base_seq_ + i; its
  // response is empty until its `done` has fired.
  struct Slot {
    std::optional<std::string> response;
    size_t request_bytes = 0;  // the line's size, counted until answered
  };
  std::deque<Slot> pending_;
  uint64_t base_seq_ = 0;
  size_t unanswered_bytes_ = 0;  // request_bytes of the slots not answered yet
  size_t answered_bytes_ = 0;    // response bytes held in pending_
  // outbox_ gathers ready responses while write_buf_ is being written.
  std::string outbox_;
  std::string write_buf_;
  bool write_pending_ = false;

  bool lingering_ = false;
  bool closed_ = false;
};

}  // namespace ringkv::net
