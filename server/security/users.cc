#include "server/security/users.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "server/security/password.h"
#include "server/security/private_file.h"

namespace ringkv::security {
namespace {

constexpr size_t kMaxNameBytes = 256;

std::string Entry(std::string_view source, size_t index, const std::string& name) {
  std::string out = std::string(source) + ": users[" + std::to_string(index) + "]";
  if (!name.empty()) out += " (\"" + name + "\")";
  return out;
}

}  // namespace

Status UserTable::Load(const std::string& path, std::shared_ptr<const UserTable>* out) {
  RINGKV_RETURN_IF_ERROR(CheckPrivateFile(path, "--auth-file"));
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  if (!in.good() && !in.eof()) return Status::BadRequest("--auth-file " + path + " cannot be read");
  return Parse(buf.str(), "--auth-file " + path, out);
}

Status UserTable::Parse(std::string_view json_text, std::string_view source,
                        std::shared_ptr<const UserTable>* out) {
  const nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::BadRequest(std::string(source) + " is not valid JSON");
  if (!doc.is_object() || !doc.contains("users") || !doc["users"].is_array()) {
    return Status::BadRequest(std::string(source) +
                              " must be an object with a \"users\" array: "
                              "{\"users\":[{\"name\":…,\"role\":…,\"password_hash\":…}]}");
  }
  auto table = std::shared_ptr<UserTable>(new UserTable);
  size_t index = 0;
  for (const auto& entry : doc["users"]) {
    if (!entry.is_object()) {
      return Status::BadRequest(Entry(source, index, "") + " is not an object");
    }
    const auto name_it = entry.find("name");
    if (name_it == entry.end() || !name_it->is_string() ||
        name_it->get_ref<const std::string&>().empty() ||
        name_it->get_ref<const std::string&>().size() > kMaxNameBytes) {
      return Status::BadRequest(Entry(source, index, "") +
                                ": \"name\" must be a string of 1..256 bytes");
    }
    User user;
    user.name = name_it->get<std::string>();
    const auto role_it = entry.find("role");
    if (role_it == entry.end() || !role_it->is_string() ||
        !ParseRole(role_it->get_ref<const std::string&>(), &user.role)) {
      return Status::BadRequest(Entry(source, index, user.name) +
                                ": \"role\" must be \"read\", \"readwrite\" or \"admin\"");
    }
    const auto hash_it = entry.find("password_hash");
    if (hash_it == entry.end() || !hash_it->is_string()) {
      return Status::BadRequest(Entry(source, index, user.name) +
                                ": \"password_hash\" must be a string (make one with "
                                "`kvctl user hash`)");
    }
    user.password_hash = hash_it->get<std::string>();
    if (Status s = CheckPasswordHash(user.password_hash); !s.ok()) {
      return Status::BadRequest(Entry(source, index, user.name) + ": " + s.message());
    }
    if (table->users_.count(user.name) != 0) {
      return Status::BadRequest(Entry(source, index, user.name) + ": the name appears twice");
    }
    table->users_.emplace(user.name, std::move(user));
    ++index;
  }
  *out = std::move(table);
  return Status::OK();
}

const User* UserTable::Find(std::string_view name) const {
  const auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

}  // namespace ringkv::security
