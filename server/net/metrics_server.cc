#include "server/net/metrics_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <asio/ip/address.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <charconv>
#include <exception>
#include <utility>
#include <vector>

#include "server/net/address.h"

namespace ringkv::net {
namespace {

// After an accept error that is not about the listener going away (out of
// file descriptors, say), wait this long before accepting again.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

// After the response has been sent, how long to keep reading (and dropping)
// what the client still sends before closing. Closing with unread input
// makes the kernel reset the connection, which may destroy the response
// before the client has read it (a request with a body, an oversized head).
constexpr auto kLingerTimeout = std::chrono::seconds(2);

constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kPlainContentType = "text/plain; charset=utf-8";

// ---- HTTP ----

struct Response {
  int status = 200;
  std::string_view content_type = kPlainContentType;
  std::string body;
  std::string_view extra_headers;  // each line ending in "\r\n"
  bool head = false;               // HEAD: send no body
};

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string Serialize(const Response& r) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " ";
  out += ReasonPhrase(r.status);
  out += "\r\nContent-Type: ";
  out += r.content_type;
  out += "\r\nContent-Length: " + std::to_string(r.body.size());
  out += "\r\nConnection: close\r\n";
  out += r.extra_headers;
  out += "\r\n";
  if (!r.head) out += r.body;
  return out;
}

Response Error(int status) {
  Response r;
  r.status = status;
  r.body = std::string(ReasonPhrase(status)) + "\n";
  return r;
}

// RFC 9110 token characters (methods, header names).
bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// The offset just past the blank line that ends the request head, or npos.
// Lines end in "\r\n" or, leniently, "\n".
size_t HeadEnd(std::string_view data) {
  for (size_t nl = data.find('\n'); nl != std::string_view::npos; nl = data.find('\n', nl + 1)) {
    const std::string_view rest = data.substr(nl + 1);
    if (rest.starts_with("\n")) return nl + 2;
    if (rest.starts_with("\r\n")) return nl + 3;
  }
  return std::string_view::npos;
}

// The lines of `head` without their line endings; the blank last line dropped.
std::vector<std::string_view> Lines(std::string_view head) {
  std::vector<std::string_view> lines;
  while (!head.empty()) {
    const size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    if (line.ends_with('\r')) line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    head.remove_prefix(nl + 1);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// Answers one complete request head.
Response Route(std::string_view head, const MetricsServer::TextFunction& text,
               const MetricsServer::HealthFunction& healthy) {
  const std::vector<std::string_view> lines = Lines(head);
  if (lines.empty()) return Error(400);
  // request-line = method SP request-target SP HTTP-version
  const std::string_view request_line = lines[0];
  const size_t sp1 = request_line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || request_line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Error(400);
  }
  const std::string_view method = request_line.substr(0, sp1);
  const std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = request_line.substr(sp2 + 1);
  // A response to HEAD has no body, whatever its status.
  const bool head_only = method == "HEAD";
  const auto error = [head_only](int status) {
    Response r = Error(status);
    r.head = head_only;
    return r;
  };
  if (!IsToken(method) || !target.starts_with('/')) return error(400);
  if (std::any_of(target.begin(), target.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; })) {
    return error(400);
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return error(version.starts_with("HTTP/") ? 505 : 400);
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string_view::npos || !IsToken(lines[i].substr(0, colon))) return error(400);
  }

  const std::string_view path = target.substr(0, target.find('?'));
  const bool is_metrics = path == "/metrics";
  if (!is_metrics && path != "/health") return error(404);
  if (method != "GET" && !head_only) {
    Response r = error(405);
    r.extra_headers = "Allow: GET, HEAD\r\n";
    return r;
  }

  Response r;
  r.head = head_only;
  if (is_metrics) {
    r.content_type = kMetricsContentType;
    r.body = text();
  } else if (healthy()) {
    r.body = "ok\n";
  } else {
    r.status = 503;
    r.body = "unavailable\n";
  }
  return r;
}

}  // namespace

// ---- Connection ----

// One client connection: read the request head, answer, close. Lives on the
// server's thread; owned by the server's registry until closed, and by its
// pending operations.
class MetricsServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(MetricsServer* server, asio::ip::tcp::socket socket)
      : server_(server), socket_(std::move(socket)), timer_(server->io_) {}

  void Start() {
    ArmTimer(server_->options_.read_timeout);
    DoRead();
  }

  // Closes the socket: pending operations end with operation_aborted.
  // Idempotent.
  void Close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    timer_.cancel();
    std::error_code ignored;
    socket_.close(ignored);
    server_->Forget(shared_from_this());
  }

 private:
  enum class Phase { kReading, kWriting, kLingering, kClosed };

  // (Re)starts the deadline of the current phase; when it passes, the
  // connection is closed.
  void ArmTimer(std::chrono::milliseconds after) {
    const uint64_t generation = ++timer_generation_;
    timer_.expires_after(after);
    timer_.async_wait([self = shared_from_this(), generation](const std::error_code& ec) {
      if (ec || generation != self->timer_generation_ || self->phase_ == Phase::kClosed) return;
      if (self->phase_ != Phase::kLingering) {
        spdlog::debug("[metrics] closing a connection: no {} within the deadline",
                      self->phase_ == Phase::kReading ? "request" : "progress writing");
      }
      self->Close();
    });
  }

  void DoRead() {
    socket_.async_read_some(
        asio::buffer(buffer_),
        [self = shared_from_this()](const std::error_code& ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(const std::error_code& ec, size_t n) {
    if (phase_ == Phase::kClosed) return;
    if (ec) {  // end of stream or error before a whole request: nothing to answer
      Close();
      return;
    }
    request_.append(buffer_.data(), n);
    const size_t limit = server_->options_.max_header_bytes;
    const size_t end = HeadEnd(request_);
    if (end != std::string::npos && end <= limit) {
      Send(Answer(std::string_view(request_).substr(0, end)));
    } else if (end != std::string::npos || request_.size() > limit) {
      Send(Error(431));
    } else {
      DoRead();
    }
  }

  // The response to a complete head; never throws.
  Response Answer(std::string_view head) {
    try {
      return Route(head, server_->text_, server_->healthy_);
    } catch (const std::exception& e) {
      spdlog::error("[metrics] cannot answer a request: {}", e.what());
    } catch (...) {
      spdlog::error("[metrics] cannot answer a request: unknown exception");
    }
    Response r = Error(500);
    r.head = head.starts_with("HEAD ");
    return r;
  }

  void Send(const Response& response) {
    phase_ = Phase::kWriting;
    request_.clear();
    request_.shrink_to_fit();
    response_ = Serialize(response);
    ArmTimer(server_->options_.write_timeout);
    asio::async_write(
        socket_, asio::buffer(response_),
        [self = shared_from_this()](const std::error_code& ec, size_t) { self->OnWritten(ec); });
  }

  void OnWritten(const std::error_code& ec) {
    if (phase_ == Phase::kClosed) return;
    if (ec) {
      Close();
      return;
    }
    response_.clear();
    response_.shrink_to_fit();
    // Lingering close: signal the end of the response, then drop what the
    // client still sends until it closes too (or the linger deadline).
    std::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    phase_ = Phase::kLingering;
    ArmTimer(std::chrono::duration_cast<std::chrono::milliseconds>(kLingerTimeout));
    DoDrain();
  }

  void DoDrain() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](const std::error_code& ec, size_t) {
                              if (self->phase_ == Phase::kClosed) return;
                              if (ec) {
                                self->Close();
                              } else {
                                self->DoDrain();
                              }
                            });
  }

  MetricsServer* const server_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  uint64_t timer_generation_ = 0;
  Phase phase_ = Phase::kReading;
  std::string request_;   // the head read so far
  std::string response_;  // being written
  std::array<char, 2048> buffer_{};
};

// ---- MetricsServer ----

MetricsServer::MetricsServer(MetricsServerOptions options, TextFunction text,
                             HealthFunction healthy)
    : options_(std::move(options)), text_(std::move(text)), healthy_(std::move(healthy)) {}

MetricsServer::~MetricsServer() { Stop(); }

Status MetricsServer::CheckAddress(std::string_view address) {
  std::string host;
  uint16_t port = 0;
  return SplitHostPort(address, "metrics", &host, &port);
}

std::string MetricsServer::BoundAddress() const { return host_ + ":" + std::to_string(port_); }

Status MetricsServer::Start() {
  if (started_ || stopped_) return Status::Internal("metrics server started twice");
  uint16_t port = 0;
  RINGKV_RETURN_IF_ERROR(SplitHostPort(options_.listen, "metrics", &host_, &port));
  asio::ip::tcp::endpoint endpoint;
  RINGKV_RETURN_IF_ERROR(ResolveHost(io_, host_, port, "metrics", &endpoint));

  if (std::error_code ec = OpenAcceptor(acceptor_, endpoint, &port_)) {
    return Status::Internal("cannot listen for metrics on " + options_.listen + ": " +
                            ec.message());
  }
  started_ = true;
  DoAccept();  // before the thread runs: the pending accept keeps run() going
  thread_ = std::thread([this] { Run(); });
  spdlog::info("[metrics] serving on {} (GET /metrics, /health)", BoundAddress());
  return Status::OK();
}

void MetricsServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (!thread_.joinable()) {
    std::error_code ignored;
    acceptor_.close(ignored);
    return;
  }
  // Once the listener, its retry timer and every connection are closed, the
  // io_context runs out of work and the thread returns.
  asio::post(io_, [this] {
    std::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_timer_.cancel();
    CloseAll();
  });
  thread_.join();
  spdlog::debug("[metrics] stopped");
}

void MetricsServer::Run() { RunIoContext(io_, "[metrics]"); }

void MetricsServer::DoAccept() {
  acceptor_.async_accept([this](const std::error_code& ec, asio::ip::tcp::socket socket) {
    OnAccept(ec, std::move(socket));
  });
}

void MetricsServer::OnAccept(const std::error_code& ec, asio::ip::tcp::socket socket) {
  if (!acceptor_.is_open() || ec == asio::error::operation_aborted) return;
  if (ec) {
    spdlog::warn("[metrics] accept failed: {}", ec.message());
    accept_retry_timer_.expires_after(kAcceptRetryDelay);
    accept_retry_timer_.async_wait([this](const std::error_code& e) {
      if (!e && acceptor_.is_open()) DoAccept();
    });
    return;
  }
  if (connections_.size() >= options_.max_connections) {
    spdlog::debug("[metrics] {} connections open; refusing another", connections_.size());
    std::error_code ignored;
    socket.close(ignored);
  } else {
    auto connection = std::make_shared<Connection>(this, std::move(socket));
    connections_.insert(connection);
    connection->Start();
  }
  DoAccept();
}

void MetricsServer::CloseAll() {
  // Close() removes the connection from the registry: iterate over a copy.
  const std::vector<std::shared_ptr<Connection>> open(connections_.begin(), connections_.end());
  for (const auto& connection : open) connection->Close();
}

void MetricsServer::Forget(const std::shared_ptr<Connection>& connection) {
  connections_.erase(connection);
}

}  // namespace ringkv::net
