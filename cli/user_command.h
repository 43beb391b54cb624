// `kvctl user ...`: user administration that needs no node (PROTOCOL.md §11).
//
//   kvctl user hash   reads a password (the first line of standard input; its
//                     line end is not part of it) and prints exactly one line:
//                     its salted scrypt hash (server/security/password.h), for
//                     the "password_hash" of a user in kvd's --auth-file.
//
// When standard input is a terminal, `user hash` prompts "password: " twice on
// standard error with echo off and requires the two to match. The password is
// never printed.
//
// Thread-safety: the functions touch the terminal settings of `in_fd`; call
// them from one thread.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "engine/status.h"

namespace ringkv {

// Runs `kvctl user ARGS...` reading from in_fd, printing the result to `out`
// and prompts to `prompt` (a terminal only). BadRequest (a usage error) for
// an unknown subcommand, an empty password, two typed passwords that differ
// or an unreadable input; Internal if hashing fails.
Status RunUserCommand(const std::vector<std::string>& args, int in_fd, std::ostream& out,
                      std::ostream& prompt);

// The password for `user hash`: the first line read from in_fd without its
// "\n" or "\r\n", or, when in_fd is a terminal, one typed twice with echo
// off (prompts to `prompt`). BadRequest as for RunUserCommand.
Status ReadPasswordForHash(int in_fd, std::ostream& prompt, std::string* password);

}  // namespace ringkv
