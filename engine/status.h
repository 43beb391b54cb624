// Status: the outcome of every fallible call in RingKV.
//
// The codes map one-to-one onto the wire protocol's error codes (PROTOCOL.md §3),
// plus NotFound, which is a normal outcome and not an error on the wire.
// Conversions from other error types happen in exactly one place each:
// FromRocks() in engine/, the protocol module in server/.
//
// Thread-safety: a Status is a value; distinct objects may be used from distinct
// threads without synchronisation.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ringkv {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,
    kBadRequest,
    kUnknownOp,
    kKeyTooLarge,
    kValueTooLarge,
    kRequestTooLarge,
    kUnavailable,
    kTimeout,
    kInternal,
    kOverloaded,
    kUnauthenticated,  // PROTOCOL.md §11: not authenticated, or wrong credentials
    kForbidden,        // the role does not allow the op, or an internal op from a non-peer
    // Not a client error: a replica's answer to a write whose version is not
    // newer than the one it holds; message() is the held version's string
    // (Version::ToString). The coordinator re-stamps above it (PROTOCOL §8).
    kStale,
    // Not a client error either: a replica's answer to a peer request routed
    // by another epoch of the cluster map than its own (fencing, issue #11);
    // message() is the replica's epoch in decimal.
    kStaleEpoch,
  };

  Status() = default;  // OK

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg = "not found") { return {Code::kNotFound, msg}; }
  static Status BadRequest(std::string_view msg) { return {Code::kBadRequest, msg}; }
  static Status UnknownOp(std::string_view msg) { return {Code::kUnknownOp, msg}; }
  static Status KeyTooLarge(std::string_view msg) { return {Code::kKeyTooLarge, msg}; }
  static Status ValueTooLarge(std::string_view msg) { return {Code::kValueTooLarge, msg}; }
  static Status RequestTooLarge(std::string_view msg) { return {Code::kRequestTooLarge, msg}; }
  static Status Unavailable(std::string_view msg) { return {Code::kUnavailable, msg}; }
  static Status Timeout(std::string_view msg) { return {Code::kTimeout, msg}; }
  static Status Internal(std::string_view msg) { return {Code::kInternal, msg}; }
  static Status Overloaded(std::string_view msg) { return {Code::kOverloaded, msg}; }
  static Status Unauthenticated(std::string_view msg) { return {Code::kUnauthenticated, msg}; }
  static Status Forbidden(std::string_view msg) { return {Code::kForbidden, msg}; }
  static Status Stale(std::string_view held_version) { return {Code::kStale, held_version}; }
  static Status StaleEpoch(uint64_t replica_epoch) {
    return {Code::kStaleEpoch, std::to_string(replica_epoch)};
  }
  // A status of `code` (any code but kOk) with `msg`.
  static Status FromCode(Code code, std::string_view msg) {
    return code == Code::kOk ? Status() : Status(code, msg);
  }

  bool ok() const { return code_ == Code::kOk; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsStaleEpoch() const { return code() == Code::kStaleEpoch; }
  bool IsStale() const { return code_ == Code::kStale; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }

  // The wire name of the code: "bad_request", "unavailable", ...; "ok" and
  // "not_found" for the two non-error codes.
  std::string_view CodeName() const { return CodeName(code_); }
  static std::string_view CodeName(Code code);
  // The code named `name` (a CodeName), or false if no code has that name.
  static bool CodeFromName(std::string_view name, Code* code);

  // "code: message", for logs and tests.
  std::string ToString() const;

  // Explicitly discards a status that the caller has decided not to act on.
  void IgnoreError() const {}

 private:
  Status(Code code, std::string_view msg) : code_(code), msg_(msg) {}

  Code code_ = Code::kOk;
  std::string msg_;
};

// StatusOr<T>: either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status s) : v_(std::move(s)) {}     // NOLINT: implicit by design
  StatusOr(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<Status, T> v_;
};

// Returns from the enclosing function if `expr` is not OK.
#define RINGKV_RETURN_IF_ERROR(expr) \
  do {                               \
    ::ringkv::Status _st = (expr);   \
    if (!_st.ok()) return _st;       \
  } while (0)

}  // namespace ringkv
