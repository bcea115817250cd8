#include "absl/flags/flag.h"
#include "services/common/server_flags.h"

ABSL_FLAG(std::string, listen, "",
          "gRPC listen address host:port (port 0 picks a free port and logs it)");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:0",
          "Prometheus /metrics HTTP listen address host:port; empty disables it");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain for TLS on the gRPC port");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for TLS on the gRPC port");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA that client certificates must chain to (mutual TLS); empty = no client certs");

namespace tecl {

ServerOptions ServerOptionsFromFlags(const std::string& default_listen) {
  ServerOptions options;
  options.address = absl::GetFlag(FLAGS_listen).empty() ? default_listen : absl::GetFlag(FLAGS_listen);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  return options;
}

}  // namespace tecl
