// Files that hold secrets (the users file, the cluster secret, the TLS key):
// kvd refuses to start when one is readable by other users, as ssh and
// PostgreSQL do (PROTOCOL.md §11).
#pragma once

#include <string>
#include <string_view>

#include "engine/status.h"

namespace ringkv::security {

// OK if `path` is a regular file that can be read and whose mode gives the
// group and others no access (mode & 077 == 0). Otherwise BadRequest, e.g.
// "--auth-file /x/users.json is readable by other users (mode 0644); run
// chmod 600 /x/users.json". `flag` names the flag in the message.
Status CheckPrivateFile(const std::string& path, std::string_view flag);

// Reads the cluster secret (--cluster-secret-file): the whole file with
// trailing whitespace (spaces, tabs, \r, \n) stripped, at least 16 bytes;
// the file must pass CheckPrivateFile. BadRequest naming the problem (never
// the secret) otherwise.
Status LoadClusterSecret(const std::string& path, std::string* secret);

}  // namespace ringkv::security
