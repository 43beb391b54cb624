// Client-side security (PROTOCOL.md §11 "Clients"): the four flags kvctl and
// kvbench share, where the password comes from, and the TLS pieces that
// Client::Connect and kvbench's event loop both use.
//
//   --tls                 speak TLS 1.2 or newer, verifying the server's certificate
//   --tls-ca FILE         verify against the CA(s) in FILE instead of the system's;
//                         implies --tls
//   --user NAME           authenticate as NAME on every connection
//   --password-file FILE  NAME's password: the first line of FILE (its line end
//                         is not part of it)
//
// With --user and no --password-file, the password is the environment variable
// RINGKV_PASSWORD. There is deliberately no flag that takes the password
// itself: a command line is visible to every user of the machine (ps).
// Nothing here prints or logs a password.
//
// Thread-safety: the functions are safe from any thread. A ClientSecurity is
// a value; its tls_context may be shared by connections on many threads
// (OpenSSL allows SSL_new on one SSL_CTX concurrently once it is set up).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

// OpenSSL's SSL_CTX and SSL, declared so that this header needs no OpenSSL
// headers (they are `typedef struct ssl_ctx_st SSL_CTX;` and
// `typedef struct ssl_st SSL;` in <openssl/types.h>).
struct ssl_ctx_st;
struct ssl_st;

namespace ringkv {

// How a client reaches a node. The default (all empty) is plaintext without
// authentication: exactly what clients did before §11.
struct ClientSecurity {
  // Speak TLS. Default: false.
  bool tls = false;
  // PEM file of the CA(s) to verify the server against; "" = the system's
  // default verify paths. Default: "".
  std::string tls_ca;
  // Authenticate as this user after connecting; "" = do not. Default: "".
  std::string user;
  // The user's password (never printed). Default: "".
  std::string password;
  // The TLS context to make connections with, shared by every connection;
  // null = Client::Connect makes one per connection. Made by PrepareTls().
  std::shared_ptr<ssl_ctx_st> tls_context;

  // True if any security is asked for (TLS or authentication).
  bool enabled() const { return tls || !user.empty(); }
};

// The environment variable that holds the password when --password-file is
// not given.
inline constexpr char kPasswordEnvVar[] = "RINGKV_PASSWORD";

// Help text for the four flags, for kvctl's and kvbench's --help.
extern const char kSecurityFlagsHelp[];

// The four flags as given on a command line, before the password is looked up.
struct SecurityFlags {
  bool tls = false;
  bool tls_ca_given = false;
  std::string tls_ca;
  bool user_given = false;
  std::string user;
  bool password_file_given = false;
  std::string password_file;
};

// "--name=value" -> name and value (true); anything else -> false, *name =
// arg. The one place the command-line tools split an option from its value.
bool SplitLongOption(const std::string& arg, std::string* name, std::string* value);

// Removes the four flags (as "--flag VALUE" or "--flag=VALUE") from `args`
// and records them in *flags, leaving every other argument in order. Stops
// at "--": what follows is positional, whatever it looks like. Scanning also
// skips the value of any option named in `value_options` (the tool's own
// options that take a value), so that `--host --tls` would not be taken for
// the flag. A flag given twice: the last one counts (as with --host).
// BadRequest naming the flag if one lacks its value, or --tls has one.
Status ExtractSecurityFlags(std::vector<std::string>* args, SecurityFlags* flags,
                            const std::vector<std::string>& value_options = {});

// Turns flags into a ClientSecurity: the password from --password-file, or
// else from `env_password` (the value of RINGKV_PASSWORD, nullptr if unset).
// BadRequest with a message for a person if: --user is empty, --user has no
// password from either source ("--user needs the password in RINGKV_PASSWORD
// or --password-file"), --password-file is given without --user, the password
// file cannot be read or its first line is empty, or --tls-ca is empty.
// The message never contains the password.
Status ResolveSecurity(const SecurityFlags& flags, const char* env_password, ClientSecurity* out);

// ExtractSecurityFlags then ResolveSecurity with getenv(kPasswordEnvVar).
Status ParseSecurityFlags(std::vector<std::string>* args, ClientSecurity* out,
                          const std::vector<std::string>& value_options = {});

// The password in the file at `path`: its first line without the line end
// ("\n" or "\r\n"). BadRequest naming the file (and the OS's reason) if it
// cannot be read, or if that line is empty.
Status ReadPasswordFile(const std::string& path, std::string* password);

// ---------------------------------------------------------------------------
// TLS

// If security->tls and it has no tls_context yet, makes one (MakeTlsContext)
// and stores it there, so that every connection made with *security shares
// it. OK and nothing done when TLS is off.
Status PrepareTls(ClientSecurity* security);

// A client SSL_CTX: TLS 1.2 or newer, the server's certificate verified
// against `ca_file` (or, if "", the system's default verify paths), an EOF
// without close_notify read as a normal close (our lines frame themselves),
// partial writes and moving write buffers allowed (for event loops).
// BadRequest naming the file and OpenSSL's reason if `ca_file` cannot be
// loaded; Internal if OpenSSL fails otherwise.
Status MakeTlsContext(const std::string& ca_file, std::shared_ptr<ssl_ctx_st>* out);

// Runs the client side of a TLS handshake on `fd` (a connected, non-blocking
// TCP socket; not owned), waiting for it with poll() for at most timeout_ms
// (0 = no bound). The server's certificate must match `host`: a host name
// (also sent as SNI) or an IP literal. On success *out is a new SSL on fd,
// owned by the caller (SSL_free; it does not close fd). Otherwise
// Unavailable, e.g. "TLS handshake with 127.0.0.1:7700 failed: certificate
// verify failed (self-signed certificate)", or "... timed out"; `host_port`
// is the address named in the message.
// Side effect: the first call sets SIGPIPE to SIG_IGN if it is SIG_DFL,
// because OpenSSL writes with write() and a reset connection must be an
// error, not the end of the process.
Status TlsHandshake(ssl_ctx_st* ctx, int fd, std::string_view host, std::string_view host_port,
                    int timeout_ms, ssl_st** out);

// OpenSSL's reason for the latest failure on this thread (and clears its
// error queue), "" if it has none: e.g. "certificate verify failed".
std::string TlsErrorText();

}  // namespace ringkv
