#include "server/net/server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <asio/buffer.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <charconv>
#include <exception>
#include <future>
#include <string_view>
#include <utility>

#include "server/deferrer.h"
#include "server/net/address.h"
#include "server/protocol.h"

namespace ringkv::net {
namespace {

// After an accept error that is not about the listener going away (out of
// file descriptors, say), wait this long before accepting again rather than
// spinning on the error.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

// After forcing connections closed at the end of a drain, wait at most this
// long for their close handlers to run.
constexpr auto kAbortWait = std::chrono::seconds(1);

// A refused connection: how long it may linger, reading and discarding, before
// it is closed regardless, and how many may linger at once.
constexpr auto kRefusalLinger = std::chrono::seconds(1);
constexpr size_t kMaxLingering = 1024;

// Connections taken from the kernel's backlog per accept completion.
constexpr int kAcceptBatch = 256;

// Refusals are logged at most this often: a client that floods the node with
// connections must not flood its log too.
constexpr auto kRefusalLogInterval = std::chrono::seconds(1);

// The lingering part of a refusal (see "Connection limit" in server.h): the
// response has been sent and the sending side shut down; reads and discards
// until the client closes or kRefusalLinger passes, then closes. Owned by its
// pending operations; runs on the socket's I/O thread.
class Refusal : public std::enable_shared_from_this<Refusal> {
 public:
  Refusal(Socket socket, std::shared_ptr<std::atomic<size_t>> lingering)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        lingering_(std::move(lingering)) {
    lingering_->fetch_add(1, std::memory_order_relaxed);
  }
  ~Refusal() { lingering_->fetch_sub(1, std::memory_order_relaxed); }

  void Start() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      self->timer_.expires_after(kRefusalLinger);
      self->timer_.async_wait([self](const std::error_code&) { self->Close(); });
      self->Discard();
    });
  }

 private:
  void Discard() {
    socket_.async_read_some(asio::buffer(buf_),
                            [self = shared_from_this()](const std::error_code& ec, size_t) {
                              if (ec) return self->Close();
                              self->Discard();
                            });
  }

  void Close() {
    std::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
  }

  Socket socket_;
  Timer timer_;
  const std::shared_ptr<std::atomic<size_t>> lingering_;
  std::array<char, 4096> buf_{};
};

std::vector<std::unique_ptr<asio::io_context>> MakeIoContexts(int threads) {
  std::vector<std::unique_ptr<asio::io_context>> out;
  for (int i = 0; i < std::max(1, threads); ++i)
    out.push_back(std::make_unique<asio::io_context>(1));
  return out;
}

}  // namespace

Server::Server(ServerOptions options, RequestHandler* handler)
    : options_(std::move(options)),
      handler_(handler),
      overloaded_line_(RenderError("", Status::Overloaded("too many connections (the limit is " +
                                                          std::to_string(options_.max_connections) +
                                                          "); retry later")) +
                       "\n"),
      plaintext_refusal_(
          RenderError("", Status::BadRequest("this port requires TLS (kvctl --tls)"))),
      ios_(MakeIoContexts(options_.io_threads)),
      accept_executor_(ios_[0]->get_executor()),
      acceptor_(accept_executor_),
      accept_retry_timer_(accept_executor_) {}

Server::~Server() { Stop(); }

Status Server::Listen() {
  if (listening_) return Status::OK();
  uint16_t port = 0;
  RINGKV_RETURN_IF_ERROR(SplitHostPort(options_.listen, "listen", &host_, &port));
  asio::ip::tcp::endpoint endpoint;
  RINGKV_RETURN_IF_ERROR(ResolveHost(*ios_[0], host_, port, "listen", &endpoint));

  std::error_code ec = OpenAcceptor(acceptor_, endpoint, &port_);
  // Non-blocking, so that OnAccept can take what the backlog holds without
  // waiting for more.
  if (!ec) acceptor_.non_blocking(true, ec);
  if (ec) {
    std::error_code ignored;
    acceptor_.close(ignored);
    return Status::Internal("cannot listen on " + options_.listen + ": " + ec.message());
  }
  listening_ = true;
  return Status::OK();
}

Status Server::Start() {
  RINGKV_RETURN_IF_ERROR(Listen());
  if (started_) return Status::OK();
  started_ = true;
  for (auto& io : ios_) work_.push_back(asio::make_work_guard(*io));
  asio::post(accept_executor_, [this] { DoAccept(); });
  for (size_t i = 0; i < ios_.size(); ++i) {
    threads_.emplace_back([this, i, io = ios_[i].get()] { RunIoThread(i, io); });
  }
  spdlog::debug("[server] accepting on {} with {} I/O threads", BoundAddress(), ios_.size());
  return Status::OK();
}

std::string Server::BoundAddress() const { return host_ + ":" + std::to_string(port_); }

size_t Server::SessionCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

namespace {

// Defers to the end of the thread's current batch of ready handlers: post()
// from a handler queues behind the completions the last poll delivered.
class IoDeferrer final : public Deferrer {
 public:
  explicit IoDeferrer(asio::io_context& io) : io_(io) {}
  void Defer(std::function<void()> fn) override { asio::post(io_, std::move(fn)); }

 private:
  asio::io_context& io_;
};

}  // namespace

void Server::RunIoThread(size_t index, asio::io_context* io) {
  IoDeferrer deferrer(*io);
  Deferrer::SetCurrent(&deferrer);
  if (options_.hooks != nullptr) options_.hooks->Attach(index, *io);
  RunIoContext(*io, "[server]");
  Deferrer::SetCurrent(nullptr);
}

// ---- Accepting ----

void Server::DoAccept() {
  if (!acceptor_.is_open()) return;
  // Each connection goes to the next I/O thread's context, whose one thread
  // runs all its handlers.
  asio::io_context& io = *ios_[next_io_++ % ios_.size()];
  acceptor_.async_accept(io.get_executor(), [this](const std::error_code& ec, Socket socket) {
    OnAccept(ec, std::move(socket));
  });
}

void Server::OnAccept(const std::error_code& ec, Socket socket) {
  if (!acceptor_.is_open() || ec == asio::error::operation_aborted) return;
  if (ec) {
    spdlog::warn("[server] accept failed: {}", ec.message());
    RetryAcceptLater();
    return;
  }
  ServeOrLog(std::move(socket));
  // Take what else waits in the kernel's backlog now (up to a bound), instead
  // of one connection per trip through a busy I/O thread's queue: under a
  // flood of connections a new client would otherwise wait for all of those
  // trips before being served.
  for (int i = 1; i < kAcceptBatch && acceptor_.is_open(); ++i) {
    std::error_code e;
    // The thread is taken only by a connection that arrives: counting the
    // attempt that finds the backlog empty too would skip a thread each
    // time, and with two threads put every connection that comes alone
    // (one at a time, like a TLS client's) on the same one.
    Socket next = acceptor_.accept(ios_[next_io_ % ios_.size()]->get_executor(), e);
    if (e) break;  // would_block, or an error the next async_accept reports
    ++next_io_;
    ServeOrLog(std::move(next));
  }
  DoAccept();
}

// Whatever happens to one connection, the listener keeps accepting.
void Server::ServeOrLog(Socket socket) {
  try {
    Serve(std::move(socket));
  } catch (const std::exception& e) {
    spdlog::error("[server] cannot serve a new connection: {}", e.what());
  }
}

// Registers and starts a session for `socket`, or refuses it when the server
// is at its connection limit. Runs on accept_executor_.
void Server::Serve(Socket socket) {
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;  // the socket closes with it
    full = sessions_.size() >= options_.max_connections;
  }
  // Only this thread adds sessions, so the count cannot have grown meanwhile.
  if (full) return Refuse(std::move(socket));
  std::error_code ignored;
  // Responses are small and latency matters more than packet count; the
  // session already batches everything that is ready into one write.
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  SessionTls tls;
  if (options_.tls != nullptr) {
    tls.context = options_.tls->server();
    tls.plaintext_refusal = plaintext_refusal_;
    tls.handshake_timeout = options_.tls_handshake_timeout;
  }
  auto session = std::make_shared<Session>(
      std::move(socket), handler_, options_.session, [this](Session* s) { OnSessionClosed(s); },
      std::move(tls));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;  // the session's socket closes with it
    sessions_.emplace(session.get(), session);
    if (options_.stats) options_.stats->open.store(sessions_.size(), std::memory_order_relaxed);
  }
  spdlog::debug("[server] connection from {}", session->peer());
  session->Start();
}

// Sends the one `overloaded` line at once (a fresh socket's send buffer takes
// it whole), then lets the connection linger; see "Connection limit".
void Server::Refuse(Socket socket) {
  if (options_.stats) options_.stats->refused.fetch_add(1, std::memory_order_relaxed);
  const auto now = std::chrono::steady_clock::now();
  if (now >= next_refusal_log_) {
    next_refusal_log_ = now + kRefusalLogInterval;
    spdlog::warn("[server] at the connection limit ({}): refusing new connections",
                 options_.max_connections);
  }
  std::error_code ec;
  socket.non_blocking(true, ec);
  if (!ec) asio::write(socket, asio::buffer(overloaded_line_), ec);
  if (!ec) socket.shutdown(asio::socket_base::shutdown_send, ec);
  if (ec || lingering_->load(std::memory_order_relaxed) >= kMaxLingering) {
    std::error_code ignored;
    socket.close(ignored);
    return;
  }
  std::make_shared<Refusal>(std::move(socket), lingering_)->Start();
}

void Server::RetryAcceptLater() {
  accept_retry_timer_.expires_after(kAcceptRetryDelay);
  accept_retry_timer_.async_wait([this](const std::error_code& ec) {
    if (!ec) DoAccept();
  });
}

// Runs on accept_executor_: the acceptor and its timer are not thread-safe.
void Server::CloseAcceptor() {
  std::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_timer_.cancel();
}

// ---- Sessions and shutdown ----

// Runs on the session's I/O thread, inside one of its handlers, which holds a
// reference: erasing the registry's reference here never destroys the
// session under its own feet. The release happens outside the lock.
void Server::OnSessionClosed(Session* session) {
  std::shared_ptr<Session> released;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(session);
    if (it == sessions_.end()) return;
    released = std::move(it->second);
    sessions_.erase(it);
    if (options_.stats) options_.stats->open.store(sessions_.size(), std::memory_order_relaxed);
  }
  sessions_changed_.notify_all();
}

std::vector<std::shared_ptr<Session>> Server::LiveSessions() const {
  std::vector<std::shared_ptr<Session>> live;
  std::lock_guard<std::mutex> lock(mu_);
  live.reserve(sessions_.size());
  for (const auto& [raw, session] : sessions_) live.push_back(session);
  return live;
}

bool Server::WaitForSessions(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return sessions_changed_.wait_until(lock, deadline, [this] { return sessions_.empty(); });
}

// Runs the hooks' Detach() on every I/O thread and waits for them. Each
// thread has run its Attach() before any handler, so Detach() follows it.
void Server::DetachHooks() {
  if (options_.hooks == nullptr) return;
  std::vector<std::promise<void>> detached(ios_.size());
  std::vector<std::future<void>> waits;
  for (auto& promise : detached) waits.push_back(promise.get_future());  // before the posts
  for (size_t i = 0; i < ios_.size(); ++i) {
    asio::post(*ios_[i], [this, i, promise = &detached[i]] {
      try {
        options_.hooks->Detach(i);
      } catch (const std::exception& e) {
        spdlog::error("[server] detaching I/O thread {} failed: {}", i, e.what());
      }
      promise->set_value();
    });
  }
  for (auto& wait : waits) wait.wait();
}

void Server::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (!started_) {
    std::error_code ignored;
    acceptor_.close(ignored);
    return;
  }
  // The future is taken before the post: get_future() racing the I/O
  // thread's set_value() was seen to leave set_value() without its state.
  std::promise<void> acceptor_closed;
  std::future<void> closed = acceptor_closed.get_future();
  asio::post(accept_executor_, [this, &acceptor_closed] {
    CloseAcceptor();
    acceptor_closed.set_value();
  });
  closed.wait();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }

  auto live = LiveSessions();
  spdlog::info("[server] stopping: draining {} connection(s)", live.size());
  for (const auto& session : live) session->Stop();
  live.clear();
  if (!WaitForSessions(std::chrono::steady_clock::now() + options_.drain_timeout)) {
    live = LiveSessions();
    spdlog::warn("[server] {} connection(s) still busy after {} ms; closing them", live.size(),
                 options_.drain_timeout.count());
    for (const auto& session : live) session->Abort();
    live.clear();
    if (!WaitForSessions(std::chrono::steady_clock::now() + kAbortWait)) {
      spdlog::warn("[server] connections did not close in time; stopping anyway");
    }
  }

  DetachHooks();
  work_.clear();
  for (auto& io : ios_) io->stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  spdlog::info("[server] stopped");
}

}  // namespace ringkv::net
