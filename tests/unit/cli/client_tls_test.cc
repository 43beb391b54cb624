// Client::Connect with TLS and authentication against OpenSSL's own server
// on 127.0.0.1 (tests/util/tls_test_server.h), with certificates made by the
// openssl command: verification, host checks, line I/O and the auth exchange.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/client.h"
#include "cli/client_security.h"
#include "tests/util/loopback.h"
#include "tests/util/tls_test_server.h"

namespace ringkv {
namespace {

using nlohmann::json;
using testutil::LineServer;
using testutil::TestCertificates;

std::string Echo(const std::string& line) { return line; }

// Answers `auth` like kvd: ok for alice/right, unauthenticated otherwise;
// echoes everything else. Records the last auth request. Copies share it
// (LineServer keeps a copy; it runs on the server's threads).
class AuthHandler {
 public:
  std::string operator()(const std::string& line) {
    json req = json::parse(line, nullptr, false);
    if (!req.is_object() || req.value("op", "") != "auth") return line;
    {
      std::lock_guard<std::mutex> l(state_->mu);
      state_->last = req;
    }
    if (req.value("user", "") == "alice" && req.value("password", "") == "right") {
      return R"({"ok":true,"user":"alice","role":"read"})";
    }
    return R"({"ok":false,"error":{"code":"unauthenticated","message":"wrong user or password"}})";
  }
  json last() const {
    std::lock_guard<std::mutex> l(state_->mu);
    return state_->last;
  }

 private:
  struct State {
    std::mutex mu;
    json last;  // by mu
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

class ClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!certs_.ok()) GTEST_SKIP() << "the openssl command could not make certificates";
  }
  ClientSecurity Tls(const std::string& ca) {
    ClientSecurity s;
    s.tls = true;
    s.tls_ca = ca;
    return s;
  }
  TestCertificates certs_;
};

TEST_F(ClientTlsTest, RightCaVerifiesAndLinesRoundTrip) {
  LineServer server(certs_.cert(), certs_.key(), Echo);
  ASSERT_TRUE(server.ok());
  std::unique_ptr<Client> client;
  Status s = Client::Connect(server.address(), &client, 5000, Tls(certs_.cert()));
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(client->tls());

  ASSERT_TRUE(client->SendLine(R"({"op":"ping"})").ok());
  std::string line;
  ASSERT_TRUE(client->ReceiveLine(&line).ok());
  EXPECT_EQ(line, R"({"op":"ping"})");

  // Pipelined lines: the second arrives in the same records as the first, so
  // it must come out of the SSL's buffer, not from a socket read.
  ASSERT_TRUE(client->SendRaw("one\ntwo\nthree\n").ok());
  for (const char* want : {"one", "two", "three"}) {
    ASSERT_TRUE(client->ReceiveLine(&line).ok());
    EXPECT_EQ(line, want);
  }

  // A line far bigger than a TLS record (16 KiB) and than socket buffers.
  std::string big(3 << 20, 'x');
  ASSERT_TRUE(client->SendLine(big).ok());
  ASSERT_TRUE(client->ReceiveLine(&line).ok());
  EXPECT_EQ(line.size(), big.size());
  EXPECT_EQ(line, big);

  json resp;
  ASSERT_TRUE(client->Call({{"op", "get"}, {"key", "k"}}, &resp).ok());
  EXPECT_EQ(resp, json({{"op", "get"}, {"key", "k"}}));
}

TEST_F(ClientTlsTest, HostNamesAreCheckedAndSentAsSni) {
  LineServer server(certs_.cert(), certs_.key(), Echo);
  ASSERT_TRUE(server.ok());
  std::string port = server.address().substr(server.address().rfind(':') + 1);
  std::unique_ptr<Client> client;
  Status s = Client::Connect("localhost:" + port, &client, 5000, Tls(certs_.cert()));
  ASSERT_TRUE(s.ok()) << s.ToString();
}

TEST_F(ClientTlsTest, WrongCaFailsVerification) {
  LineServer server(certs_.cert(), certs_.key(), Echo);
  ASSERT_TRUE(server.ok());
  std::unique_ptr<Client> client;
  Status s = Client::Connect(server.address(), &client, 5000, Tls(certs_.other_cert()));
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_EQ(s.message().rfind("TLS handshake with " + server.address() + " failed: ", 0), 0u)
      << s.message();
  EXPECT_NE(s.message().find("certificate verify failed"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("self-signed certificate"), std::string::npos) << s.message();
  EXPECT_EQ(client, nullptr);
}

TEST_F(ClientTlsTest, ACertificateForAnotherAddressIsRefused) {
  // A valid chain (its CA is trusted), but for 127.0.0.2, not 127.0.0.1.
  LineServer server(certs_.elsewhere_cert(), certs_.elsewhere_key(), Echo);
  ASSERT_TRUE(server.ok());
  std::unique_ptr<Client> client;
  Status s = Client::Connect(server.address(), &client, 5000, Tls(certs_.elsewhere_cert()));
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_NE(s.message().find("certificate verify failed (IP address mismatch)"), std::string::npos)
      << s.message();
}

TEST_F(ClientTlsTest, TheSystemCasDoNotTrustATestCertificate) {
  LineServer server(certs_.cert(), certs_.key(), Echo);
  ASSERT_TRUE(server.ok());
  std::unique_ptr<Client> client;
  Status s = Client::Connect(server.address(), &client, 5000, Tls(""));
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_NE(s.message().find("certificate verify failed"), std::string::npos) << s.message();
}

TEST_F(ClientTlsTest, HandshakeWithASilentServerTimesOut) {
  testutil::SilentListener silent;  // connects, never answers a ClientHello
  std::string address = "127.0.0.1:" + std::to_string(silent.port());
  std::unique_ptr<Client> client;
  Status s = Client::Connect(address, &client, 300, Tls(certs_.cert()));
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_EQ(s.message(), "TLS handshake with " + address + " timed out");
}

TEST_F(ClientTlsTest, AuthenticatesAfterTheHandshake) {
  AuthHandler handler;
  LineServer server(certs_.cert(), certs_.key(), handler);
  ASSERT_TRUE(server.ok());
  ClientSecurity sec = Tls(certs_.cert());
  ASSERT_TRUE(PrepareTls(&sec).ok());  // one context for both connections
  sec.user = "alice";
  sec.password = "wrong";
  std::unique_ptr<Client> client;
  Status s = Client::Connect(server.address(), &client, 5000, sec);
  EXPECT_EQ(s.code(), Status::Code::kUnauthenticated);
  EXPECT_EQ(s.message(), "wrong user or password");
  EXPECT_EQ(handler.last(), json({{"op", "auth"}, {"user", "alice"}, {"password", "wrong"}}));

  sec.password = "right";
  s = Client::Connect(server.address(), &client, 5000, sec);
  ASSERT_TRUE(s.ok()) << s.ToString();
  json resp;
  ASSERT_TRUE(client->Call({{"op", "ping"}}, &resp).ok());
  EXPECT_EQ(resp, json({{"op", "ping"}}));
  EXPECT_EQ(server.handshakes(), 2);
}

TEST_F(ClientTlsTest, ReleaseHandsOverAWorkingSsl) {
  LineServer server(certs_.cert(), certs_.key(), Echo);
  ASSERT_TRUE(server.ok());
  std::unique_ptr<Client> client;
  ASSERT_TRUE(Client::Connect(server.address(), &client, 5000, Tls(certs_.cert())).ok());
  int fd = -1;
  ssl_st* ssl = nullptr;
  ASSERT_TRUE(client->Release(&fd, &ssl).ok());
  client.reset();  // must close neither
  ASSERT_GE(fd, 0);
  ASSERT_NE(ssl, nullptr);
  // The fd is non-blocking: write, then read until the echo is complete.
  std::string line = "released\n", got;
  size_t written = 0;
  while (SSL_write_ex(ssl, line.data(), line.size(), &written) != 1) {
    ASSERT_EQ(SSL_get_error(ssl, 0), SSL_ERROR_WANT_WRITE);
  }
  char buf[64];
  while (got.find('\n') == std::string::npos) {
    size_t n = 0;
    if (SSL_read_ex(ssl, buf, sizeof buf, &n) == 1) {
      got.append(buf, n);
    } else {
      ::usleep(1000);
    }
  }
  EXPECT_EQ(got, line);
  SSL_free(ssl);
  ::close(fd);
}

// Plaintext, as before §11: a server that requires TLS answers one line and
// closes; with --user that line is the answer to `auth`, and its error is
// what the client reports.
TEST(ClientAuthTest, TheServersRefusalIsReturnedWithItsCode) {
  LineServer server("", "", [](const std::string&) {
    return R"j({"ok":false,"error":{"code":"bad_request","message":"this port requires TLS (kvctl --tls)"}})j";
  });
  ASSERT_TRUE(server.ok());
  ClientSecurity sec;
  sec.user = "alice";
  sec.password = "pw";
  std::unique_ptr<Client> client;
  Status s = Client::Connect(server.address(), &client, 5000, sec);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "this port requires TLS (kvctl --tls)");
}

TEST(ClientAuthTest, PasswordsThatAreNotUtf8AreRefusedWithoutQuotingThem) {
  LineServer server("", "", Echo);
  ASSERT_TRUE(server.ok());
  ClientSecurity sec;
  sec.user = "alice";
  sec.password = "p\xff\xfe";
  std::unique_ptr<Client> client;
  Status s = Client::Connect(server.address(), &client, 5000, sec);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "the user name and password must be UTF-8 text");
}

}  // namespace
}  // namespace ringkv
