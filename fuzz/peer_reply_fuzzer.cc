// Fuzzer for the peer reply parsers (server/protocol.h): ParsePeerWriteReply,
// ParsePeerReadReply and ParsePeerHelloReply must answer every line with a
// Status (never throw, crash or read out of bounds). A read reply that parses
// must hold a record that survives RenderPeerRecord() and a second parse.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringkv;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  (void)ParsePeerWriteReply(line);
  (void)ParsePeerHelloReply(line);
  Record record;
  if (ParsePeerReadReply(line, &record).ok()) {
    Record again;
    const std::string rendered = RenderPeerRecord("", &record);
    if (!ParsePeerReadReply(rendered, &again).ok() || !(again == record)) {
      std::fprintf(stderr, "peer_reply_fuzzer: record does not survive a re-render\nline: %.*s\n",
                   static_cast<int>(size), reinterpret_cast<const char*>(data));
      std::abort();
    }
  }
  return 0;
}
