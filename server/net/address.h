// Helpers shared by kvd's network components: listening addresses ("HOST:PORT"
// text to an asio endpoint, with the same rules for --listen and
// --metrics-listen) and the body of an I/O thread.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "engine/status.h"

namespace ringkv::net {

// Splits "HOST:PORT" ("[V6]:PORT" for IPv6 literals) into host, as written,
// and port. BadRequest naming `what` ("listen", "metrics") otherwise.
Status SplitHostPort(std::string_view address, std::string_view what, std::string* host,
                     uint16_t* port);

// An IP literal as is ("[::1]" without its brackets); a name through the
// resolver, preferring IPv4 (on Debian "localhost" resolves to ::1 first,
// which 127.0.0.1 clients miss). Blocks while resolving.
Status ResolveHost(asio::io_context& io, const std::string& host, uint16_t port,
                   std::string_view what, asio::ip::tcp::endpoint* out);

// Runs `io` until it stops. Handlers catch what they call; an exception that
// still escapes one is logged under `tag` ("[server]", ...) and the loop goes
// on, so that it costs one callback rather than the thread and every
// connection on it.
void RunIoContext(asio::io_context& io, std::string_view tag);

// Opens `acceptor` on `endpoint` (SO_REUSEADDR), binds and listens, and sets
// *port to the bound port (the kernel's choice for port 0). On failure the
// acceptor is closed again and the error returned.
template <typename Acceptor>
std::error_code OpenAcceptor(Acceptor& acceptor, const asio::ip::tcp::endpoint& endpoint,
                             uint16_t* port) {
  std::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) *port = acceptor.local_endpoint(ec).port();
  if (ec) {
    std::error_code ignored;
    acceptor.close(ignored);
  }
  return ec;
}

}  // namespace ringkv::net
