// Flags every TECL binary has: whom it calls and the credentials it calls with, which servers also
// use as their TLS identity:
//   --coordinator, --token_file, --tls_ca, --tls_cert, --tls_key, --tls_server_name
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
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_server_name);

namespace tecl {

// Channel options (token, TLS roots, client certificate, server name) from the flags. Errors of
// LoadToken name the token file.
absl::StatusOr<ChannelOptions> ChannelOptionsFromFlags();

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_CLIENT_FLAGS_H_
