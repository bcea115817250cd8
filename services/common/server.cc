#include "services/common/server.h"

#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/server_interceptor.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/common/logging.h"

namespace tecl {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(what, " \"", path, "\" cannot be read"));
  std::stringstream buffer;
  buffer << file.rdbuf();
  if (buffer.str().empty()) return absl::InvalidArgumentError(absl::StrCat(what, " \"", path, "\" is empty"));
  return buffer.str();
}

// Counts every rpc by method and status code and times it: tecl_grpc_server_handled_total,
// tecl_grpc_server_handling_seconds.
class RpcMetrics {
 public:
  explicit RpcMetrics(metrics::Registry& registry)
      : handled_(metrics::BuildCounter()
                     .Name("tecl_grpc_server_handled_total")
                     .Help("RPCs completed by the server, by method and status code.")
                     .Register(registry)),
        seconds_(metrics::BuildHistogram()
                     .Name("tecl_grpc_server_handling_seconds")
                     .Help("Time from receiving an RPC to sending its status, by method.")
                     .Register(registry)) {}

  void Record(const std::string& method, grpc::StatusCode code, double seconds) {
    handled_.Add({{"method", method}, {"code", CodeName(code)}}).Increment();
    seconds_
        .Add({{"method", method}},
             metrics::Histogram::ExponentialBuckets(0.0005, 4, 10))
        .Observe(seconds);
  }

 private:
  static std::string CodeName(grpc::StatusCode code) {
    static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                   "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                   "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                   "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                                   "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                   "UNAUTHENTICATED"};
    const int index = static_cast<int>(code);
    return index >= 0 && index <= 16 ? kNames[index] : "UNKNOWN";
  }

  metrics::Family<metrics::Counter>& handled_;
  metrics::Family<metrics::Histogram>& seconds_;
};

class RpcMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(RpcMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      metrics_->Record(method_, methods->GetSendStatus().error_code(), seconds);
    }
    methods->Proceed();
  }

 private:
  RpcMetrics* metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
};

class RpcMetricsInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(metrics::Registry& registry) : metrics_(registry) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcMetricsInterceptor(&metrics_, info->method());
  }

 private:
  RpcMetrics metrics_;
};

}  // namespace

std::string DialableAddress(const std::string& listen_address, int port) {
  std::string host = listen_address.substr(0, listen_address.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = "127.0.0.1";
  return absl::StrCat(host, ":", port);
}

class GrpcServer::UnimplementedGenericService final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* context) override {
    class Reject final : public grpc::ServerGenericBidiReactor {
     public:
      explicit Reject(const std::string& method) {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            absl::StrCat(method, " is not served here")));
      }
      void OnDone() override { delete this; }
    };
    return new Reject(context->method());
  }
};

absl::StatusOr<Authenticator> MakeAuthenticator(const ServerOptions& options) {
  AuthOptions auth;
  auth.tokens = options.tokens;
  auth.mutual_tls = !options.tls_ca_file.empty();
  auth.insecure = options.insecure;
  return Authenticator::Create(std::move(auth));
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    metrics::Registry* registry) {
  // A server with rpcs of its own needs credentials to check its callers; one that serves only
  // the health service (a trainer) has nothing to guard and takes none.
  if (!services.empty()) {
    if (absl::StatusOr<Authenticator> auth = MakeAuthenticator(options); !auth.ok()) {
      return auth.status();
    }
  }
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_ca_file.empty() && options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_ca (mutual TLS) needs the server's own --tls_cert and --tls_key");
  }
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
      return absl::InvalidArgumentError("TLS needs both --tls_cert and --tls_key");
    }
    grpc::SslServerCredentialsOptions ssl(
        options.tls_ca_file.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    auto cert = ReadPem(options.tls_cert_file, "TLS certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(options.tls_key_file, "TLS key");
    if (!key.ok()) return key.status();
    pair.cert_chain = *cert;
    pair.private_key = *key;
    ssl.pem_key_cert_pairs.push_back(pair);
    if (!options.tls_ca_file.empty()) {
      auto ca = ReadPem(options.tls_ca_file, "TLS CA");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, credentials, &server->port_);
  // A busy address is an error, not a second server sharing the port (gRPC's default
  // SO_REUSEPORT would let two processes bind the same host:port).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(options.max_send_message_bytes);
  for (grpc::Service* service : services) builder.RegisterService(service);
  if (services.empty()) {
    // A server whose only service is health (a trainer) needs one method of its own to run its
    // callback threads; unknown methods get UNIMPLEMENTED.
    server->unknown_methods_ = std::make_unique<UnimplementedGenericService>();
    builder.RegisterCallbackGenericService(server->unknown_methods_.get());
  }
  if (registry != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> factories;
    factories.push_back(std::make_unique<RpcMetricsInterceptorFactory>(*registry));
    builder.experimental().SetInterceptorCreators(std::move(factories));
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.address, ": address in use, or not a local address"));
  }
  server->address_ = absl::StrCat(options.address.substr(0, options.address.rfind(':')), ":",
                                  server->port_);
  server->server_->GetHealthCheckService()->SetServingStatus(true);

  if (registry != nullptr) {
    metrics::BuildGauge()
        .Name("tecl_insecure")
        .Help("1 when this server runs without credentials (--insecure), else 0.")
        .Register(*registry)
        .Add({})
        .Set(options.insecure ? 1 : 0);
  }
  if (options.insecure) {
    server->insecure_warning_ = std::thread(&GrpcServer::WarnInsecureLoop, server.get());
  }
  if (registry != nullptr && !options.metrics_address.empty()) {
    auto metrics = metrics::MetricsHttpServer::Start(options.metrics_address, registry);
    if (!metrics.ok()) {
      server->Shutdown(absl::ZeroDuration());
      return metrics.status();
    }
    server->metrics_ = *std::move(metrics);
  }
  return server;
}

std::string GrpcServer::local_address() const { return DialableAddress(address_, port_); }

void GrpcServer::WarnInsecureLoop() {
  do {
    TECL_LOG(WARNING) << "serving " << address_
                      << " WITHOUT credentials (--insecure): anyone who can reach this port can "
                         "call it; give --auth_file or mutual TLS (docs/security.md)";
  } while (!stop_warning_.WaitForNotificationWithTimeout(absl::Minutes(1)));
}

void GrpcServer::SetServing(bool serving, const std::string& reason) {
  absl::MutexLock lock(&serving_mu_);
  if (shut_down_ || server_ == nullptr) return;
  server_->GetHealthCheckService()->SetServingStatus(serving);
  if (metrics_ != nullptr) metrics_->SetHealthy(serving, reason);
}

void GrpcServer::Shutdown(absl::Duration grace) {
  if (!stop_warning_.HasBeenNotified()) stop_warning_.Notify();
  if (insecure_warning_.joinable()) insecure_warning_.join();
  {
    absl::MutexLock lock(&serving_mu_);
    if (shut_down_ || server_ == nullptr) return;
    shut_down_ = true;
  }
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace));
  server_->Wait();
  metrics_.reset();
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

void BlockTerminationSignals() {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal = 0;
  while (sigwait(&set, &signal) != 0) {
  }
  return signal;
}

}  // namespace tecl
