// Who calls: principals and roles on the server side, credentials on the client side.
//
// Server: an Authenticator establishes each call's Principal from its bearer token
// (`authorization: Bearer <token>`, looked up among the accepted tokens, each bound to a role and a
// name) and/or its client certificate (mutual TLS: the certificate's Common Name is
// `<role>:<name>`), and refuses calls without one (UNAUTHENTICATED) or of a role the rpc does not
// allow (PERMISSION_DENIED). Every handler of every TECL service starts with
//   if (auto* refused = Refuse(context, auth_, {Role::kUser, Role::kReader})) return refused;
// (gRPC C++ server interceptors cannot end a call before its handler runs, so the check sits at
// the top of the adapters; the services' tests call every rpc without and with the wrong
// credential). The gRPC health service stays open for probes. Tokens are compared through their
// SHA-256 digests in constant time: neither a token's content nor its length shows in the timing.
// docs/security.md has the roles and what each may call.
//
// Client: MakeChannel() builds a channel whose every call carries the bearer token (a client
// interceptor adds it), with TLS when a CA is given and a client certificate when one is given.
//
// Thread-safe after construction.
#ifndef TECL_SERVICES_COMMON_AUTH_H_
#define TECL_SERVICES_COMMON_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/common/crypto.h"

namespace tecl {

inline constexpr char kAuthTokenEnv[] = "TECL_AUTH_TOKEN";
// Metadata carrying a worker's session token (from RegisterWorker) on its later calls.
inline constexpr char kSessionMetadata[] = "x-tecl-session";

enum class Role { kUser, kReader, kTrainer, kDataloader };

// "user", "reader", "trainer", "dataloader".
const char* RoleName(Role role);
// INVALID_ARGUMENT naming the accepted roles.
absl::StatusOr<Role> ParseRole(absl::string_view name);

struct Principal {
  Role role = Role::kUser;
  std::string name;
  // The anonymous caller of a server started with --insecure: passes every role check.
  bool insecure = false;

  // "trainer node-7", or "anonymous (--insecure)".
  std::string Describe() const;
};

// One accepted bearer token.
struct Credential {
  Role role = Role::kUser;
  std::string name;
  std::string token;
};

// Reads an auth file: one `<role> <name> <token>` per line, `#` starts a comment. NOT_FOUND /
// PERMISSION_DENIED naming the file; INVALID_ARGUMENT naming the line for a malformed one, a token
// shorter than 16 characters, or a file with no token.
absl::StatusOr<std::vector<Credential>> LoadAuthFile(const std::string& path);

struct AuthOptions {
  // Bearer tokens accepted, each with its principal.
  std::vector<Credential> tokens;
  // The server requires and verifies client certificates: their CN names the principal.
  bool mutual_tls = false;
  // No credentials at all: every call is an anonymous principal that passes every role check.
  bool insecure = false;
};

class Authenticator {
 public:
  // FAILED_PRECONDITION when there are no credentials (no token, no mutual TLS) and not insecure;
  // INVALID_ARGUMENT for an empty token or two credentials with the same token.
  static absl::StatusOr<Authenticator> Create(AuthOptions options);
  // Refuses every call (UNAUTHENTICATED); assign one from Create.
  Authenticator() = default;

  // The caller. UNAUTHENTICATED: no credential, a wrong token, a certificate whose CN is not
  // `<role>:<name>`, or a token and a certificate of different roles.
  absl::StatusOr<Principal> Authenticate(const grpc::ServerContextBase& context) const;
  // Authenticate, then PERMISSION_DENIED (naming the caller and the roles allowed) unless its
  // role is one of `allowed`.
  absl::StatusOr<Principal> Authorize(const grpc::ServerContextBase& context,
                                      std::initializer_list<Role> allowed) const;

  bool insecure() const { return insecure_; }

 private:
  struct Entry {
    Digest digest;
    Principal principal;
  };
  std::vector<Entry> tokens_;
  bool mutual_tls_ = false;
  bool insecure_ = false;
};

// For callback unary handlers: a reactor already finished with the refusal (UNAUTHENTICATED or
// PERMISSION_DENIED), or nullptr when the call may proceed.
grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* context, const Authenticator& auth,
                                 std::initializer_list<Role> allowed);

// The same for server-streaming handlers.
template <typename Response>
grpc::ServerWriteReactor<Response>* RefuseStream(grpc::CallbackServerContext* context,
                                                 const Authenticator& auth,
                                                 std::initializer_list<Role> allowed) {
  absl::StatusOr<Principal> principal = auth.Authorize(*context, allowed);
  if (principal.ok()) return nullptr;
  class Refused : public grpc::ServerWriteReactor<Response> {
   public:
    explicit Refused(const absl::Status& status) {
      this->Finish(grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                                std::string(status.message())));
    }
    void OnDone() override { delete this; }
  };
  return new Refused(principal.status());
}

// The session token a call carries (kSessionMetadata), or "".
std::string SessionOf(const grpc::ServerContextBase& context);

struct ChannelOptions {
  std::string token;            // Sent as a bearer token when non-empty.
  std::string tls_ca_file;      // PEM roots to verify the server; non-empty = TLS.
  std::string tls_cert_file;    // This process's certificate and key, presented to servers
  std::string tls_key_file;     //   (mutual TLS); both or neither.
  std::string tls_server_name;  // Overrides the name checked against the server's certificate.
  int max_message_bytes = 256 << 20;  // Clip batches are large.
  // Its own TCP connection, not shared with other channels to the same address (gRPC shares by
  // default); for clients that stand for many machines (benchmarks).
  bool own_connection = false;
};

// The token a client sends: the first line of `token_file` (`#` comments skipped) when it is
// non-empty, else $TECL_AUTH_TOKEN, else "" (none). NOT_FOUND / PERMISSION_DENIED naming the file;
// INVALID_ARGUMENT when it holds no token.
absl::StatusOr<std::string> LoadToken(const std::string& token_file);

// A channel to `address` ("host:port"). Does not connect until the first call. INVALID_ARGUMENT /
// NOT_FOUND naming a TLS file that cannot be read, or a certificate without its key.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ChannelOptions& options);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_AUTH_H_
