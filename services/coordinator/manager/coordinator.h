// Coordinator: the coordinator's logic assembled from its domains, on one StateHost:
//
//   JobRegistry         jobs, their state machine and events        (JobService)
//   Membership          workers, their state machine, heartbeats   (MembershipService)
//   CheckpointRegistry  registered checkpoints, what attempts resume from
//   AttemptController   placement, attempts, outcomes, recovery, cancel
//   JobLogs             the trainers' log tails, filled from heartbeats (state/job_logs.h)
//
// It owns them, rebuilds their state from the store at start-up (Restore) and runs the periodic
// work (Tick: heartbeat timeouts, progress persistence, scheduling). No gRPC types: the service
// adapters (services/coordinator/service/) call the managers directly.
//
// Time comes from the injected Clock; the server calls Tick from a background thread, tests call
// it after advancing a FakeClock.
//
// Thread-safety: thread-safe. The store, the clock, the rendezvous and the metrics registry must
// outlive it.
#ifndef TECL_SERVICES_COORDINATOR_MANAGER_COORDINATOR_H_
#define TECL_SERVICES_COORDINATOR_MANAGER_COORDINATOR_H_

#include "absl/status/status.h"
#include "services/common/clock.h"
#include "services/common/metrics.h"
#include "services/coordinator/manager/attempt_controller.h"
#include "services/coordinator/manager/checkpoint_registry.h"
#include "services/coordinator/manager/job_registry.h"
#include "services/coordinator/manager/membership.h"
#include "services/coordinator/manager/state_host.h"
#include "services/coordinator/rendezvous/rendezvous.h"
#include "services/coordinator/store/job_store.h"

namespace tecl::coordinator {

struct CoordinatorOptions {
  JobRegistryOptions jobs;                // Spec limits, progress persistence.
  MembershipOptions membership;           // Heartbeat interval and timeout, lost worker retention.
  CheckpointRegistryOptions checkpoints;  // The default checkpoint root.
  AttemptControllerOptions attempts;      // Rendezvous address, scheduling policy.
  JobLogsOptions logs;                    // Bounds of the jobs' log tails.
};

class Coordinator {
 public:
  // `rendezvous` and `registry` may be null.
  Coordinator(CoordinatorOptions options, JobStore* store, const Clock* clock,
              Rendezvous* rendezvous, metrics::Registry* registry);

  // Rebuilds the state from the store (at start-up, before serving). Workers that were
  // registered get a full heartbeat timeout to show up again, and no new work until they do;
  // jobs keep their states. Errors: the store's (DATA_LOSS for an unreadable record).
  absl::Status Restore();
  // Heartbeat timeouts, progress persistence, scheduling when something changed.
  void Tick();
  // Whether something happened that scheduling should look at (Tick clears it).
  bool NeedsScheduling() const { return host_.scheduling_requested(); }

  StateHost& host() { return host_; }
  JobRegistry& jobs() { return jobs_; }
  Membership& membership() { return membership_; }
  CheckpointRegistry& checkpoints() { return checkpoints_; }
  AttemptController& attempts() { return attempts_; }
  // Trainers' log lines by job (filled by Membership from heartbeats).
  const JobLogs& logs() const { return logs_; }
  // The page of a job's log tail `request` asks for (its fields checked by the caller).
  // NOT_FOUND: no such job.
  absl::StatusOr<tecl::v1::GetJobLogsResponse> GetJobLogs(
      const tecl::v1::GetJobLogsRequest& request) const;
  // The store's first write failure (OK while healthy); changes are refused after one.
  absl::Status store_error() const { return host_.store_error(); }

 private:
  JobStore* const store_;
  JobLogs logs_;  // Before membership_, which writes to it.
  StateHost host_;
  JobRegistry jobs_;
  Membership membership_;
  CheckpointRegistry checkpoints_;
  AttemptController attempts_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_MANAGER_COORDINATOR_H_
