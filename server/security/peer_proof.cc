#include "server/security/peer_proof.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdio>
#include <stdexcept>

namespace ringkv::security {
namespace {

std::string Hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

}  // namespace

std::string RandomNonce() {
  unsigned char bytes[32];
  // RAND_bytes fails only when the OS's entropy source does; a predictable
  // nonce would let a recorded handshake be replayed, so refuse loudly.
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) throw std::runtime_error("RAND_bytes failed");
  return Hex(bytes, sizeof(bytes));
}

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return Hex(mac, len);
}

std::string PeerProof(std::string_view secret, std::string_view side, std::string_view their_nonce,
                      std::string_view my_nonce, std::string_view my_id) {
  std::string message;
  message.reserve(side.size() + their_nonce.size() + my_nonce.size() + my_id.size() + 3);
  message.append(side)
      .append("\n")
      .append(their_nonce)
      .append("\n")
      .append(my_nonce)
      .append("\n")
      .append(my_id);
  return HmacSha256Hex(secret, message);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace ringkv::security
