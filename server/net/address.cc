#include "server/net/address.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

namespace ringkv::net {

Status SplitHostPort(std::string_view address, std::string_view what, std::string* host,
                     uint16_t* port) {
  const std::string label = std::string(what) + " address '" + std::string(address) + "'";
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status::BadRequest(label + " is not HOST:PORT");
  }
  const std::string_view port_text = address.substr(colon + 1);
  unsigned value = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      value > 65535) {
    return Status::BadRequest(label + " has no valid port (0-65535)");
  }
  *host = std::string(address.substr(0, colon));
  *port = static_cast<uint16_t>(value);
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
