// A tiny line server on 127.0.0.1 for client-side TLS tests, with OpenSSL's
// own server (SSL_accept) and certificates made by the `openssl` command in a
// temporary directory: clients are tested against a TLS stack that is not ours.
//
//   TestCertificates certs;           // a CA-less self-signed cert for 127.0.0.1
//   LineServer server(certs.cert(), certs.key(), [](const std::string& line) {
//     return line;                    // the answer line (without "\n")
//   });
//   Client::Connect(server.address(), ...);
//
// Each connection is served on its own thread: the handshake, then every
// request line answered in order. An empty cert file means plaintext.
//
// Thread-safety: constructed and destroyed on one thread; the handler runs on
// the connections' threads (concurrently when several clients connect).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/util/temp_dir.h"

namespace ringkv::testutil {

// Self-signed certificates made with `openssl req -x509` (EC P-256, valid two
// days) in a temporary directory removed with the object. ok() is false if
// the openssl command is missing or failed.
class TestCertificates {
 public:
  TestCertificates() : dir_("ringkv-tls-test") {
    ok_ = Make("good", "IP:127.0.0.1,DNS:localhost") && Make("other", "IP:127.0.0.1") &&
          Make("elsewhere", "IP:127.0.0.2");
  }
  bool ok() const { return ok_; }
  // A certificate for 127.0.0.1 and localhost; its own CA.
  std::string cert() const { return dir_.Sub("good.crt"); }
  std::string key() const { return dir_.Sub("good.key"); }
  // Another self-signed certificate: the wrong CA for cert().
  std::string other_cert() const { return dir_.Sub("other.crt"); }
  // A certificate (and CA) for 127.0.0.2 only.
  std::string elsewhere_cert() const { return dir_.Sub("elsewhere.crt"); }
  std::string elsewhere_key() const { return dir_.Sub("elsewhere.key"); }
  const ScopedTempDir& dir() const { return dir_; }

 private:
  bool Make(const std::string& name, const std::string& san) {
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        " -subj /CN=" +
        name + " -addext subjectAltName=" + san + " -keyout '" + dir_.Sub(name + ".key") +
        "' -out '" + dir_.Sub(name + ".crt") + "' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  }

  ScopedTempDir dir_;
  bool ok_ = false;
};

class LineServer {
 public:
  using Handler = std::function<std::string(const std::string& line)>;

  // Serves on 127.0.0.1 (a port the kernel picks) with TLS from cert_file and
  // key_file, or plaintext if cert_file is "".
  LineServer(const std::string& cert_file, const std::string& key_file, Handler handler)
      : handler_(std::move(handler)) {
    if (!cert_file.empty()) {
      ctx_ = SSL_CTX_new(TLS_server_method());
      ok_ = ctx_ != nullptr && SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()) == 1 &&
            SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) == 1;
    }
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ok_ = ok_ && listen_fd_ >= 0 &&
          ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
          ::listen(listen_fd_, 64) == 0 &&
          ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    address_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    if (ok_) acceptor_ = std::thread([this] { Accept(); });
  }
  ~LineServer() {
    if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard<std::mutex> l(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);  // wakes the connections' reads
    }
    for (auto& t : conns_) t.join();
    for (int fd : fds_) ::close(fd);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  }
  LineServer(const LineServer&) = delete;
  LineServer& operator=(const LineServer&) = delete;

  bool ok() const { return ok_; }
  const std::string& address() const { return address_; }
  // Connections whose handshake completed / failed.
  int handshakes() const { return handshakes_.load(); }
  int failed_handshakes() const { return failed_handshakes_.load(); }

 private:
  void Accept() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      // A stuck test ends in a failed read, not a hang.
      timeval tv{10, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      std::lock_guard<std::mutex> l(mu_);
      fds_.push_back(fd);
      conns_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    SSL* ssl = nullptr;
    if (ctx_ != nullptr) {
      ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) != 1) {
        failed_handshakes_++;
        SSL_free(ssl);
        return;  // the destructor closes fd
      }
      handshakes_++;
    }
    std::string in;
    char buf[16384];
    for (;;) {
      int n = ssl != nullptr ? SSL_read(ssl, buf, sizeof buf)
                             : static_cast<int>(::read(fd, buf, sizeof buf));
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      std::string out;
      for (size_t nl; (nl = in.find('\n')) != std::string::npos;) {
        out += handler_(in.substr(0, nl)) + "\n";
        in.erase(0, nl + 1);
      }
      if (!out.empty() && !WriteAll(ssl, fd, out)) break;
    }
    if (ssl != nullptr) SSL_free(ssl);
  }

  static bool WriteAll(SSL* ssl, int fd, const std::string& out) {
    size_t done = 0;
    while (done < out.size()) {
      int n =
          ssl != nullptr
              ? SSL_write(ssl, out.data() + done, static_cast<int>(out.size() - done))
              : static_cast<int>(::send(fd, out.data() + done, out.size() - done, MSG_NOSIGNAL));
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  Handler handler_;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  bool ok_ = true;
  std::string address_;
  std::thread acceptor_;
  std::atomic<int> handshakes_{0};
  std::atomic<int> failed_handshakes_{0};
  std::mutex mu_;
  // mu_ protects the following (appended by the acceptor; the destructor
  // reads them once it has joined the acceptor).
  std::vector<int> fds_;  // every accepted connection, closed by the destructor
  std::vector<std::thread> conns_;
};

}  // namespace ringkv::testutil
