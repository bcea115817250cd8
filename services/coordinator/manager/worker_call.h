// The prelude of a worker's call about a job (outcomes, checkpoints): the caller's session must
// be the worker's (Membership::Authenticate), and the job must exist. Run under the StateHost
// mutation that handles the call.
#ifndef TECL_SERVICES_COORDINATOR_MANAGER_WORKER_CALL_H_
#define TECL_SERVICES_COORDINATOR_MANAGER_WORKER_CALL_H_

#include <string>

#include "absl/status/statusor.h"
#include "services/coordinator/manager/job_registry.h"
#include "services/coordinator/manager/membership.h"

namespace tecl::coordinator {

struct WorkerCall {
  WorkerRecord* worker;
  JobRecord* job;
};

// PERMISSION_DENIED / NOT_FOUND from Authenticate; NOT_FOUND for an unknown job.
inline absl::StatusOr<WorkerCall> BeginWorkerCall(Membership& membership, JobRegistry& jobs,
                                                  const std::string& worker_id,
                                                  const std::string& session,
                                                  const std::string& job_id) {
  absl::StatusOr<WorkerRecord*> worker = membership.Authenticate(worker_id, session);
  if (!worker.ok()) return worker.status();
  absl::StatusOr<JobRecord*> job = jobs.FindOrNotFound(job_id);
  if (!job.ok()) return job.status();
  return WorkerCall{*worker, *job};
}

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_MANAGER_WORKER_CALL_H_
