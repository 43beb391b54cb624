// HOST:PORT addresses and node ids: the one parser every program uses (kvd's
// flags and listeners, the peer client, kvctl, kvbench), so that an address
// one accepts the others accept too.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace ringkv {

struct HostPort {
  std::string host;  // without the brackets of an IPv6 literal
  uint16_t port = 0;
};

// "HOST:PORT" or "[V6]:PORT": a non-empty host and a decimal port 0..65535
// (0 only makes sense for a listener: the kernel picks). BadRequest saying
// what is wrong with `text` otherwise.
Status ParseHostPort(std::string_view text, HostPort* out);

// [A-Za-z0-9_-]{1,64}: ids are file and directory names (backups) and log
// words, so nothing else is accepted anywhere.
bool IsValidNodeId(std::string_view id);

}  // namespace ringkv
