// Flags shared by every TECL binary that calls another (and by servers for their tokens), and the
// options built from them:
//   --coordinator, --token_file, --tls_ca
// Each flag also reads TECL_<NAME> from the environment (services/common/flags.h).
#ifndef TECL_SERVICES_COMMON_CLIENT_FLAGS_H_
#define TECL_SERVICES_COMMON_CLIENT_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "services/common/auth.h"

ABSL_DECLARE_FLAG(std::string, coordinator);
ABSL_DECLARE_FLAG(std::string, token_file);
ABSL_DECLARE_FLAG(std::string, tls_ca);

namespace tecl {

// Channel options (token, TLS roots) from the client flags.
absl::StatusOr<ChannelOptions> ChannelOptionsFromFlags();

// The tokens this server accepts (from --token_file or $TECL_AUTH_TOKEN; none = no auth).
absl::StatusOr<TokenAuthenticator> AuthenticatorFromFlags();

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_CLIENT_FLAGS_H_
