// A private certificate authority for tests, made with the `openssl` command
// line (as an operator would, docs/security.md): a CA, and certificates it
// signs for 127.0.0.1 and localhost. Files live in the given directory; keys
// are chmod 600 (kvd refuses readable keys).
//
// Thread-safety: one TestCa per thread; it runs child processes.
#pragma once

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace ringkv::testutil {

struct CertFiles {
  std::string cert;
  std::string key;
};

class TestCa {
 public:
  // Makes the CA's key and self-signed certificate in `dir`; ok() says
  // whether that worked (openssl missing, say).
  TestCa(std::string dir, std::string name) : dir_(std::move(dir)), name_(std::move(name)) {
    ca_.cert = dir_ + "/" + name_ + ".crt";
    ca_.key = dir_ + "/" + name_ + ".key";
    ok_ = Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout '" +
              ca_.key + "' -out '" + ca_.cert + "' -days 2 -subj '/CN=" + name_ + "'");
  }

  bool ok() const { return ok_; }
  const std::string& cert() const { return ca_.cert; }

  // A certificate for `cn` (subjectAltName IP:127.0.0.1, DNS:localhost)
  // signed by this CA; empty paths if openssl failed.
  CertFiles Issue(const std::string& cn) const {
    const std::string base = dir_ + "/" + name_ + "-" + cn;
    CertFiles out{base + ".crt", base + ".key"};
    std::ofstream(base + ".ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    const bool made =
        Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout '" + out.key +
            "' -out '" + base + ".csr' -subj '/CN=" + cn + "'") &&
        Run("openssl x509 -req -in '" + base + ".csr' -CA '" + ca_.cert + "' -CAkey '" + ca_.key +
            "' -CAcreateserial -out '" + out.cert + "' -days 2 -extfile '" + base + ".ext'");
    if (!made) return {};
    ::chmod(out.key.c_str(), 0600);
    return out;
  }

 private:
  static bool Run(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
  }

  std::string dir_;
  std::string name_;
  CertFiles ca_;
  bool ok_ = false;
};

}  // namespace ringkv::testutil
