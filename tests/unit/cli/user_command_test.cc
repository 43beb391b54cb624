// `kvctl user hash` (cli/user_command.h): one line out, a hash that verifies,
// a fresh salt every time, and usage errors for what cannot be a password.
#include "cli/user_command.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "server/security/password.h"

namespace ringkv {
namespace {

// Runs `kvctl user ARGS` with `input` on a pipe as standard input.
Status RunWithInput(const std::vector<std::string>& args, const std::string& input,
                    std::string* out, std::string* prompt = nullptr) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  EXPECT_EQ(::write(fds[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
  ::close(fds[1]);
  std::ostringstream o, p;
  Status s = RunUserCommand(args, fds[0], o, p);
  ::close(fds[0]);
  *out = o.str();
  if (prompt != nullptr) *prompt = p.str();
  return s;
}

TEST(UserHashTest, PrintsOneLineThatVerifies) {
  std::string out, prompt;
  Status s = RunWithInput({"hash"}, "correct horse\n", &out, &prompt);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  std::string hash = out.substr(0, out.size() - 1);
  EXPECT_EQ(hash.find('\n'), std::string::npos);  // exactly one line
  EXPECT_TRUE(security::CheckPasswordHash(hash).ok()) << hash;
  EXPECT_TRUE(security::VerifyPassword("correct horse", hash));
  EXPECT_FALSE(security::VerifyPassword("correct horse\n", hash));  // the newline is not part
  EXPECT_FALSE(security::VerifyPassword("wrong", hash));
  EXPECT_EQ(prompt, "");  // no prompt when standard input is not a terminal
  EXPECT_EQ(hash.find("correct"), std::string::npos);
}

TEST(UserHashTest, TwoRunsDiffer) {
  std::string a, b;
  ASSERT_TRUE(RunWithInput({"hash"}, "same\n", &a).ok());
  ASSERT_TRUE(RunWithInput({"hash"}, "same\n", &b).ok());
  EXPECT_NE(a, b);  // a fresh salt each time
  EXPECT_TRUE(security::VerifyPassword("same", a.substr(0, a.size() - 1)));
  EXPECT_TRUE(security::VerifyPassword("same", b.substr(0, b.size() - 1)));
}

TEST(UserHashTest, OnlyTheFirstLineWithoutItsLineEnd) {
  std::string out;
  ASSERT_TRUE(RunWithInput({"hash"}, "dos\r\nignored\n", &out).ok());
  EXPECT_TRUE(security::VerifyPassword("dos", out.substr(0, out.size() - 1)));
  ASSERT_TRUE(RunWithInput({"hash"}, "no newline at all", &out).ok());
  EXPECT_TRUE(security::VerifyPassword("no newline at all", out.substr(0, out.size() - 1)));
}

TEST(UserHashTest, EmptyPasswordsAndUnknownCommandsAreUsageErrors) {
  for (const char* input : {"", "\n", "\r\n", "\nsecond line\n"}) {
    std::string out;
    Status s = RunWithInput({"hash"}, input, &out);
    EXPECT_EQ(s.code(), Status::Code::kBadRequest) << s.ToString();
    EXPECT_NE(s.message().find("empty password"), std::string::npos);
    EXPECT_EQ(out, "");
  }
  std::string out;
  Status s = RunWithInput({"add"}, "pw\n", &out);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(s.message(), "unknown user command 'add' (kvctl user hash)");
  EXPECT_EQ(out, "");
}

TEST(UserHashTest, OverlongInputIsRefused) {
  std::string out;
  Status s = RunWithInput({"hash"}, std::string(5000, 'x') + "\n", &out);
  EXPECT_EQ(s.code(), Status::Code::kBadRequest);
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace ringkv
