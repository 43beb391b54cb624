#include "server/net/session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/buffer.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>
#include <exception>
#include <utility>

namespace ringkv::net {
namespace {

// The target of each read. Lines longer than this accumulate in `partial_`.
constexpr size_t kReadBufferBytes = 32 * 1024;

// A buffer that grew past this for one huge line or response is released
// afterwards instead of being kept for the rest of the connection.
constexpr size_t kKeepCapacityBytes = 256 * 1024;

// Fairness between the connections of one I/O thread. A session serves its
// input in turns: after a turn's lines it yields, posting the rest of its
// work behind everything already queued on the thread, so that a deep
// pipeline cannot delay every other client by the whole of a read. The
// thread's event loop polls the sockets once per pass through its queue, so a
// fresh request waits for about one pass: the turns are cut so that a pass
// serves about kLinesPerPass lines however many connections are busy, and
// no turn is longer than kMaxLinesPerTurn (connections that have not yielded
// yet are not counted as busy). A lone pipeline thus gets long turns, and
// large group commits.
constexpr int kLinesPerPass = 256;
constexpr int kMaxLinesPerTurn = 64;

// Sessions of the calling I/O thread (each session stays on one) that have
// yielded with input left and wait for their next turn.
thread_local int t_waiting_turns = 0;

int TurnBudget() { return std::clamp(kLinesPerPass / (1 + t_waiting_turns), 1, kMaxLinesPerTurn); }

// After refusing an oversized request, how long the session keeps reading and
// discarding the client's input before it closes (see LingerThenClose).
constexpr auto kLingerTime = std::chrono::seconds(2);

std::string FormatPeer(const Socket& socket) {
  std::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "?";
  const auto address = endpoint.address();
  // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict on
  // chains of std::string operator+ here.
  std::string out;
  if (address.is_v6()) out += '[';
  out += address.to_string();
  if (address.is_v6()) out += ']';
  out += ':';
  out += std::to_string(endpoint.port());
  return out;
}

void ReleaseIfHuge(std::string* buffer) {
  if (buffer->capacity() > kKeepCapacityBytes) std::string().swap(*buffer);
}

// Appends `piece` to the unfinished line in `partial`, which the caller keeps
// within `limit` bytes. Up to kKeepCapacityBytes the string grows as usual;
// past it, it is given the whole limit at once instead of doubling. A line of
// several MiB would otherwise leave each smaller copy behind (1 + 2 + 4 MiB
// under an 8 MiB limit), and an allocator that returns freed memory to the
// OS late (mimalloc) still held them in RSS after the line had been refused.
// Only the pages the line fills are touched.
void AppendToPartial(std::string* partial, std::string_view piece, size_t limit) {
  const size_t needed = partial->size() + piece.size();
  if (needed > partial->capacity() && needed > kKeepCapacityBytes) {
    partial->reserve(std::max(needed, limit));
  }
  partial->append(piece);
}

}  // namespace

Session::Session(Socket socket, RequestHandler* handler, SessionOptions options,
                 ClosedCallback on_closed, SessionTls tls)
    : socket_(std::move(socket)),
      tls_options_(std::move(tls)),
      handler_(handler),
      options_(options),
      on_closed_(std::move(on_closed)),
      peer_(FormatPeer(socket_)),
      conn_(std::make_shared<Connection>()),
      linger_timer_(socket_.get_executor()),
      read_buf_(kReadBufferBytes) {
  conn_->remote = peer_;
}

Session::~Session() = default;

void Session::SetTransport(bool tls, bool peer_verified) {
  conn_->tls = tls;
  conn_->tls_peer_verified = peer_verified;
}

void Session::Start() {
  if (tls_options_.context != nullptr) {
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->StartTls(); });
    return;
  }
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->Resume(); });
}

// ---- TLS ----

void Session::StartTls() {
  if (closed_) return;
  linger_timer_.expires_after(tls_options_.handshake_timeout);
  linger_timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    if (ec || self->handshaken_ || self->closed_ || self->lingering_) return;
    spdlog::info("[session] {}: no TLS handshake within {} ms; closing", self->peer_,
                 self->tls_options_.handshake_timeout.count());
    self->Close();
  });
  // Peek, not read: the byte stays for the TLS engine.
  socket_.async_receive(
      asio::buffer(&peek_byte_, 1), asio::socket_base::message_peek,
      [self = shared_from_this()](const std::error_code& ec, size_t n) { self->OnPeeked(ec, n); });
}

void Session::OnPeeked(const std::error_code& ec, size_t n) {
  if (closed_) return;
  if (ec || n == 0) return Close();
  if (static_cast<unsigned char>(peek_byte_) != 0x16) {
    // A plaintext client: one refusal it can read, then the lingering close
    // that keeps the line from being destroyed by a reset.
    spdlog::info("[session] {}: plaintext on a TLS port refused", peer_);
    linger_timer_.cancel();
    StoreResponse(TakeSlot(0), tls_options_.plaintext_refusal);
    linger_on_close_ = true;
    StopReading();
    Flush();
    MaybeFinish();
    return;
  }
  tls_ = std::make_unique<asio::ssl::stream<Socket&>>(socket_, *tls_options_.context);
  tls_->async_handshake(
      asio::ssl::stream_base::server,
      [self = shared_from_this()](const std::error_code& e) { self->OnHandshake(e); });
}

void Session::OnHandshake(const std::error_code& ec) {
  if (closed_) return;
  if (ec) {
    spdlog::info("[session] {}: TLS handshake failed: {}", peer_, ec.message());
    return Close();
  }
  handshaken_ = true;
  linger_timer_.cancel();
  SSL* ssl = tls_->native_handle();
  X509* cert = SSL_get0_peer_certificate(ssl);
  SetTransport(true, cert != nullptr && SSL_get_verify_result(ssl) == X509_V_OK);
  Resume();
}

void Session::Stop() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (self->lingering_) {
      self->Close();
      return;
    }
    self->StopReading();
    self->MaybeFinish();
  });
}

void Session::Abort() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->Close(); });
}

// ---- Reading and framing ----

// Serves the input left by a backlog, writes what is ready, reads more if the
// session is neither backlogged nor done, and closes once it is done.
void Session::Resume() {
  // Flushing moves answered requests out of their slots, which may end a
  // backlog on the count of requests: then serve on.
  int budget = TurnBudget();
  do {
    ServeBuffered(&budget);
    Flush();
  } while (!closed_ && HasUnserved() && !Backlogged() && budget > 0);
  if (!closed_ && HasUnserved() && !Backlogged()) {
    // The turn is used up: let the thread's other connections have theirs.
    Yield();
    return;
  }
  DoRead();
  MaybeFinish();
}

// From a `done` that runs outside ServeLine (on another handler's stack, say a
// group commit's): serving more lines there would nest requests inside it.
void Session::PostResume() {
  if (resume_posted_ || closed_) return;
  resume_posted_ = true;
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->resume_posted_ = false;
    self->Resume();
  });
}

void Session::Yield() {
  ++t_waiting_turns;
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    --t_waiting_turns;
    self->Resume();
  });
}

// Input read but not served yet, or an end of stream not acted upon.
bool Session::HasUnserved() const {
  return !read_closed_ && (read_begin_ < read_end_ || read_eof_);
}

void Session::DoRead() {
  if (read_pending_ || read_closed_ || closed_ || HasUnserved() || Backlogged()) return;
  read_begin_ = 0;
  read_end_ = 0;
  ReadSome();
}

void Session::ReadSome() {
  read_pending_ = true;
  auto on_read = [self = shared_from_this()](const std::error_code& ec, size_t n) {
    self->OnRead(ec, n);
  };
  if (tls_ != nullptr) {
    tls_->async_read_some(asio::buffer(read_buf_), std::move(on_read));
  } else {
    socket_.async_read_some(asio::buffer(read_buf_), std::move(on_read));
  }
}

void Session::OnRead(const std::error_code& ec, size_t n) {
  read_pending_ = false;
  if (closed_) return;
  if (lingering_) {
    if (ec) {
      Close();
    } else {
      DiscardInput();
    }
    return;
  }
  // Bytes that arrive after Stop() are not served: the server is going away.
  if (!read_closed_) {
    read_begin_ = 0;
    read_end_ = n;
    if (ec) {
      if (ec != asio::error::eof) {
        spdlog::debug("[session] {}: read failed: {}", peer_, ec.message());
      }
      read_eof_ = true;
    }
  }
  Resume();
}

// Splits the unserved input into lines and serves them, until the input is
// used up, the session is backlogged or *budget lines have been served.
// Complete lines are served straight from the read buffer when possible; the
// unfinished tail goes to `partial_`, which never grows past the limit (plus
// one byte for a "\r" that may precede "\n"). At the end of the stream, once
// everything before it is served, a last line without its "\n" is served too
// (think `printf ... | nc`).
void Session::ServeBuffered(int* budget) {
  const uint64_t max_partial = options_.max_request_bytes + 1;
  while (read_begin_ < read_end_ && !read_closed_ && !Backlogged() && *budget > 0) {
    const std::string_view data(read_buf_.data() + read_begin_, read_end_ - read_begin_);
    const size_t newline = data.find('\n');
    const std::string_view piece = data.substr(0, newline);
    if (partial_.size() + piece.size() > max_partial) {
      RefuseTooLarge();
      return;
    }
    if (newline == std::string_view::npos) {
      AppendToPartial(&partial_, piece, max_partial);
      read_begin_ = read_end_;
      break;
    }
    read_begin_ += newline + 1;
    --*budget;
    if (partial_.empty()) {
      ServeLine(piece);
    } else {
      AppendToPartial(&partial_, piece, max_partial);
      ServeLine(partial_);
      partial_.clear();
      ReleaseIfHuge(&partial_);
    }
  }
  if (read_eof_ && !read_closed_ && read_begin_ == read_end_ && !Backlogged()) {
    if (!partial_.empty()) ServeLine(partial_);
    StopReading();
  }
}

void Session::ServeLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return;
  if (line.size() > options_.max_request_bytes) {
    RefuseTooLarge();
    return;
  }
  const uint64_t seq = TakeSlot(line.size());
  try {
    // `done` holds the session weakly: a callback that outlives the server
    // (held by a handler that shuts down later) must not keep a session, and
    // with it asio objects, alive past their io_context. The server's
    // registry keeps the session alive until it closes.
    struct InHandle {
      bool& flag;
      explicit InHandle(bool& f) : flag(f) { flag = true; }
      ~InHandle() { flag = false; }
    } in_handle(in_handle_);
    handler_->Handle(conn_, line, [weak = weak_from_this(), seq](std::string response) {
      if (auto self = weak.lock()) self->OnResponse(seq, std::move(response));
    });
    // A request that changes the connection's state (auth) is answered
    // before the next line is served; answered inline, there is no wait.
    if (conn_->TakeHold() && seq - base_seq_ < pending_.size() &&
        !pending_[seq - base_seq_].response) {
      holding_ = true;
      hold_seq_ = seq;
    }
  } catch (const std::exception& e) {
    // A bug in the handler. Dropping this connection is better than letting
    // the exception unwind an I/O thread that serves every other connection.
    spdlog::error("[session] {}: request handler threw ({}); closing the connection", peer_,
                  e.what());
    Close();
  } catch (...) {
    spdlog::error("[session] {}: request handler threw; closing the connection", peer_);
    Close();
  }
}

// Answers request_too_large after every earlier response and takes no further
// requests: the rest of the oversized line is never buffered.
void Session::RefuseTooLarge() {
  spdlog::info("[session] {}: request line over {} bytes refused; closing the connection", peer_,
               options_.max_request_bytes);
  StoreResponse(TakeSlot(0), handler_->RequestTooLargeResponse());
  linger_on_close_ = true;
  StopReading();
}

void Session::StopReading() {
  if (read_closed_) return;
  read_closed_ = true;
  read_begin_ = 0;
  read_end_ = 0;
  partial_.clear();
  ReleaseIfHuge(&partial_);
  if (read_pending_) {
    // Wakes the pending read with end-of-stream without disturbing a write in
    // flight (cancel() would abort both).
    std::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_receive, ec);
  }
}

// ---- Responses, in request order ----

uint64_t Session::TakeSlot(size_t request_bytes) {
  pending_.push_back(Slot{std::nullopt, request_bytes});
  unanswered_bytes_ += request_bytes;
  return base_seq_ + pending_.size() - 1;
}

// Runs on whatever thread the handler calls `done` from.
void Session::OnResponse(uint64_t seq, std::string response) {
  // The flag is read only on the session's own thread (&& short-circuits):
  // other threads never touch it.
  if (socket_.get_executor().running_in_this_thread() && in_handle_) {
    // Answered inside this session's Handle(): ServeLine's caller flushes
    // once per read, which batches every inline answer into one write.
    StoreResponse(seq, std::move(response));
    return;
  }
  // dispatch, not post: on this session's own I/O thread, between its
  // handlers (a group commit completing the writes of many sessions, see
  // server/write_batcher.h) the response goes out at once instead of through
  // one queued handler per response. From other threads it is queued.
  asio::dispatch(socket_.get_executor(),
                 [self = shared_from_this(), seq, response = std::move(response)]() mutable {
                   self->StoreResponse(seq, std::move(response));
                   self->Flush();
                   if (self->HasUnserved() && !self->Backlogged()) {
                     self->PostResume();
                   } else {
                     self->DoRead();
                   }
                   self->MaybeFinish();
                 });
}

void Session::StoreResponse(uint64_t seq, std::string response) {
  if (closed_) return;
  if (seq < base_seq_ || seq - base_seq_ >= pending_.size() || pending_[seq - base_seq_].response) {
    spdlog::error("[session] {}: request handler answered request {} twice", peer_, seq);
    return;
  }
  Slot& slot = pending_[seq - base_seq_];
  if (holding_ && seq == hold_seq_) holding_ = false;
  unanswered_bytes_ -= slot.request_bytes;
  answered_bytes_ += response.size() + 1;
  slot.response = std::move(response);
}

// Moves the contiguous prefix of answered requests to the outbox and starts a
// write if none is in flight.
void Session::Flush() {
  if (closed_) return;
  while (!pending_.empty() && pending_.front().response.has_value()) {
    const std::string& response = *pending_.front().response;
    answered_bytes_ -= response.size() + 1;
    outbox_ += response;
    outbox_ += '\n';
    pending_.pop_front();
    ++base_seq_;
  }
  DoWrite();
}

void Session::DoWrite() {
  if (write_pending_ || outbox_.empty() || closed_) return;
  write_buf_.swap(outbox_);
  outbox_.clear();
  write_pending_ = true;
  auto on_write = [self = shared_from_this()](const std::error_code& ec, size_t /*n*/) {
    self->OnWrite(ec);
  };
  if (tls_ != nullptr) {
    asio::async_write(*tls_, asio::buffer(write_buf_), std::move(on_write));
  } else {
    asio::async_write(socket_, asio::buffer(write_buf_), std::move(on_write));
  }
}

void Session::OnWrite(const std::error_code& ec) {
  write_pending_ = false;
  if (closed_) return;
  if (ec) {
    spdlog::debug("[session] {}: write failed: {}", peer_, ec.message());
    Close();
    return;
  }
  write_buf_.clear();
  ReleaseIfHuge(&write_buf_);
  Resume();
}

bool Session::Backlogged() const {
  return holding_ || pending_.size() >= options_.max_pending_requests ||
         unanswered_bytes_ >= options_.max_unanswered_request_bytes ||
         answered_bytes_ + outbox_.size() + write_buf_.size() >= options_.max_outbox_bytes;
}

// ---- Closing ----

// Closes once no more requests will be read and every taken one has been
// answered and written.
void Session::MaybeFinish() {
  if (closed_ || lingering_ || !read_closed_) return;
  if (!pending_.empty() || !outbox_.empty() || write_pending_) return;
  if (linger_on_close_) {
    LingerThenClose();
  } else {
    Close();
  }
}

// Lingering close: closing a socket whose receive queue still holds the
// client's unread bytes makes the kernel send RST, and an RST can destroy the
// request_too_large answer before the client reads it (a client typically
// sends its whole oversized line before reading). So: send FIN, read and
// discard until the client closes too, for at most kLingerTime.
void Session::LingerThenClose() {
  lingering_ = true;
  std::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_send, ec);
  linger_timer_.expires_after(kLingerTime);
  linger_timer_.async_wait([self = shared_from_this()](const std::error_code&) { self->Close(); });
  DiscardInput();
}

void Session::DiscardInput() {
  if (read_pending_ || closed_) return;
  ReadSome();
}

void Session::Close() {
  if (closed_) return;
  closed_ = true;
  read_closed_ = true;
  linger_timer_.cancel();
  std::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_both, ec);
  socket_.close(ec);
  // Answers still to come find closed_ set and are dropped. write_buf_ stays:
  // an aborted write may still reference it until its handler runs.
  pending_.clear();
  unanswered_bytes_ = 0;
  answered_bytes_ = 0;
  std::string().swap(outbox_);
  std::string().swap(partial_);
  spdlog::debug("[session] {}: closed", peer_);
  if (on_closed_) on_closed_(this);
}

}  // namespace ringkv::net
