// Raw TCP on 127.0.0.1 for tests that must see the bytes on the wire: a
// blocking client connection with bounded reads and writes, a listener that
// never answers, and a port nothing listens on.
//
// Thread-safety: a LoopbackConn may be written from one thread while another
// reads it; otherwise one thread at a time. The free functions are stateless.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/util/wait_for.h"

namespace ringkv::testutil {

// A port on 127.0.0.1 that nothing listens on (bound, read, then closed); -1
// if no socket could be bound.
inline int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// The port of a "host:port" address; 0 if it has none.
inline uint16_t PortOf(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return 0;
  return static_cast<uint16_t>(std::atoi(std::string(address.substr(colon + 1)).c_str()));
}

// A socket on 127.0.0.1 that listens but never accepts: the kernel completes
// up to `backlog` handshakes, then nothing is ever read or answered.
class SilentListener {
 public:
  explicit SilentListener(int backlog = 4) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
        ::listen(fd_, backlog) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~SilentListener() { Close(); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  // True if it is listening.
  bool ok() const { return fd_ >= 0 && port_ != 0; }
  uint16_t port() const { return port_; }
  // Stops listening (pending connections are reset). Idempotent.
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A blocking client connection to 127.0.0.1:port. Every write and read is
// bounded by `timeout` (default kWait), so a server that stops answering
// fails the test instead of hanging it.
class LoopbackConn {
 public:
  // How a read loop ended.
  enum class End { kEof, kReset, kTimeout };

  // `receive_buffer` > 0 sets SO_RCVBUF, so that the kernel holds little of
  // what the server sends while the test does not read.
  explicit LoopbackConn(uint16_t port, std::chrono::milliseconds timeout = kWait,
                        int receive_buffer = 0)
      : timeout_(timeout) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    // Bounds each blocking send().
    timeval tv{};
    tv.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~LoopbackConn() { Close(); }
  LoopbackConn(const LoopbackConn&) = delete;
  LoopbackConn& operator=(const LoopbackConn&) = delete;

  bool connected() const { return connected_; }

  // Writes all of `bytes`: one send() unless the kernel takes less. False if
  // the connection fails or the timeout passes first.
  bool SendAll(std::string_view bytes) {
    const auto deadline = SteadyClock::now() + timeout_;
    while (!bytes.empty() && SteadyClock::now() < deadline) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return bytes.empty();
  }
  // The same as SendAll().
  bool Send(std::string_view bytes) { return SendAll(bytes); }

  // Reads one line, without its "\n". False on end of stream or timeout.
  bool ReadLine(std::string* line) {
    const auto deadline = SteadyClock::now() + timeout_;
    for (;;) {
      const size_t newline = in_.find('\n');
      if (newline != std::string::npos) {
        *line = in_.substr(0, newline);
        in_.erase(0, newline + 1);
        return true;
      }
      if (end_ || SteadyClock::now() >= deadline) return false;
      Fill(deadline);
    }
  }

  // Reads until the server closes the connection. Returns how the stream
  // ended; `lines` gets every complete line received meanwhile.
  End ReadUntilClosed(std::vector<std::string>* lines) {
    const auto deadline = SteadyClock::now() + timeout_;
    while (!end_ && SteadyClock::now() < deadline) Fill(deadline);
    size_t start = 0;
    for (size_t newline; (newline = in_.find('\n', start)) != std::string::npos;
         start = newline + 1) {
      lines->push_back(in_.substr(start, newline - start));
    }
    in_.erase(0, start);
    return end_ ? *end_ : End::kTimeout;
  }

  // Reads until end of stream; appends every byte received to *out. True on
  // a clean end of stream, false on a reset or the timeout.
  bool ReadToEnd(std::string* out) {
    const auto deadline = SteadyClock::now() + timeout_;
    while (!end_ && SteadyClock::now() < deadline) Fill(deadline);
    out->append(in_);
    in_.clear();
    return end_ == End::kEof;
  }

  // Bytes after the last complete line, at the end of ReadUntilClosed().
  const std::string& leftover() const { return in_; }

  // True if a response byte is ready to be read right now.
  bool Readable() {
    if (!in_.empty()) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

  // Ends the sending direction (the server sees end of stream).
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }
  // Ends both directions; a blocked send() or read in another thread returns.
  void Shutdown() { ::shutdown(fd_, SHUT_RDWR); }
  // Closes the socket. Idempotent.
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  // Waits until at most `deadline` for input and appends it to in_; sets end_
  // when the stream ends. The caller loops until its condition or deadline.
  void Fill(SteadyClock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now())
            .count();
    if (left <= 0) return;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left) + 1) <= 0) return;  // timeout or EINTR
    char buf[64 * 1024];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      end_ = End::kEof;
    } else if (errno != EINTR && errno != EAGAIN) {
      end_ = End::kReset;
    }
  }

  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  bool connected_ = false;
  std::string in_;
  std::optional<End> end_;
};

}  // namespace ringkv::testutil
