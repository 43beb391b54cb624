// AuthGate: the role of every op in the table against PROTOCOL.md §11's list
// (written out here independently of the table), the peer handshake both
// ways, and the auth op's answers.
#include "server/auth_gate.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <future>
#include <set>

#include "server/peer_auth.h"
#include "server/protocol.h"
#include "server/security/password.h"
#include "tests/util/temp_dir.h"

namespace ringkv {
namespace {

using security::Role;

// PROTOCOL.md §11, by op name: read may get, ping, stats, cluster, locate;
// readwrite adds put and delete; admin may do everything.
Role ExpectedRole(std::string_view op) {
  static const std::set<std::string_view> kRead = {"get", "ping", "stats", "cluster", "locate"};
  static const std::set<std::string_view> kWrite = {"put", "delete"};
  if (kRead.count(op)) return Role::kRead;
  if (kWrite.count(op)) return Role::kReadWrite;
  return Role::kAdmin;
}

bool IsAuthOp(std::string_view op) {
  return op == "auth" || op == "_challenge" || op == "_peer_auth";
}

class AuthGateTest : public ::testing::Test {
 protected:
  std::string WritePrivate(const std::string& name, const std::string& text) {
    std::string path = dir_.path() + "/" + name;
    std::ofstream(path) << text;
    ::chmod(path.c_str(), 0600);
    return path;
  }

  std::string UsersFile() {
    security::ScryptParams fast;
    fast.log2_n = 10;
    std::string json = "{\"users\":[";
    const char* users[][3] = {
        {"reader", "read", "r"}, {"writer", "readwrite", "w"}, {"root", "admin", "a"}};
    for (const auto& u : users) {
      std::string hash;
      EXPECT_TRUE(security::HashPassword(u[2], &hash, fast).ok());
      json += std::string(json.back() == '[' ? "" : ",") + "{\"name\":\"" + u[0] +
              "\",\"role\":\"" + u[1] + "\",\"password_hash\":\"" + hash + "\"}";
    }
    return WritePrivate("users.json", json + "]}");
  }

  std::unique_ptr<AuthGate> Open(bool users, bool secret) {
    AuthGate::Options o;
    o.node_id = "n1";
    if (users) o.auth_file = UsersFile();
    if (secret) o.cluster_secret_file = WritePrivate("secret", "0123456789abcdef-secret\n");
    o.is_member = [](const std::string& id) { return id == "n1" || id == "n2"; };
    o.failure_delay_ms = 20;
    std::unique_ptr<AuthGate> gate;
    Status s = AuthGate::Open(o, &gate);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return gate;
  }

  // Runs `auth` and waits for its answer.
  Status Auth(AuthGate* gate, const std::shared_ptr<Connection>& conn, const std::string& user,
              const std::string& password) {
    std::promise<Status> p;
    gate->Auth(conn, user, password,
               [&p](Status s, const std::string&, Role) { p.set_value(std::move(s)); });
    return p.get_future().get();
  }

  testutil::ScopedTempDir dir_{"ringkv-auth-gate"};
};

TEST_F(AuthGateTest, EveryOpNeedsItsRole) {
  auto gate = Open(/*users=*/true, /*secret=*/true);
  for (Role role : {Role::kNone, Role::kRead, Role::kReadWrite, Role::kAdmin}) {
    Connection conn;
    conn.role = static_cast<int>(role);
    for (int i = 0; i < kOpCount; ++i) {
      const Op op = static_cast<Op>(i);
      const std::string_view name = OpName(op);
      Status s = gate->Admit(conn, op);
      SCOPED_TRACE(std::string(name) + " as " + std::string(security::RoleName(role)));
      if (IsAuthOp(name)) {
        EXPECT_TRUE(s.ok());
      } else if (role == Role::kNone) {
        // Nothing but auth before auth, internal ops included.
        EXPECT_EQ(s.code(), Status::Code::kUnauthenticated);
      } else if (name.starts_with("_")) {
        EXPECT_EQ(s.code(), Status::Code::kForbidden);  // users are never peers
      } else if (role == Role::kNone) {
        EXPECT_EQ(s.code(), Status::Code::kUnauthenticated);
      } else if (security::Allows(role, ExpectedRole(name))) {
        EXPECT_TRUE(s.ok()) << s.ToString();
      } else {
        EXPECT_EQ(s.code(), Status::Code::kForbidden);
      }
    }
  }
}

TEST_F(AuthGateTest, InternalOpsWithoutAnySecurityAreOpen) {
  auto gate = Open(false, false);
  Connection conn;
  for (int i = 0; i < kOpCount; ++i) EXPECT_TRUE(gate->Admit(conn, static_cast<Op>(i)).ok());
  EXPECT_TRUE(gate->AdmitUnknown(conn).ok());
}

TEST_F(AuthGateTest, SecretWithoutUsersGuardsOnlyInternalOps) {
  auto gate = Open(false, true);
  Connection conn;
  EXPECT_TRUE(gate->Admit(conn, Op::kPut).ok());
  EXPECT_EQ(gate->Admit(conn, Op::kPeerWrite).code(), Status::Code::kForbidden);
  EXPECT_EQ(gate->Admit(conn, Op::kPeerHello).code(), Status::Code::kForbidden);
}

TEST_F(AuthGateTest, UnknownOpBeforeAuthIsUnauthenticated) {
  auto gate = Open(true, false);
  Connection conn;
  EXPECT_EQ(gate->AdmitUnknown(conn).code(), Status::Code::kUnauthenticated);
  conn.role = static_cast<int>(Role::kRead);
  EXPECT_TRUE(gate->AdmitUnknown(conn).ok());
}

// The client side (PeerAuthHandshake) against the server side (the gate):
// both proofs check, and the connection becomes a peer.
TEST_F(AuthGateTest, PeerHandshakeBothWays) {
  auto gate = Open(true, true);
  auto factory = gate->PeerHandshakes();
  ASSERT_TRUE(factory);
  // n1 connecting to itself is enough: the gate is n1's, the handshake names n1.
  auto hs = factory("n1");
  Connection conn;
  std::string line;
  ASSERT_TRUE(hs->Step(nullptr, &line).ok());
  EXPECT_EQ(line, EncodePeerChallenge());
  std::string nonce;
  ASSERT_TRUE(gate->Challenge(&conn, &nonce).ok());
  std::string reply = ResponseBuilder("").AddString("nonce", nonce).Finish();
  ASSERT_TRUE(hs->Step(&reply, &line).ok());
  Request req;
  ASSERT_TRUE(ParseRequest(line, Limits(), &req).ok()) << line;
  ASSERT_EQ(req.op, Op::kPeerAuth);
  std::string proof;
  ASSERT_TRUE(gate->PeerAuth(&conn, req.from, req.nonce, req.proof, &proof).ok());
  EXPECT_TRUE(conn.peer.load());
  EXPECT_TRUE(gate->Admit(conn, Op::kPeerWrite).ok());
  EXPECT_TRUE(gate->Admit(conn, Op::kBackup).ok());
  reply = ResponseBuilder("").AddString("node", "n1").AddString("proof", proof).Finish();
  ASSERT_TRUE(hs->Step(&reply, &line).ok());
  EXPECT_TRUE(line.empty());  // done

  // The challenge is used up: replaying the same _peer_auth fails.
  Connection replay;
  EXPECT_EQ(gate->PeerAuth(&replay, req.from, req.nonce, req.proof, &proof).code(),
            Status::Code::kForbidden);
  // A wrong server proof is caught by the client.
  auto hs2 = factory("n1");
  ASSERT_TRUE(hs2->Step(nullptr, &line).ok());
  reply = ResponseBuilder("").AddString("nonce", "abc").Finish();
  ASSERT_TRUE(hs2->Step(&reply, &line).ok());
  reply = ResponseBuilder("").AddString("node", "n1").AddString("proof", "00").Finish();
  Status s = hs2->Step(&reply, &line);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("proof is wrong"), std::string::npos) << s.ToString();
}

TEST_F(AuthGateTest, WrongProofOrNonMemberIsForbidden) {
  auto gate = Open(false, true);
  Connection conn;
  std::string nonce, proof;
  ASSERT_TRUE(gate->Challenge(&conn, &nonce).ok());
  EXPECT_EQ(gate->PeerAuth(&conn, "n2", "na", "bad", &proof).code(), Status::Code::kForbidden);
  EXPECT_FALSE(conn.peer.load());
  EXPECT_EQ(gate->peer_auth_failures(), 1u);
  // Without a challenge first.
  EXPECT_EQ(gate->PeerAuth(&conn, "n2", "na", "bad", &proof).code(), Status::Code::kForbidden);
}

TEST_F(AuthGateTest, AuthAnswersAndSlowsFailures) {
  auto gate = Open(true, false);
  auto conn = std::make_shared<Connection>();
  EXPECT_TRUE(Auth(gate.get(), conn, "writer", "w").ok());
  EXPECT_EQ(conn->role.load(), static_cast<int>(Role::kReadWrite));
  Status wrong = Auth(gate.get(), conn, "writer", "x");
  Status unknown = Auth(gate.get(), conn, "nobody", "x");
  EXPECT_EQ(wrong.code(), Status::Code::kUnauthenticated);
  EXPECT_EQ(wrong.ToString(), unknown.ToString());
  // A failure ends the earlier authentication.
  EXPECT_EQ(conn->role.load(), 0);
  EXPECT_EQ(gate->auth_failures(), 2u);
  // The third failure waits 3 x 20 ms; another connection is not slowed.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(Auth(gate.get(), conn, "writer", "x").ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(60));
  auto other = std::make_shared<Connection>();
  EXPECT_TRUE(Auth(gate.get(), other, "root", "a").ok());
  EXPECT_EQ(other->role.load(), static_cast<int>(Role::kAdmin));
}

TEST_F(AuthGateTest, ReloadKeepsTheOldTableOnError) {
  auto gate = Open(true, false);
  WritePrivate("users.json", "{\"users\": 5}");
  EXPECT_FALSE(gate->ReloadUsers().ok());
  auto conn = std::make_shared<Connection>();
  EXPECT_TRUE(Auth(gate.get(), conn, "reader", "r").ok());
  WritePrivate("users.json", "{\"users\": []}");
  EXPECT_TRUE(gate->ReloadUsers().ok());
  EXPECT_FALSE(Auth(gate.get(), conn, "reader", "r").ok());
}

TEST_F(AuthGateTest, RefusesFilesOthersCanRead) {
  AuthGate::Options o;
  o.node_id = "n1";
  o.auth_file = UsersFile();
  ::chmod(o.auth_file.c_str(), 0644);
  std::unique_ptr<AuthGate> gate;
  Status s = AuthGate::Open(o, &gate);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_NE(s.message().find("--auth-file"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace ringkv
