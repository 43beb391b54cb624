// The JSON pieces that protocol.cc and protocol_aae.cc share. Internal to
// the protocol files: nothing else in server/ includes nlohmann::json.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "engine/record.h"
#include "engine/status.h"

namespace ringkv::protocol_internal {

// A record's fields ("version", "tombstone", "expires_ms", "value") from an
// object; BadRequest naming what is wrong.
Status ParseRecordFields(const nlohmann::json& obj, Record* out);
// Appends ,"version":…,"tombstone":…,"expires_ms":…[,"value":…] to *out.
void AppendRecordFields(const Record& r, std::string* out);
// Parses a response line; returns the peer's error, or OK with *out set.
// Never throws: a reply of the wrong shape is Internal.
Status ParseReply(std::string_view line, nlohmann::json* out);

// The membership ops' field parsers (protocol_membership.cc), for the op
// table. Limits are unused; the signature is the table's.
}  // namespace ringkv::protocol_internal
namespace ringkv {
struct Limits;
struct Request;
}  // namespace ringkv
namespace ringkv::protocol_internal {
Status ParseMembership(const nlohmann::json& req, const Limits& limits, Request* out);
Status ParseMapPush(const nlohmann::json& req, const Limits& limits, Request* out);
Status ParseXferOpen(const nlohmann::json& req, const Limits& limits, Request* out);
Status ParseXferRead(const nlohmann::json& req, const Limits& limits, Request* out);
Status ParseXferClose(const nlohmann::json& req, const Limits& limits, Request* out);
Status ParseMoveReport(const nlohmann::json& req, const Limits& limits, Request* out);

}  // namespace ringkv::protocol_internal
