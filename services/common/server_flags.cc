#include "services/common/server_flags.h"

#include "absl/flags/flag.h"
#include "services/common/client_flags.h"

ABSL_FLAG(std::string, listen, "",
          "gRPC listen address host:port (port 0 picks a free port and logs it)");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:0",
          "Prometheus /metrics HTTP listen address host:port; empty disables it");
ABSL_FLAG(std::string, auth_file, "",
          "Credentials this server accepts: `<role> <name> <token>` per line (docs/security.md)");
ABSL_FLAG(bool, insecure, false,
          "Serve without credentials (no --auth_file, no mutual TLS): anyone who reaches the port "
          "may call it. Logs a warning every minute; only on a machine only you can reach");

namespace tecl {

absl::StatusOr<ServerOptions> ServerOptionsFromFlags(const std::string& default_listen) {
  ServerOptions options;
  options.address =
      absl::GetFlag(FLAGS_listen).empty() ? default_listen : absl::GetFlag(FLAGS_listen);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.insecure = absl::GetFlag(FLAGS_insecure);
  if (const std::string file = absl::GetFlag(FLAGS_auth_file); !file.empty()) {
    absl::StatusOr<std::vector<Credential>> tokens = LoadAuthFile(file);
    if (!tokens.ok()) return tokens.status();
    options.tokens = *std::move(tokens);
  }
  return options;
}

}  // namespace tecl
