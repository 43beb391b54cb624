// The users file (kvd --auth-file, PROTOCOL.md §11):
//   {"users":[{"name":"…","role":"read|readwrite|admin","password_hash":"…"}]}
//
// Load() validates it whole: a JSON object with a "users" array; each entry an
// object with a non-empty "name" (at most 256 bytes), a known "role" and a
// "password_hash" that CheckPasswordHash() accepts; no name twice. Unknown
// fields are ignored. Any problem is BadRequest naming the file, the entry
// (index and name) and the field. The file must also be private (see
// private_file.h). kvd loads it at start (failing to start) and again on
// SIGHUP (keeping the old table when the new file is bad, and saying why).
//
// Thread-safety: a UserTable is immutable; share it as shared_ptr<const>.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "engine/status.h"
#include "server/security/role.h"

namespace ringkv::security {

struct User {
  std::string name;
  Role role = Role::kNone;
  std::string password_hash;
};

class UserTable {
 public:
  // Reads and validates `path`.
  static Status Load(const std::string& path, std::shared_ptr<const UserTable>* out);
  // Validates `json_text` (the file's content); `source` names it in errors.
  static Status Parse(std::string_view json_text, std::string_view source,
                      std::shared_ptr<const UserTable>* out);

  // Null if there is no user `name`.
  const User* Find(std::string_view name) const;
  size_t size() const { return users_.size(); }

 private:
  std::map<std::string, User, std::less<>> users_;
};

}  // namespace ringkv::security
