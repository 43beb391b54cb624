// Password hashes for the users file (PROTOCOL.md §11): OpenSSL's scrypt
// (EVP_PBE_scrypt) with a random 16-byte salt from RAND_bytes, compared in
// constant time (CRYPTO_memcmp). No crypto of our own.
//
// Format (one line, no spaces; base64 without newlines):
//   scrypt$<log2 N>$<r>$<p>$<salt base64>$<hash base64>
// e.g. scrypt$15$8$1$...$... (N = 2^15, r = 8, p = 1, 32-byte hash: about
// 32 MiB and some tens of ms per hash, so guessing is slow).
//
// Thread-safety: stateless functions, safe from any thread. They are slow
// by design: never call them on an I/O thread (see auth_worker.h).
#pragma once

#include <string>
#include <string_view>

#include "engine/status.h"

namespace ringkv::security {

struct ScryptParams {
  int log2_n = 15;
  int r = 8;
  int p = 1;
};

// A new salted hash of `password`. Two calls with one password differ.
// Internal if OpenSSL fails.
Status HashPassword(std::string_view password, std::string* out,
                    const ScryptParams& params = ScryptParams());

// BadRequest naming what is wrong if `hash` is not of the format above (or
// its parameters are out of the accepted range: log2 N 10..20, r 1..32,
// p 1..16, salt 8..64 bytes, hash 16..64 bytes).
Status CheckPasswordHash(std::string_view hash);

// True if `password` matches `hash`; false for a wrong password or a
// malformed hash. Takes as long as one hash with the hash's parameters.
bool VerifyPassword(std::string_view password, std::string_view hash);

// A valid hash of a random password with the default parameters, made once:
// verifying against it for an unknown user takes as long as for a known one,
// so the two are indistinguishable.
const std::string& DummyHash();

}  // namespace ringkv::security
