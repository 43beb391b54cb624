// PeerHandshake: what the peer client says on a new connection before any
// request (server/security/peer_auth.h implements it: the cluster-secret
// proof of PROTOCOL.md §11). The network layer only moves the lines.
//
// Thread-safety: one object per connection, used by the peer client's thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "engine/status.h"

namespace ringkv::net {

class PeerHandshake {
 public:
  virtual ~PeerHandshake() = default;
  // Called once on a new connection (after its TLS handshake, if any) with
  // reply == nullptr, then once with each reply line. Sets *send to the next
  // request line to send (without "\n"), or leaves it empty when the handshake
  // is complete; the connection then carries requests. An error closes the
  // connection: every request waiting on it fails with Unavailable carrying
  // the error's message, the peer counts as failed (backoff, like a refused
  // connect), and the client logs the message (at most once a minute per peer).
  virtual Status Step(const std::string* reply, std::string* send) = 0;
};

// Makes the handshake for a new connection to `peer` (a member id); null or
// an empty factory means no handshake.
using PeerHandshakeFactory = std::function<std::unique_ptr<PeerHandshake>(const std::string& peer)>;

}  // namespace ringkv::net
