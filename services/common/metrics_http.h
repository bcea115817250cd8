// HTTP endpoint for Prometheus scrapes: GET /metrics serves a Registry in text format 0.0.4,
// GET /healthz answers 200 "ok", or 503 with the reason once SetHealthy(false) (the probe of
// Kubernetes' liveness and readiness checks). Backed by civetweb with a small thread pool.
//
// Thread-safe; the registry must outlive the server. Destruction stops the server and waits for
// in-flight requests.
#ifndef TECL_SERVICES_COMMON_METRICS_HTTP_H_
#define TECL_SERVICES_COMMON_METRICS_HTTP_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/common/metrics.h"

struct mg_context;
struct mg_connection;

namespace tecl::metrics {

class MetricsHttpServer {
 public:
  // Binds `address` ("host:port"; port 0 picks a free port). Returns UNAVAILABLE when the address
  // cannot be bound, INVALID_ARGUMENT when it is malformed.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const Registry* registry);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // What GET /healthz answers from now on. Thread-safe.
  void SetHealthy(bool healthy, const std::string& reason);

  int port() const { return port_; }
  // "host:port" with the bound port.
  const std::string& address() const { return address_; }

 private:
  explicit MetricsHttpServer(const Registry* registry) : registry_(registry) {}
  static int HandleMetrics(mg_connection* connection, void* self);
  static int HandleHealth(mg_connection* connection, void* self);

  const Registry* registry_;
  absl::Mutex health_mu_;
  bool healthy_ ABSL_GUARDED_BY(health_mu_) = true;
  std::string unhealthy_reason_ ABSL_GUARDED_BY(health_mu_);
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::string address_;
};

}  // namespace tecl::metrics

#endif  // TECL_SERVICES_COMMON_METRICS_HTTP_H_
