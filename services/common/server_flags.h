// Flags shared by TECL servers (tecl-coordinator, tecl-dataloader, tecl-worker), and the option
// struct built from them:
//   --listen, --metrics_listen, --tls_cert, --tls_key, --tls_client_ca
// Each flag also reads TECL_<NAME> from the environment (services/common/flags.h).
#ifndef TECL_SERVICES_COMMON_SERVER_FLAGS_H_
#define TECL_SERVICES_COMMON_SERVER_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "services/common/server.h"

ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(std::string, metrics_listen);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);

namespace tecl {

// Server options from the server flags, with `default_listen` used when --listen is empty.
ServerOptions ServerOptionsFromFlags(const std::string& default_listen);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_SERVER_FLAGS_H_
