// CheckpointRegistry: the checkpoints each job's rank 0 registered, where a job's checkpoints go,
// and what an assignment resumes from. RegisterCheckpoint (MembershipService) enters here.
//
// A checkpoint is registered only once it is completely written, by a worker of the job's running
// attempt, for a step within the job's schedule; the newest one is the job's latest_checkpoint and
// the next attempt resumes from it. An evaluation resumes from its source job's newest checkpoint
// (or the file its spec names).
//
// Thread-safety: Register is thread-safe; methods marked "under the host's lock" must be called
// from a StateHost::Mutate change. The host, the job registry and the membership must outlive it.
#ifndef TECL_SERVICES_COORDINATOR_MANAGER_CHECKPOINT_REGISTRY_H_
#define TECL_SERVICES_COORDINATOR_MANAGER_CHECKPOINT_REGISTRY_H_

#include <map>
#include <string>
#include <vector>

#include "services/coordinator/manager/job_registry.h"
#include "services/coordinator/manager/membership.h"
#include "services/coordinator/manager/state_host.h"
#include "tecl/v1/coordinator.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

struct CheckpointRegistryOptions {
  // Checkpoints of jobs without checkpoint.dir go to <checkpoint_root>/<job id> (CoordinatorServer:
  // <state_dir>/checkpoints).
  std::string checkpoint_root;
};

class CheckpointRegistry {
 public:
  CheckpointRegistry(CheckpointRegistryOptions options, StateHost* host, JobRegistry* jobs,
                     Membership* membership);

  // ---- Entry point ----
  // Records a completely written checkpoint; a retry of a recorded one is acknowledged again.
  // NOT_FOUND: unknown worker or job; ABORTED: not from a worker of the job's running attempt;
  // INVALID_ARGUMENT: empty path, or a step outside [0, schedule.total_steps].
  void Register(const tecl::v1::RegisterCheckpointRequest& request, StatusCallback done);

  // ---- Under the host's lock ----
  // The folder rank 0 of `job` writes its checkpoints to.
  std::string DirFor(const tecl::v1::Job& job) const;
  // What an assignment of `job` resumes from (an empty path: from scratch).
  tecl::v1::Checkpoint ResumeFrom(const tecl::v1::Job& job) const;
  // The checkpoints of a job read from the store (start-up).
  void Restore(const std::string& job_id, std::vector<tecl::v1::Checkpoint> checkpoints);

 private:
  const CheckpointRegistryOptions options_;
  StateHost* const host_;
  JobRegistry* const jobs_;
  Membership* const membership_;

  // Guarded by host_->mu(): by job id, in registration order.
  std::map<std::string, std::vector<tecl::v1::Checkpoint>> checkpoints_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_MANAGER_CHECKPOINT_REGISTRY_H_
