// Temporary directories for tests, under $TMPDIR (or /tmp when it is unset or
// empty), so that a CI run can point every test at its own scratch space.
//
// Thread-safety: MakeTempDir is safe to call concurrently (mkdtemp);
// a ScopedTempDir is not shared between threads.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace ringkv::testutil {

// The directory temporary files go in: $TMPDIR, or /tmp.
inline std::string TempRoot() {
  const char* tmp = std::getenv("TMPDIR");
  return (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
}

// Makes a fresh directory "<TempRoot()>/<prefix>-XXXXXX" and returns its path,
// or "" if it could not. The caller removes it.
inline std::string MakeTempDir(std::string_view prefix) {
  std::string pattern = TempRoot() + "/" + std::string(prefix) + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return "";
  return pattern;
}

// A fresh temporary directory that is removed, with everything in it, when
// the object is destroyed. Aborts if the directory cannot be made (a test
// cannot run without it, and fixtures cannot ASSERT in a constructor).
class ScopedTempDir {
 public:
  explicit ScopedTempDir(std::string_view prefix = "ringkv-test") : path_(MakeTempDir(prefix)) {
    if (path_.empty()) {
      std::fprintf(stderr, "ScopedTempDir: cannot make a directory under %s\n", TempRoot().c_str());
      std::abort();
    }
  }
  ~ScopedTempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

}  // namespace ringkv::testutil
