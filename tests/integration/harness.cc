#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace ringkv::itest {

namespace {

using SteadyClock = std::chrono::steady_clock;

// Writes to a pipe whose reader has exited must fail with EPIPE, not kill the
// test binary.
const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();

// How much of a node's log to print when a test fails.
constexpr size_t kLogTailBytes = 64 * 1024;

// Encodes a waitpid() status: the exit code, or 128+signal.
int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// fork + exec `path args...` with the given fds as its stdin/stdout/stderr.
// Everything the child touches is prepared before fork(), since only
// async-signal-safe calls are allowed between fork() and exec() in a process
// that may have threads. The child dies with its parent (PR_SET_PDEATHSIG) so a
// crashed test binary leaves no stray nodes behind. Returns the pid or -1.
pid_t Spawn(const std::string& path, const std::vector<std::string>& args, int in_fd, int out_fd,
            int err_fd) {
  std::vector<std::string> storage;
  storage.push_back(path);
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Child.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(126);
  if (::dup2(in_fd, STDIN_FILENO) < 0 || ::dup2(out_fd, STDOUT_FILENO) < 0 ||
      ::dup2(err_fd, STDERR_FILENO) < 0) {
    ::_exit(126);
  }
  ::execv(argv[0], argv.data());
  static const char kMsg[] = "harness: execv failed\n";
  ssize_t ignored = ::write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
  (void)ignored;
  ::_exit(127);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Pumps stdin_data into in_fd and drains out_fd/err_fd until both reach EOF
// or the deadline passes.
void PumpPipes(int in_fd, int out_fd, int err_fd, const std::string& stdin_data,
               SteadyClock::time_point deadline, ProcessResult* result) {
  size_t written = 0;
  if (stdin_data.empty()) {
    ::close(in_fd);
    in_fd = -1;
  } else {
    ::fcntl(in_fd, F_SETFL, ::fcntl(in_fd, F_GETFL) | O_NONBLOCK);
  }
  while (out_fd >= 0 || err_fd >= 0) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now()).count();
    if (left <= 0) break;
    pollfd fds[3] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}, {in_fd, POLLOUT, 0}};
    int rc = ::poll(fds, 3, static_cast<int>(left));
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    if (in_fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = ::write(in_fd, stdin_data.data() + written, stdin_data.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data.size()) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
    int* fdp[2] = {&out_fd, &err_fd};
    std::string* sink[2] = {&result->out, &result->err};
    for (int i = 0; i < 2; ++i) {
      if (*fdp[i] < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t n = ::read(*fdp[i], buf, sizeof(buf));
      if (n > 0) {
        sink[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(*fdp[i]);
        *fdp[i] = -1;
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd}) {
    if (fd >= 0) ::close(fd);
  }
}

// Waits for `pid` until the deadline; then SIGKILLs it. Fills the result.
void ReapChild(pid_t pid, SteadyClock::time_point deadline, ProcessResult* result) {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return;
    if (SteadyClock::now() >= deadline) {
      result->timed_out = true;
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  if (WIFEXITED(status) && !result->timed_out) result->exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result->term_signal = WTERMSIG(status);
}

}  // namespace

std::string KvdPath() { return std::string(RINGKV_BIN_DIR) + "/kvd"; }
std::string KvctlPath() { return std::string(RINGKV_BIN_DIR) + "/kvctl"; }

ProcessResult RunProgram(const std::string& path, const std::vector<std::string>& args,
                         const std::string& stdin_data, milliseconds timeout) {
  ProcessResult result;
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) {
      if (fd >= 0) ::close(fd);
    }
    result.err = "harness: pipe2 failed";
    return result;
  }
  auto deadline = SteadyClock::now() + timeout;
  pid_t pid = Spawn(path, args, in[0], out[1], err[1]);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    result.err = "harness: fork failed";
    return result;
  }
  PumpPipes(in[1], out[0], err[0], stdin_data, deadline, &result);
  ReapChild(pid, deadline, &result);
  return result;
}

ProcessResult RunKvctl(const std::vector<std::string>& args, const std::string& stdin_data) {
  return RunProgram(KvctlPath(), args, stdin_data, milliseconds(20000));
}

std::vector<std::string> NonEmptyLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  }
  return lines;
}

KvdProcess::KvdProcess(std::vector<std::string> extra_args, std::string node_id)
    : extra_args_(std::move(extra_args)), node_id_(std::move(node_id)) {
  dir_ = MakeTempDir("ringkv-it");
  if (dir_.empty()) ADD_FAILURE() << "cannot create a temporary directory: " << strerror(errno);
}

KvdProcess::~KvdProcess() {
  client_.reset();
  if (pid_ > 0) Reap(false, milliseconds(0));
  if (pid_ > 0) {
    stop_requested_ = true;
    ::kill(pid_, SIGKILL);
    Reap(true, kProcessDeadline);
  }
  CheckLogForSanitizer();
  if (::testing::Test::HasFailure() && !dir_.empty()) {
    std::string log = LogTail(kLogTailBytes);
    std::fprintf(stderr, "---- log of kvd %s (%s) ----\n%s---- end of log of kvd %s ----\n",
                 node_id_.c_str(), log_path().c_str(), log.c_str(), node_id_.c_str());
  }
  const char* keep = std::getenv("RINGKV_KEEP_TEST_DIRS");
  if (!dir_.empty() && (keep == nullptr || *keep == '\0')) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

::testing::AssertionResult KvdProcess::Failure(const std::string& what) const {
  return ::testing::AssertionFailure()
         << "kvd " << node_id_ << ": " << what << " (log " << log_path() << ")";
}

::testing::AssertionResult KvdProcess::Start() {
  if (pid_ > 0) return Failure("Start() while already running");
  if (dir_.empty()) return Failure("no temporary directory");
  std::string port_file = dir_ + "/port";
  ::unlink(port_file.c_str());
  std::vector<std::string> args = {"--listen",   listen_,    "--port-file", port_file,
                                   "--data-dir", data_dir(), "--node-id",   node_id_};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());

  int log_fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) return Failure("cannot open the log file");
  std::string banner = "==== harness: starting kvd";
  for (const auto& a : args) banner += " " + a;
  banner += " ====\n";
  ssize_t ignored = ::write(log_fd, banner.data(), banner.size());
  (void)ignored;
  if (prefix_.empty()) {
    pid_ = Spawn(KvdPath(), args, null_fd, log_fd, log_fd);
  } else {
    std::vector<std::string> argv(prefix_.begin() + 1, prefix_.end());
    argv.push_back(KvdPath());
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = Spawn(prefix_[0], argv, null_fd, log_fd, log_fd);
  }
  ::close(log_fd);
  ::close(null_fd);
  if (pid_ < 0) return Failure("fork failed");
  stop_requested_ = false;
  client_.reset();
  starting_ = true;
  struct StartingGuard {
    bool* flag;
    ~StartingGuard() { *flag = false; }
  } guard{&starting_};

  std::string content;
  bool ready = WaitFor(
      [&] {
        content = ReadFile(port_file);
        return (!content.empty() && content.back() == '\n') || Reap(false, milliseconds(0)) != -2;
      },
      kProcessDeadline);
  if (pid_ < 0) {
    return Failure("exited with status " + std::to_string(last_status_) +
                   " before it was ready; its log ends with:\n" + LogTail(2048));
  }
  if (!ready) return Failure("no port file within the deadline");
  address_ = content.substr(0, content.size() - 1);
  if (address_.find(':') == std::string::npos) return Failure("bad port file: " + content);

  std::string last_error;
  ready = WaitFor(
      [&] {
        std::unique_ptr<Client> c;
        Json resp;
        Status st = Client::Connect(address_, &c, 2000);
        if (st.ok()) st = c->Call({{"op", "ping"}}, &resp);
        last_error = st.ok() ? resp.dump() : st.ToString();
        return (st.ok() && resp.contains("ok") && resp["ok"] == true && resp.contains("node") &&
                resp["node"] == node_id_) ||
               Reap(false, milliseconds(0)) != -2;
      },
      kProcessDeadline);
  if (pid_ < 0) {
    return Failure("exited with status " + std::to_string(last_status_) +
                   " before answering ping; its log ends with:\n" + LogTail(2048));
  }
  if (!ready) return Failure("does not answer ping at " + address_ + ": " + last_error);
  return ::testing::AssertionSuccess();
}

int KvdProcess::Reap(bool block, milliseconds timeout) {
  if (pid_ <= 0) return last_status_;
  auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      last_status_ = DecodeWaitStatus(status);
      pid_ = -1;
      if (!stop_requested_ && !starting_) {
        ADD_FAILURE() << "kvd " << node_id_ << " exited unexpectedly with status " << last_status_
                      << " (128+N means signal N)";
      }
      return last_status_;
    }
    if (r < 0 && errno != EINTR) {
      pid_ = -1;
      return last_status_;
    }
    if (!block || SteadyClock::now() >= deadline) return -2;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

void KvdProcess::Kill(int sig) {
  if (pid_ <= 0) return;
  if (sig == SIGKILL || sig == SIGTERM || sig == SIGINT) stop_requested_ = true;
  ::kill(pid_, sig);
  if (sig == SIGKILL) {
    Reap(true, kProcessDeadline);
    client_.reset();
  }
}

int KvdProcess::Wait(milliseconds timeout) {
  int status = Reap(true, timeout);
  if (status != -2) CheckLogForSanitizer();
  return status;
}

int KvdProcess::Terminate() {
  client_.reset();
  if (pid_ <= 0) return last_status_;
  stop_requested_ = true;
  ::kill(pid_, SIGTERM);
  int status = Reap(true, kProcessDeadline);
  if (status == -2) {
    ADD_FAILURE() << "kvd " << node_id_ << " did not exit within the deadline after SIGTERM";
    ::kill(pid_, SIGKILL);
    Reap(true, kProcessDeadline);
    status = -1;
  }
  CheckLogForSanitizer();
  return status;
}

::testing::AssertionResult KvdProcess::Restart() {
  if (pid_ > 0) Terminate();
  return Start();
}

std::string KvdProcess::ReadLog() const { return ReadFile(log_path()); }

std::string KvdProcess::LogTail(size_t max_bytes) const {
  std::string log = ReadLog();
  if (log.size() > max_bytes) log = "...\n" + log.substr(log.size() - max_bytes);
  return log;
}

int64_t KvdProcess::RssKiB() const {
  if (pid_ <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

void KvdProcess::CheckLogForSanitizer() {
  if (sanitizer_reported_ || dir_.empty()) return;
  if (ReadLog().find("Sanitizer:") != std::string::npos) {
    sanitizer_reported_ = true;
    ADD_FAILURE() << "kvd " << node_id_ << " log contains a sanitizer report";
  }
}

std::unique_ptr<Client> KvdProcess::Connect(int timeout_ms) const {
  std::unique_ptr<Client> client;
  Status st = Client::Connect(address_, &client, timeout_ms);
  if (!st.ok()) ADD_FAILURE() << "cannot connect to kvd at " << address_ << ": " << st.ToString();
  return client;
}

Json KvdProcess::Call(const Json& request) {
  if (client_ == nullptr) {
    Status st = Client::Connect(address_, &client_, 10000);
    if (!st.ok()) return {{"harness_error", "connect: " + st.ToString()}};
  }
  Json resp;
  Status st = client_->Call(request, &resp);
  if (!st.ok()) {
    client_.reset();
    return {{"harness_error", st.ToString()}};
  }
  return resp;
}

::testing::AssertionResult IsOk(const Json& response) {
  if (response.is_object() && response.contains("ok") && response["ok"] == true) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "response is not ok: " << response.dump(-1, ' ', false, Json::error_handler_t::replace);
}

::testing::AssertionResult IsError(const Json& response, const std::string& code) {
  auto text = [&] { return response.dump(-1, ' ', false, Json::error_handler_t::replace); };
  if (!response.is_object() || !response.contains("ok") || response["ok"] != false) {
    return ::testing::AssertionFailure() << "expected error " << code << ", got " << text();
  }
  const Json& error = response.contains("error") ? response["error"] : Json();
  if (!error.is_object() || !error.contains("code") || error["code"] != code) {
    return ::testing::AssertionFailure() << "expected error " << code << ", got " << text();
  }
  if (!error.contains("message") || !error["message"].is_string() ||
      error["message"].get<std::string>().empty()) {
    return ::testing::AssertionFailure() << "error without a message: " << text();
  }
  return ::testing::AssertionSuccess();
}

}  // namespace ringkv::itest
