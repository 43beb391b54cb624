#include "server/security/password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <cstdint>
#include <vector>

namespace ringkv::security {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;

// Accepted parameter ranges: wide enough for any sensible cost, narrow enough
// that a hostile users file cannot make one verification take minutes or
// gigabytes.
constexpr int kMinLog2N = 10, kMaxLog2N = 20;
constexpr int kMinR = 1, kMaxR = 32;
constexpr int kMinP = 1, kMaxP = 16;
constexpr size_t kMinSalt = 8, kMaxSalt = 64;
constexpr size_t kMinHash = 16, kMaxHash = 64;

std::string Base64(const unsigned char* data, size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  const int written =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(written < 0 ? 0 : static_cast<size_t>(written));
  return out;
}

// Strict base64 (padded, no whitespace). False if malformed.
bool Unbase64(std::string_view text, std::vector<unsigned char>* out) {
  if (text.empty() || text.size() % 4 != 0) return false;
  for (char c : text) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '+' || c == '/' || c == '=';
    if (!ok) return false;
  }
  size_t pad = 0;
  if (text.back() == '=') ++pad;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
  if (text.substr(0, text.size() - pad).find('=') != std::string_view::npos) return false;
  out->assign(text.size() / 4 * 3, 0);
  const int n = EVP_DecodeBlock(out->data(), reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0 || static_cast<size_t>(n) < pad) return false;
  out->resize(static_cast<size_t>(n) - pad);
  return true;
}

struct Parsed {
  ScryptParams params;
  std::vector<unsigned char> salt;
  std::vector<unsigned char> hash;
};

bool ParseInt(std::string_view text, int lo, int hi, int* out) {
  int v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi) return false;
  *out = v;
  return true;
}

Status Parse(std::string_view hash, Parsed* out) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t dollar = hash.find('$', start);
    parts.push_back(hash.substr(start, dollar - start));
    if (dollar == std::string_view::npos) break;
    start = dollar + 1;
  }
  if (parts.size() != 6 || parts[0] != "scrypt") {
    return Status::BadRequest(
        "password_hash is not scrypt$LOG2N$R$P$SALT$HASH (make one with `kvctl user hash`)");
  }
  if (!ParseInt(parts[1], kMinLog2N, kMaxLog2N, &out->params.log2_n)) {
    return Status::BadRequest("password_hash: log2 N must be an integer in 10..20");
  }
  if (!ParseInt(parts[2], kMinR, kMaxR, &out->params.r)) {
    return Status::BadRequest("password_hash: r must be an integer in 1..32");
  }
  if (!ParseInt(parts[3], kMinP, kMaxP, &out->params.p)) {
    return Status::BadRequest("password_hash: p must be an integer in 1..16");
  }
  if (!Unbase64(parts[4], &out->salt) || out->salt.size() < kMinSalt ||
      out->salt.size() > kMaxSalt) {
    return Status::BadRequest("password_hash: the salt must be base64 of 8..64 bytes");
  }
  if (!Unbase64(parts[5], &out->hash) || out->hash.size() < kMinHash ||
      out->hash.size() > kMaxHash) {
    return Status::BadRequest("password_hash: the hash must be base64 of 16..64 bytes");
  }
  return Status::OK();
}

bool Scrypt(std::string_view password, const unsigned char* salt, size_t salt_len,
            const ScryptParams& params, unsigned char* key, size_t key_len) {
  const uint64_t n = uint64_t{1} << params.log2_n;
  // scrypt needs about 128 * r * (N + p + 2) bytes; allow that with room.
  const uint64_t maxmem =
      128ULL * static_cast<uint64_t>(params.r) * (n + static_cast<uint64_t>(params.p) + 2) +
      (1ULL << 20);
  return EVP_PBE_scrypt(password.data(), password.size(), salt, salt_len, n,
                        static_cast<uint64_t>(params.r), static_cast<uint64_t>(params.p), maxmem,
                        key, key_len) == 1;
}

}  // namespace

Status HashPassword(std::string_view password, std::string* out, const ScryptParams& params) {
  if (params.log2_n < kMinLog2N || params.log2_n > kMaxLog2N || params.r < kMinR ||
      params.r > kMaxR || params.p < kMinP || params.p > kMaxP) {
    return Status::BadRequest("scrypt parameters out of range");
  }
  unsigned char salt[kSaltBytes];
  unsigned char key[kHashBytes];
  if (RAND_bytes(salt, sizeof(salt)) != 1) return Status::Internal("RAND_bytes failed");
  if (!Scrypt(password, salt, sizeof(salt), params, key, sizeof(key))) {
    return Status::Internal("scrypt failed (EVP_PBE_scrypt)");
  }
  *out = "scrypt$" + std::to_string(params.log2_n) + "$" + std::to_string(params.r) + "$" +
         std::to_string(params.p) + "$" + Base64(salt, sizeof(salt)) + "$" +
         Base64(key, sizeof(key));
  OPENSSL_cleanse(key, sizeof(key));
  return Status::OK();
}

Status CheckPasswordHash(std::string_view hash) {
  Parsed parsed;
  return Parse(hash, &parsed);
}

bool VerifyPassword(std::string_view password, std::string_view hash) {
  Parsed parsed;
  if (!Parse(hash, &parsed).ok()) return false;
  std::vector<unsigned char> key(parsed.hash.size());
  if (!Scrypt(password, parsed.salt.data(), parsed.salt.size(), parsed.params, key.data(),
              key.size())) {
    return false;
  }
  const bool equal = CRYPTO_memcmp(key.data(), parsed.hash.data(), key.size()) == 0;
  OPENSSL_cleanse(key.data(), key.size());
  return equal;
}

const std::string& DummyHash() {
  static const std::string hash = [] {
    unsigned char random[24];
    if (RAND_bytes(random, sizeof(random)) != 1) {
      for (size_t i = 0; i < sizeof(random); ++i) random[i] = static_cast<unsigned char>(i * 37);
    }
    std::string out;
    // A failure here leaves a well-formed hash of a known string: still
    // nothing any client can know to match (it is never a user's hash).
    if (!HashPassword(Base64(random, sizeof(random)), &out).ok()) {
      out =
          "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    }
    return out;
  }();
  return hash;
}

}  // namespace ringkv::security
