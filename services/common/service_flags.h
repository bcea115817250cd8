// Flags shared by TECL binaries, and the option structs built from them.
//
// Server flags (tecl-coordinator, tecl-dataloader, tecl-worker):
//   --listen, --metrics_listen, --tls_cert, --tls_key, --tls_client_ca
// Client flags (every binary that calls another):
//   --coordinator, --token_file, --tls_ca
// Each flag also reads TECL_<NAME> from the environment (services/common/flags.h).
#ifndef TECL_SERVICES_COMMON_SERVICE_FLAGS_H_
#define TECL_SERVICES_COMMON_SERVICE_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "services/common/auth.h"
#include "services/common/server.h"

ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(std::string, metrics_listen);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);
ABSL_DECLARE_FLAG(std::string, coordinator);
ABSL_DECLARE_FLAG(std::string, token_file);
ABSL_DECLARE_FLAG(std::string, tls_ca);

namespace tecl {

// Server options from the server flags, with `default_listen` used when --listen is empty.
ServerOptions ServerOptionsFromFlags(const std::string& default_listen);

// Channel options (token, TLS roots) from the client flags.
absl::StatusOr<ChannelOptions> ChannelOptionsFromFlags();

// The tokens this server accepts (from --token_file or $TECL_AUTH_TOKEN; none = no auth).
absl::StatusOr<TokenAuthenticator> AuthenticatorFromFlags();

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_SERVICE_FLAGS_H_
