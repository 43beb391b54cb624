// TLS for the listen port and the peer client (PROTOCOL.md §11 "TLS"), with
// asio's SSL streams over OpenSSL. No crypto of our own.
//
// TlsContext holds two asio::ssl::context objects built from the same files:
//   - server: certificate chain (--tls-cert) and key (--tls-key); TLS 1.2 or
//     newer; with --tls-ca, it asks connecting sides for a certificate and
//     verifies one that is presented against the CA (verify_peer without
//     fail_if_no_peer_cert: clients need none; peers present theirs).
//   - client (the peer client's): TLS 1.2 or newer; presents the same
//     certificate and key; with --tls-ca verifies the server's chain against
//     it (verify_peer). Without --tls-ca a peer's certificate is not verified
//     (a lone node, or tests); kvd requires --tls-ca for a multi-member
//     cluster with TLS.
// Reload() (SIGHUP) builds fresh contexts from the files and swaps them in;
// connections made after it use the new ones, existing ones keep theirs
// (each connection holds a shared_ptr to the context it was made with). A
// reload that fails keeps the old contexts and returns why.
//
// Thread-safety: all methods are safe from any thread.
#pragma once

#include <asio/ssl/context.hpp>
#include <memory>
#include <mutex>
#include <string>

#include "engine/status.h"

namespace ringkv::net {

struct TlsOptions {
  std::string cert_file;  // PEM certificate chain
  std::string
      key_file;  // PEM private key (must be private: security/private_file.h, checked by kvd)
  std::string ca_file;  // PEM CA bundle; "" = do not verify peers
};

class TlsContext {
 public:
  // BadRequest naming the file and OpenSSL's reason if a file cannot be
  // loaded or the key does not match the certificate.
  static Status Make(const TlsOptions& options, std::shared_ptr<TlsContext>* out);

  Status Reload();

  std::shared_ptr<asio::ssl::context> server() const;
  std::shared_ptr<asio::ssl::context> client() const;
  // True when --tls-ca was given: certificates presented are verified.
  bool verifies_peers() const { return !options_.ca_file.empty(); }
  const TlsOptions& options() const { return options_; }

 private:
  explicit TlsContext(TlsOptions options) : options_(std::move(options)) {}
  static Status Build(const TlsOptions& options, std::shared_ptr<asio::ssl::context>* server,
                      std::shared_ptr<asio::ssl::context>* client);

  const TlsOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<asio::ssl::context> server_;  // by mu_
  std::shared_ptr<asio::ssl::context> client_;  // by mu_
};

}  // namespace ringkv::net
