#include "services/common/metrics_http.h"

#include <civetweb.h>

#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/logging.h"

namespace tecl::metrics {
namespace {

void InitCivetwebOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

int LogCivetweb(const mg_connection*, const char* message) {
  TECL_LOG(WARNING) << "metrics http: " << message;
  return 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, const Registry* registry) {
  const size_t colon = address.rfind(':');
  int requested_port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &requested_port) ||
      requested_port < 0 || requested_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address \"", address, "\": expected host:port, e.g. 0.0.0.0:9090"));
  }
  InitCivetwebOnce();
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(registry));
  const char* options[] = {"listening_ports", address.c_str(), "num_threads", "2",
                           "request_timeout_ms", "10000", nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = &LogCivetweb;
  server->context_ = mg_start(&callbacks, nullptr, options);
  if (server->context_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", address, " (address in use or not local?)"));
  }
  mg_set_request_handler(server->context_, "/metrics", &MetricsHttpServer::HandleMetrics,
                         server.get());
  mg_set_request_handler(server->context_, "/healthz", &MetricsHttpServer::HandleHealth,
                         server.get());
  mg_server_port ports[4];
  const int n = mg_get_server_ports(server->context_, 4, ports);
  if (n < 1) return absl::InternalError("metrics: civetweb reported no listening port");
  server->port_ = ports[0].port;
  server->address_ = absl::StrCat(address.substr(0, colon), ":", server->port_);
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (context_ != nullptr) mg_stop(context_);
}

int MetricsHttpServer::HandleMetrics(mg_connection* connection, void* self) {
  // Header and body in one heap buffer, written with mg_write: civetweb's handler threads have a
  // small stack, and in processes with a large static TLS (LibTorch) mg_printf's stack buffer
  // overflows it.
  std::string response = static_cast<MetricsHttpServer*>(self)->registry_->Serialize();
  response.insert(0, absl::StrCat(
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                         "charset=utf-8\r\nContent-Length: ",
                         response.size(), "\r\nConnection: close\r\n\r\n"));
  mg_write(connection, response.data(), response.size());
  return 200;
}

void MetricsHttpServer::SetHealthy(bool healthy, const std::string& reason) {
  absl::MutexLock lock(&health_mu_);
  healthy_ = healthy;
  unhealthy_reason_ = healthy ? "" : reason;
}

int MetricsHttpServer::HandleHealth(mg_connection* connection, void* self) {
  auto* server = static_cast<MetricsHttpServer*>(self);
  std::string body = "ok\n";
  bool healthy = true;
  {
    absl::MutexLock lock(&server->health_mu_);
    if (!server->healthy_) {
      healthy = false;
      body = absl::StrCat("not serving: ", server->unhealthy_reason_, "\n");
    }
  }
  // One heap buffer and mg_write, as in HandleMetrics.
  const std::string response = absl::StrCat(
      healthy ? "HTTP/1.1 200 OK" : "HTTP/1.1 503 Service Unavailable",
      "\r\nContent-Type: text/plain\r\nContent-Length: ", body.size(),
      "\r\nConnection: close\r\n\r\n", body);
  mg_write(connection, response.data(), response.size());
  return healthy ? 200 : 503;
}

}  // namespace tecl::metrics
