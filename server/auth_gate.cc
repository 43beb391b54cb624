#include "server/auth_gate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "server/peer_auth.h"
#include "server/security/password.h"
#include "server/security/peer_proof.h"
#include "server/security/private_file.h"

namespace ringkv {

namespace {

uint64_t SteadyMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

constexpr char kWrongCredentials[] = "unknown user or wrong password";

}  // namespace

Status AuthGate::Open(Options options, std::unique_ptr<AuthGate>* out) {
  std::unique_ptr<AuthGate> gate(new AuthGate(std::move(options)));
  const Options& o = gate->options_;
  if (!o.tls_key_file.empty()) {
    RINGKV_RETURN_IF_ERROR(security::CheckPrivateFile(o.tls_key_file, "--tls-key"));
  }
  if (!o.cluster_secret_file.empty()) {
    RINGKV_RETURN_IF_ERROR(security::LoadClusterSecret(o.cluster_secret_file, &gate->secret_));
  }
  if (!o.auth_file.empty()) {
    RINGKV_RETURN_IF_ERROR(security::UserTable::Load(o.auth_file, &gate->users_));
    gate->worker_ = std::make_unique<security::AuthWorker>();
    spdlog::info("[security] {} users loaded from {}", gate->users_->size(), o.auth_file);
  }
  *out = std::move(gate);
  return Status::OK();
}

AuthGate::~AuthGate() {
  // Answers what is queued before the node's other parts go.
  if (worker_) worker_->Stop();
}

std::shared_ptr<const security::UserTable> AuthGate::users() const {
  std::lock_guard<std::mutex> l(mu_);
  return users_;
}

bool AuthGate::AdmitsPeer(const Connection& conn) const {
  if (conn.peer.load(std::memory_order_acquire)) return true;
  if (!secret_.empty()) return false;
  if (options_.tls_verifies_peers) return conn.tls_peer_verified;
  return !auth_on();
}

Status AuthGate::Admit(const Connection& conn, Op op) const {
  const OpAccess access = AccessOf(op);
  switch (access.scope) {
    case OpScope::kOpen:
      return Status::OK();
    case OpScope::kPeer:
      if (AdmitsPeer(conn)) return Status::OK();
      // With users on, nothing but auth before auth (PROTOCOL.md §11): an
      // unauthenticated client learns no more than that.
      if (auth_on() && conn.role.load(std::memory_order_acquire) == 0) {
        return Status::Unauthenticated(
            "authenticate first: {\"op\":\"auth\",\"user\":...,\"password\":...}");
      }
      return Status::Forbidden("'" + std::string(OpName(op)) +
                               "' is an internal op, for authenticated cluster members only");
    case OpScope::kClient:
      break;
  }
  if (!auth_on() || conn.peer.load(std::memory_order_acquire)) return Status::OK();
  const auto role = static_cast<security::Role>(conn.role.load(std::memory_order_acquire));
  if (role == security::Role::kNone) {
    return Status::Unauthenticated(
        "authenticate first: {\"op\":\"auth\",\"user\":...,\"password\":...}");
  }
  if (!security::Allows(role, access.role)) {
    return Status::Forbidden("role '" + std::string(security::RoleName(role)) + "' may not '" +
                             std::string(OpName(op)) + "' (it needs '" +
                             std::string(security::RoleName(access.role)) + "')");
  }
  return Status::OK();
}

Status AuthGate::AdmitUnknown(const Connection& conn) const {
  if (!auth_on() || conn.peer.load(std::memory_order_acquire) ||
      conn.role.load(std::memory_order_acquire) != 0) {
    return Status::OK();
  }
  return Status::Unauthenticated(
      "authenticate first: {\"op\":\"auth\",\"user\":...,\"password\":...}");
}

void AuthGate::LogFailure(const std::string& what) {
  // At most one line a second: a guessing client must not fill the log.
  uint64_t now = SteadyMs();
  uint64_t last = last_log_ms_.load(std::memory_order_relaxed);
  if (now >= last + 1000 && last_log_ms_.compare_exchange_strong(last, now)) {
    spdlog::warn("[security] {}", what);
  }
}

void AuthGate::Auth(const std::shared_ptr<Connection>& conn, const std::string& user,
                    const std::string& password, AuthDone done) {
  if (!auth_on()) {
    return done(Status::BadRequest("authentication is off on this node (no --auth-file)"), "",
                security::Role::kNone);
  }
  std::shared_ptr<const security::UserTable> table = users();
  // Shared: a refused Submit drops the function, and the caller still answers.
  auto answer = std::make_shared<AuthDone>(std::move(done));
  auto check = [this, conn, table, user = std::string(user), password = std::string(password),
                answer]() mutable {
    const security::User* u = table->Find(user);
    // An unknown user costs one hash too, and gets the same answer.
    const bool ok = security::VerifyPassword(
                        password, u != nullptr ? u->password_hash : security::DummyHash()) &&
                    u != nullptr;
    std::string().swap(password);
    const uint32_t failures_before = conn->auth_failures.load(std::memory_order_relaxed);
    if (ok) {
      conn->user = u->name;
      conn->role.store(static_cast<int>(u->role), std::memory_order_release);
      conn->auth_failures.store(0, std::memory_order_relaxed);
    } else {
      // A failure ends the connection's earlier authentication: a client
      // that switched users must not go on as the previous one by mistake.
      conn->user.clear();
      conn->role.store(0, std::memory_order_release);
      conn->auth_failures.fetch_add(1, std::memory_order_relaxed);
      auth_failures_.fetch_add(1, std::memory_order_relaxed);
      LogFailure("authentication failed for user " + JsonQuote(user.substr(0, 64)) + " from " +
                 conn->remote);
    }
    // Answers after failures on this connection are slowed: n x 100 ms.
    const uint32_t failures = ok ? failures_before : failures_before + 1;
    const uint64_t delay =
        std::min<uint64_t>(kMaxDelayMs, uint64_t{failures} * options_.failure_delay_ms);
    Status s = ok ? Status::OK() : Status::Unauthenticated(kWrongCredentials);
    security::Role role = ok ? u->role : security::Role::kNone;
    std::string name = ok ? u->name : "";
    if (delay == 0) return (*answer)(s, name, role);
    worker_->After(delay, [answer, s, name, role]() { (*answer)(s, name, role); });
  };
  if (!worker_->Submit(std::move(check))) {
    (*answer)(Status::Overloaded("too many authentications in progress; retry"), "",
              security::Role::kNone);
  }
}

Status AuthGate::Challenge(Connection* conn, std::string* nonce) {
  if (secret_.empty()) return Status::Forbidden("this node has no cluster secret");
  if (options_.tls_verifies_peers && !conn->tls_peer_verified) {
    return Status::Forbidden("peers must present a certificate that --tls-ca verifies");
  }
  *nonce = security::RandomNonce();
  conn->challenge = *nonce;
  return Status::OK();
}

Status AuthGate::PeerAuth(Connection* conn, const std::string& from, const std::string& their_nonce,
                          const std::string& their_proof, std::string* proof) {
  if (secret_.empty()) return Status::Forbidden("this node has no cluster secret");
  std::string challenge;
  challenge.swap(conn->challenge);  // used up either way
  if (challenge.empty()) return Status::Forbidden("_peer_auth without a _challenge first");
  const std::string expected = security::PeerProof(secret_, "client", challenge, their_nonce, from);
  const bool member = options_.is_member && options_.is_member(from);
  if (!security::ConstantTimeEquals(their_proof, expected) || !member) {
    peer_auth_failures_.fetch_add(1, std::memory_order_relaxed);
    LogFailure(
        "peer authentication failed for " + JsonQuote(from.substr(0, 64)) + " from " +
        conn->remote +
        (member ? ": wrong proof (another cluster secret?)" : ": not a member of this cluster"));
    return Status::Forbidden("peer authentication failed");
  }
  conn->peer_id = from;
  conn->peer.store(true, std::memory_order_release);
  *proof = security::PeerProof(secret_, "server", their_nonce, challenge, options_.node_id);
  return Status::OK();
}

Status AuthGate::ReloadUsers() {
  if (!auth_on()) return Status::OK();
  std::shared_ptr<const security::UserTable> fresh;
  Status s = security::UserTable::Load(options_.auth_file, &fresh);
  if (!s.ok()) {
    spdlog::error("[security] reloading {} failed, keeping the users loaded before: {}",
                  options_.auth_file, s.message());
    return s;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    users_ = fresh;
  }
  spdlog::info("[security] {} users reloaded from {}", fresh->size(), options_.auth_file);
  return Status::OK();
}

net::PeerHandshakeFactory AuthGate::PeerHandshakes() const {
  if (secret_.empty()) return {};
  return [secret = secret_, self = options_.node_id](const std::string& peer) {
    return std::make_unique<PeerAuthHandshake>(secret, self, peer);
  };
}

}  // namespace ringkv
