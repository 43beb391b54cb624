// Helpers shared by kvd's network components: listening addresses ("HOST:PORT"
// text to an asio endpoint, with the same rules for --listen and
// --metrics-listen) and the body of an I/O thread.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <string>
#include <string_view>

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

}  // namespace ringkv::net
