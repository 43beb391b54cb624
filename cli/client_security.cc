// Client-side security: flag parsing, password sources and TLS with OpenSSL.
// No crypto of our own; OpenSSL verifies the chain, the host name or IP, and
// negotiates the protocol.
#include "cli/client_security.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace ringkv {

const char kSecurityFlagsHelp[] =
    "security (PROTOCOL.md §11):\n"
    "  --tls                  connect with TLS, verifying the node's certificate\n"
    "  --tls-ca FILE          verify against the CA(s) in FILE, not the system's (implies --tls)\n"
    "  --user NAME            authenticate as NAME; the password comes from --password-file\n"
    "                         or the environment variable RINGKV_PASSWORD\n"
    "  --password-file FILE   the password: the first line of FILE\n";

namespace {

using SteadyClock = std::chrono::steady_clock;

// Password files are one short line; anything past this is not read.
constexpr size_t kMaxPasswordFileBytes = 64 << 10;

std::string ErrnoText(int err) {
  std::string text = std::strerror(err);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z') text[0] = static_cast<char>(text[0] + 32);
  return text;
}

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

// True for an IPv4 or IPv6 literal: those are checked against the
// certificate's IP addresses, and not sent as SNI (RFC 6066 forbids it).
bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Points the SSL's verification at `host`, so that a valid chain for another
// name or address is refused.
Status SetExpectedHost(SSL* ssl, const std::string& host) {
  if (IsIpLiteral(host)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1) {
      return Status::Internal("cannot check the certificate against " + host + ": " +
                              TlsErrorText());
    }
    return Status::OK();
  }
  if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 || SSL_set1_host(ssl, host.c_str()) != 1) {
    return Status::Internal("cannot check the certificate against " + host + ": " + TlsErrorText());
  }
  return Status::OK();
}

// Why a handshake failed, for a person. A failed verification names
// X509's reason ("self-signed certificate", "hostname mismatch"), which
// OpenSSL's error queue alone does not.
std::string HandshakeFailure(SSL* ssl, int ssl_error, int saved_errno) {
  std::string text = TlsErrorText();
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    if (text.empty()) text = "certificate verify failed";
    return text + " (" + X509_verify_cert_error_string(verify) + ")";
  }
  if (!text.empty()) return text;
  if (ssl_error == SSL_ERROR_SYSCALL && saved_errno != 0) return ErrnoText(saved_errno);
  return "connection closed by server";
}

// OpenSSL's socket BIO writes with write(), not send(MSG_NOSIGNAL): a write
// to a connection the server reset would raise SIGPIPE and kill the process
// instead of failing. A handler someone installed is left alone.
void IgnoreSigpipeIfDefault() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      std::signal(SIGPIPE, SIG_IGN);
    }
  });
}

int RemainingMs(bool bounded, SteadyClock::time_point deadline) {
  if (!bounded) return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

std::string TlsErrorText() {
  std::string text;
  // The first error queued is the cause; later ones are the layers above.
  unsigned long first = ERR_get_error();
  if (first != 0) {
    const char* reason = ERR_reason_error_string(first);
    if (reason != nullptr) {
      text = reason;
    } else {
      char buf[256];
      ERR_error_string_n(first, buf, sizeof(buf));
      text = buf;
    }
  }
  ERR_clear_error();
  return text;
}

bool SplitLongOption(const std::string& arg, std::string* name, std::string* value) {
  const size_t eq = arg.find('=');
  if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
    *name = arg;
    value->clear();
    return false;
  }
  *name = arg.substr(0, eq);
  *value = arg.substr(eq + 1);
  return true;
}

Status ExtractSecurityFlags(std::vector<std::string>* args, SecurityFlags* flags,
                            const std::vector<std::string>& value_options) {
  std::vector<std::string> rest;
  rest.reserve(args->size());
  for (size_t i = 0; i < args->size(); ++i) {
    const std::string& arg = (*args)[i];
    if (arg == "--") {
      rest.insert(rest.end(), args->begin() + static_cast<long>(i), args->end());
      break;
    }
    std::string name, value;
    const bool has_value = SplitLongOption(arg, &name, &value);
    if (name == "--tls") {
      if (has_value) return Status::BadRequest("option --tls takes no value");
      flags->tls = true;
      continue;
    }
    if (name != "--tls-ca" && name != "--user" && name != "--password-file") {
      rest.push_back(arg);
      // Another option's value is not a flag, even if it looks like one.
      bool takes_value =
          std::find(value_options.begin(), value_options.end(), arg) != value_options.end();
      if (takes_value && i + 1 < args->size()) rest.push_back((*args)[++i]);
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args->size()) return Status::BadRequest("option " + name + " needs a value");
      value = (*args)[++i];
    }
    if (name == "--tls-ca") {
      flags->tls_ca_given = true;
      flags->tls_ca = value;
    } else if (name == "--user") {
      flags->user_given = true;
      flags->user = value;
    } else {
      flags->password_file_given = true;
      flags->password_file = value;
    }
  }
  *args = std::move(rest);
  return Status::OK();
}

Status ReadPasswordFile(const std::string& path, std::string* password) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Status::BadRequest("cannot read password file " + path + ": " + ErrnoText(errno));
  std::string content;
  char buf[4096];
  int err = 0;
  while (content.size() < kMaxPasswordFileBytes && content.find('\n') == std::string::npos) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (err != 0)
    return Status::BadRequest("cannot read password file " + path + ": " + ErrnoText(err));
  content.resize(std::min(content.size(), content.find('\n')));
  if (!content.empty() && content.back() == '\r') content.pop_back();
  if (content.empty()) {
    return Status::BadRequest("password file " + path +
                              " is empty (the password is its first line)");
  }
  *password = std::move(content);
  return Status::OK();
}

Status ResolveSecurity(const SecurityFlags& flags, const char* env_password, ClientSecurity* out) {
  ClientSecurity security;
  if (flags.tls_ca_given && flags.tls_ca.empty())
    return Status::BadRequest("--tls-ca needs a file");
  security.tls = flags.tls || flags.tls_ca_given;
  security.tls_ca = flags.tls_ca;
  if (flags.password_file_given && !flags.user_given) {
    return Status::BadRequest("--password-file needs --user");
  }
  if (flags.user_given) {
    if (flags.user.empty()) return Status::BadRequest("--user needs a name");
    security.user = flags.user;
    if (flags.password_file_given) {
      RINGKV_RETURN_IF_ERROR(ReadPasswordFile(flags.password_file, &security.password));
    } else if (env_password != nullptr && *env_password != '\0') {
      security.password = env_password;
    } else {
      return Status::BadRequest(std::string("--user needs the password in ") + kPasswordEnvVar +
                                " or --password-file");
    }
  }
  *out = std::move(security);
  return Status::OK();
}

Status ParseSecurityFlags(std::vector<std::string>* args, ClientSecurity* out,
                          const std::vector<std::string>& value_options) {
  SecurityFlags flags;
  RINGKV_RETURN_IF_ERROR(ExtractSecurityFlags(args, &flags, value_options));
  return ResolveSecurity(flags, std::getenv(kPasswordEnvVar), out);
}

Status MakeTlsContext(const std::string& ca_file, std::shared_ptr<ssl_ctx_st>* out) {
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr) return Status::Internal("cannot make a TLS context: " + TlsErrorText());
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    return Status::Internal("cannot require TLS 1.2: " + TlsErrorText());
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
      return Status::Internal("cannot load the system's CA certificates: " + TlsErrorText());
    }
  } else {
    // Checked first so that a missing file reads as such, not as OpenSSL's
    // "system lib".
    if (::access(ca_file.c_str(), R_OK) != 0) {
      return Status::BadRequest("cannot read --tls-ca " + ca_file + ": " + ErrnoText(errno));
    }
    if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
      return Status::BadRequest("cannot load --tls-ca " + ca_file + ": " + TlsErrorText());
    }
  }
  // Our responses are newline-framed, so a close without close_notify cannot
  // truncate one unnoticed; servers that close after an error need not send it.
  SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Event loops (kvbench) write what the socket takes and append to the
  // buffer between retries.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // One read() per socket readiness rather than two (a record's header,
  // then its body).
  SSL_CTX_set_read_ahead(ctx.get(), 1);
  *out = std::shared_ptr<ssl_ctx_st>(ctx.release(), SslCtxFree());
  return Status::OK();
}

Status PrepareTls(ClientSecurity* security) {
  if (!security->tls || security->tls_context != nullptr) return Status::OK();
  return MakeTlsContext(security->tls_ca, &security->tls_context);
}

Status TlsHandshake(ssl_ctx_st* ctx, int fd, std::string_view host, std::string_view host_port,
                    int timeout_ms, ssl_st** out) {
  *out = nullptr;
  const std::string where = "TLS handshake with " + std::string(host_port);
  IgnoreSigpipeIfDefault();
  ERR_clear_error();
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx));
  if (ssl == nullptr || SSL_set_fd(ssl.get(), fd) != 1) {
    return Status::Internal(where + " failed: " + TlsErrorText());
  }
  RINGKV_RETURN_IF_ERROR(SetExpectedHost(ssl.get(), std::string(host)));
  const bool bounded = timeout_ms > 0;
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(ssl.get());
    if (rc == 1) break;
    int saved_errno = errno;
    int err = SSL_get_error(ssl.get(), rc);
    short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (events == 0) {
      return Status::Unavailable(where +
                                 " failed: " + HandshakeFailure(ssl.get(), err, saved_errno));
    }
    pollfd pfd{fd, events, 0};
    int ready = ::poll(&pfd, 1, RemainingMs(bounded, deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return Status::Unavailable(where + " timed out");
    if (ready < 0) return Status::Unavailable(where + " failed: " + ErrnoText(errno));
  }
  *out = ssl.release();
  return Status::OK();
}

}  // namespace ringkv
