#include "absl/flags/flag.h"
#include "services/common/client_flags.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7070", "Coordinator address host:port");
ABSL_FLAG(std::string, token_file, "",
          "File with the bearer token(s), one per line (default: $TECL_AUTH_TOKEN; none = no auth)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA to verify servers with; set to use TLS");

namespace tecl {

absl::StatusOr<ChannelOptions> ChannelOptionsFromFlags() {
  return MakeChannelOptions(absl::GetFlag(FLAGS_token_file), absl::GetFlag(FLAGS_tls_ca));
}

absl::StatusOr<TokenAuthenticator> AuthenticatorFromFlags() {
  absl::StatusOr<std::vector<std::string>> tokens = LoadTokens(absl::GetFlag(FLAGS_token_file));
  if (!tokens.ok()) return tokens.status();
  return TokenAuthenticator(*std::move(tokens));
}

}  // namespace tecl
