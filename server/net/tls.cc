#include "server/net/tls.h"

#include <openssl/ssl.h>

#include <asio/ssl.hpp>

namespace ringkv::net {
namespace {

// Session resumption with client certificates needs a context id.
constexpr unsigned char kSessionIdContext[] = "ringkv";

Status Fail(const std::string& what, const std::string& file, const std::error_code& ec) {
  return Status::BadRequest(what + " " + file + ": " + ec.message());
}

// The settings both sides share: TLS 1.2 or newer, our certificate and key,
// and the CA to verify the other side against (when given).
Status Configure(asio::ssl::context* ctx, const TlsOptions& options, bool server) {
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
    return Status::Internal("cannot require TLS 1.2");
  }
  std::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression,
                   ec);
  ctx->use_certificate_chain_file(options.cert_file, ec);
  if (ec) return Fail("--tls-cert", options.cert_file, ec);
  ctx->use_private_key_file(options.key_file, asio::ssl::context::pem, ec);
  if (ec) return Fail("--tls-key", options.key_file, ec);
  if (SSL_CTX_check_private_key(native) != 1) {
    return Status::BadRequest("--tls-key " + options.key_file +
                              " does not match the certificate in --tls-cert " + options.cert_file);
  }
  if (!options.ca_file.empty()) {
    ctx->load_verify_file(options.ca_file, ec);
    if (ec) return Fail("--tls-ca", options.ca_file, ec);
    // A server asks for a certificate and verifies one that is presented,
    // but does not demand one: clients authenticate with passwords, peers
    // with their certificate (and the secret).
    ctx->set_verify_mode(asio::ssl::verify_peer, ec);
    if (ec) return Fail("--tls-ca", options.ca_file, ec);
  } else {
    ctx->set_verify_mode(asio::ssl::verify_none, ec);
  }
  if (server) {
    SSL_CTX_set_session_id_context(native, kSessionIdContext, sizeof(kSessionIdContext) - 1);
  }
  return Status::OK();
}

}  // namespace

Status TlsContext::Build(const TlsOptions& options, std::shared_ptr<asio::ssl::context>* server,
                         std::shared_ptr<asio::ssl::context>* client) {
  auto s = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  RINGKV_RETURN_IF_ERROR(Configure(s.get(), options, /*server=*/true));
  auto c = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  RINGKV_RETURN_IF_ERROR(Configure(c.get(), options, /*server=*/false));
  *server = std::move(s);
  *client = std::move(c);
  return Status::OK();
}

Status TlsContext::Make(const TlsOptions& options, std::shared_ptr<TlsContext>* out) {
  std::shared_ptr<TlsContext> ctx(new TlsContext(options));
  RINGKV_RETURN_IF_ERROR(Build(options, &ctx->server_, &ctx->client_));
  *out = std::move(ctx);
  return Status::OK();
}

Status TlsContext::Reload() {
  std::shared_ptr<asio::ssl::context> server, client;
  RINGKV_RETURN_IF_ERROR(Build(options_, &server, &client));
  std::lock_guard<std::mutex> lock(mu_);
  server_ = std::move(server);
  client_ = std::move(client);
  return Status::OK();
}

std::shared_ptr<asio::ssl::context> TlsContext::server() const {
  std::lock_guard<std::mutex> lock(mu_);
  return server_;
}

std::shared_ptr<asio::ssl::context> TlsContext::client() const {
  std::lock_guard<std::mutex> lock(mu_);
  return client_;
}

}  // namespace ringkv::net
