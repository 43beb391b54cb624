// Integration-test harness: real kvd and kvctl processes.
//
// KvdProcess runs one kvd in a fresh temporary directory (data dir, port file
// and log inside it) on a kernel-chosen port, and cleans up after itself. When
// the running test has failed, its destructor prints the node's log; any log
// containing "Sanitizer:" fails the test, and so does a node that died without
// the test asking it to.
//
// Waiting is always done by polling a condition with WaitFor(), never by
// sleeping for a guessed time.
//
// Thread-safety: a KvdProcess belongs to the test's main thread (the thread
// that starts a node must outlive it: the node gets SIGKILL when that thread
// exits, so that a crashed test leaves no stray processes). Clients made
// by Connect() may be used from other threads (one client per thread).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/client.h"
#include "engine/status.h"
#include "tests/util/loopback.h"
#include "tests/util/temp_dir.h"
#include "tests/util/wait_for.h"

namespace ringkv::itest {

using Json = nlohmann::json;
using std::chrono::milliseconds;

// How long a node may take to start or stop before the harness gives up.
// Generous so that sanitizer builds on a loaded machine do not flake; a
// healthy node takes a fraction of this.
constexpr milliseconds kProcessDeadline{30000};

// Polls `condition` every ~10 ms until it returns true or `timeout` has passed.
// Returns whether it became true (it is evaluated once more at the deadline).
inline bool WaitFor(const std::function<bool()>& condition, milliseconds timeout) {
  return testutil::WaitFor(condition, timeout, milliseconds(10));
}

// Paths of the binaries under test.
std::string KvdPath();
std::string KvctlPath();

// Makes a fresh directory under $TMPDIR (or /tmp); the caller removes it.
using testutil::MakeTempDir;

// The outcome of running a program to completion.
struct ProcessResult {
  int exit_code = -1;      // exit status, or -1 if killed by a signal or timed out
  int term_signal = 0;     // the signal that ended it, if any
  bool timed_out = false;  // true if the harness had to SIGKILL it
  std::string out;         // everything it wrote to stdout
  std::string err;         // everything it wrote to stderr
};

// Runs `path args...` with `stdin_data` on its stdin, capturing stdout and
// stderr. SIGKILLs it (timed_out) if it runs longer than `timeout`.
ProcessResult RunProgram(const std::string& path, const std::vector<std::string>& args,
                         const std::string& stdin_data = "",
                         milliseconds timeout = kProcessDeadline);

// Runs kvctl with `args` (no --host is added).
ProcessResult RunKvctl(const std::vector<std::string>& args, const std::string& stdin_data = "");

// A port on 127.0.0.1 that nothing listens on (bound, read, then closed).
using testutil::UnusedPort;

// The non-empty lines of `text`.
std::vector<std::string> NonEmptyLines(const std::string& text);

class KvdProcess {
 public:
  // `extra_args` are appended to the harness's own flags (--listen, --port-file,
  // --data-dir, --node-id) on every start.
  explicit KvdProcess(std::vector<std::string> extra_args = {}, std::string node_id = "n1");
  // SIGKILLs the node if it is still running and removes the temporary
  // directory. Prints the log if the test failed; fails the test on a sanitizer
  // report or an unexpected exit.
  ~KvdProcess();
  KvdProcess(const KvdProcess&) = delete;
  KvdProcess& operator=(const KvdProcess&) = delete;

  // Starts kvd and waits until it has written its port file and answers ping
  // with its node id. A node that exits before it is ready is reported in the
  // result (with its log's tail), not as a separate test failure, so a caller
  // may retry. REQUIRES: not running.
  ::testing::AssertionResult Start();

  // Sends `sig` to the node (by PID). For SIGKILL, also waits for it to exit.
  void Kill(int sig);

  // SIGTERM, then waits for exit. Returns the exit status, 128+signal if a
  // signal ended it, or -1 if it did not exit in time (it is then SIGKILLed).
  int Terminate();

  // Waits up to `timeout` for the node to exit. Returns the status as
  // Terminate() does, or -2 if it is still running.
  int Wait(milliseconds timeout);

  // Starts again on the same data dir (a new port, so address() changes, unless
  // set_listen() fixed it). If the node is still running it is terminated first.
  ::testing::AssertionResult Restart();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& node_id() const { return node_id_; }
  // "127.0.0.1:PORT" as written in the port file.
  const std::string& address() const { return address_; }
  const std::string& dir() const { return dir_; }
  std::string data_dir() const { return dir_ + "/data"; }
  std::string log_path() const { return dir_ + "/kvd.log"; }
  std::string ReadLog() const;
  // Resident set size in KiB from /proc/PID/status, or -1.
  int64_t RssKiB() const;

  // Changes the flags used by the next Start()/Restart().
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
  const std::vector<std::string>& extra_args() const { return extra_args_; }
  // Makes every later Start()/Restart() listen on this fixed "HOST:PORT"
  // (cluster members need fixed addresses) instead of a kernel-chosen port.
  void set_listen(std::string host_port) { listen_ = std::move(host_port); }
  // Runs kvd as `prefix... kvd flags...` on later starts (e.g. {"ip", "netns",
  // "exec", NS, "env", "FAKETIME=+2s"}). Each word of the prefix must exec the
  // next (no fork), so that pid() stays kvd's. prefix[0] is an absolute path.
  void set_command_prefix(std::vector<std::string> prefix) { prefix_ = std::move(prefix); }
  // The last `max_bytes` of the log.
  std::string LogTail(size_t max_bytes) const;

  // A new connection to the node, or nullptr (with a test failure added).
  std::unique_ptr<Client> Connect(int timeout_ms = 10000) const;

  // One request over a connection kept by the harness (reconnected after a
  // restart). On a transport error returns {"harness_error": "..."} so that
  // assertions on the response fail with the reason visible.
  Json Call(const Json& request);

 private:
  // Reaps the child if it has exited; returns the status or -2 if running.
  int Reap(bool block, milliseconds timeout);
  ::testing::AssertionResult Failure(const std::string& what) const;
  void CheckLogForSanitizer();

  std::vector<std::string> extra_args_;
  std::string node_id_;
  std::string listen_ = "127.0.0.1:0";
  std::vector<std::string> prefix_;
  std::string dir_;
  std::string address_;
  pid_t pid_ = -1;
  // The decoded exit status of the last process that was reaped.
  int last_status_ = -1;
  // Set when the test asked the node to stop, so its exit is not a failure.
  bool stop_requested_ = false;
  // Set while Start() waits for the node: an exit then is Start()'s result.
  bool starting_ = false;
  bool sanitizer_reported_ = false;
  std::unique_ptr<Client> client_;
};

// Expands to a check that the response is {"ok":true,...}, printing it if not.
::testing::AssertionResult IsOk(const Json& response);
// Checks {"ok":false,"error":{"code":code,...}}.
::testing::AssertionResult IsError(const Json& response, const std::string& code);

}  // namespace ringkv::itest
