#include "services/common/auth.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tecl {
namespace {

constexpr char kAuthorization[] = "authorization";
constexpr char kBearer[] = "Bearer ";
constexpr size_t kMinTokenLength = 16;

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    const int error = errno;
    const std::string message = absl::StrCat(what, " \"", path, "\": ", std::strerror(error));
    return error == EACCES ? absl::PermissionDeniedError(message) : absl::NotFoundError(message);
  }
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

// The lines of a credentials file that are not blank or comments, with their numbers.
std::vector<std::pair<int, std::string>> ContentLines(absl::string_view text) {
  std::vector<std::pair<int, std::string>> lines;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty() && line[0] != '#') lines.emplace_back(number, std::string(line));
  }
  return lines;
}

// The principal named by a client certificate's CN `<role>:<name>`.
absl::StatusOr<Principal> CertificatePrincipal(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no verified client certificate");
  }
  const std::vector<grpc::string_ref> names = auth->FindPropertyValues("x509_common_name");
  if (names.empty()) {
    return absl::UnauthenticatedError("the client certificate has no Common Name");
  }
  const std::string cn(names.front().data(), names.front().size());
  const size_t colon = cn.find(':');
  absl::StatusOr<Role> role =
      colon == std::string::npos ? absl::InvalidArgumentError("") : ParseRole(cn.substr(0, colon));
  if (!role.ok() || colon + 1 >= cn.size()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the client certificate's Common Name must be <role>:<name> with a role of user, reader, "
        "trainer or dataloader (e.g. trainer:node-7)"));
  }
  return Principal{*role, cn.substr(colon + 1), false};
}

class BearerTokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace(kAuthorization, *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerTokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(std::string token)
      : header_(absl::StrCat(kBearer, token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerTokenInterceptor(&header_);
  }

 private:
  const std::string header_;
};

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kUser:
      return "user";
    case Role::kReader:
      return "reader";
    case Role::kTrainer:
      return "trainer";
    case Role::kDataloader:
      return "dataloader";
  }
  return "unknown";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  for (Role role : {Role::kUser, Role::kReader, Role::kTrainer, Role::kDataloader}) {
    if (name == RoleName(role)) return role;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "\"", name, "\" is not a role; use user, reader, trainer or dataloader"));
}

std::string Principal::Describe() const {
  if (insecure) return "anonymous (--insecure)";
  return absl::StrCat(RoleName(role), " ", name);
}

absl::StatusOr<std::vector<Credential>> LoadAuthFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path, "auth file");
  if (!text.ok()) return text.status();
  std::vector<Credential> credentials;
  for (const auto& [number, line] : ContentLines(*text)) {
    const std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    const std::string where = absl::StrCat("auth file \"", path, "\" line ", number);
    if (fields.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected `<role> <name> <token>`, e.g. `trainer workers 5f0c...`"));
    }
    absl::StatusOr<Role> role = ParseRole(fields[0]);
    if (!role.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", role.status().message()));
    if (fields[2].size() < kMinTokenLength) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": the token has ", fields[2].size(), " characters; use at least ",
          kMinTokenLength, " (e.g. `openssl rand -hex 32`)"));
    }
    credentials.push_back({*role, fields[1], fields[2]});
  }
  if (credentials.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth file \"", path, "\" holds no credential; write `<role> <name> <token>` lines"));
  }
  return credentials;
}

absl::StatusOr<Authenticator> Authenticator::Create(AuthOptions options) {
  Authenticator auth;
  auth.mutual_tls_ = options.mutual_tls;
  auth.insecure_ = options.insecure;
  std::set<std::string> seen;
  for (Credential& c : options.tokens) {
    if (c.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the credential of ", RoleName(c.role), " ", c.name, " has an empty token"));
    }
    const Digest digest = Sha256(c.token);
    if (!seen.insert(DigestHex(digest)).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "two credentials share one token (", RoleName(c.role), " ", c.name,
          "); give each principal its own"));
    }
    auth.tokens_.push_back({digest, Principal{c.role, std::move(c.name), false}});
  }
  if (!auth.insecure_ && auth.tokens_.empty() && !auth.mutual_tls_) {
    return absl::FailedPreconditionError(
        "no credentials: give --auth_file (tokens with roles) or --tls_cert, --tls_key and "
        "--tls_ca (mutual TLS); --insecure starts without them, for a machine only you can reach");
  }
  return auth;
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    const grpc::ServerContextBase& context) const {
  if (insecure_) return Principal{Role::kUser, "anonymous", true};
  std::optional<Principal> by_token;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find(kAuthorization); it != metadata.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    if (!absl::StartsWith(value, kBearer)) {
      return absl::UnauthenticatedError("authorization metadata must be \"Bearer <token>\"");
    }
    const Digest presented = Sha256(value.substr(std::strlen(kBearer)));
    // Every entry is compared, whatever matches: the time does not tell which one did.
    const Entry* match = nullptr;
    for (const Entry& entry : tokens_) {
      if (DigestsEqual(presented, entry.digest)) match = &entry;
    }
    if (match == nullptr) return absl::UnauthenticatedError("wrong bearer token");
    by_token = match->principal;
  }
  std::optional<Principal> by_certificate;
  if (mutual_tls_) {
    absl::StatusOr<Principal> principal = CertificatePrincipal(context);
    if (!principal.ok()) return principal.status();
    by_certificate = *std::move(principal);
  }
  if (by_token && by_certificate && by_token->role != by_certificate->role) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the bearer token is a ", RoleName(by_token->role), "'s but the client certificate a ",
        RoleName(by_certificate->role), "'s; use the credentials of one principal"));
  }
  if (by_token) return *by_token;
  if (by_certificate) return *by_certificate;
  return absl::UnauthenticatedError(
      "missing credentials: pass --token_file (or set TECL_AUTH_TOKEN), or a client certificate");
}

absl::StatusOr<Principal> Authenticator::Authorize(const grpc::ServerContextBase& context,
                                                   std::initializer_list<Role> allowed) const {
  absl::StatusOr<Principal> principal = Authenticate(context);
  if (!principal.ok() || principal->insecure) return principal;
  for (Role role : allowed) {
    if (principal->role == role) return principal;
  }
  std::vector<std::string> names;
  for (Role role : allowed) names.push_back(RoleName(role));
  return absl::PermissionDeniedError(
      absl::StrCat(principal->Describe(), " may not make this call: it needs the credentials of a ",
                   absl::StrJoin(names, " or a ")));
}

grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* context, const Authenticator& auth,
                                 std::initializer_list<Role> allowed) {
  absl::StatusOr<Principal> principal = auth.Authorize(*context, allowed);
  if (principal.ok()) return nullptr;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status(static_cast<grpc::StatusCode>(principal.status().code()),
                               std::string(principal.status().message())));
  return reactor;
}

std::string SessionOf(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kSessionMetadata);
  return it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
}

absl::StatusOr<std::string> LoadToken(const std::string& token_file) {
  std::string text;
  if (!token_file.empty()) {
    absl::StatusOr<std::string> content = ReadFile(token_file, "token file");
    if (!content.ok()) return content.status();
    text = *std::move(content);
  } else if (const char* env = std::getenv(kAuthTokenEnv); env != nullptr) {
    text = env;
  } else {
    return std::string();
  }
  const auto lines = ContentLines(text);
  if (lines.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        token_file.empty() ? std::string("$") + kAuthTokenEnv : "token file \"" + token_file + "\"",
        " holds no token: write the token on its first line"));
  }
  return lines.front().second;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ChannelOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  if (options.own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("a client certificate needs both --tls_cert and --tls_key");
  }
  if (!options.tls_ca_file.empty()) {
    absl::StatusOr<std::string> roots = ReadFile(options.tls_ca_file, "TLS CA file");
    if (!roots.ok()) return roots.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *std::move(roots);
    if (!options.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile(options.tls_cert_file, "TLS certificate");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile(options.tls_key_file, "TLS key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  } else {
    if (!options.tls_cert_file.empty()) {
      return absl::InvalidArgumentError(
          "a client certificate (--tls_cert) needs --tls_ca to verify the server with");
    }
    credentials = grpc::InsecureChannelCredentials();
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.token.empty()) {
    interceptors.push_back(std::make_unique<BearerTokenInterceptorFactory>(options.token));
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials, args,
                                                                 std::move(interceptors));
}

}  // namespace tecl
