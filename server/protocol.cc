#include "server/protocol.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "engine/version.h"
#include "server/cluster/ring.h"
#include "server/protocol_json.h"

namespace ringkv {
namespace {

using json = nlohmann::json;

// Rejects input nested deeper than kMaxJsonDepth before it reaches the JSON
// library, whose rendering recurses: a line of a million '[' must not blow the
// stack. Brackets inside strings do not count.
bool NestingWithinLimit(std::string_view line) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : line) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

bool IsInteger(const json& v) { return v.is_number_integer() || v.is_number_unsigned(); }

// A positive integer field no larger than `max`.
Status ParsePositive(const json& req, const char* field, uint64_t max, uint64_t* out) {
  auto it = req.find(field);
  if (it == req.end()) return Status::OK();
  if (!IsInteger(*it) || (it->is_number_integer() && it->get<int64_t>() <= 0)) {
    return Status::BadRequest(std::string("'") + field + "' must be a positive integer");
  }
  uint64_t v = it->get<uint64_t>();
  if (v > max) {
    return Status::BadRequest(std::string("'") + field + "' must be at most " +
                              std::to_string(max));
  }
  *out = v;
  return Status::OK();
}

Status ParseQuorum(const json& req, const char* field, QuorumSpec* out) {
  auto it = req.find(field);
  if (it == req.end()) return Status::OK();
  std::string err = std::string("'") + field + "' must be an integer or one of one, quorum, all";
  if (IsInteger(*it)) {
    // Out-of-range numbers are caught by Resolve(), which knows N; clamp here
    // only so that huge values cannot wrap around to a valid int.
    int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > INT32_MAX
                    ? INT32_MAX
                    : std::max<int64_t>(it->get<int64_t>(), INT32_MIN);
    *out = {QuorumSpec::Kind::kNumber, static_cast<int>(std::min<int64_t>(v, INT32_MAX))};
    return Status::OK();
  }
  if (!it->is_string()) return Status::BadRequest(err);
  const std::string& s = it->get_ref<const std::string&>();
  if (s == "one") {
    out->kind = QuorumSpec::Kind::kOne;
  } else if (s == "quorum") {
    out->kind = QuorumSpec::Kind::kQuorum;
  } else if (s == "all") {
    out->kind = QuorumSpec::Kind::kAll;
  } else {
    return Status::BadRequest(err);
  }
  return Status::OK();
}

Status ParseKey(const json& req, const Limits& limits, Request* out) {
  auto it = req.find("key");
  if (it == req.end()) return Status::BadRequest("missing field 'key'");
  if (!it->is_string()) return Status::BadRequest("'key' must be a string");
  const std::string& key = it->get_ref<const std::string&>();
  if (key.empty()) return Status::BadRequest("'key' must not be empty");
  if (key.size() > limits.max_key_bytes) {
    return Status::KeyTooLarge("key is " + std::to_string(key.size()) + " bytes; the limit is " +
                               std::to_string(limits.max_key_bytes));
  }
  out->key = key;
  return Status::OK();
}

Status ParsePut(const json& req, const Limits& limits, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParseKey(req, limits, out));
  auto it = req.find("value");
  if (it == req.end()) return Status::BadRequest("missing field 'value'");
  out->value_json = it->dump();
  if (out->value_json.size() > limits.max_value_bytes) {
    return Status::ValueTooLarge("value is " + std::to_string(out->value_json.size()) +
                                 " bytes; the limit is " + std::to_string(limits.max_value_bytes));
  }
  RINGKV_RETURN_IF_ERROR(ParsePositive(req, "ttl_ms", kMaxTtlMs, &out->ttl_ms));
  return ParseQuorum(req, "w", &out->w);
}

Status ParseGet(const json& req, const Limits& limits, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParseKey(req, limits, out));
  RINGKV_RETURN_IF_ERROR(ParseQuorum(req, "r", &out->r));
  auto it = req.find("local");
  if (it != req.end()) {
    if (!it->is_boolean()) return Status::BadRequest("'local' must be a boolean");
    out->local = it->get<bool>();
  }
  return Status::OK();
}

Status ParseDelete(const json& req, const Limits& limits, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParseKey(req, limits, out));
  return ParseQuorum(req, "w", &out->w);
}

Status ParseLocate(const json& req, const Limits& limits, Request* out) {
  return ParseKey(req, limits, out);
}

Status ParseBackup(const json& req, const Limits&, Request* out) {
  auto it = req.find("dir");
  if (it == req.end()) return Status::BadRequest("missing field 'dir'");
  if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
    return Status::BadRequest("'dir' must be a non-empty string");
  }
  // A relative path would land relative to kvd's working directory, which
  // the client cannot know.
  const std::string& dir = it->get_ref<const std::string&>();
  if (dir[0] != '/') return Status::BadRequest("'dir' must be an absolute path");
  // ".." could climb out of wherever an operator meant backups to go.
  for (size_t begin = 0; begin <= dir.size();) {
    size_t end = dir.find('/', begin);
    if (end == std::string::npos) end = dir.size();
    if (dir.compare(begin, end - begin, "..") == 0) {
      return Status::BadRequest("'dir' must not contain '..' components");
    }
    begin = end + 1;
  }
  if (dir.find('\0') != std::string::npos) return Status::BadRequest("'dir' must not contain NUL");
  out->dir = dir;
  return Status::OK();
}

Status ParseNothing(const json&, const Limits&, Request*) { return Status::OK(); }

}  // namespace

namespace protocol_internal {
Status ParseRecordFields(const json& obj, Record* out) {
  auto version = obj.find("version");
  if (version == obj.end() || !version->is_string()) {
    return Status::BadRequest("missing field 'version'");
  }
  RINGKV_RETURN_IF_ERROR(Version::Parse(version->get_ref<const std::string&>(), &out->version));
  if (out->version.node.empty() || out->version.node.size() > 255) {
    return Status::BadRequest("malformed version");
  }
  auto tomb = obj.find("tombstone");
  out->tombstone = tomb != obj.end() && tomb->is_boolean() && tomb->get<bool>();
  auto expires = obj.find("expires_ms");
  out->expires_at_ms =
      expires != obj.end() && expires->is_number_unsigned() ? expires->get<uint64_t>() : 0;
  auto value = obj.find("value");
  if (out->tombstone) {
    out->value.clear();
  } else if (value == obj.end()) {
    return Status::BadRequest("missing field 'value'");
  } else {
    out->value = value->dump();
  }
  return Status::OK();
}

}  // namespace protocol_internal

namespace {
using protocol_internal::ParseRecordFields;

// The map epoch a peer request was routed by (absent: 0).
Status ParseEpoch(const json& req, Request* out) {
  auto it = req.find("epoch");
  if (it == req.end()) return Status::OK();
  if (!it->is_number_unsigned()) return Status::BadRequest("'epoch' must be an unsigned integer");
  out->epoch = it->get<uint64_t>();
  return Status::OK();
}

Status ParsePeerRead(const json& req, const Limits& limits, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParseKey(req, limits, out));
  return ParseEpoch(req, out);
}

Status ParsePeerWrite(const json& req, const Limits& limits, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParseKey(req, limits, out));
  RINGKV_RETURN_IF_ERROR(ParseEpoch(req, out));
  RINGKV_RETURN_IF_ERROR(ParseRecordFields(req, &out->record));
  if (out->record.value.size() > limits.max_value_bytes) {
    return Status::ValueTooLarge("value over the node's limit");
  }
  return Status::OK();
}

Status ParsePeerHello(const json& req, const Limits&, Request* out) {
  auto from = req.find("from");
  auto cluster = req.find("cluster");
  if (from == req.end() || !from->is_string() || cluster == req.end() || !cluster->is_string()) {
    return Status::BadRequest("_hello needs 'from' and 'cluster' strings");
  }
  out->from = from->get<std::string>();
  out->fingerprint = cluster->get<std::string>();
  RINGKV_RETURN_IF_ERROR(ParseEpoch(req, out));
  // The sender's hybrid clock (absent from older peers): the receiver
  // observes it, so that every node's clock keeps up with the fastest one.
  auto hlc = req.find("hlc");
  if (hlc != req.end()) {
    if (!hlc->is_number_unsigned()) return Status::BadRequest("'hlc' must be an unsigned integer");
    out->hlc = hlc->get<uint64_t>();
  }
  auto dir = req.find("dir");
  if (dir != req.end()) {
    if (!dir->is_string() || dir->get_ref<const std::string&>().size() > 64) {
      return Status::BadRequest("'dir' must be a string of at most 64 bytes");
    }
    out->peer_dir = dir->get<std::string>();
  }
  return Status::OK();
}

// Anti-entropy peer requests (docs/protocol.md, "Peer messages").
constexpr size_t kMaxAaeIds = 4096;
constexpr size_t kMaxAaeKeys = 10000;

Status ParsePartition(const json& req, Request* out) {
  auto it = req.find("partition");
  if (it == req.end() || !it->is_number_unsigned() || it->get<uint64_t>() > UINT32_MAX) {
    return Status::BadRequest("'partition' must be an unsigned integer");
  }
  out->partition = static_cast<uint32_t>(it->get<uint64_t>());
  return Status::OK();
}

Status ParseIdList(const json& req, const char* field, bool required, Request* out) {
  auto it = req.find(field);
  if (it == req.end()) {
    if (required) return Status::BadRequest(std::string("missing field '") + field + "'");
    return Status::OK();
  }
  if (!it->is_array() || it->size() > kMaxAaeIds) {
    return Status::BadRequest(std::string("'") + field + "' must be an array of at most " +
                              std::to_string(kMaxAaeIds) + " unsigned integers");
  }
  for (const json& v : *it) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > UINT32_MAX) {
      return Status::BadRequest(std::string("'") + field + "' must hold unsigned integers");
    }
    out->ids.push_back(static_cast<uint32_t>(v.get<uint64_t>()));
  }
  out->has_ids = true;
  return Status::OK();
}

Status ParseUnsigned(const json& req, const char* field, uint64_t* out) {
  auto it = req.find(field);
  if (it == req.end()) return Status::OK();
  if (!it->is_number_unsigned()) {
    return Status::BadRequest(std::string("'") + field + "' must be an unsigned integer");
  }
  *out = it->get<uint64_t>();
  return Status::OK();
}

Status ParseAaeTree(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParsePartition(req, out));
  return ParseIdList(req, "branches", /*required=*/false, out);
}

Status ParseAaeKeys(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParsePartition(req, out));
  RINGKV_RETURN_IF_ERROR(ParseIdList(req, "segments", /*required=*/true, out));
  return ParseUnsigned(req, "limit", &out->limit);
}

Status ParseAaeFetch(const json& req, const Limits& limits, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParsePartition(req, out));
  auto it = req.find("keys");
  if (it == req.end() || !it->is_array() || it->size() > kMaxAaeKeys) {
    return Status::BadRequest("'keys' must be an array of at most " + std::to_string(kMaxAaeKeys) +
                              " keys");
  }
  for (const json& k : *it) {
    if (!k.is_string() || k.get_ref<const std::string&>().empty() ||
        k.get_ref<const std::string&>().size() > limits.max_key_bytes) {
      return Status::BadRequest("'keys' must hold non-empty strings within the key limit");
    }
    out->keys.push_back(k.get<std::string>());
  }
  return Status::OK();
}

Status ParseAaeScan(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParsePartition(req, out));
  auto it = req.find("after");
  if (it != req.end()) {
    if (!it->is_string()) return Status::BadRequest("'after' must be a string");
    out->after = it->get<std::string>();
  }
  RINGKV_RETURN_IF_ERROR(ParseUnsigned(req, "limit", &out->limit));
  return ParseUnsigned(req, "bytes", &out->bytes);
}

Status ParseAaeGc(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParsePartition(req, out));
  if (req.find("watermark") == req.end()) return Status::BadRequest("missing field 'watermark'");
  return ParseUnsigned(req, "watermark", &out->watermark);
}

// A string field of at most `max` bytes; `required` or "" when absent.
Status ParseShortString(const json& req, const char* field, size_t max, bool required,
                        std::string* out) {
  auto it = req.find(field);
  if (it == req.end()) {
    if (required) return Status::BadRequest(std::string("missing field '") + field + "'");
    return Status::OK();
  }
  if (!it->is_string() || it->get_ref<const std::string&>().size() > max) {
    return Status::BadRequest(std::string("'") + field + "' must be a string of at most " +
                              std::to_string(max) + " bytes");
  }
  *out = it->get<std::string>();
  return Status::OK();
}

Status ParseAuth(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParseShortString(req, "user", 256, true, &out->user));
  return ParseShortString(req, "password", 4096, true, &out->password);
}

Status ParsePeerAuth(const json& req, const Limits&, Request* out) {
  RINGKV_RETURN_IF_ERROR(ParseShortString(req, "from", 64, true, &out->from));
  RINGKV_RETURN_IF_ERROR(ParseShortString(req, "nonce", 128, true, &out->nonce));
  return ParseShortString(req, "proof", 128, true, &out->proof);
}

using protocol_internal::ParseMapPush;
using protocol_internal::ParseMembership;
using protocol_internal::ParseMoveReport;
using protocol_internal::ParseXferClose;
using protocol_internal::ParseXferOpen;
using protocol_internal::ParseXferRead;

struct OpSpec {
  std::string_view name;
  Op op;
  Status (*parse)(const json& req, const Limits& limits, Request* out);
  OpAccess access;
};

// The op table (server/op_list.h): every operation's name, field parser,
// least role and scope, indexed by Op.
#define RINGKV_OP_SPEC(e, name, parser, handler, role, scope) \
  {name, Op::e, parser, {security::Role::role, OpScope::scope}},
constexpr std::array<OpSpec, kOpCount> kOps = {{RINGKV_OPS(RINGKV_OP_SPEC)}};
#undef RINGKV_OP_SPEC

// Both tables come from one list, so this holds by construction; it guards
// an edit that builds either by hand.
constexpr bool OpTableInOrder() {
  for (int i = 0; i < kOpCount; ++i) {
    if (static_cast<int>(kOps[i].op) != i) return false;
  }
  return true;
}
static_assert(OpTableInOrder(), "kOps must list every Op in enum order");

const OpSpec* FindOp(std::string_view name) {
  for (const OpSpec& spec : kOps) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

Status ParseObject(const json& req, const Limits& limits, Request* out) {
  if (!req.is_object()) return Status::BadRequest("request must be a JSON object");
  auto id = req.find("id");
  if (id != req.end()) {
    out->id_json = id->dump();
    if (!id->is_string() && !IsInteger(*id)) {
      return Status::BadRequest("'id' must be a string or an integer");
    }
  }
  auto op = req.find("op");
  if (op == req.end()) return Status::BadRequest("missing field 'op'");
  if (!op->is_string()) return Status::BadRequest("'op' must be a string");
  const OpSpec* spec = FindOp(op->get_ref<const std::string&>());
  if (spec == nullptr) {
    return Status::UnknownOp("unknown op " + JsonQuote(op->get_ref<const std::string&>()));
  }
  out->op = spec->op;
  out->op_known = true;
  RINGKV_RETURN_IF_ERROR(ParsePositive(req, "timeout_ms", 3'600'000, &out->timeout_ms));
  return spec->parse(req, limits, out);
}

}  // namespace

Status QuorumSpec::Resolve(int n, int default_count, std::string_view field, int* out) const {
  switch (kind) {
    case Kind::kDefault:
      *out = default_count;
      return Status::OK();
    case Kind::kOne:
      *out = 1;
      return Status::OK();
    case Kind::kQuorum:
      *out = n / 2 + 1;
      return Status::OK();
    case Kind::kAll:
      *out = n;
      return Status::OK();
    case Kind::kNumber:
      break;
  }
  if (number < 1 || number > n) {
    return Status::BadRequest("'" + std::string(field) + "' must be from 1 to " +
                              std::to_string(n));
  }
  *out = number;
  return Status::OK();
}

namespace {

// ---- The flat-request scanner ----
//
// nlohmann::json builds a DOM for every request (a map node and a string per
// member, then the value dumped back to text): 4.3 us for a put of 100 bytes
// (bench/micro_bench BM_ParsePut), a large share of a request's CPU. Nearly
// all traffic is flat objects of plain ASCII strings and integers, which the
// scanner below reads in place. It takes a line only if it understands all of
// it and every field is valid; anything else (escapes, non-ASCII, floats,
// nesting, duplicate names, another op, any invalid field) goes to the full
// parser, so answers and error messages cannot differ between the two.

struct FlatValue {
  enum class Kind { kString, kInt, kTrue, kFalse, kNull };
  Kind kind = Kind::kNull;
  std::string_view text;  // string contents without quotes; an integer's digits with sign
  bool negative = false;
  uint64_t magnitude = 0;  // integers
};

struct FlatMember {
  std::string_view name;
  FlatValue value;
};

constexpr int kMaxFlatMembers = 16;

class FlatScanner {
 public:
  explicit FlatScanner(std::string_view line) : s_(line) {}

  // Fills members[0..*count); false if the line is not a flat object the
  // scanner takes whole.
  bool Scan(FlatMember* members, int* count) {
    *count = 0;
    SkipSpace();
    if (!Eat('{')) return false;
    SkipSpace();
    if (Eat('}')) return AtEndAfterSpace();
    while (true) {
      if (*count == kMaxFlatMembers) return false;
      FlatMember& m = members[(*count)++];
      if (!String(&m.name)) return false;
      SkipSpace();
      if (!Eat(':')) return false;
      SkipSpace();
      if (!Value(&m.value)) return false;
      for (int i = 0; i + 1 < *count; ++i) {
        if (members[i].name == m.name) return false;  // duplicates: the full parser's rules
      }
      SkipSpace();
      if (Eat(',')) {
        SkipSpace();
        continue;
      }
      if (Eat('}')) return AtEndAfterSpace();
      return false;
    }
  }

 private:
  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void SkipSpace() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  bool AtEndAfterSpace() {
    SkipSpace();
    return i_ == s_.size();
  }
  // A string of printable ASCII without escapes.
  bool String(std::string_view* out) {
    if (!Eat('"')) return false;
    size_t start = i_;
    while (i_ < s_.size()) {
      auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        *out = s_.substr(start, i_ - start);
        ++i_;
        return true;
      }
      if (c == '\\' || c < 0x20 || c >= 0x80) return false;
      ++i_;
    }
    return false;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  bool Value(FlatValue* v) {
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '"') {
      v->kind = FlatValue::Kind::kString;
      return String(&v->text);
    }
    if (c == 't') {
      v->kind = FlatValue::Kind::kTrue;
      return Literal("true");
    }
    if (c == 'f') {
      v->kind = FlatValue::Kind::kFalse;
      return Literal("false");
    }
    if (c == 'n') {
      v->kind = FlatValue::Kind::kNull;
      return Literal("null");
    }
    // An integer: -?(0|[1-9][0-9]*), at most 18 digits, not "-0", and not
    // the start of a fraction or exponent.
    size_t start = i_;
    v->negative = Eat('-');
    size_t digits = i_;
    uint64_t m = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      m = m * 10 + static_cast<uint64_t>(s_[i_] - '0');
      ++i_;
    }
    size_t n = i_ - digits;
    if (n == 0 || n > 18) return false;
    if (s_[digits] == '0' && (n > 1 || v->negative)) return false;
    if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E')) return false;
    v->kind = FlatValue::Kind::kInt;
    v->magnitude = m;
    v->text = s_.substr(start, i_ - start);
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
};

class FlatRequest {
 public:
  FlatRequest(const FlatMember* members, int count) : members_(members), count_(count) {}

  const FlatValue* Find(std::string_view name) const {
    for (int i = 0; i < count_; ++i) {
      if (members_[i].name == name) return &members_[i].value;
    }
    return nullptr;
  }

 private:
  const FlatMember* members_;
  int count_;
};

bool IsString(const FlatValue* v) { return v->kind == FlatValue::Kind::kString; }
bool IsInt(const FlatValue* v) { return v->kind == FlatValue::Kind::kInt; }

// Compact JSON text of a scalar, as nlohmann would dump it.
std::string FlatJson(const FlatValue* v) {
  switch (v->kind) {
    case FlatValue::Kind::kString: {
      std::string out;
      out.reserve(v->text.size() + 2);
      out += '"';
      out += v->text;
      out += '"';
      return out;
    }
    case FlatValue::Kind::kInt:
      return std::string(v->text);
    case FlatValue::Kind::kTrue:
      return "true";
    case FlatValue::Kind::kFalse:
      return "false";
    case FlatValue::Kind::kNull:
      break;
  }
  return "null";
}

// A present, valid positive integer field no larger than `max` (absent: ok).
bool FlatPositive(const FlatRequest& req, std::string_view name, uint64_t max, uint64_t* out) {
  const FlatValue* v = req.Find(name);
  if (v == nullptr) return true;
  if (!IsInt(v) || v->negative || v->magnitude == 0 || v->magnitude > max) return false;
  *out = v->magnitude;
  return true;
}

bool FlatQuorum(const FlatRequest& req, std::string_view name, QuorumSpec* out) {
  const FlatValue* v = req.Find(name);
  if (v == nullptr) return true;
  if (IsInt(v)) {
    int64_t n =
        v->negative ? -static_cast<int64_t>(v->magnitude) : static_cast<int64_t>(v->magnitude);
    n = std::clamp<int64_t>(n, INT32_MIN, INT32_MAX);
    *out = {QuorumSpec::Kind::kNumber, static_cast<int>(n)};
    return true;
  }
  if (!IsString(v)) return false;
  if (v->text == "one") {
    out->kind = QuorumSpec::Kind::kOne;
  } else if (v->text == "quorum") {
    out->kind = QuorumSpec::Kind::kQuorum;
  } else if (v->text == "all") {
    out->kind = QuorumSpec::Kind::kAll;
  } else {
    return false;
  }
  return true;
}

bool FlatKey(const FlatRequest& req, const Limits& limits, Request* out) {
  const FlatValue* v = req.Find("key");
  if (v == nullptr || !IsString(v) || v->text.empty() || v->text.size() > limits.max_key_bytes) {
    return false;
  }
  out->key.assign(v->text);
  return true;
}

// A value of at most the limit; a tombstone's may be absent.
bool FlatValueField(const FlatRequest& req, const Limits& limits, std::string* out) {
  const FlatValue* v = req.Find("value");
  if (v == nullptr) return false;
  *out = FlatJson(v);
  return out->size() <= limits.max_value_bytes;
}

}  // namespace

namespace protocol_internal {

bool ParseFlatRequest(std::string_view line, const Limits& limits, Request* out) {
  FlatMember members[kMaxFlatMembers];
  int count = 0;
  if (!FlatScanner(line).Scan(members, &count)) return false;
  FlatRequest req(members, count);
  const FlatValue* op = req.Find("op");
  if (op == nullptr || !IsString(op)) return false;
  Request r;
  if (const FlatValue* id = req.Find("id")) {
    if (!IsString(id) && !IsInt(id)) return false;
    r.id_json = FlatJson(id);
  }
  if (!FlatPositive(req, "timeout_ms", 3'600'000, &r.timeout_ms)) return false;
  if (op->text == "put") {
    r.op = Op::kPut;
    if (!FlatKey(req, limits, &r) || !FlatValueField(req, limits, &r.value_json) ||
        !FlatPositive(req, "ttl_ms", kMaxTtlMs, &r.ttl_ms) || !FlatQuorum(req, "w", &r.w)) {
      return false;
    }
  } else if (op->text == "get") {
    r.op = Op::kGet;
    if (!FlatKey(req, limits, &r) || !FlatQuorum(req, "r", &r.r)) return false;
    if (const FlatValue* local = req.Find("local")) {
      if (local->kind != FlatValue::Kind::kTrue && local->kind != FlatValue::Kind::kFalse) {
        return false;
      }
      r.local = local->kind == FlatValue::Kind::kTrue;
    }
  } else if (op->text == "delete") {
    r.op = Op::kDelete;
    if (!FlatKey(req, limits, &r) || !FlatQuorum(req, "w", &r.w)) return false;
  } else if (op->text == "ping") {
    r.op = Op::kPing;
  } else if (op->text == "_read") {
    r.op = Op::kPeerRead;
    if (!FlatKey(req, limits, &r) || !FlatPositive(req, "epoch", UINT64_MAX, &r.epoch)) {
      return false;
    }
  } else if (op->text == "_write") {
    r.op = Op::kPeerWrite;
    if (!FlatKey(req, limits, &r) || !FlatPositive(req, "epoch", UINT64_MAX, &r.epoch)) {
      return false;
    }
    const FlatValue* version = req.Find("version");
    if (version == nullptr || !IsString(version) ||
        !Version::Parse(version->text, &r.record.version).ok() || r.record.version.node.empty() ||
        r.record.version.node.size() > 255) {
      return false;
    }
    if (const FlatValue* tomb = req.Find("tombstone")) {
      if (tomb->kind != FlatValue::Kind::kTrue && tomb->kind != FlatValue::Kind::kFalse) {
        return false;
      }
      r.record.tombstone = tomb->kind == FlatValue::Kind::kTrue;
    }
    if (const FlatValue* expires = req.Find("expires_ms")) {
      if (!IsInt(expires) || expires->negative) return false;
      r.record.expires_at_ms = expires->magnitude;
    }
    if (!r.record.tombstone && !FlatValueField(req, limits, &r.record.value)) return false;
  } else {
    return false;  // the other ops are rare: the full parser has them
  }
  *out = std::move(r);
  return true;
}

Status ParseRequestFull(std::string_view line, const Limits& limits, Request* out) {
  if (!NestingWithinLimit(line)) {
    return Status::BadRequest("request nests deeper than " + std::to_string(kMaxJsonDepth));
  }
  json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded()) return Status::BadRequest("request is not valid JSON");
  try {
    return ParseObject(req, limits, out);
  } catch (const json::exception& e) {
    // Validation above should make this unreachable; never let it escape.
    return Status::BadRequest(std::string("malformed request: ") + e.what());
  }
}

}  // namespace protocol_internal

Status ParseRequest(std::string_view line, const Limits& limits, Request* out) {
  if (protocol_internal::ParseFlatRequest(line, limits, out)) return Status::OK();
  return protocol_internal::ParseRequestFull(line, limits, out);
}

std::string_view OpName(Op op) { return kOps[static_cast<int>(op)].name; }

OpAccess AccessOf(Op op) { return kOps[static_cast<int>(op)].access; }

std::string JsonQuote(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

ResponseBuilder::ResponseBuilder(const std::string& id_json) {
  out_.reserve(128);
  out_ = "{";
  if (!id_json.empty()) {
    out_ += "\"id\":";
    out_ += id_json;
    out_ += ',';
  }
  out_ += "\"ok\":true";
}

void ResponseBuilder::AddName(std::string_view name) {
  out_ += ",\"";
  out_ += name;  // names are our own identifiers: no escaping needed
  out_ += "\":";
}

ResponseBuilder& ResponseBuilder::AddString(std::string_view name, std::string_view value) {
  AddName(name);
  out_ += JsonQuote(value);
  return *this;
}

ResponseBuilder& ResponseBuilder::AddInt(std::string_view name, int64_t value) {
  AddName(name);
  out_ += std::to_string(value);
  return *this;
}

ResponseBuilder& ResponseBuilder::AddBool(std::string_view name, bool value) {
  AddName(name);
  out_ += value ? "true" : "false";
  return *this;
}

ResponseBuilder& ResponseBuilder::AddRaw(std::string_view name, std::string_view json_text) {
  AddName(name);
  out_ += json_text;
  return *this;
}

ResponseBuilder& ResponseBuilder::AddStringArray(std::string_view name,
                                                 const std::vector<std::string>& values) {
  AddName(name);
  out_ += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out_ += ',';
    out_ += JsonQuote(values[i]);
  }
  out_ += ']';
  return *this;
}

std::string ResponseBuilder::Finish() {
  out_ += '}';
  return std::move(out_);
}

namespace protocol_internal {

void AppendRecordFields(const Record& r, std::string* out) {
  *out += ",\"version\":\"";
  *out += r.version.ToString();
  *out += "\",\"tombstone\":";
  *out += r.tombstone ? "true" : "false";
  *out += ",\"expires_ms\":";
  *out += std::to_string(r.expires_at_ms);
  if (!r.tombstone) {
    *out += ",\"value\":";
    *out += r.value;
  }
}

// Parses a response line; returns the peer's error, or OK with *out set.
// Never throws: a reply of the wrong shape is Internal ("malformed peer
// reply"), whatever its fields hold.
Status ParseReply(std::string_view line, json* out) {
  *out = json::parse(line, nullptr, false);
  if (out->is_discarded() || !out->is_object()) return Status::Internal("malformed peer reply");
  auto ok = out->find("ok");
  if (ok == out->end() || !ok->is_boolean()) return Status::Internal("malformed peer reply");
  if (ok->get<bool>()) return Status::OK();
  auto err = out->find("error");
  if (err == out->end() || !err->is_object()) return Status::Internal("malformed peer reply");
  auto code_field = err->find("code");
  auto message_field = err->find("message");
  if (code_field == err->end() || !code_field->is_string()) {
    return Status::Internal("malformed peer reply: error without a code");
  }
  std::string message;
  if (message_field != err->end() && message_field->is_string()) {
    message = message_field->get<std::string>();
  }
  const std::string& code_name = code_field->get_ref<const std::string&>();
  Status::Code code;
  if (!Status::CodeFromName(code_name, &code) || code == Status::Code::kOk) {
    return Status::Internal(message.empty() ? code_name : code_name + ": " + message);
  }
  if (code == Status::Code::kStale) {
    // The version the replica holds travels in its own field.
    auto version = out->find("version");
    if (version == out->end() || !version->is_string()) {
      return Status::Internal("malformed peer reply: stale without a version");
    }
    return Status::Stale(version->get<std::string>());
  }
  return Status::FromCode(code, message);
}

}  // namespace protocol_internal

using protocol_internal::AppendRecordFields;
using protocol_internal::ParseReply;

std::string EncodePeerWrite(std::string_view key, const Record& record, uint64_t epoch) {
  std::string out = "{\"op\":\"_write\",\"key\":";
  out += JsonQuote(key);
  if (epoch != 0) {
    out += ",\"epoch\":";
    out += std::to_string(epoch);
  }
  AppendRecordFields(record, &out);
  out += '}';
  return out;
}

std::string EncodePeerRead(std::string_view key, uint64_t epoch) {
  return "{\"op\":\"_read\",\"key\":" + JsonQuote(key) +
         (epoch != 0 ? ",\"epoch\":" + std::to_string(epoch) : std::string()) + "}";
}

std::string EncodePeerHello(std::string_view from, std::string_view fingerprint, uint64_t hlc,
                            std::string_view dir, uint64_t epoch) {
  return "{\"op\":\"_hello\",\"from\":" + JsonQuote(from) +
         ",\"cluster\":" + JsonQuote(fingerprint) + ",\"hlc\":" + std::to_string(hlc) +
         (dir.empty() ? "" : ",\"dir\":" + JsonQuote(dir)) +
         (epoch == 0 ? "" : ",\"epoch\":" + std::to_string(epoch)) + "}";
}

std::string RenderStale(const std::string& id_json, const Status& stale) {
  std::string out = RenderError(id_json, Status::Stale("the replica holds a version as new"));
  out.pop_back();  // reopen the object to add the held version
  out += ",\"version\":";
  out += JsonQuote(stale.message());
  out += '}';
  return out;
}

std::string RenderPeerRecord(const std::string& id_json, const Record* record) {
  ResponseBuilder b(id_json);
  b.AddBool("found", record != nullptr);
  std::string out = b.Finish();
  if (record == nullptr) return out;
  out.pop_back();  // reopen the object to append the record's fields
  AppendRecordFields(*record, &out);
  out += '}';
  return out;
}

Status ParsePeerWriteReply(std::string_view line) {
  json reply;
  return ParseReply(line, &reply);
}

Status ParsePeerReadReply(std::string_view line, Record* out) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto found = reply.find("found");
  if (found == reply.end() || !found->is_boolean()) return Status::Internal("malformed peer reply");
  if (!found->get<bool>()) return Status::NotFound();
  Status s = ParseRecordFields(reply, out);
  return s.ok() ? s : Status::Internal("malformed peer record: " + s.message());
}

Status ParsePeerHelloReply(std::string_view line, bool* dir_changed, uint64_t* epoch) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  if (epoch != nullptr) {
    auto it = reply.find("epoch");
    *epoch = it != reply.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
  }
  if (dir_changed != nullptr) {
    auto it = reply.find("dir_changed");
    *dir_changed = it != reply.end() && it->is_boolean() && it->get<bool>();
  }
  return Status::OK();
}

std::string EncodePeerChallenge() { return "{\"op\":\"_challenge\"}"; }

std::string EncodePeerAuth(std::string_view from, std::string_view nonce, std::string_view proof) {
  return "{\"op\":\"_peer_auth\",\"from\":" + JsonQuote(from) + ",\"nonce\":" + JsonQuote(nonce) +
         ",\"proof\":" + JsonQuote(proof) + "}";
}

namespace {
// The string field `name` of an OK reply, Internal if absent.
Status ReplyString(std::string_view line, const char* name, std::string* out) {
  json reply;
  RINGKV_RETURN_IF_ERROR(ParseReply(line, &reply));
  auto it = reply.find(name);
  if (it == reply.end() || !it->is_string()) {
    return Status::Internal(std::string("reply without '") + name + "'");
  }
  *out = it->get<std::string>();
  return Status::OK();
}
}  // namespace

Status ParsePeerChallengeReply(std::string_view line, std::string* nonce) {
  return ReplyString(line, "nonce", nonce);
}

Status ParsePeerAuthReply(std::string_view line, std::string* node, std::string* proof) {
  RINGKV_RETURN_IF_ERROR(ReplyString(line, "node", node));
  return ReplyString(line, "proof", proof);
}

std::string ClusterFingerprint(const std::vector<std::pair<std::string, std::string>>& members,
                               uint32_t partitions, int replicas) {
  auto sorted = members;
  std::sort(sorted.begin(), sorted.end());
  std::string out = "Q=" + std::to_string(partitions) + ";N=" + std::to_string(replicas) + ";";
  for (const auto& [id, address] : sorted) out += id + "@" + address + ",";
  return out;
}

std::string ClusterIdOf(const std::vector<std::pair<std::string, std::string>>& members,
                        uint32_t partitions, int replicas) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(
                    cluster::KeyHash(ClusterFingerprint(members, partitions, replicas))));
  return buf;
}

std::string RenderError(const std::string& id_json, const Status& status) {
  std::string out = "{";
  if (!id_json.empty()) {
    out += "\"id\":";
    out += id_json;
    out += ',';
  }
  out += "\"ok\":false,\"error\":{\"code\":\"";
  out += status.CodeName();
  out += "\",\"message\":";
  out += JsonQuote(status.message());
  out += "}}";
  return out;
}

}  // namespace ringkv
