// Protocol: request lines in, response lines out (PROTOCOL.md §3).
//
// The only code in server/ that touches JSON. ParseRequest() validates a line
// completely (types, ranges, limits) so that the operations behind it see only
// well-formed requests; the Render*() functions produce response lines.
//
// Thread-safety: stateless functions; the op table is immutable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/record.h"
#include "engine/status.h"
#include "server/security/role.h"
#include "server/stats.h"

namespace ringkv {

struct Connection;

// How many replicas a request waits for: a number or a name resolved against N.
struct QuorumSpec {
  enum class Kind { kDefault, kNumber, kOne, kQuorum, kAll };
  Kind kind = Kind::kDefault;
  int number = 0;  // with kNumber

  // The replica count this spec asks for, given N and the node's default;
  // BadRequest naming `field` if a number is outside 1..N.
  Status Resolve(int n, int default_count, std::string_view field, int* out) const;
};

struct Limits {
  uint64_t max_key_bytes = 1024;
  uint64_t max_value_bytes = 1048576;
};

// The deepest nesting of arrays and objects accepted in a request.
constexpr int kMaxJsonDepth = 512;
// The longest TTL accepted: 100 years.
constexpr uint64_t kMaxTtlMs = 100ULL * 365 * 24 * 3600 * 1000;

struct Request {
  Op op = Op::kPing;
  // The line named a known op (set even when its fields then failed to
  // parse, so that authentication can be checked before field errors).
  bool op_known = false;
  std::string id_json;  // the id as compact JSON, empty if the request had none
  std::string key;
  std::string value_json;  // put: the value as compact JSON text
  uint64_t ttl_ms = 0;     // put: 0 = no TTL
  QuorumSpec r, w;
  bool local = false;       // get: read only this node's replica
  uint64_t timeout_ms = 0;  // 0 = the node's default
  std::string dir;          // backup
  Record record;            // _write: the replica record (version, tombstone, expiry, value)
  std::string from;         // _hello: the asking node
  std::string fingerprint;  // _hello: the asking node's cluster fingerprint
  uint64_t hlc = 0;         // _hello: the asking node's hybrid clock (0 = not sent)
  std::string peer_dir;     // _hello: the asking node's data dir identity ("" = not sent)
  // Anti-entropy peer ops (_aae_*).
  uint32_t partition = 0;
  std::vector<uint32_t> ids;      // _aae_tree: branches (empty = the root); _aae_keys: segments
  bool has_ids = false;           // _aae_tree: "branches" was given
  uint64_t limit = 0;             // _aae_keys, _aae_scan: most entries
  uint64_t bytes = 0;             // _aae_scan: most value bytes
  std::string after;              // _aae_scan: the last key of the previous page
  std::vector<std::string> keys;  // _aae_fetch
  uint64_t watermark = 0;         // _aae_gc
  // Membership (issue #11, PROTOCOL.md §10; server/protocol_membership.h).
  uint64_t epoch = 0;  // _write, _read: the map epoch routed by; _hello; _xfer_open; _move_report
  std::string cluster_id;  // _hello
  std::string map_json;    // _map_push: the map as compact JSON
  std::string action;    // membership: join, leave, replace, remove, plan, commit, clear, transfers
  std::string node;      // membership: the node a change is about; _move_ready: the mover
  std::string address;   // membership join/replace: the new node's address
  std::string new_node;  // membership replace: the node taking over
  bool has_epoch = false;    // membership commit: compare-and-set on `epoch`
  std::string file;          // _xfer_read, _xfer_close
  uint64_t offset = 0;       // _xfer_read
  uint64_t length = 0;       // _xfer_read
  uint64_t done_bytes = 0;   // _move_report: bytes copied so far
  uint64_t total_bytes = 0;  // _move_report: bytes to copy
  bool ready = false;        // _move_report: the copy is complete
  // Authentication (auth, _peer_auth).
  std::string user, password;  // auth
  std::string nonce, proof;    // _peer_auth (with `from`)
  // The connection the request came on; set by the node, not parsed.
  Connection* conn = nullptr;
};

// Who may send an op, from the op table (server/op_list.h).
struct OpAccess {
  security::Role role = security::Role::kNone;  // least role (kClient ops)
  OpScope scope = OpScope::kClient;
};
OpAccess AccessOf(Op op);

// Parses and validates one request line. On failure returns the error to
// answer, and still sets out->id_json if the id could be found.
Status ParseRequest(std::string_view line, const Limits& limits, Request* out);

// ParseRequest()'s two halves, for tests that hold them to the same answers.
namespace protocol_internal {
// The scanner for flat requests of plain strings and integers (most of the
// traffic). Returns false, leaving *out untouched, for any line it does not
// take whole and valid; the full parser then answers it.
bool ParseFlatRequest(std::string_view line, const Limits& limits, Request* out);
// The full parser (nlohmann::json), which takes every line.
Status ParseRequestFull(std::string_view line, const Limits& limits, Request* out);
}  // namespace protocol_internal

// The op's wire name ("put", ...).
std::string_view OpName(Op op);

// Builds one success response line: {"id":…,"ok":true,<fields>}.
// Each Add*() appends a field; values are escaped as JSON where needed.
class ResponseBuilder {
 public:
  explicit ResponseBuilder(const std::string& id_json);
  ResponseBuilder& AddString(std::string_view name, std::string_view value);
  ResponseBuilder& AddInt(std::string_view name, int64_t value);
  ResponseBuilder& AddBool(std::string_view name, bool value);
  // `json` must already be valid compact JSON (a stored value, a dumped object).
  ResponseBuilder& AddRaw(std::string_view name, std::string_view json);
  ResponseBuilder& AddStringArray(std::string_view name, const std::vector<std::string>& values);
  std::string Finish();

 private:
  void AddName(std::string_view name);
  std::string out_;
};

// {"id":…,"ok":false,"error":{"code":"…","message":"…"}}
// REQUIRES: !status.ok().
std::string RenderError(const std::string& id_json, const Status& status);

// JSON string literal for `s` (quotes included). Invalid UTF-8 is replaced, never thrown.
std::string JsonQuote(std::string_view s);

// ---- Peer messages (node to node, same framing and port) ----
//
// _write {"op":"_write","key":K,"version":V,"tombstone":B,"expires_ms":E,"value":X}
//        -> {"ok":true}; "value" is absent for a tombstone.
// _read  {"op":"_read","key":K}
//        -> {"ok":true,"found":false} | {"ok":true,"found":true,"version":V,
//           "tombstone":B,"expires_ms":E,"value":X}
// _hello {"op":"_hello","from":ID,"cluster":FINGERPRINT,"hlc":H,"dir":D}
//        -> {"ok":true,"node":ID,"dir_changed":B}, B: the receiver knew ID
//        with another data dir identity D (it remembers each peer's last D
//        across restarts): the sender's disk was lost or replaced,
//        or bad_request when the fingerprints differ. Doubles as the failure
//        detector's ping; the receiver observes H (its hybrid clock moves past
//        the sender's, within --max-clock-skew-ms).
// A _write whose version is not newer than the replica's is answered
//        {"ok":false,"error":{"code":"stale",...},"version":HELD}, and not
//        written (an equal version means the replica already has it).

// `epoch`: the map epoch the coordinator routed by (0: none, not sent).
std::string EncodePeerWrite(std::string_view key, const Record& record, uint64_t epoch = 0);
std::string EncodePeerRead(std::string_view key, uint64_t epoch = 0);
// `dir`: the sender's data dir identity ("" = none sent); `epoch`: its
// cluster map epoch (0 = none sent).
std::string EncodePeerHello(std::string_view from, std::string_view fingerprint, uint64_t hlc,
                            std::string_view dir = "", uint64_t epoch = 0);
// The answer to a _write that is not newer than what the replica holds.
// REQUIRES: stale.IsStale() (its message is the held version).
std::string RenderStale(const std::string& id_json, const Status& stale);

// The response line of a _read that found `record` (or not, when null).
std::string RenderPeerRecord(const std::string& id_json, const Record* record);

// Replies: OK, or the error the peer answered with (its code and message;
// Stale with the held version as its message). Internal if the line is not a
// response of that shape. They never throw.
Status ParsePeerWriteReply(std::string_view line);
// NotFound when the peer has no record of the key.
Status ParsePeerReadReply(std::string_view line, Record* out);
// *dir_changed (if given): the peer knew this node with another data dir
// ("dir_changed" in the reply; false when absent).
// *epoch (if given): the peer's cluster map epoch (0 when absent).
Status ParsePeerHelloReply(std::string_view line, bool* dir_changed = nullptr,
                           uint64_t* epoch = nullptr);

// The peer handshake (security/peer_proof.h):
// _challenge  {"op":"_challenge"} -> {"ok":true,"nonce":NB}
// _peer_auth  {"op":"_peer_auth","from":ID,"nonce":NA,"proof":P}
//             -> {"ok":true,"node":ID,"proof":P'} | forbidden
std::string EncodePeerChallenge();
std::string EncodePeerAuth(std::string_view from, std::string_view nonce, std::string_view proof);
// The peer's error (its code and message) if it refused; Internal if malformed.
Status ParsePeerChallengeReply(std::string_view line, std::string* nonce);
Status ParsePeerAuthReply(std::string_view line, std::string* node, std::string* proof);

// The id of a cluster started with --cluster (its epoch 1 map): a hash of
// every member (id and address, sorted), Q and N, so that nodes given the
// same flags agree on it without talking.
std::string ClusterIdOf(const std::vector<std::pair<std::string, std::string>>& members,
                        uint32_t partitions, int replicas);
// What nodes must agree on to form a cluster: every member (id and address,
// sorted), Q and N, as one string.
std::string ClusterFingerprint(const std::vector<std::pair<std::string, std::string>>& members,
                               uint32_t partitions, int replicas);

}  // namespace ringkv
