// kvctl against a real kvd (PROTOCOL.md §6): output, exit status, errors.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "server/security/password.h"
#include "tests/integration/harness.h"
#include "tests/util/temp_dir.h"

namespace ringkv::itest {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
constexpr int kExitUsage = 2;
constexpr int kExitError = 3;

// Prints everything about a kvctl run when an assertion on it fails.
std::string Describe(const ProcessResult& r) {
  return "exit " + std::to_string(r.exit_code) + " signal " + std::to_string(r.term_signal) +
         (r.timed_out ? " TIMED OUT" : "") + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

class KvctlTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(kvd_.Start()); }

  // kvctl --host <node> args...
  ProcessResult Kvctl(std::vector<std::string> args, const std::string& stdin_data = "") {
    args.insert(args.begin(), {"--host", kvd_.address()});
    return RunKvctl(args, stdin_data);
  }

  KvdProcess kvd_;
};

TEST_F(KvctlTest, PutThenGetPrintsTheValue) {
  ProcessResult put = Kvctl({"put", "greeting", "hello"});
  ASSERT_EQ(put.exit_code, kExitOk) << Describe(put);
  ASSERT_EQ(NonEmptyLines(put.out).size(), 1u) << Describe(put);
  std::string version = NonEmptyLines(put.out)[0];

  ProcessResult get = Kvctl({"get", "greeting"});
  ASSERT_EQ(get.exit_code, kExitOk) << Describe(get);
  EXPECT_EQ(get.out, "hello\n");
  EXPECT_EQ(get.err, "");

  // The version kvctl printed is the one the node stores.
  EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", "greeting"}})["version"], version);
  // Written through kvctl, read through the protocol: a JSON string.
  EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", "greeting"}})["value"], "hello");
}

TEST_F(KvctlTest, MissingKeyExitsOne) {
  ProcessResult get = Kvctl({"get", "no-such-key"});
  EXPECT_EQ(get.exit_code, kExitNotFound) << Describe(get);
  EXPECT_EQ(get.out, "");

  ProcessResult json = Kvctl({"-o", "json", "get", "no-such-key"});
  EXPECT_EQ(json.exit_code, kExitNotFound) << Describe(json);
  Json resp = Json::parse(json.out, nullptr, false);
  ASSERT_TRUE(IsOk(resp)) << Describe(json);
  EXPECT_EQ(resp["found"], false);
}

TEST(KvctlUsageTest, BadUsageExitsTwoWithoutContactingAServer) {
  // Nothing listens on this port: a usage error must be found first.
  std::string host = "127.0.0.1:" + std::to_string(UnusedPort());
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"put"},
      {"put", "k"},
      {"put", "k", "v", "extra"},
      {"get"},
      {"get", "a", "b"},
      {"del"},
      {"locate"},
      {"backup"},
      {"ping", "extra"},
      {"put", "k", "{not json", "--json"},
      {"put", "k", "", "--json"},
      {"put", "k", "v", "--ttl-ms", "abc"},
      {"put", "k", "v", "--ttl-ms", "0"},
      {"put", "k", "v", "--ttl-ms", "-5"},
      {"put", "k", "v", "--ttl-ms"},
      {"put", "k", "v", "-w", "bogus"},
      {"put", "k", "v", "-w", "0"},
      {"get", "k", "-r", "1.5"},
      {"get", "k", "-w", "1"},
      {"put", "k", "v", "-r", "1"},
      {"ping", "--json"},
      {"ping", "--frobnicate"},
      {"-o", "yaml", "ping"},
      {"--timeout-ms", "x", "ping"},
  };
  for (const auto& args : cases) {
    std::string joined;
    for (const auto& a : args) joined += " '" + a + "'";
    SCOPED_TRACE("kvctl" + joined);
    std::vector<std::string> full = {"--host", host};
    full.insert(full.end(), args.begin(), args.end());
    ProcessResult r = RunKvctl(full);
    EXPECT_EQ(r.exit_code, kExitUsage) << Describe(r);
    EXPECT_NE(r.err.find("usage"), std::string::npos) << Describe(r);
    EXPECT_EQ(r.out, "");
  }
  // A malformed --host is a usage error too.
  ProcessResult r = RunKvctl({"--host", "no-port-here", "ping"});
  EXPECT_EQ(r.exit_code, kExitUsage) << Describe(r);
  // --help is not an error.
  r = RunKvctl({"--help"});
  EXPECT_EQ(r.exit_code, kExitOk) << Describe(r);
  EXPECT_NE(r.out.find("usage"), std::string::npos);
}

// The security flags (PROTOCOL.md §11) are checked before any connection:
// a missing password, an unreadable password file or CA file, a flag without
// its value are usage errors (exit 2), and the message says what to do.
TEST(KvctlUsageTest, SecurityFlagsCheckedBeforeConnecting) {
  ::unsetenv("RINGKV_PASSWORD");
  testutil::ScopedTempDir dir("ringkv-kvctl-security");
  const std::string empty_file = dir.Sub("empty");
  FILE* f = std::fopen(empty_file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  std::string host = "127.0.0.1:" + std::to_string(UnusedPort());
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--user", "bob", "ping"},
       "kvctl: --user needs the password in RINGKV_PASSWORD or --password-file"},
      {{"ping", "--user", "bob"},  // after the command too, like --host
       "kvctl: --user needs the password in RINGKV_PASSWORD or --password-file"},
      {{"--user", "bob", "--password-file", dir.Sub("missing"), "ping"},
       "kvctl: cannot read password file " + dir.Sub("missing") + ": no such file or directory"},
      {{"--user", "bob", "--password-file", empty_file, "ping"},
       "kvctl: password file " + empty_file + " is empty"},
      {{"--password-file", empty_file, "ping"}, "kvctl: --password-file needs --user"},
      {{"--tls-ca", dir.Sub("no-ca.pem"), "ping"},
       "kvctl: cannot read --tls-ca " + dir.Sub("no-ca.pem") + ": no such file or directory"},
      {{"--tls-ca", empty_file, "ping"}, "kvctl: cannot load --tls-ca " + empty_file},
      {{"ping", "--tls-ca"}, "kvctl: option --tls-ca needs a value"},
      {{"ping", "--user"}, "kvctl: option --user needs a value"},
      {{"ping", "--password-file"}, "kvctl: option --password-file needs a value"},
      {{"--tls=yes", "ping"}, "kvctl: option --tls takes no value"},
      {{"--user=", "ping"}, "kvctl: --user needs a name"},
      {{"--password", "secret", "ping"}, "kvctl: unknown option --password"},  // deliberately none
      {{"user"}, "kvctl: user takes 1 argument(s), got 0"},
      {{"user", "add"}, "kvctl: unknown user command 'add' (kvctl user hash)"},
      {{"user", "hash", "extra"}, "kvctl: user takes 1 argument(s), got 2"},
  };
  for (const auto& [args, message] : cases) {
    std::string joined;
    for (const auto& a : args) joined += " '" + a + "'";
    SCOPED_TRACE("kvctl" + joined);
    std::vector<std::string> full = {"--host", host};
    full.insert(full.end(), args.begin(), args.end());
    ProcessResult r = RunKvctl(full);
    EXPECT_EQ(r.exit_code, kExitUsage) << Describe(r);
    EXPECT_EQ(r.err.rfind(message, 0), 0u) << Describe(r);
    EXPECT_NE(r.err.find("usage"), std::string::npos) << Describe(r);
    EXPECT_EQ(r.out, "");
  }
  // The flags are in the help.
  ProcessResult help = RunKvctl({"--help"});
  EXPECT_EQ(help.exit_code, kExitOk) << Describe(help);
  for (const char* flag : {"--tls", "--tls-ca FILE", "--user NAME", "--password-file FILE",
                           "RINGKV_PASSWORD", "user hash"}) {
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  }
}

// With a password, --user against a dead port is a connection error (3), not
// a usage error: the flags were fine.
TEST(KvctlConnectTest, SecurityFlagsThenUnreachableHostExitsThree) {
  std::string host = "127.0.0.1:" + std::to_string(UnusedPort());
  ::setenv("RINGKV_PASSWORD", "pw", 1);
  ProcessResult r = RunKvctl({"--host", host, "--tls", "--user", "bob", "ping"});
  ::unsetenv("RINGKV_PASSWORD");
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
  EXPECT_NE(r.err.find("kvctl: cannot connect to " + host), std::string::npos) << Describe(r);
  EXPECT_EQ(r.err.find("pw"), std::string::npos) << Describe(r);
}

// `kvctl user hash`: one line on stdout, a hash of the first stdin line that
// verifies; a fresh salt each run; needs no node.
TEST(KvctlUserHashTest, PrintsOneVerifiableLine) {
  ProcessResult a = RunKvctl({"user", "hash"}, "hunter2\n");
  ASSERT_EQ(a.exit_code, kExitOk) << Describe(a);
  ASSERT_EQ(NonEmptyLines(a.out).size(), 1u) << Describe(a);
  EXPECT_EQ(a.out.back(), '\n');
  EXPECT_EQ(a.err, "");
  std::string hash = NonEmptyLines(a.out)[0];
  EXPECT_TRUE(security::CheckPasswordHash(hash).ok()) << hash;
  EXPECT_TRUE(security::VerifyPassword("hunter2", hash));
  EXPECT_FALSE(security::VerifyPassword("hunter2\n", hash));

  ProcessResult b = RunKvctl({"user", "hash"}, "hunter2\n");
  ASSERT_EQ(b.exit_code, kExitOk) << Describe(b);
  EXPECT_NE(b.out, a.out);

  ProcessResult empty = RunKvctl({"user", "hash"}, "\n");
  EXPECT_EQ(empty.exit_code, kExitUsage) << Describe(empty);
  EXPECT_EQ(empty.out, "");
}

TEST(KvctlConnectTest, UnreachableHostExitsThree) {
  int port = UnusedPort();
  ASSERT_GT(port, 0);
  std::string host = "127.0.0.1:" + std::to_string(port);
  ProcessResult r = RunKvctl({"--host", host, "ping"});
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
  EXPECT_EQ(r.out, "");
  ASSERT_EQ(NonEmptyLines(r.err).size(), 1u) << Describe(r);
  EXPECT_NE(r.err.find("kvctl: cannot connect to " + host), std::string::npos) << Describe(r);
  EXPECT_NE(r.err.find("refused"), std::string::npos) << Describe(r);

  r = RunKvctl({"--host", host, "get", "k"});
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
}

TEST(KvctlConnectTest, SilentServerTimesOutInsteadOfHanging) {
  // A socket that listens but never answers: the kernel completes the
  // handshake, then nothing.
  testutil::SilentListener silent;
  ASSERT_TRUE(silent.ok());
  std::string host = "127.0.0.1:" + std::to_string(silent.port());

  auto start = std::chrono::steady_clock::now();
  ProcessResult r = RunKvctl({"--host", host, "--timeout-ms", "300", "ping"});
  auto elapsed = std::chrono::steady_clock::now() - start;
  silent.Close();
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
  EXPECT_NE(r.err.find("kvctl: timeout: "), std::string::npos) << Describe(r);
  EXPECT_LT(elapsed, milliseconds(5000));
}

// --tls against a node that does not speak TLS fails the handshake (within
// the timeout), exit 3, instead of sending the request in the clear.
TEST_F(KvctlTest, TlsToAPlaintextNodeFailsTheHandshake) {
  ProcessResult r = Kvctl({"--tls", "--timeout-ms", "2000", "ping"});
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
  EXPECT_NE(r.err.find("TLS handshake with " + kvd_.address()), std::string::npos) << Describe(r);
  EXPECT_EQ(r.out, "");
  // Without security flags nothing changed.
  EXPECT_EQ(Kvctl({"ping"}).exit_code, kExitOk);
}

TEST_F(KvctlTest, HostNamesAreResolved) {
  std::string port = kvd_.address().substr(kvd_.address().rfind(':') + 1);
  // "localhost" may resolve to ::1 first, where nothing listens; the client
  // must go on to 127.0.0.1.
  ProcessResult r = RunKvctl({"--host", "localhost:" + port, "ping"});
  EXPECT_EQ(r.exit_code, kExitOk) << Describe(r);
  EXPECT_EQ(r.out, "PONG n1\n");
}

TEST_F(KvctlTest, JsonValues) {
  struct Case {
    std::string text;     // what the user types
    std::string printed;  // what get prints
  };
  const std::vector<Case> cases = {
      {R"({"a":[1,2,{"b":null}]})", R"({"a":[1,2,{"b":null}]})"},
      {"42", "42"},
      {"-5", "-5"},
      {"18446744073709551615", "18446744073709551615"},
      {"2.5", "2.5"},
      {"true", "true"},
      {"null", "null"},
      {R"("quoted")", "quoted"},  // a JSON string is printed raw
      {" [ 1 , 2 ] ", "[1,2]"},   // printed compact
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].text);
    std::string key = "json-" + std::to_string(i);
    ProcessResult put = Kvctl({"put", key, cases[i].text, "--json"});
    ASSERT_EQ(put.exit_code, kExitOk) << Describe(put);
    ProcessResult get = Kvctl({"get", key});
    ASSERT_EQ(get.exit_code, kExitOk) << Describe(get);
    EXPECT_EQ(get.out, cases[i].printed + "\n");
    EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", key}})["value"], Json::parse(cases[i].text));
  }
  // Without --json the same text is a string.
  ASSERT_EQ(Kvctl({"put", "str", "42"}).exit_code, kExitOk);
  EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", "str"}})["value"], "42");
  // A negative number as a plain value is a value, not an option.
  ASSERT_EQ(Kvctl({"put", "neg", "-17"}).exit_code, kExitOk);
  EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", "neg"}})["value"], "-17");
  // Options may come before the command, and "--" ends them.
  ASSERT_EQ(Kvctl({"--json", "put", "opt", "--", "-1"}).exit_code, kExitOk);
  EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", "opt"}})["value"], -1);
}

TEST_F(KvctlTest, ValueFromStdin) {
  ProcessResult put = Kvctl({"put", "from-stdin", "-"}, "line one\nline two\n");
  ASSERT_EQ(put.exit_code, kExitOk) << Describe(put);
  // One trailing newline is stripped from a string value.
  EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", "from-stdin"}})["value"], "line one\nline two");
  ProcessResult get = Kvctl({"get", "from-stdin"});
  EXPECT_EQ(get.out, "line one\nline two\n");

  put = Kvctl({"put", "json-stdin", "-", "--json"}, "{\"x\": [1, 2]}\n");
  ASSERT_EQ(put.exit_code, kExitOk) << Describe(put);
  EXPECT_EQ(Kvctl({"get", "json-stdin"}).out, "{\"x\":[1,2]}\n");

  put = Kvctl({"put", "empty-stdin", "-"}, "");
  ASSERT_EQ(put.exit_code, kExitOk) << Describe(put);
  EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", "empty-stdin"}})["value"], "");

  std::string big(200000, 'z');
  put = Kvctl({"put", "big-stdin", "-"}, big);
  ASSERT_EQ(put.exit_code, kExitOk) << Describe(put);
  EXPECT_EQ(Kvctl({"get", "big-stdin"}).out, big + "\n");

  put = Kvctl({"put", "bad-stdin", "-", "--json"}, "{oops");
  EXPECT_EQ(put.exit_code, kExitUsage) << Describe(put);
  EXPECT_EQ(kvd_.Call({{"op", "get"}, {"key", "bad-stdin"}})["found"], false);
}

TEST_F(KvctlTest, JsonOutputIsTheWholeResponse) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"put", "o", "v"},
                                             {"get", "o"},
                                             {"ping"},
                                             {"stats"},
                                             {"cluster"},
                                             {"locate", "o"},
                                             {"del", "o"}}) {
    SCOPED_TRACE(args[0]);
    std::vector<std::string> full = {"-o", "json"};
    full.insert(full.end(), args.begin(), args.end());
    ProcessResult r = Kvctl(full);
    ASSERT_EQ(r.exit_code, kExitOk) << Describe(r);
    ASSERT_EQ(NonEmptyLines(r.out).size(), 1u) << Describe(r);
    Json resp = Json::parse(r.out, nullptr, false);
    ASSERT_TRUE(IsOk(resp)) << Describe(r);
    if (args[0] == "put" || args[0] == "del") {
      EXPECT_TRUE(resp["version"].is_string());
    }
    if (args[0] == "get") {
      EXPECT_EQ(resp["value"], "v");
    }
    if (args[0] == "ping") {
      EXPECT_EQ(resp["node"], "n1");
    }
    if (args[0] == "stats") {
      EXPECT_TRUE(resp["stats"].is_object());
    }
    if (args[0] == "cluster") {
      EXPECT_TRUE(resp["nodes"].is_array());
    }
    if (args[0] == "locate") {
      EXPECT_EQ(resp["replicas"], Json::array({"n1"}));
    }
  }
  // -o json after the command works too.
  ProcessResult r = Kvctl({"ping", "-o", "json"});
  EXPECT_EQ(Json::parse(r.out, nullptr, false)["node"], "n1") << Describe(r);
}

TEST_F(KvctlTest, DeleteThenGetExitsOne) {
  ASSERT_EQ(Kvctl({"put", "doomed", "x"}).exit_code, kExitOk);
  ASSERT_EQ(Kvctl({"get", "doomed"}).exit_code, kExitOk);
  ProcessResult del = Kvctl({"del", "doomed"});
  ASSERT_EQ(del.exit_code, kExitOk) << Describe(del);
  EXPECT_EQ(NonEmptyLines(del.out).size(), 1u) << Describe(del);
  ProcessResult get = Kvctl({"get", "doomed"});
  EXPECT_EQ(get.exit_code, kExitNotFound) << Describe(get);
  // Deleting again (a key that does not exist) succeeds.
  EXPECT_EQ(Kvctl({"del", "doomed"}).exit_code, kExitOk);
}

TEST_F(KvctlTest, QuorumOptions) {
  for (const char* w : {"1", "one", "quorum", "all"}) {
    ProcessResult r = Kvctl({"put", "qk", w, "-w", w});
    EXPECT_EQ(r.exit_code, kExitOk) << w << " " << Describe(r);
    r = Kvctl({"get", "qk", "-r", w});
    EXPECT_EQ(r.exit_code, kExitOk) << w << " " << Describe(r);
    EXPECT_EQ(r.out, std::string(w) + "\n");
  }
  EXPECT_EQ(Kvctl({"get", "qk", "--local"}).out, "all\n");
  // W above N is the server's bad_request: exit 3 with the code.
  ProcessResult r = Kvctl({"put", "qk", "v", "-w", "2"});
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
  EXPECT_NE(r.err.find("kvctl: bad_request: "), std::string::npos) << Describe(r);
}

TEST_F(KvctlTest, TtlExpires) {
  ProcessResult put = Kvctl({"put", "short-lived", "v", "--ttl-ms", "300"});
  ASSERT_EQ(put.exit_code, kExitOk) << Describe(put);
  EXPECT_TRUE(WaitFor(
      [&] {
        return Kvctl({"get", "short-lived"}).exit_code == kExitNotFound;
      },
      milliseconds(5000)));
  // And a long TTL does not expire meanwhile.
  ASSERT_EQ(Kvctl({"put", "long-lived", "v", "--ttl-ms", "600000"}).exit_code, kExitOk);
  EXPECT_EQ(Kvctl({"get", "long-lived"}).exit_code, kExitOk);
}

TEST_F(KvctlTest, PingLocateClusterStats) {
  ProcessResult ping = Kvctl({"ping"});
  ASSERT_EQ(ping.exit_code, kExitOk) << Describe(ping);
  EXPECT_EQ(ping.out, "PONG n1\n");

  ProcessResult locate = Kvctl({"locate", "some-key"});
  ASSERT_EQ(locate.exit_code, kExitOk) << Describe(locate);
  Json loc = kvd_.Call({{"op", "locate"}, {"key", "some-key"}});
  EXPECT_NE(locate.out.find("partition " + loc["partition"].dump()), std::string::npos)
      << Describe(locate);
  EXPECT_NE(locate.out.find("replicas n1"), std::string::npos) << Describe(locate);

  ProcessResult cluster = Kvctl({"cluster"});
  ASSERT_EQ(cluster.exit_code, kExitOk) << Describe(cluster);
  EXPECT_NE(cluster.out.find("ID"), std::string::npos) << Describe(cluster);
  bool found_row = false;
  for (const auto& line : NonEmptyLines(cluster.out)) {
    found_row |= line.rfind("n1 ", 0) == 0 && line.find(kvd_.address()) != std::string::npos &&
                 line.find("up") != std::string::npos;
  }
  EXPECT_TRUE(found_row) << Describe(cluster);

  ASSERT_EQ(Kvctl({"put", "s", "v"}).exit_code, kExitOk);
  ProcessResult stats = Kvctl({"stats"});
  ASSERT_EQ(stats.exit_code, kExitOk) << Describe(stats);
  EXPECT_GT(NonEmptyLines(stats.out).size(), 10u) << Describe(stats);
  // Grouped for a person (the field names are in -o json).
  for (const char* text : {"uptime", "keys (estimate)", "record cache", "of 256.0 MiB",
                           "hints pending", "requests", "P99", "put "}) {
    EXPECT_NE(stats.out.find(text), std::string::npos) << text << "\n" << Describe(stats);
  }
}

TEST_F(KvctlTest, Backup) {
  ASSERT_EQ(Kvctl({"put", "b", "v"}).exit_code, kExitOk);
  std::string dir = kvd_.dir() + "/kvctl-backup";
  ProcessResult r = Kvctl({"backup", dir});
  ASSERT_EQ(r.exit_code, kExitOk) << Describe(r);
  EXPECT_NE(r.out.find(dir), std::string::npos) << Describe(r);
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  EXPECT_FALSE(std::filesystem::is_empty(dir));
}

TEST(KvctlServerErrorTest, ServerErrorExitsThreeWithTheCode) {
  KvdProcess kvd({"--max-key-bytes", "4"});
  ASSERT_TRUE(kvd.Start());
  ProcessResult r = RunKvctl({"--host", kvd.address(), "put", "too-long-key", "v"});
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
  ASSERT_EQ(NonEmptyLines(r.err).size(), 1u) << Describe(r);
  EXPECT_EQ(r.err.rfind("kvctl: key_too_large: ", 0), 0u) << Describe(r);
  EXPECT_EQ(r.out, "");
  // With -o json the error response is printed as well.
  r = RunKvctl({"--host", kvd.address(), "-o", "json", "get", "too-long-key"});
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
  EXPECT_TRUE(IsError(Json::parse(r.out, nullptr, false), "key_too_large")) << Describe(r);
  // Short keys still work.
  EXPECT_EQ(RunKvctl({"--host", kvd.address(), "put", "ok", "v"}).exit_code, kExitOk);
}

TEST(KvctlUsageTest, AdminCommandsCheckTheirArguments) {
  std::string host = "127.0.0.1:" + std::to_string(UnusedPort());
  const std::vector<std::vector<std::string>> cases = {
      {"cluster-backup"},
      {"cluster-backup", "a", "b"},
      {"restore"},
      {"restore", "dest", "n1"},
      {"restore", "dest", "n1", "dir", "extra"},
      {"restore", "dest", "../n1", "dir"},
      {"restore", "dest", "", "dir"},
      {"cluster-backup", "dest", "-w", "1"},
  };
  for (const auto& args : cases) {
    std::string joined;
    for (const auto& a : args) joined += " '" + a + "'";
    SCOPED_TRACE("kvctl" + joined);
    std::vector<std::string> full = {"--host", host};
    full.insert(full.end(), args.begin(), args.end());
    ProcessResult r = RunKvctl(full);
    EXPECT_EQ(r.exit_code, kExitUsage) << Describe(r);
    EXPECT_NE(r.err.find("usage"), std::string::npos) << Describe(r);
    EXPECT_EQ(r.out, "");
  }
  // restore needs no node, and says what is wrong with DEST in one line.
  std::string empty = MakeTempDir("kvctl-restore");
  ProcessResult r = RunKvctl({"restore", empty, "n1", empty + "/data"});
  EXPECT_EQ(r.exit_code, kExitError) << Describe(r);
  EXPECT_EQ(NonEmptyLines(r.err).size(), 1u) << Describe(r);
  EXPECT_NE(r.err.find("manifest.json does not exist"), std::string::npos) << Describe(r);
  EXPECT_FALSE(std::filesystem::exists(empty + "/data"));
  std::filesystem::remove_all(empty);
}

}  // namespace
}  // namespace ringkv::itest
