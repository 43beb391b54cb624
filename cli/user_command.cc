// `kvctl user hash`: the password comes from standard input, never from the
// command line (which every user of the machine can read with ps).
#include "cli/user_command.h"

#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "server/security/password.h"

namespace ringkv {

namespace {

// A password longer than this is refused rather than read without bound.
constexpr size_t kMaxPasswordBytes = 4096;

// Reads up to the first "\n" (not included; a "\r" before it is dropped too)
// or the end of input. BadRequest if the input cannot be read or the line is
// too long. Reads one byte at a time so that nothing after the line is
// consumed (a terminal's second line is the confirmation).
Status ReadLine(int fd, std::string* line) {
  line->clear();
  for (;;) {
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return Status::BadRequest(std::string("cannot read the password: ") + std::strerror(errno));
    if (n == 0 || c == '\n') break;
    if (line->size() >= kMaxPasswordBytes) {
      return Status::BadRequest("password longer than " + std::to_string(kMaxPasswordBytes) +
                                " bytes");
    }
    line->push_back(c);
  }
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return Status::OK();
}

// Turns the terminal's echo off for its lifetime (and back on after, even
// when reading fails).
class EchoOff {
 public:
  explicit EchoOff(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) != 0) return;
    termios quiet = saved_;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;  // the Enter still moves to the next line
    active_ = ::tcsetattr(fd_, TCSAFLUSH, &quiet) == 0;
  }
  ~EchoOff() {
    if (active_) (void)::tcsetattr(fd_, TCSAFLUSH, &saved_);
  }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

Status Prompted(int fd, std::ostream& prompt, const char* text, std::string* line) {
  prompt << text << std::flush;
  EchoOff quiet(fd);
  return ReadLine(fd, line);
}

Status RunHash(int in_fd, std::ostream& out, std::ostream& prompt) {
  std::string password;
  RINGKV_RETURN_IF_ERROR(ReadPasswordForHash(in_fd, prompt, &password));
  std::string hash;
  RINGKV_RETURN_IF_ERROR(security::HashPassword(password, &hash));
  out << hash << "\n" << std::flush;
  return Status::OK();
}

}  // namespace

Status ReadPasswordForHash(int in_fd, std::ostream& prompt, std::string* password) {
  std::string first;
  if (::isatty(in_fd) == 1) {
    std::string again;
    RINGKV_RETURN_IF_ERROR(Prompted(in_fd, prompt, "password: ", &first));
    if (first.empty()) return Status::BadRequest("empty password");
    RINGKV_RETURN_IF_ERROR(Prompted(in_fd, prompt, "password: ", &again));
    if (again != first) return Status::BadRequest("the two passwords differ");
  } else {
    RINGKV_RETURN_IF_ERROR(ReadLine(in_fd, &first));
  }
  if (first.empty())
    return Status::BadRequest("empty password (user hash reads it on standard input)");
  *password = std::move(first);
  return Status::OK();
}

Status RunUserCommand(const std::vector<std::string>& args, int in_fd, std::ostream& out,
                      std::ostream& prompt) {
  if (args.size() == 1 && args[0] == "hash") return RunHash(in_fd, out, prompt);
  std::string got = args.empty() ? "" : args[0];
  return Status::BadRequest("unknown user command '" + got + "' (kvctl user hash)");
}

}  // namespace ringkv
