// The peer handshake's arithmetic (PROTOCOL.md §11 "Peers"): nodes prove they
// know the cluster secret with HMAC-SHA256 over a fresh challenge, never
// sending the secret. OpenSSL's HMAC, RAND_bytes and CRYPTO_memcmp.
//
// The exchange, on a connection the peer client opened from A to B:
//   A -> B  {"op":"_challenge"}
//   B -> A  {"ok":true,"nonce":NB}                        (B keeps NB for the connection)
//   A -> B  {"op":"_peer_auth","from":"A","nonce":NA,
//            "proof":Proof(secret,"client",NB,NA,"A")}
//   B -> A  {"ok":true,"node":"B","proof":Proof(secret,"server",NA,NB,"B")}
// B checks A's proof against the NB it sent (once: the challenge is used up),
// A checks B's. Either side that fails the check refuses the connection:
// B answers `forbidden`, A closes it and counts B as down; both log why.
// Each proof binds the side, both nonces and the sender's id, so no reply can
// be reflected or replayed on another connection.
#pragma once

#include <string>
#include <string_view>

namespace ringkv::security {

// 32 random bytes from RAND_bytes as 64 lowercase hex characters.
std::string RandomNonce();

// Lowercase hex HMAC-SHA256 of `message` under `key`.
std::string HmacSha256Hex(std::string_view key, std::string_view message);

// HMAC-SHA256(secret, side + "\n" + their_nonce + "\n" + my_nonce + "\n" + my_id) as hex.
// `side` is "client" or "server".
std::string PeerProof(std::string_view secret, std::string_view side, std::string_view their_nonce,
                      std::string_view my_nonce, std::string_view my_id);

// Constant-time equality (CRYPTO_memcmp); false when the lengths differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace ringkv::security
