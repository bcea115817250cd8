// Runs a gRPC server the same way in every TECL process: binds host:port (port 0 picks a free
// port and the bound port is reported), serves the standard gRPC health service, TLS (mutual when
// a CA is given), small requests and large responses (clip batches), per-method request metrics,
// and a Prometheus /metrics endpoint with /healthz. It refuses to start without credentials
// (tokens or mutual TLS) unless told `insecure`; an insecure server logs a warning every minute
// and exports tecl_insecure 1.
//
//   tecl::BlockTerminationSignals();              // first thing in main, before any thread
//   auto server = tecl::GrpcServer::Start(options, {&service}, &registry);
//   tecl::WaitForTerminationSignal();             // SIGTERM or SIGINT
//   (*server)->Shutdown(absl::Seconds(10));       // health NOT_SERVING, drain, stop
//
// Thread-safe. The services and the registry must outlive the server.
#ifndef TECL_SERVICES_COMMON_SERVER_H_
#define TECL_SERVICES_COMMON_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/common/auth.h"
#include "services/common/metrics.h"
#include "services/common/metrics_http.h"

namespace tecl {

struct ServerOptions {
  // gRPC listen address, host:port; port 0 picks a free port.
  std::string address = "0.0.0.0:0";
  // Prometheus /metrics listen address; empty = no HTTP endpoint.
  std::string metrics_address = "0.0.0.0:0";
  // TLS: certificate chain and private key (PEM). Both empty = plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // When set (with a certificate), clients must present a certificate signed by this CA (mutual
  // TLS), and its Common Name `<role>:<name>` is the caller's principal.
  std::string tls_ca_file;
  // Bearer tokens accepted, with their principals (auth.h), and whether to serve without any
  // credential.
  std::vector<Credential> tokens;
  bool insecure = false;
  // Largest request message accepted. gRPC reads a whole message before any handler (and so
  // before the credential check) runs: a larger one is RESOURCE_EXHAUSTED without reaching the
  // service, so an unauthenticated caller cannot make the server buffer more than this per call.
  // TECL requests are small (a job spec is at most 1 MiB).
  int max_receive_message_bytes = 4 << 20;
  // Largest response message (a clip batch is at most work_limits::kMaxBatchBytes).
  int max_send_message_bytes = 256 << 20;
};

// The authenticator of a server with these options (tokens; mutual TLS when a CA is set).
// FAILED_PRECONDITION without credentials unless `insecure` (Authenticator::Create).
absl::StatusOr<Authenticator> MakeAuthenticator(const ServerOptions& options);

class GrpcServer {
 public:
  // Starts serving `services` (and health). FAILED_PRECONDITION without credentials (and not
  // insecure) when `services` is not empty: a health-only server needs none;
  // UNAVAILABLE when an address cannot be bound; NOT_FOUND / INVALID_ARGUMENT for unreadable TLS
  // files or a CA without a certificate.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const ServerOptions& options,
                                                           const std::vector<grpc::Service*>& services,
                                                           metrics::Registry* registry);
  ~GrpcServer();  // Shuts down with no grace period if Shutdown was not called.

  int port() const { return port_; }
  // host:port with the bound port; an unspecified host (0.0.0.0, [::]) becomes 127.0.0.1 only in
  // local_address().
  const std::string& address() const { return address_; }
  std::string local_address() const;
  int metrics_port() const { return metrics_ == nullptr ? 0 : metrics_->port(); }
  grpc::Server* server() { return server_.get(); }

  // Sets the gRPC health service's status (every service) and GET /healthz (200 "ok" or 503 with
  // `reason`): a process that can no longer do its work (a coordinator whose store failed) says
  // NOT_SERVING so that probes restart it. No-op after Shutdown. Thread-safe, never blocks on
  // calls.
  void SetServing(bool serving, const std::string& reason = "");

  // Marks the health service NOT_SERVING, stops accepting calls, lets in-flight calls finish for
  // up to `grace`, then cancels the rest. Blocks until done. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  class UnimplementedGenericService;
  GrpcServer() = default;

  void WarnInsecureLoop();

  std::unique_ptr<UnimplementedGenericService> unknown_methods_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::MetricsHttpServer> metrics_;
  int port_ = 0;
  std::string address_;
  // Orders SetServing against Shutdown.
  absl::Mutex serving_mu_;
  bool shut_down_ ABSL_GUARDED_BY(serving_mu_) = false;
  absl::Notification stop_warning_;
  std::thread insecure_warning_;  // Runs while an insecure server serves.
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread created after it, so that
// WaitForTerminationSignal can receive them, and ignores SIGPIPE (a write to a peer that went
// away fails with EPIPE instead of ending the process). Call first in main.
void BlockTerminationSignals();
// Blocks until SIGTERM or SIGINT arrives; returns the signal number.
int WaitForTerminationSignal();

// "host:port" helpers: a listen address with an unspecified host as a dialable local address.
std::string DialableAddress(const std::string& listen_address, int port);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_SERVER_H_
