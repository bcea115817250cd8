// CoordinatorServer: a running coordinator (the store, the logic, the rendezvous, the gRPC
// server, the background thread), built from a CoordinatorConfig. tecl-coordinator's main and the
// tests start it the same way.
//
//   auto server = CoordinatorServer::Start(config);
//   ... (*server)->address() ...
//   (*server)->Shutdown(absl::Seconds(10));
//
// The state folder holds coordinator.db (SQLite, WAL) and checkpoints/ (the default checkpoint
// root). Thread-safe; Shutdown is idempotent and the destructor calls it.
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
#include "services/common/auth.h"
#include "services/common/clock.h"
#include "services/common/metrics.h"
#include "services/common/server.h"
#include "services/coordinator/rendezvous/rendezvous.h"
#include "services/coordinator/scheduler/job_manager.h"
#include "services/coordinator/service/coordinator_service.h"
#include "services/coordinator/store/sqlite_job_store.h"

namespace tecl::coordinator {

struct CoordinatorConfig {
  // gRPC and /metrics listen addresses, TLS files (ServerOptions).
  ServerOptions server;
  // Bearer tokens accepted on every rpc (empty = authentication off).
  std::vector<std::string> tokens;
  // Folder of coordinator.db and the default checkpoint root; created when missing.
  std::string state_dir = "./tecl-state";
  // Address trainers are given for the rendezvous; empty = the dialable listen address.
  std::string advertise_address;
  // Heartbeat interval told to workers, and the silence after which an idle worker is lost.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration heartbeat_timeout = absl::Seconds(30);
  // Largest gang (resources.trainers) a job may ask for.
  int max_trainers = 64;
  // When non-empty, dataset paths must lie under one of these folders.
  std::vector<std::string> data_roots;
  // Refuse specs whose dataset paths do not exist on this machine (turn off when the coordinator
  // does not mount the data).
  bool check_dataset_paths = true;
  // Scheduler: bypasses a blocked job tolerates (see gang_scheduler.h).
  int max_bypasses = 8;
  // Most write batches committed in one transaction (group commit); 1 = one fsync per batch.
  int store_max_group = 4096;
  // How often timeouts and scheduling run.
  absl::Duration tick_interval = absl::Milliseconds(100);
  // Where rank 0's progress is written at most this often.
  absl::Duration progress_persist_interval = absl::Seconds(5);

  // INVALID_ARGUMENT naming the bad field.
  absl::Status Validate() const;
};

class CoordinatorServer {
 public:
  // Opens the store, restores the state and starts serving. Errors name what failed (the state
  // folder, the address).
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      CoordinatorConfig config, const Clock* clock = RealClock::Get());
  ~CoordinatorServer();

  // Stops scheduling, ends rendezvous waits, drains calls for up to `grace`, closes the store.
  void Shutdown(absl::Duration grace);

  int port() const { return grpc_->port(); }
  // Dialable host:port.
  std::string address() const { return grpc_->local_address(); }
  int metrics_port() const { return grpc_->metrics_port(); }
  JobManager* manager() { return manager_.get(); }
  metrics::Registry& registry() { return registry_; }

 private:
  CoordinatorServer() = default;
  void BackgroundLoop();

  metrics::Registry registry_;
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<Rendezvous> rendezvous_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<GrpcServer> grpc_;
  absl::Duration tick_interval_;
  absl::Notification stop_;
  std::thread background_;
  bool shut_down_ = false;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SERVICE_COORDINATOR_SERVER_H_
