// Bearer-token authentication for every gRPC call, and the client side that sends the token.
//
// Server: a TokenAuthenticator holds the accepted tokens (none = authentication off). Every
// handler of every TECL service starts with RejectUnauthenticated(...), which finishes the call
// with UNAUTHENTICATED before any logic runs. (gRPC C++ server interceptors cannot end a call
// before its handler runs, and AuthMetadataProcessor does not run on insecure ports, so the check
// sits at the top of the adapters; tests/unit/common/auth_test.cc calls every rpc of every
// service without a token to keep that true.) The gRPC health service stays open for probes.
//
// Client: MakeChannel() builds a channel whose every call carries `authorization: Bearer <token>`
// (a client interceptor adds it) and that uses TLS when a CA file is given.
//
// Tokens come from a file (one token per line; the server accepts any line, a client sends the
// first) or from the TECL_AUTH_TOKEN environment variable. Thread-safe after construction.
#ifndef TECL_SERVICES_COMMON_AUTH_H_
#define TECL_SERVICES_COMMON_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tecl {

inline constexpr char kAuthTokenEnv[] = "TECL_AUTH_TOKEN";

// Reads tokens from `token_file` when it is non-empty, else from $TECL_AUTH_TOKEN when set, else
// returns an empty list (authentication off). NOT_FOUND / PERMISSION_DENIED name the file;
// INVALID_ARGUMENT when the file holds no token.
absl::StatusOr<std::vector<std::string>> LoadTokens(const std::string& token_file);

class TokenAuthenticator {
 public:
  TokenAuthenticator() = default;  // Authentication off.
  explicit TokenAuthenticator(std::vector<std::string> tokens);

  bool enabled() const { return !tokens_.empty(); }

  // OK when authentication is off or the call's `authorization` metadata is "Bearer <token>" for
  // an accepted token (compared in constant time); UNAUTHENTICATED otherwise, saying whether the
  // token was missing or wrong.
  absl::Status Check(const grpc::ServerContextBase& context) const;

 private:
  std::vector<std::string> tokens_;
};

// For callback unary handlers: returns a reactor already finished with UNAUTHENTICATED when the
// call is refused, nullptr when it may proceed.
//   if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
grpc::ServerUnaryReactor* RejectUnauthenticated(grpc::CallbackServerContext* context,
                                                const TokenAuthenticator& auth);

// The same for server-streaming handlers.
template <typename Response>
grpc::ServerWriteReactor<Response>* RejectUnauthenticatedStream(
    grpc::CallbackServerContext* context, const TokenAuthenticator& auth) {
  absl::Status status = auth.Check(*context);
  if (status.ok()) return nullptr;
  class Refused : public grpc::ServerWriteReactor<Response> {
   public:
    explicit Refused(const absl::Status& status) {
      this->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(status.message())));
    }
    void OnDone() override { delete this; }
  };
  return new Refused(status);
}

struct ChannelOptions {
  std::string token;           // Sent as a bearer token when non-empty.
  std::string tls_ca_file;     // PEM roots; non-empty = TLS.
  std::string tls_server_name; // Overrides the name checked against the certificate.
  int max_message_bytes = 256 << 20;  // Clip batches are large.
};

// Fills `token` from LoadTokens(token_file) (first token) and the TLS fields.
absl::StatusOr<ChannelOptions> MakeChannelOptions(const std::string& token_file,
                                                  const std::string& tls_ca_file);

// A channel to `address` ("host:port"). Does not connect until the first call.
// INVALID_ARGUMENT / NOT_FOUND when the CA file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ChannelOptions& options);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_AUTH_H_
