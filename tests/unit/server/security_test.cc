// The security building blocks (server/security/): password hashes, the users
// file, the peer proof, private files and the auth worker. The AuthGate that
// puts them together has its own tests (auth_gate_test.cc).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "server/security/auth_worker.h"
#include "server/security/password.h"
#include "server/security/peer_proof.h"
#include "server/security/private_file.h"
#include "server/security/role.h"
#include "server/security/users.h"

namespace ringkv::security {
namespace {

namespace fs = std::filesystem;

// Cheap parameters for tests that hash many times; one test uses the default.
ScryptParams Fast() {
  ScryptParams p;
  p.log2_n = 10;
  return p;
}

std::string FastHash(const std::string& password) {
  std::string hash;
  EXPECT_TRUE(HashPassword(password, &hash, Fast()).ok());
  return hash;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ringkv-security-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string Write(const std::string& name, const std::string& text, mode_t mode) const {
    const std::string p = (fs::path(path_) / name).string();
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PasswordTest, DefaultHashVerifiesAndHasTheDocumentedShape) {
  std::string hash;
  ASSERT_TRUE(HashPassword("correct horse", &hash).ok());
  EXPECT_EQ(hash.rfind("scrypt$15$8$1$", 0), 0u) << hash;
  EXPECT_TRUE(CheckPasswordHash(hash).ok());
  EXPECT_TRUE(VerifyPassword("correct horse", hash));
  EXPECT_FALSE(VerifyPassword("correct horsf", hash));
}

TEST(PasswordTest, SaltMakesEveryHashDifferent) {
  const std::string a = FastHash("pw");
  const std::string b = FastHash("pw");
  EXPECT_NE(a, b);
  EXPECT_TRUE(VerifyPassword("pw", a));
  EXPECT_TRUE(VerifyPassword("pw", b));
}

TEST(PasswordTest, WrongEmptyAndBinaryPasswords) {
  const std::string hash = FastHash(std::string("a\0b", 3));
  EXPECT_TRUE(VerifyPassword(std::string("a\0b", 3), hash));
  EXPECT_FALSE(VerifyPassword("a", hash));
  EXPECT_FALSE(VerifyPassword("", hash));
  const std::string empty = FastHash("");
  EXPECT_TRUE(VerifyPassword("", empty));
  EXPECT_FALSE(VerifyPassword(" ", empty));
}

TEST(PasswordTest, MalformedHashesAreRefusedWithAReason) {
  const std::string good = FastHash("pw");
  const std::vector<std::string> bad = {
      "",
      "plain",
      "bcrypt$10$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
      "scrypt$15$8$1$AAAA",                                                 // too few parts
      "scrypt$9$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",     // N too small
      "scrypt$21$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",    // N too large
      "scrypt$15$0$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",    // r
      "scrypt$15$8$17$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",   // p
      "scrypt$15$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAA==",                        // salt too short
      "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",                        // hash too short
      "scrypt$15$8$1$AAAAAAAAAAAA*AAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",    // not base64
      "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==$x",  // extra part
      "scrypt$+15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
      good + " ",
  };
  for (const std::string& h : bad) {
    Status s = CheckPasswordHash(h);
    EXPECT_EQ(s.code(), Status::Code::kBadRequest) << h;
    EXPECT_FALSE(s.message().empty());
    EXPECT_FALSE(VerifyPassword("pw", h)) << h;
  }
}

TEST(PasswordTest, DummyHashIsValidAndStable) {
  EXPECT_TRUE(CheckPasswordHash(DummyHash()).ok());
  EXPECT_EQ(&DummyHash(), &DummyHash());
  EXPECT_FALSE(VerifyPassword("", DummyHash()));
}

TEST(UsersTest, ParsesUsersAndRoles) {
  const std::string text = R"({"users":[
      {"name":"r","role":"read","password_hash":")" +
                           FastHash("a") + R"("},
      {"name":"w","role":"readwrite","password_hash":")" +
                           FastHash("b") + R"(","note":"x"},
      {"name":"boss","role":"admin","password_hash":")" +
                           FastHash("c") + R"("}]})";
  std::shared_ptr<const UserTable> table;
  ASSERT_TRUE(UserTable::Parse(text, "users.json", &table).ok());
  ASSERT_EQ(table->size(), 3u);
  ASSERT_NE(table->Find("w"), nullptr);
  EXPECT_EQ(table->Find("w")->role, Role::kReadWrite);
  EXPECT_EQ(table->Find("boss")->role, Role::kAdmin);
  EXPECT_TRUE(VerifyPassword("c", table->Find("boss")->password_hash));
  EXPECT_EQ(table->Find("nobody"), nullptr);
}

TEST(UsersTest, EveryProblemIsNamed) {
  const std::string h = FastHash("a");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not valid JSON"},
      {"[]", "\"users\" array"},
      {R"({"users":{}})", "\"users\" array"},
      {R"({"users":[1]})", "users[0] is not an object"},
      {R"({"users":[{"role":"read","password_hash":")" + h + R"("}]})", "\"name\""},
      {R"({"users":[{"name":"","role":"read","password_hash":")" + h + R"("}]})", "\"name\""},
      {R"({"users":[{"name":"a","role":"root","password_hash":")" + h + R"("}]})", "\"role\""},
      {R"({"users":[{"name":"a","role":"read"}]})", "kvctl user hash"},
      {R"({"users":[{"name":"a","role":"read","password_hash":"x"}]})", "users[0] (\"a\")"},
      {R"({"users":[{"name":"a","role":"read","password_hash":")" + h +
           R"("},{"name":"a","role":"admin","password_hash":")" + h + R"("}]})",
       "users[1] (\"a\"): the name appears twice"},
  };
  for (const auto& [text, want] : cases) {
    std::shared_ptr<const UserTable> table;
    Status s = UserTable::Parse(text, "f.json", &table);
    EXPECT_EQ(s.code(), Status::Code::kBadRequest) << text;
    EXPECT_NE(s.message().find(want), std::string::npos) << s.message() << " / want " << want;
    EXPECT_NE(s.message().find("f.json"), std::string::npos) << s.message();
    EXPECT_EQ(table, nullptr);
  }
}

TEST(UsersTest, LoadRefusesAFileOthersCanRead) {
  TempDir dir;
  const std::string text =
      R"({"users":[{"name":"a","role":"read","password_hash":")" + FastHash("a") + R"("}]})";
  std::shared_ptr<const UserTable> table;
  const std::string open = dir.Write("open.json", text, 0644);
  Status s = UserTable::Load(open, &table);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_NE(s.message().find("chmod 600"), std::string::npos) << s.message();
  const std::string closed = dir.Write("closed.json", text, 0600);
  ASSERT_TRUE(UserTable::Load(closed, &table).ok());
  EXPECT_EQ(table->size(), 1u);
  EXPECT_EQ(UserTable::Load(dir.path() + "/missing.json", &table).code(),
            Status::Code::kBadRequest);
}

TEST(RoleTest, OrderAndNames) {
  EXPECT_TRUE(Allows(Role::kAdmin, Role::kReadWrite));
  EXPECT_TRUE(Allows(Role::kReadWrite, Role::kRead));
  EXPECT_FALSE(Allows(Role::kRead, Role::kReadWrite));
  EXPECT_FALSE(Allows(Role::kNone, Role::kRead));
  Role r = Role::kNone;
  EXPECT_TRUE(ParseRole("readwrite", &r));
  EXPECT_EQ(r, Role::kReadWrite);
  EXPECT_FALSE(ParseRole("none", &r));
  EXPECT_FALSE(ParseRole("Admin", &r));
}

TEST(PeerProofTest, KnownVectorAndBinding) {
  // RFC 4231 test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const std::string secret = "0123456789abcdef0123";
  const std::string na = RandomNonce(), nb = RandomNonce();
  EXPECT_EQ(na.size(), 64u);
  EXPECT_NE(na, nb);
  const std::string p = PeerProof(secret, "client", nb, na, "n1");
  EXPECT_EQ(p, PeerProof(secret, "client", nb, na, "n1"));
  // Each input is bound: side (no reflection), nonces (no replay), id, secret.
  EXPECT_NE(p, PeerProof(secret, "server", nb, na, "n1"));
  EXPECT_NE(p, PeerProof(secret, "client", na, nb, "n1"));
  EXPECT_NE(p, PeerProof(secret, "client", nb, na, "n2"));
  EXPECT_NE(p, PeerProof(secret + "x", "client", nb, na, "n1"));
}

TEST(PeerProofTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(PrivateFileTest, ModesAndSecrets) {
  TempDir dir;
  EXPECT_TRUE(CheckPrivateFile(dir.Write("a", "x", 0600), "--f").ok());
  EXPECT_TRUE(CheckPrivateFile(dir.Write("b", "x", 0400), "--f").ok());
  for (mode_t mode : {0640, 0604, 0660}) {
    Status s = CheckPrivateFile(dir.Write("c", "x", mode), "--f");
    EXPECT_EQ(s.code(), Status::Code::kBadRequest) << mode;
    EXPECT_NE(s.message().find("--f"), std::string::npos);
  }
  EXPECT_EQ(CheckPrivateFile(dir.path(), "--f").code(), Status::Code::kBadRequest);
  EXPECT_EQ(CheckPrivateFile(dir.path() + "/none", "--f").code(), Status::Code::kBadRequest);

  std::string secret;
  ASSERT_TRUE(LoadClusterSecret(dir.Write("s", "0123456789abcdefXYZ \r\n\n", 0600), &secret).ok());
  EXPECT_EQ(secret, "0123456789abcdefXYZ");
  Status s = LoadClusterSecret(dir.Write("short", "tooshort\n", 0600), &secret);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message().find("tooshort"), std::string::npos) << "never print the secret";
  EXPECT_EQ(LoadClusterSecret(dir.Write("open", "0123456789abcdefXYZ", 0644), &secret).code(),
            Status::Code::kBadRequest);
}

TEST(AuthWorkerTest, RunsInOrderAndAfterDelays) {
  AuthWorker worker(16);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> order;
  auto push = [&](int v) {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(v);
    cv.notify_all();
  };
  const auto start = std::chrono::steady_clock::now();
  worker.After(150, [&] { push(3); });
  ASSERT_TRUE(worker.Submit([&] { push(1); }));
  ASSERT_TRUE(worker.Submit([&] { push(2); }));
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return order.size() == 3; }));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150));
}

TEST(AuthWorkerTest, QueueIsBoundedAndStopRunsWhatIsLeft) {
  std::atomic<int> ran{0};
  std::mutex gate;
  std::unique_lock<std::mutex> hold(gate);
  {
    AuthWorker worker(2);
    std::atomic<bool> started{false};
    ASSERT_TRUE(worker.Submit([&] {
      started = true;
      std::lock_guard<std::mutex> wait(gate);
      ++ran;
    }));
    while (!started) std::this_thread::yield();
    EXPECT_TRUE(worker.Submit([&] { ++ran; }));
    EXPECT_TRUE(worker.Submit([&] { ++ran; }));
    EXPECT_FALSE(worker.Submit([&] { ++ran; })) << "a third queued task is over the bound";
    worker.After(60'000, [&] { ++ran; });  // would wait a minute; Stop runs it at once
    hold.unlock();
    worker.Stop();
    EXPECT_EQ(ran.load(), 4);
    EXPECT_TRUE(worker.Submit([&] { ++ran; }));  // after Stop: inline
    EXPECT_EQ(ran.load(), 5);
  }
}

}  // namespace
}  // namespace ringkv::security
