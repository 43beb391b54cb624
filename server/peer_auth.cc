#include "server/peer_auth.h"

#include "server/protocol.h"
#include "server/security/peer_proof.h"

namespace ringkv {

Status PeerAuthHandshake::Step(const std::string* reply, std::string* send) {
  send->clear();
  switch (stage_) {
    case 0:
      stage_ = 1;
      *send = EncodePeerChallenge();
      return Status::OK();
    case 1: {
      if (reply == nullptr) return Status::Internal("peer handshake: no reply to _challenge");
      Status s = ParsePeerChallengeReply(*reply, &their_nonce_);
      if (!s.ok()) {
        return Status::Unavailable("peer authentication with " + peer_ +
                                   " failed: it refused the challenge (" + s.ToString() +
                                   "; does it have --cluster-secret-file?)");
      }
      my_nonce_ = security::RandomNonce();
      stage_ = 2;
      *send = EncodePeerAuth(
          self_, my_nonce_, security::PeerProof(secret_, "client", their_nonce_, my_nonce_, self_));
      return Status::OK();
    }
    case 2: {
      if (reply == nullptr) return Status::Internal("peer handshake: no reply to _peer_auth");
      std::string node, proof;
      Status s = ParsePeerAuthReply(*reply, &node, &proof);
      if (!s.ok()) {
        return Status::Unavailable("peer authentication with " + peer_ +
                                   " failed: " + s.ToString() + " (another cluster secret?)");
      }
      const std::string expected =
          security::PeerProof(secret_, "server", my_nonce_, their_nonce_, node);
      // A --join seed ("@seedN") is known by its address only: any id that
      // proves the secret is that seed.
      if (node != peer_ && (peer_.empty() || peer_[0] != '@')) {
        return Status::Unavailable("peer authentication with " + peer_ + " failed: it says it is " +
                                   node);
      }
      if (!security::ConstantTimeEquals(proof, expected)) {
        return Status::Unavailable("peer authentication with " + peer_ +
                                   " failed: its proof is wrong (another cluster secret?)");
      }
      stage_ = 3;
      return Status::OK();
    }
    default:
      return Status::Internal("peer handshake: already complete");
  }
}

}  // namespace ringkv
