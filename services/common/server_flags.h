// Flags every TECL server has (tecl-coordinator, tecl-dataloader, tecl-worker), and the options
// built from them with the TLS identity flags of client_flags.h:
//   --listen, --metrics_listen, --auth_file, --insecure
// Each flag also reads TECL_<NAME> from the environment (services/common/flags.h).
#ifndef TECL_SERVICES_COMMON_SERVER_FLAGS_H_
#define TECL_SERVICES_COMMON_SERVER_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "services/common/server.h"

ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(std::string, metrics_listen);
ABSL_DECLARE_FLAG(std::string, auth_file);
ABSL_DECLARE_FLAG(bool, insecure);

namespace tecl {

// Server options from the flags, with `default_listen` used when --listen is empty: addresses,
// TLS (--tls_cert, --tls_key, --tls_ca), the tokens of --auth_file, --insecure. Errors of
// LoadAuthFile name the file.
absl::StatusOr<ServerOptions> ServerOptionsFromFlags(const std::string& default_listen);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_SERVER_FLAGS_H_
