#include "server/net/address.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "common/host_port.h"

namespace ringkv::net {

Status SplitHostPort(std::string_view address, std::string_view what, std::string* host,
                     uint16_t* port) {
  HostPort hp;
  Status s = ParseHostPort(address, &hp);
  if (!s.ok()) return Status::BadRequest(std::string(what) + " address " + s.message());
  // Brackets stay on an IPv6 literal: ResolveHost takes them off.
  const size_t colon = address.rfind(':');
  *host = std::string(address.substr(0, colon));
  *port = hp.port;
  return Status::OK();
}

Status ResolveHost(asio::io_context& io, const std::string& host, uint16_t port,
                   std::string_view what, asio::ip::tcp::endpoint* out) {
  std::string name = host;
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  }
  std::error_code ec;
  const asio::ip::address literal = asio::ip::make_address(name, ec);
  if (!ec) {
    *out = asio::ip::tcp::endpoint(literal, port);
    return Status::OK();
  }
  asio::ip::tcp::resolver resolver(io);
  const auto results = resolver.resolve(name, std::to_string(port), ec);
  if (ec || results.empty()) {
    return Status::BadRequest("cannot resolve " + std::string(what) + " host '" + host +
                              "': " + (ec ? ec.message() : "no addresses"));
  }
  const auto v4 = std::find_if(results.begin(), results.end(), [](const auto& entry) {
    return entry.endpoint().address().is_v4();
  });
  *out = (v4 != results.end() ? *v4 : *results.begin()).endpoint();
  return Status::OK();
}

void RunIoContext(asio::io_context& io, std::string_view tag) {
  for (;;) {
    try {
      io.run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("{} exception escaped an I/O handler: {}", tag, e.what());
    } catch (...) {
      spdlog::error("{} unknown exception escaped an I/O handler", tag);
    }
  }
}

}  // namespace ringkv::net
