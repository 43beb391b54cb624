// Client: blocking POSIX sockets, non-blocking underneath so that poll() can
// bound every connect, write and read. Nothing here throws: JSON is parsed with
// exceptions off and dump() (which throws on invalid UTF-8) is caught.
#include "cli/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

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

// Splits "HOST:PORT" or "[V6HOST]:PORT". False if malformed.
bool SplitHostPort(std::string_view host_port, std::string* host, std::string* port) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view h = host_port.substr(0, colon);
  std::string_view p = host_port.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty() || p.empty() || p.size() > 5) return false;
  unsigned value = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  host->assign(h);
  port->assign(p);
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

}  // namespace

Status Client::Connect(std::string_view host_port, std::unique_ptr<Client>* out, int timeout_ms) {
  out->reset();
  std::string host, port;
  if (!SplitHostPort(host_port, &host, &port)) {
    return Status::BadRequest("malformed address (want HOST:PORT): " + std::string(host_port));
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
  out->reset(new Client(fd, timeout_ms));
  return Status::OK();
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

Status Client::Call(const nlohmann::json& request, nlohmann::json* response) {
  std::string line;
  try {
    line = request.dump();
  } catch (const nlohmann::json::exception& e) {
    return Status::BadRequest(std::string("request is not valid JSON text: ") + e.what());
  }
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

// Touches only fd_ and timeout_ms_, so a test may send from one thread while
// another receives.
Status Client::SendRaw(std::string_view bytes) {
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
