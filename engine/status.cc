#include "engine/status.h"

namespace ringkv {

std::string_view Status::CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kNotFound:
      return "not_found";
    case Code::kBadRequest:
      return "bad_request";
    case Code::kUnknownOp:
      return "unknown_op";
    case Code::kKeyTooLarge:
      return "key_too_large";
    case Code::kValueTooLarge:
      return "value_too_large";
    case Code::kRequestTooLarge:
      return "request_too_large";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kTimeout:
      return "timeout";
    case Code::kInternal:
      return "internal";
    case Code::kOverloaded:
      return "overloaded";
    case Code::kUnauthenticated:
      return "unauthenticated";
    case Code::kForbidden:
      return "forbidden";
    case Code::kStaleEpoch:
      return "stale_epoch";
    case Code::kStale:
      return "stale";
  }
  return "internal";
}

bool Status::CodeFromName(std::string_view name, Code* code) {
  for (int c = 0; c <= static_cast<int>(Code::kStaleEpoch); ++c) {
    if (CodeName(static_cast<Code>(c)) == name) {
      *code = static_cast<Code>(c);
      return true;
    }
  }
  return false;
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out(CodeName());
  out += ": ";
  out += msg_;
  return out;
}

}  // namespace ringkv
