// CoordinatorRegistration: makes this dataloader known to the coordinator (RegisterWorker, kind
// DATALOADER, with its address) and keeps it alive with heartbeats from a background thread.
//
// Failures are never fatal: an unreachable coordinator is retried with exponential backoff
// (logged once per failure streak, then on every tenth attempt), a coordinator that no longer
// knows this worker (NOT_FOUND, e.g. it was declared lost or the coordinator lost its state) gets
// a new registration. The dataloader serves streams all the while.
//
// Metrics: tecl_dataloader_registered (1 while registered), tecl_dataloader_heartbeat_failures_total.
//
// Thread-safe. Owns its thread; Stop() (or the destructor) joins it.
#ifndef TECL_SERVICES_DATALOADER_SERVICE_COORDINATOR_REGISTRATION_H_
#define TECL_SERVICES_DATALOADER_SERVICE_COORDINATOR_REGISTRATION_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/metrics.h"
#include "tecl/v1/coordinator.grpc.pb.h"

namespace tecl::dataloader {

struct RegistrationOptions {
  tecl::v1::WorkerInfo worker;           // kind, address, metrics address, host name, threads.
  std::string coordinator_address;       // For log lines.
  absl::Duration default_heartbeat_interval = absl::Seconds(1);  // Until the coordinator says.
  absl::Duration initial_backoff = absl::Milliseconds(200);       // Doubles up to max_backoff.
  absl::Duration max_backoff = absl::Seconds(10);
  absl::Duration rpc_timeout = absl::Seconds(5);
};

class CoordinatorRegistration {
 public:
  CoordinatorRegistration(RegistrationOptions options,
                          std::shared_ptr<tecl::v1::Coordinator::StubInterface> coordinator,
                          metrics::Registry* registry);
  ~CoordinatorRegistration();
  CoordinatorRegistration(const CoordinatorRegistration&) = delete;
  CoordinatorRegistration& operator=(const CoordinatorRegistration&) = delete;

  // Starts the background thread. Never blocks.
  void Start();
  // Stops heartbeating and joins the thread (waits at most one rpc timeout). Idempotent.
  void Stop();

  // The id of the current registration; empty while not registered.
  std::string worker_id() const;
  // Blocks until registered or `timeout` passes; returns whether registered.
  bool WaitUntilRegistered(absl::Duration timeout) const;

 private:
  void Loop();
  absl::Status Register();
  // One heartbeat; NOT_FOUND clears the registration.
  absl::Status Heartbeat();
  // Waits `duration` or until Stop(); returns false when stopping.
  bool Sleep(absl::Duration duration);

  const RegistrationOptions options_;
  const std::shared_ptr<tecl::v1::Coordinator::StubInterface> coordinator_;
  metrics::Gauge& registered_gauge_;
  metrics::Counter& failures_;

  mutable absl::Mutex mu_;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  absl::Duration interval_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_SERVICE_COORDINATOR_REGISTRATION_H_
