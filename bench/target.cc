#include "bench/target.h"

#include <hiredis/hiredis.h>

#include <cctype>
#include <charconv>
#include <cstdio>

namespace ringkv::bench {
namespace {

// Responses longer than this without a terminator mean the stream is not
// what we think it is (no target answers a 100-byte value with megabytes).
constexpr size_t kMaxResponseBytes = 64 << 20;

std::string_view TrimCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// ---------------------------------------------------------------- ringkv

class RingKvParser : public ResponseParser {
 public:
  Reply Parse(std::string_view in) override {
    Reply r;
    size_t start = 0;
    while (true) {
      size_t nl = in.find('\n', start);
      if (nl == std::string_view::npos) {
        if (in.size() - start > kMaxResponseBytes) {
          r.kind = Reply::kBroken;
          r.code = "response line too long";
        }
        r.consumed = start;  // blank lines skipped so far
        return r;
      }
      std::string_view line = TrimCr(in.substr(start, nl - start));
      start = nl + 1;
      if (line.empty()) continue;  // not a response
      r.consumed = start;
      Classify(line, &r);
      return r;
    }
  }

 private:
  // The first "ok" member decides: the server writes it before any value, and
  // kvbench's own values never contain quotes.
  static void Classify(std::string_view line, Reply* r) {
    size_t at = line.find("\"ok\":");
    if (at == std::string_view::npos) {
      r->kind = Reply::kError;
      r->code = "malformed";
      return;
    }
    at += 5;
    while (at < line.size() && line[at] == ' ') ++at;
    if (line.substr(at, 4) == "true") {
      r->kind = Reply::kOk;
      return;
    }
    r->kind = Reply::kError;
    size_t code = line.find("\"code\":\"", at);
    if (code == std::string_view::npos) {
      r->code = "malformed";
      return;
    }
    code += 8;
    size_t end = line.find('"', code);
    r->code = std::string(line.substr(code, end == std::string_view::npos ? 0 : end - code));
    if (r->code.empty()) r->code = "malformed";
  }
};

class RingKvTarget : public Target {
 public:
  const char* name() const override { return "ringkv"; }
  void EncodeRequest(Op op, std::string_view key, std::string_view value,
                     std::string* out) const override {
    switch (op) {
      case Op::kPing:
        *out += "{\"op\":\"ping\"}\n";
        return;
      case Op::kRead:
        *out += "{\"op\":\"get\",\"key\":";
        AppendJsonString(key, out);
        *out += "}\n";
        return;
      case Op::kWrite:
        *out += "{\"op\":\"put\",\"key\":";
        AppendJsonString(key, out);
        *out += ",\"value\":";
        AppendJsonString(value, out);
        *out += "}\n";
        return;
    }
  }
  std::unique_ptr<ResponseParser> NewParser() const override {
    return std::make_unique<RingKvParser>();
  }
};

// ---------------------------------------------------------------- redis

class RedisParser : public ResponseParser {
 public:
  RedisParser() : reader_(redisReaderCreate()) {}
  ~RedisParser() override { redisReaderFree(reader_); }
  RedisParser(const RedisParser&) = delete;
  RedisParser& operator=(const RedisParser&) = delete;

  // The reader keeps its own buffer, so every byte offered is taken at once
  // and later calls (with empty input) drain the replies it holds.
  Reply Parse(std::string_view in) override {
    Reply r;
    if (reader_ == nullptr) {
      r.kind = Reply::kBroken;
      r.code = "out of memory";
      return r;
    }
    if (!in.empty()) {
      if (redisReaderFeed(reader_, in.data(), in.size()) != REDIS_OK) {
        r.kind = Reply::kBroken;
        r.code = reader_->errstr;
        return r;
      }
      r.consumed = in.size();
    }
    void* object = nullptr;
    if (redisReaderGetReply(reader_, &object) != REDIS_OK) {
      r.kind = Reply::kBroken;
      r.code = reader_->errstr[0] != '\0' ? reader_->errstr : "protocol error";
      return r;
    }
    if (object == nullptr) return r;  // kNeedMore
    auto* reply = static_cast<redisReply*>(object);
    if (reply->type == REDIS_REPLY_ERROR) {
      // "ERR unknown command", "OOM ...", "MISCONF ...": the first word, lowercased.
      r.kind = Reply::kError;
      std::string_view text(reply->str, reply->len);
      text = text.substr(0, text.find(' '));
      for (char c : text) r.code += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (r.code.empty()) r.code = "err";
    } else {
      r.kind = Reply::kOk;  // +OK, +PONG, a bulk string, or nil for a missing key
    }
    freeReplyObject(reply);
    return r;
  }

 private:
  redisReader* reader_;
};

void AppendBulk(std::string_view s, std::string* out) {
  *out += '$';
  *out += std::to_string(s.size());
  *out += "\r\n";
  out->append(s);
  *out += "\r\n";
}

class RedisTarget : public Target {
 public:
  const char* name() const override { return "redis"; }
  void EncodeRequest(Op op, std::string_view key, std::string_view value,
                     std::string* out) const override {
    switch (op) {
      case Op::kPing:
        *out += "*1\r\n$4\r\nPING\r\n";
        return;
      case Op::kRead:
        *out += "*2\r\n$3\r\nGET\r\n";
        AppendBulk(key, out);
        return;
      case Op::kWrite:
        *out += "*3\r\n$3\r\nSET\r\n";
        AppendBulk(key, out);
        AppendBulk(value, out);
        return;
    }
  }
  std::unique_ptr<ResponseParser> NewParser() const override {
    return std::make_unique<RedisParser>();
  }
};

// ---------------------------------------------------------------- etcd

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// HTTP/1.1 responses with a Content-Length or a chunked body.
class HttpParser : public ResponseParser {
 public:
  Reply Parse(std::string_view in) override {
    Reply r;
    size_t head_end = in.find("\r\n\r\n");
    if (head_end == std::string_view::npos) {
      if (in.size() > kMaxResponseBytes) Broken("header too long", &r);
      return r;
    }
    std::string_view head = in.substr(0, head_end);
    size_t eol = head.find("\r\n");
    std::string_view status_line = head.substr(0, eol);
    // "HTTP/1.1 200 OK"
    int status = 0;
    if (status_line.substr(0, 5) != "HTTP/" || status_line.size() < 12 ||
        std::from_chars(status_line.data() + 9, status_line.data() + 12, status).ec !=
            std::errc()) {
      Broken("bad status line", &r);
      return r;
    }
    bool chunked = false;
    bool has_length = false;
    size_t length = 0;
    while (eol != std::string_view::npos) {
      size_t next = head.find("\r\n", eol + 2);
      std::string_view line = head.substr(
          eol + 2, next == std::string_view::npos ? std::string_view::npos : next - eol - 2);
      eol = next;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = line.substr(0, colon);
      std::string_view value = TrimSpaces(line.substr(colon + 1));
      if (EqualsIgnoreCase(name, "content-length")) {
        if (std::from_chars(value.data(), value.data() + value.size(), length).ec != std::errc()) {
          Broken("bad content-length", &r);
          return r;
        }
        has_length = true;
      } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
        chunked = value.find("chunked") != std::string_view::npos;
      }
    }
    size_t body = head_end + 4;
    size_t end = 0;
    if (chunked) {
      if (!ChunkedEnd(in, body, &end, &r)) return r;
    } else if (has_length) {
      if (in.size() - body < length) return r;  // kNeedMore
      end = body + length;
    } else if (status == 204 || status == 304 || status / 100 == 1) {
      end = body;
    } else {
      Broken("response without a length", &r);
      return r;
    }
    r.consumed = end;
    if (status / 100 == 2) {
      r.kind = Reply::kOk;
    } else {
      r.kind = Reply::kError;
      r.code = "http_" + std::to_string(status);
    }
    return r;
  }

 private:
  static void Broken(const char* why, Reply* r) {
    r->kind = Reply::kBroken;
    r->code = why;
  }

  // Finds the end of a chunked body starting at `pos`. False with r left as
  // kNeedMore (or set to kBroken) if it is not all there.
  static bool ChunkedEnd(std::string_view in, size_t pos, size_t* end, Reply* r) {
    while (true) {
      size_t eol = in.find("\r\n", pos);
      if (eol == std::string_view::npos) return false;
      size_t size = 0;
      std::string_view hex = in.substr(pos, eol - pos);
      hex = hex.substr(0, hex.find(';'));  // chunk extensions
      if (std::from_chars(hex.data(), hex.data() + hex.size(), size, 16).ec != std::errc()) {
        Broken("bad chunk size", r);
        return false;
      }
      pos = eol + 2;
      if (size == 0) {
        // Trailers, then an empty line.
        while (true) {
          size_t line_end = in.find("\r\n", pos);
          if (line_end == std::string_view::npos) return false;
          bool empty = line_end == pos;
          pos = line_end + 2;
          if (empty) {
            *end = pos;
            return true;
          }
        }
      }
      if (in.size() - pos < size + 2) return false;
      pos += size + 2;
    }
  }
};

class EtcdTarget : public Target {
 public:
  explicit EtcdTarget(std::string_view host) : host_(host) {}
  const char* name() const override { return "etcd"; }
  void EncodeRequest(Op op, std::string_view key, std::string_view value,
                     std::string* out) const override {
    if (op == Op::kPing) {
      *out += "GET /version HTTP/1.1\r\nHost: ";
      *out += host_;
      *out += "\r\n\r\n";
      return;
    }
    std::string body = "{\"key\":\"" + Base64(key) + "\"";
    if (op == Op::kWrite) body += ",\"value\":\"" + Base64(value) + "\"";
    body += '}';
    *out += op == Op::kWrite ? "POST /v3/kv/put" : "POST /v3/kv/range";
    *out += " HTTP/1.1\r\nHost: ";
    *out += host_;
    *out += "\r\nContent-Type: application/json\r\nContent-Length: ";
    *out += std::to_string(body.size());
    *out += "\r\n\r\n";
    *out += body;
  }
  std::unique_ptr<ResponseParser> NewParser() const override {
    return std::make_unique<HttpParser>();
  }

 private:
  std::string host_;
};

}  // namespace

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16 | static_cast<uint8_t>(bytes[i + 1]) << 8 |
                 static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (rest == 2) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

void AppendJsonString(std::string_view s, std::string* out) {
  *out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
          *out += buf;
        } else {
          *out += c;
        }
    }
  }
  *out += '"';
}

std::unique_ptr<Target> MakeTarget(std::string_view name, std::string_view host) {
  if (name == "ringkv") return std::make_unique<RingKvTarget>();
  if (name == "redis") return std::make_unique<RedisTarget>();
  if (name == "etcd") return std::make_unique<EtcdTarget>(host);
  return nullptr;
}

}  // namespace ringkv::bench
