#include "services/common/client_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7070", "Coordinator address host:port");
ABSL_FLAG(std::string, token_file, "",
          "File whose first line is the bearer token this process sends (default: "
          "$TECL_AUTH_TOKEN)");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA: clients verify servers with it (TLS); servers require client certificates "
          "signed by it (mutual TLS)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate of this process: served on its gRPC port and presented to servers");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to check the server certificate against when it differs from the dialed host");

namespace tecl {

absl::StatusOr<ChannelOptions> ChannelOptionsFromFlags() {
  ChannelOptions options;
  absl::StatusOr<std::string> token = LoadToken(absl::GetFlag(FLAGS_token_file));
  if (!token.ok()) return token.status();
  options.token = *std::move(token);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  return options;
}

}  // namespace tecl
