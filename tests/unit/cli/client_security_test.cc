// The client security flags (cli/client_security.h): what is taken out of a
// command line, where the password comes from, and the errors a person sees.
#include "cli/client_security.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "tests/util/temp_dir.h"

namespace ringkv {
namespace {

using Args = std::vector<std::string>;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

TEST(ExtractSecurityFlagsTest, TakesTheFourFlagsAndKeepsTheRestInOrder) {
  Args args = {"--host",       "h:1", "--tls",           "put", "--tls-ca", "/ca.pem", "k",
               "--user=alice", "v",   "--password-file", "/pw"};
  SecurityFlags flags;
  ASSERT_TRUE(ExtractSecurityFlags(&args, &flags, {"--host"}).ok());
  EXPECT_EQ(args, (Args{"--host", "h:1", "put", "k", "v"}));
  EXPECT_TRUE(flags.tls);
  EXPECT_TRUE(flags.tls_ca_given);
  EXPECT_EQ(flags.tls_ca, "/ca.pem");
  EXPECT_TRUE(flags.user_given);
  EXPECT_EQ(flags.user, "alice");
  EXPECT_TRUE(flags.password_file_given);
  EXPECT_EQ(flags.password_file, "/pw");
}

TEST(ExtractSecurityFlagsTest, NothingGivenChangesNothing) {
  Args args = {"--host", "h:1", "get", "k"};
  SecurityFlags flags;
  ASSERT_TRUE(ExtractSecurityFlags(&args, &flags).ok());
  EXPECT_EQ(args, (Args{"--host", "h:1", "get", "k"}));
  EXPECT_FALSE(flags.tls || flags.tls_ca_given || flags.user_given || flags.password_file_given);
}

TEST(ExtractSecurityFlagsTest, StopsAtDoubleDashAndSkipsOtherOptionsValues) {
  // After "--" a "--tls" is a positional argument (a value to store).
  Args args = {"put", "k", "--", "--tls"};
  SecurityFlags flags;
  ASSERT_TRUE(ExtractSecurityFlags(&args, &flags).ok());
  EXPECT_EQ(args, (Args{"put", "k", "--", "--tls"}));
  EXPECT_FALSE(flags.tls);

  // The value of a tool's own option is not a flag, whatever it looks like.
  args = {"-o", "--user", "ping"};
  flags = SecurityFlags();
  ASSERT_TRUE(ExtractSecurityFlags(&args, &flags, {"-o"}).ok());
  EXPECT_EQ(args, (Args{"-o", "--user", "ping"}));
  EXPECT_FALSE(flags.user_given);
}

TEST(ExtractSecurityFlagsTest, TheLastOfARepeatedFlagCounts) {
  Args args = {"--user", "a", "--user", "b"};
  SecurityFlags flags;
  ASSERT_TRUE(ExtractSecurityFlags(&args, &flags).ok());
  EXPECT_EQ(flags.user, "b");
  EXPECT_TRUE(args.empty());
}

TEST(ExtractSecurityFlagsTest, MissingOrUnwantedValuesAreErrors) {
  for (const char* flag : {"--tls-ca", "--user", "--password-file"}) {
    SCOPED_TRACE(flag);
    Args args = {"ping", flag};
    SecurityFlags flags;
    Status s = ExtractSecurityFlags(&args, &flags);
    EXPECT_EQ(s.code(), Status::Code::kBadRequest);
    EXPECT_EQ(s.message(), std::string("option ") + flag + " needs a value");
  }
  Args args = {"--tls=yes", "ping"};
  SecurityFlags flags;
  Status s = ExtractSecurityFlags(&args, &flags);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "option --tls takes no value");
}

class ResolveSecurityTest : public ::testing::Test {
 protected:
  Status Resolve(const Args& given, const char* env, ClientSecurity* out) {
    Args args = given;
    SecurityFlags flags;
    Status s = ExtractSecurityFlags(&args, &flags);
    if (!s.ok()) return s;
    return ResolveSecurity(flags, env, out);
  }
  testutil::ScopedTempDir dir_{"ringkv-client-security"};
};

TEST_F(ResolveSecurityTest, NoFlagsIsPlaintextWithoutAuth) {
  ClientSecurity sec;
  ASSERT_TRUE(Resolve({}, "ignored", &sec).ok());
  EXPECT_FALSE(sec.tls);
  EXPECT_FALSE(sec.enabled());
  EXPECT_EQ(sec.user, "");
  EXPECT_EQ(sec.password, "");  // RINGKV_PASSWORD alone does nothing
}

TEST_F(ResolveSecurityTest, TlsCaImpliesTls) {
  ClientSecurity sec;
  ASSERT_TRUE(Resolve({"--tls-ca", "/some/ca.pem"}, nullptr, &sec).ok());
  EXPECT_TRUE(sec.tls);
  EXPECT_EQ(sec.tls_ca, "/some/ca.pem");
  EXPECT_TRUE(sec.enabled());
  ASSERT_TRUE(Resolve({"--tls"}, nullptr, &sec).ok());
  EXPECT_TRUE(sec.tls);
  EXPECT_EQ(sec.tls_ca, "");
}

TEST_F(ResolveSecurityTest, PasswordFromTheEnvironment) {
  ClientSecurity sec;
  ASSERT_TRUE(Resolve({"--user", "bob"}, "s3cret", &sec).ok());
  EXPECT_EQ(sec.user, "bob");
  EXPECT_EQ(sec.password, "s3cret");
  EXPECT_FALSE(sec.tls);
  EXPECT_TRUE(sec.enabled());
}

TEST_F(ResolveSecurityTest, PasswordFileWinsOverTheEnvironment) {
  std::string pw = dir_.Sub("pw");
  WriteFile(pw, "from-file\r\nsecond line ignored\n");
  ClientSecurity sec;
  ASSERT_TRUE(Resolve({"--user", "bob", "--password-file", pw}, "from-env", &sec).ok());
  EXPECT_EQ(sec.password, "from-file");
}

TEST_F(ResolveSecurityTest, UserWithoutPasswordIsAUsageError) {
  ClientSecurity sec;
  for (const char* env : {static_cast<const char*>(nullptr), ""}) {
    Status s = Resolve({"--user", "bob"}, env, &sec);
    EXPECT_EQ(s.code(), Status::Code::kBadRequest);
    EXPECT_EQ(s.message(), "--user needs the password in RINGKV_PASSWORD or --password-file");
  }
}

TEST_F(ResolveSecurityTest, OtherBadCombinations) {
  ClientSecurity sec;
  Status s = Resolve({"--password-file", dir_.Sub("pw")}, nullptr, &sec);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "--password-file needs --user");
  s = Resolve({"--user", ""}, "pw", &sec);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "--user needs a name");
  s = Resolve({"--tls-ca="}, nullptr, &sec);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "--tls-ca needs a file");
}

TEST_F(ResolveSecurityTest, UnreadableOrEmptyPasswordFilesAreClearErrors) {
  ClientSecurity sec;
  std::string missing = dir_.Sub("missing");
  Status s = Resolve({"--user", "bob", "--password-file", missing}, "env", &sec);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "cannot read password file " + missing + ": no such file or directory");

  s = Resolve({"--user", "bob", "--password-file", dir_.path()}, "env", &sec);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_NE(s.message().find("is a directory"), std::string::npos) << s.message();

  for (const char* content : {"", "\n", "\r\n", "\nsecond"}) {
    std::string empty = dir_.Sub("empty");
    WriteFile(empty, content);
    s = Resolve({"--user", "bob", "--password-file", empty}, "env", &sec);
    EXPECT_EQ(s.code(), Status::Code::kBadRequest);
    EXPECT_EQ(s.message(), "password file " + empty + " is empty (the password is its first line)");
  }

  if (::geteuid() != 0) {  // root reads anything
    std::string locked = dir_.Sub("locked");
    WriteFile(locked, "pw\n");
    ::chmod(locked.c_str(), 0);
    s = Resolve({"--user", "bob", "--password-file", locked}, "env", &sec);
    EXPECT_NE(s.message().find("permission denied"), std::string::npos) << s.message();
  }
}

TEST(ReadPasswordFileTest, TheFirstLineWithoutItsLineEnd) {
  testutil::ScopedTempDir dir("ringkv-password-file");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain", "plain"},
      {"unix\n", "unix"},
      {"dos\r\n", "dos"},
      {"first\nsecond\n", "first"},
      {" spaces kept \n", " spaces kept "},
      {"tab\tand=sign", "tab\tand=sign"},
  };
  for (const auto& [content, want] : cases) {
    WriteFile(dir.Sub("pw"), content);
    std::string got;
    ASSERT_TRUE(ReadPasswordFile(dir.Sub("pw"), &got).ok()) << content;
    EXPECT_EQ(got, want);
  }
}

TEST(ParseSecurityFlagsTest, ReadsRingkvPasswordFromTheEnvironment) {
  ::setenv(kPasswordEnvVar, "env-pass", 1);
  Args args = {"--user", "carol", "ping"};
  ClientSecurity sec;
  Status s = ParseSecurityFlags(&args, &sec);
  ::unsetenv(kPasswordEnvVar);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(args, (Args{"ping"}));
  EXPECT_EQ(sec.password, "env-pass");
}

TEST(PrepareTlsTest, MakesOneContextAndRefusesAMissingCa) {
  ClientSecurity plain;
  ASSERT_TRUE(PrepareTls(&plain).ok());
  EXPECT_EQ(plain.tls_context, nullptr);

  ClientSecurity system_ca;
  system_ca.tls = true;
  ASSERT_TRUE(PrepareTls(&system_ca).ok());
  EXPECT_NE(system_ca.tls_context, nullptr);

  ClientSecurity missing;
  missing.tls = true;
  missing.tls_ca = "/nonexistent/ca.pem";
  Status s = PrepareTls(&missing);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "cannot read --tls-ca /nonexistent/ca.pem: no such file or directory");

  testutil::ScopedTempDir dir("ringkv-bad-ca");
  WriteFile(dir.Sub("ca.pem"), "not a certificate\n");
  ClientSecurity garbage;
  garbage.tls_ca = dir.Sub("ca.pem");
  garbage.tls = true;
  s = PrepareTls(&garbage);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message().rfind("cannot load --tls-ca " + garbage.tls_ca + ": ", 0), 0u)
      << s.message();
}

}  // namespace
}  // namespace ringkv
