// PeerAuthHandshake: the peer client's side of the cluster-secret proof
// (security/peer_proof.h has the exchange): _challenge, then _peer_auth,
// then a check of the other node's proof. A refusal or a wrong proof ends
// the connection with a message saying which (the other node has another
// secret, or none).
//
// Thread-safety: one object per connection (net/peer_handshake.h).
#pragma once

#include <string>

#include "server/net/peer_handshake.h"

namespace ringkv {

class PeerAuthHandshake final : public net::PeerHandshake {
 public:
  PeerAuthHandshake(std::string secret, std::string self, std::string peer)
      : secret_(std::move(secret)), self_(std::move(self)), peer_(std::move(peer)) {}

  Status Step(const std::string* reply, std::string* send) override;

 private:
  const std::string secret_;
  const std::string self_;
  const std::string peer_;
  int stage_ = 0;
  std::string their_nonce_;
  std::string my_nonce_;
};

}  // namespace ringkv
