// Client: blocking POSIX sockets, non-blocking underneath so that poll() can
// bound every connect, write and read. Nothing here throws: JSON is parsed with
// exceptions off and dump() (which throws on invalid UTF-8) is caught.
//
// With TLS, the same loops go through SSL_write_ex/SSL_read_ex, and wait on
// whichever direction OpenSSL asks for (WANT_READ / WANT_WRITE). A read is
// tried before polling, because the SSL may hold decrypted bytes already
// (SSL_pending) that no socket readiness would announce.
#include "cli/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "common/host_port.h"

namespace ringkv {

namespace {

using SteadyClock = std::chrono::steady_clock;

// A response line longer than this is treated as a broken stream rather than
// buffered without bound (the server's own limit on values is far smaller).
constexpr size_t kMaxResponseBytes = 256u << 20;

// OS messages start with a capital; ours continue a sentence: "connection refused".
std::string LowerFirst(std::string text) {
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z') text[0] = static_cast<char>(text[0] + 32);
  return text;
}

std::string ErrnoText(int err) { return LowerFirst(std::strerror(err)); }

// Milliseconds left until `deadline`, for poll(); -1 (no bound) when the
// client has no timeout.
int RemainingMs(bool bounded, SteadyClock::time_point deadline) {
  if (!bounded) return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Waits for `events` on fd. Returns 1 when ready, 0 on timeout, -1 with errno.
int PollFd(int fd, short events, bool bounded, SteadyClock::time_point deadline) {
  for (;;) {
    pollfd pfd{fd, events, 0};
    int rc = ::poll(&pfd, 1, RemainingMs(bounded, deadline));
    if (rc < 0 && errno == EINTR) continue;
    return rc;
  }
}

// Splits "HOST:PORT" or "[V6HOST]:PORT" (a port to connect to: not 0).
// False if malformed.
bool SplitHostPort(std::string_view host_port, std::string* host, std::string* port) {
  HostPort hp;
  if (!ParseHostPort(host_port, &hp).ok() || hp.port == 0) return false;
  *host = hp.host;
  *port = std::to_string(hp.port);
  return true;
}

// Connects one resolved address within the deadline. Returns the fd (non-blocking,
// TCP_NODELAY) or -1 with *err set.
int ConnectOne(const addrinfo* ai, bool bounded, SteadyClock::time_point deadline, int* err) {
  int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
  if (rc < 0 && errno == EINPROGRESS) {
    int ready = PollFd(fd, POLLOUT, bounded, deadline);
    if (ready <= 0) {
      *err = ready == 0 ? ETIMEDOUT : errno;
      ::close(fd);
      return -1;
    }
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0) so_error = errno;
    rc = so_error == 0 ? 0 : -1;
    errno = so_error;
  }
  if (rc < 0) {
    *err = errno;
    ::close(fd);
    return -1;
  }
  int one = 1;
  // Best effort: a socket without Nagle disabled still works, only slower.
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// SSL_get_error's wait as poll() events; 0 if it is not a wait.
short WaitEvents(int ssl_error) {
  if (ssl_error == SSL_ERROR_WANT_READ) return POLLIN;
  if (ssl_error == SSL_ERROR_WANT_WRITE) return POLLOUT;
  return 0;
}

// Why an SSL read or write failed: OpenSSL's reason, else the OS's.
std::string TlsIoFailure(int saved_errno) {
  std::string text = TlsErrorText();
  if (!text.empty()) return text;
  return ErrnoText(saved_errno != 0 ? saved_errno : ECONNRESET);
}

}  // namespace

bool Client::ValidAddress(std::string_view host_port) {
  std::string host, port;
  return SplitHostPort(host_port, &host, &port);
}

Status Client::Connect(std::string_view host_port, std::unique_ptr<Client>* out, int timeout_ms,
                       const ClientSecurity& security) {
  out->reset();
  std::string host, port;
  if (!SplitHostPort(host_port, &host, &port)) {
    return Status::BadRequest("malformed address (want HOST:PORT): " + std::string(host_port));
  }
  // The context first: an unreadable CA file fails before any connection.
  std::shared_ptr<ssl_ctx_st> tls_context = security.tls_context;
  if (security.tls && tls_context == nullptr) {
    RINGKV_RETURN_IF_ERROR(MakeTlsContext(security.tls_ca, &tls_context));
  }
  bool bounded = timeout_ms > 0;
  auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) {
    return Status::Unavailable(gai == EAI_SYSTEM ? ErrnoText(errno)
                                                 : LowerFirst(::gai_strerror(gai)));
  }
  int err = ECONNREFUSED;
  int fd = -1;
  for (const addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ConnectOne(ai, bounded, deadline, &err);
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    return Status::Unavailable(err == ETIMEDOUT ? "connect timed out" : ErrnoText(err));
  }
  std::unique_ptr<Client> client(new Client(fd, timeout_ms));
  if (security.tls) {
    RINGKV_RETURN_IF_ERROR(
        TlsHandshake(tls_context.get(), fd, host, host_port, timeout_ms, &client->ssl_));
  }
  if (!security.user.empty()) {
    RINGKV_RETURN_IF_ERROR(client->Authenticate(security.user, security.password));
  }
  *out = std::move(client);
  return Status::OK();
}

Client::~Client() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

Status Client::Call(const nlohmann::json& request, nlohmann::json* response) {
  std::string line;
  try {
    line = request.dump();
  } catch (const nlohmann::json::exception& e) {
    return Status::BadRequest(std::string("request is not valid JSON text: ") + e.what());
  }
  return CallLine(line, response);
}

Status Client::CallLine(const std::string& line, nlohmann::json* response) {
  RINGKV_RETURN_IF_ERROR(SendLine(line));
  std::string reply;
  RINGKV_RETURN_IF_ERROR(ReceiveLine(&reply));
  *response = nlohmann::json::parse(reply, nullptr, false);
  if (response->is_discarded() || !response->is_object()) {
    std::string head = reply.substr(0, 200);
    *response = nlohmann::json();
    return Status::Internal("malformed response from server: " + head);
  }
  return Status::OK();
}

Status Client::SendLine(std::string_view line) {
  std::string buf;
  buf.reserve(line.size() + 1);
  buf.append(line);
  buf.push_back('\n');
  return SendRaw(buf);
}

Status Client::Authenticate(std::string_view user, std::string_view password) {
  std::string line;
  try {
    line = nlohmann::json{{"op", "auth"}, {"user", user}, {"password", password}}.dump();
  } catch (const nlohmann::json::exception&) {
    // Not e.what(): it quotes the offending byte, which may be the password's.
    return Status::BadRequest("the user name and password must be UTF-8 text");
  }
  nlohmann::json response;
  RINGKV_RETURN_IF_ERROR(CallLine(line, &response));
  auto ok = response.find("ok");
  if (ok != response.end() && ok->is_boolean() && ok->get<bool>()) return Status::OK();
  std::string code, message;
  auto error = response.find("error");
  if (error != response.end() && error->is_object()) {
    auto c = error->find("code"), m = error->find("message");
    if (c != error->end() && c->is_string()) code = c->get<std::string>();
    if (m != error->end() && m->is_string()) message = m->get<std::string>();
  }
  Status::Code status_code = Status::Code::kInternal;
  if (!Status::CodeFromName(code, &status_code) || status_code == Status::Code::kOk ||
      status_code == Status::Code::kNotFound) {
    status_code = Status::Code::kInternal;
  }
  if (message.empty()) message = "authentication refused: " + response.dump();
  return Status::FromCode(status_code, message);
}

Status Client::Release(int* fd, ssl_st** ssl) {
  if (!inbuf_.empty()) return Status::Internal("unread bytes on the connection");
  *fd = fd_;
  *ssl = ssl_;
  fd_ = -1;
  ssl_ = nullptr;
  closed_ = true;
  return Status::OK();
}

Status Client::SendTls(std::string_view bytes) {
  bool bounded = timeout_ms_ > 0;
  auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms_);
  size_t sent = 0;
  while (sent < bytes.size()) {
    ERR_clear_error();
    errno = 0;
    size_t n = 0;
    int rc = SSL_write_ex(ssl_, bytes.data() + sent, bytes.size() - sent, &n);
    if (rc == 1) {
      sent += n;
      deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms_);
      continue;
    }
    int saved_errno = errno;
    short events = WaitEvents(SSL_get_error(ssl_, rc));
    if (events == 0) return Status::Unavailable("send failed: " + TlsIoFailure(saved_errno));
    int ready = PollFd(fd_, events, bounded, deadline);
    if (ready == 0) return Status::Timeout("server did not read the request in time");
    if (ready < 0) return Status::Unavailable(ErrnoText(errno));
  }
  return Status::OK();
}

Status Client::ReadTls(short* wait) {
  *wait = 0;
  char chunk[65536];
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  int rc = SSL_read_ex(ssl_, chunk, sizeof(chunk), &n);
  if (rc == 1) {
    inbuf_.append(chunk, n);
    return Status::OK();
  }
  int saved_errno = errno;
  int err = SSL_get_error(ssl_, rc);
  *wait = WaitEvents(err);
  if (*wait != 0) return Status::OK();
  closed_ = true;  // a clean close (ZERO_RETURN: close_notify or EOF) or a broken one
  if (err == SSL_ERROR_ZERO_RETURN) return Status::OK();
  std::string why = TlsIoFailure(saved_errno);
  if (inbuf_.find('\n') == std::string::npos) return Status::Unavailable("receive failed: " + why);
  return Status::OK();
}

// Without TLS, touches only fd_ and timeout_ms_, so a test may send from one
// thread while another receives.
Status Client::SendRaw(std::string_view bytes) {
  if (ssl_ != nullptr) return SendTls(bytes);
  bool bounded = timeout_ms_ > 0;
  auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms_);
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      // Each write that makes progress restarts the clock: the bound is on a
      // stalled peer, not on the size of the request.
      deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms_);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int ready = PollFd(fd_, POLLOUT, bounded, deadline);
      if (ready == 0) return Status::Timeout("server did not read the request in time");
      if (ready < 0) return Status::Unavailable(ErrnoText(errno));
      continue;
    }
    return Status::Unavailable("send failed: " + ErrnoText(n < 0 ? errno : EPIPE));
  }
  return Status::OK();
}

Status Client::ReceiveLine(std::string* line) {
  bool bounded = timeout_ms_ > 0;
  auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms_);
  size_t scanned = 0;
  for (;;) {
    size_t nl = inbuf_.find('\n', scanned);
    if (nl != std::string::npos) {
      size_t end = (nl > 0 && inbuf_[nl - 1] == '\r') ? nl - 1 : nl;
      line->assign(inbuf_, 0, end);
      inbuf_.erase(0, nl + 1);
      return Status::OK();
    }
    scanned = inbuf_.size();
    if (closed_) return Status::Unavailable("connection closed by server");
    if (inbuf_.size() > kMaxResponseBytes) return Status::Internal("response line too long");
    if (ssl_ != nullptr) {
      short wait = 0;
      RINGKV_RETURN_IF_ERROR(ReadTls(&wait));
      if (wait == 0) continue;
      int ready = PollFd(fd_, wait, bounded, deadline);
      if (ready == 0) {
        return Status::Timeout("no response within " + std::to_string(timeout_ms_) + " ms");
      }
      if (ready < 0) return Status::Unavailable(ErrnoText(errno));
      continue;
    }
    int ready = PollFd(fd_, POLLIN, bounded, deadline);
    if (ready == 0) {
      return Status::Timeout("no response within " + std::to_string(timeout_ms_) + " ms");
    }
    if (ready < 0) return Status::Unavailable(ErrnoText(errno));
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      inbuf_.append(chunk, static_cast<size_t>(n));
    } else if (n == 0) {
      closed_ = true;
    } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
      int err = errno;
      closed_ = true;
      if (inbuf_.find('\n', scanned) == std::string::npos) {
        return Status::Unavailable("receive failed: " + ErrnoText(err));
      }
    }
  }
}

}  // namespace ringkv
