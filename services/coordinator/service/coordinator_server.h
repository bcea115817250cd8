// CoordinatorServer: a running coordinator (the store, the logic, the rendezvous, the three gRPC
// services, the background thread), built from a CoordinatorConfig. tecl-coordinator's main and
// the tests start it the same way.
//
//   auto server = CoordinatorServer::Start(config);
//   ... (*server)->address() ...
//   (*server)->Shutdown(absl::Seconds(10));
//
// The state folder holds coordinator.db (SQLite, WAL) and checkpoints/ (the default checkpoint
// root). Once a store write fails the coordinator refuses changes (StateHost) and reports it: the
// gRPC health service and GET /healthz say NOT_SERVING (so Kubernetes restarts it from the
// file), tecl_coordinator_store_healthy drops to 0, and the error is logged.
// Thread-safe; Shutdown is idempotent and the destructor calls it.
#ifndef TECL_SERVICES_COORDINATOR_SERVICE_COORDINATOR_SERVER_H_
#define TECL_SERVICES_COORDINATOR_SERVICE_COORDINATOR_SERVER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/common/metrics.h"
#include "services/common/server.h"
#include "services/coordinator/manager/coordinator.h"
#include "services/coordinator/rendezvous/rendezvous.h"
#include "services/coordinator/service/job_service.h"
#include "services/coordinator/service/membership_service.h"
#include "services/coordinator/service/rendezvous_service.h"
#include "services/coordinator/store/sqlite_job_store.h"

namespace tecl::coordinator {

// Everything a coordinator is configured with, each part declared once by its component (the
// flags of tecl-coordinator take their defaults from these structs).
struct CoordinatorConfig {
  // gRPC and /metrics listen addresses, TLS files, accepted tokens, --insecure (a coordinator
  // without credentials does not start unless insecure).
  ServerOptions server;
  // Folder of coordinator.db and of the default checkpoint root (checkpoints/); created when
  // missing.
  std::string state_dir = "./tecl-state";
  // The logic: spec limits, heartbeats, checkpoint root (empty = <state_dir>/checkpoints), the
  // rendezvous address given to trainers (empty = the dialable listen address), scheduling. A
  // coordinator checks that the dataset paths of a spec exist on its machine unless told not to.
  CoordinatorOptions coordinator = [] {
    CoordinatorOptions options;
    options.jobs.limits.check_paths_exist = true;
    return options;
  }();
  // The SQLite store: group commit size, lock wait.
  SqliteJobStoreOptions store;
  RendezvousOptions rendezvous;
  // Per-field request limits checked by the service adapters.
  RequestLimits requests;
  // How often timeouts and scheduling run.
  absl::Duration tick_interval = absl::Milliseconds(100);

  // INVALID_ARGUMENT naming the bad flag.
  absl::Status Validate() const;
};

class CoordinatorServer {
 public:
  // Opens the store, restores the state and starts serving. Errors name what failed (the state
  // folder, the address). `store` replaces the SQLite store of the state folder (tests: a store
  // that fails); it must outlive the server.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      CoordinatorConfig config, const Clock* clock = RealClock::Get(), JobStore* store = nullptr);
  ~CoordinatorServer();

  // Stops scheduling, ends rendezvous waits, drains calls for up to `grace`, closes the store.
  void Shutdown(absl::Duration grace);

  int port() const { return grpc_->port(); }
  // Dialable host:port.
  std::string address() const { return grpc_->local_address(); }
  int metrics_port() const { return grpc_->metrics_port(); }
  Coordinator* coordinator() { return coordinator_.get(); }
  metrics::Registry& registry() { return registry_; }

 private:
  CoordinatorServer() = default;
  void BackgroundLoop();
  // The store failed: health NOT_SERVING, the gauge, the log line. Runs once.
  void OnStoreFailure(const absl::Status& error);

  metrics::Registry registry_;
  metrics::Gauge* store_healthy_ = nullptr;
  std::unique_ptr<SqliteJobStore> store_;  // Null when Start was given a store.
  std::unique_ptr<Rendezvous> rendezvous_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<JobService> job_service_;
  std::unique_ptr<MembershipService> membership_service_;
  std::unique_ptr<RendezvousService> rendezvous_service_;
  std::unique_ptr<GrpcServer> grpc_;
  absl::Duration tick_interval_;
  absl::Notification stop_;
  std::thread background_;
  bool shut_down_ = false;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SERVICE_COORDINATOR_SERVER_H_
