// AuthGate: who may do what on a node (PROTOCOL.md §11, docs/security.md).
//
// - Users: with --auth-file, a connection must `auth` before anything but the
//   authentication ops; its user's role must reach each op's least role (the
//   op table, server/op_list.h). Passwords are checked on the gate's own
//   worker (security/auth_worker.h), never on an I/O thread; a connection's
//   n-th failed attempt is answered after n x 100 ms (at most 2 s), and an
//   unknown user costs the same hash as a wrong password and gets the same
//   answer. A failed `auth` also ends the connection's earlier
//   authentication. Reloaded on SIGHUP (ReloadUsers).
// - Peers: with --cluster-secret-file, the internal ops (scope kPeer) need a
//   connection that proved the secret (_challenge, then _peer_auth; see
//   security/peer_proof.h). Without a secret, internal ops are open when no
//   security is configured, need a certificate verified by --tls-ca when TLS
//   verifies peers, and are forbidden to everyone when only users are
//   configured (a lone node: there is no peer to admit).
//
// Thread-safety: every method is safe from any thread. The connection state
// it changes is the one the session serialises (request_handler.h).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "engine/status.h"
#include "server/net/peer_handshake.h"
#include "server/protocol.h"
#include "server/request_handler.h"
#include "server/security/auth_worker.h"
#include "server/security/role.h"
#include "server/security/users.h"

namespace ringkv {

class AuthGate {
 public:
  struct Options {
    std::string node_id;
    std::string auth_file;            // "" = users off
    std::string cluster_secret_file;  // "" = no secret
    std::string tls_key_file;         // checked to be private ("" = no TLS)
    bool tls_verifies_peers = false;  // --tls-ca given
    // Whether `id` is a member (a _peer_auth from anyone else is refused).
    std::function<bool(const std::string& id)> is_member;
    // Failed auth answers wait failures x this, at most kMaxDelayMs. Tests lower it.
    uint64_t failure_delay_ms = 100;
  };
  static constexpr uint64_t kMaxDelayMs = 2000;

  // Loads the users file and the secret, and checks that the files holding
  // secrets are private (security/private_file.h). BadRequest naming the
  // flag and the problem otherwise.
  static Status Open(Options options, std::unique_ptr<AuthGate>* out);
  ~AuthGate();

  // OK if `conn` may send `op`; otherwise Unauthenticated or Forbidden with
  // a message saying what is missing.
  Status Admit(const Connection& conn, Op op) const;
  // For a line naming no known op: Unauthenticated before `auth` (with
  // users on), so that the op names are not probed; OK otherwise.
  Status AdmitUnknown(const Connection& conn) const;

  // The `auth` op: `done(status, user, role)` once checked, from the gate's
  // worker (or inline: auth off, or the worker's queue is full).
  using AuthDone = std::function<void(Status, const std::string& user, security::Role role)>;
  void Auth(const std::shared_ptr<Connection>& conn, const std::string& user,
            const std::string& password, AuthDone done);

  // _challenge: a fresh nonce kept on the connection (Forbidden without a secret).
  Status Challenge(Connection* conn, std::string* nonce);
  // _peer_auth: checks the proof against the connection's challenge (used
  // up either way); on success marks the connection a peer and sets *proof
  // to this node's answer.
  Status PeerAuth(Connection* conn, const std::string& from, const std::string& their_nonce,
                  const std::string& their_proof, std::string* proof);

  // Re-reads the users file (SIGHUP). On failure keeps the old table.
  Status ReloadUsers();

  // The handshake the peer client runs on each connection: the secret's
  // proof, or an empty factory without a secret.
  net::PeerHandshakeFactory PeerHandshakes() const;

  bool auth_on() const { return !options_.auth_file.empty(); }
  bool has_secret() const { return !secret_.empty(); }
  uint64_t auth_failures() const { return auth_failures_.load(std::memory_order_relaxed); }
  uint64_t peer_auth_failures() const {
    return peer_auth_failures_.load(std::memory_order_relaxed);
  }

 private:
  explicit AuthGate(Options options) : options_(std::move(options)) {}
  bool AdmitsPeer(const Connection& conn) const;
  std::shared_ptr<const security::UserTable> users() const;
  void LogFailure(const std::string& what);

  const Options options_;
  std::string secret_;
  mutable std::mutex mu_;
  std::shared_ptr<const security::UserTable> users_;  // by mu_
  std::unique_ptr<security::AuthWorker> worker_;
  std::atomic<uint64_t> auth_failures_{0};
  std::atomic<uint64_t> peer_auth_failures_{0};
  std::atomic<uint64_t> last_log_ms_{0};
};

}  // namespace ringkv
