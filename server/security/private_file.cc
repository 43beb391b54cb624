#include "server/security/private_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ringkv::security {
namespace {

std::string Octal(unsigned mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", mode & 07777);
  return buf;
}

}  // namespace

Status CheckPrivateFile(const std::string& path, std::string_view flag) {
  const std::string what = std::string(flag) + " " + path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::BadRequest(what + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::BadRequest(what + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    return Status::BadRequest(what + " is readable by other users (mode " + Octal(st.st_mode) +
                              "); run chmod 600 " + path);
  }
  std::ifstream in(path);
  if (!in) return Status::BadRequest(what + " cannot be read: " + std::strerror(errno));
  return Status::OK();
}

Status LoadClusterSecret(const std::string& path, std::string* secret) {
  RINGKV_RETURN_IF_ERROR(CheckPrivateFile(path, "--cluster-secret-file"));
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  if (!in.good() && !in.eof()) {
    return Status::BadRequest("--cluster-secret-file " + path + " cannot be read");
  }
  std::string text = buf.str();
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                           text.back() == '\n')) {
    text.pop_back();
  }
  if (text.size() < 16) {
    return Status::BadRequest("--cluster-secret-file " + path +
                              " holds fewer than 16 bytes; make one with "
                              "`openssl rand -hex 32 > " +
                              path + "`");
  }
  *secret = std::move(text);
  return Status::OK();
}

}  // namespace ringkv::security
