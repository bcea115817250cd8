// The credentials of a local cluster (`teclctl local up`), kept in <home>/secrets (mode 0700,
// every file 0600):
//
//   ca.pem, ca.key                      a certificate authority for this cluster alone
//   <role>.pem, <role>.key              one certificate per role (coordinator, dataloader, trainer,
//                                       user, reader), CN `<role>:local`, subjectAltName localhost and
//                                       127.0.0.1, usable as server and as client certificate
//   user.token, reader.token, trainer.token, dataloader.token
//                                       one random token per role (256 bits, hex)
//   auth_file                           the tokens the servers accept, with their roles
//
// Made with OpenSSL's libcrypto (P-256 keys, SHA-256 signatures). Created once; a later `local up`
// reuses them, so the certificates a restarted cluster serves are the ones its clients trust.
//
// Not thread-safe.
#ifndef TECL_TOOLS_TECLCTL_LOCAL_SECRETS_H_
#define TECL_TOOLS_TECLCTL_LOCAL_SECRETS_H_

#include <string>

#include "absl/status/status.h"
#include "services/common/auth.h"

namespace tecl::teclctl {

// Paths of the files above in `dir`.
struct LocalSecrets {
  std::string dir;
  std::string ca;
  std::string auth_file;
  std::string Certificate(const std::string& role) const { return dir + "/" + role + ".pem"; }
  std::string Key(const std::string& role) const { return dir + "/" + role + ".key"; }
  std::string Token(const std::string& role) const { return dir + "/" + role + ".token"; }
};

LocalSecrets LocalSecretsIn(const std::string& home);

// Creates the files that are missing (all of them the first time). UNAVAILABLE / PERMISSION_DENIED
// naming the file that could not be written; INTERNAL when libcrypto fails.
absl::Status EnsureLocalSecrets(const LocalSecrets& secrets);

// How a client of the local cluster with `role` calls it: its token, its certificate, the CA.
ChannelOptions LocalChannelOptions(const LocalSecrets& secrets, const std::string& role);

}  // namespace tecl::teclctl

#endif  // TECL_TOOLS_TECLCTL_LOCAL_SECRETS_H_
