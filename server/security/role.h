// Roles (PROTOCOL.md §11): what an authenticated user may do. Each op's
// least role is in its op table row (server/op_list.h).
//
//   read       get, ping, stats, cluster, locate
//   readwrite  read, and put and delete
//   admin      everything (backup, compact, aae, membership)
//
// The numbers are ordered: a role allows every op whose least role is not
// above it. kNone is "not authenticated" (only `auth` and the peer handshake).
#pragma once

#include <string_view>

namespace ringkv::security {

enum class Role : int { kNone = 0, kRead = 1, kReadWrite = 2, kAdmin = 3 };

constexpr bool Allows(Role have, Role need) {
  return static_cast<int>(have) >= static_cast<int>(need);
}

constexpr std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kReadWrite:
      return "readwrite";
    case Role::kAdmin:
      return "admin";
    case Role::kNone:
      break;
  }
  return "none";
}

// "read", "readwrite" or "admin"; false for anything else (kNone included).
constexpr bool ParseRole(std::string_view name, Role* out) {
  for (Role r : {Role::kRead, Role::kReadWrite, Role::kAdmin}) {
    if (RoleName(r) == name) {
      *out = r;
      return true;
    }
  }
  return false;
}

}  // namespace ringkv::security
