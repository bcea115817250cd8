// CheckpointRegistry: the checkpoints each job's rank 0 registered, where a job's checkpoints go,
// and what an assignment resumes from. RegisterCheckpoint (MembershipService) enters here.
//
// A checkpoint is registered only once it is completely written, by rank 0 of the job's running
// attempt, for a step within the job's schedule, with the SHA-256 of its payload. Assignments
// carry the job's checkpoints newest first; a rank that finds one missing or not matching its
// digest rejects it (RejectCheckpoint), and it is never offered again: the job's
// latest_checkpoint is always its newest checkpoint not rejected. An evaluation resumes from its
// source job's newest checkpoint (or the file its spec names).
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
  // NOT_FOUND: unknown worker or job; PERMISSION_DENIED: `session` is not the worker's, or the
  // worker was not rank 0 of the checkpoint's attempt; ABORTED: that attempt is no longer the
  // running one; INVALID_ARGUMENT: empty path, or a step outside [0, schedule.total_steps].
  void Register(const tecl::v1::RegisterCheckpointRequest& request, const std::string& session,
                StatusCallback done);
  // Marks a checkpoint unusable (a "checkpoint_rejected" event) and moves the job's newest
  // checkpoint back. NOT_FOUND: unknown worker, job or checkpoint; PERMISSION_DENIED: `session` is
  // not the worker's or the worker was not placed in that attempt; ABORTED: the attempt is no
  // longer the running one.
  void Reject(const tecl::v1::RejectCheckpointRequest& request, const std::string& session,
              StatusCallback done);

  // ---- Under the host's lock ----
  // The folder rank 0 of `job` writes its checkpoints to.
  std::string DirFor(const tecl::v1::Job& job) const;
  // What an assignment of `job` may resume from, newest first: a pretraining job's checkpoints not
  // rejected; an evaluation's source job's, or the file its spec names. Empty: from scratch.
  std::vector<tecl::v1::Checkpoint> ResumeCandidates(const tecl::v1::Job& job) const;
  // The checkpoints of a job read from the store, and the rejections among its events (start-up).
  void Restore(const std::string& job_id, std::vector<tecl::v1::Checkpoint> checkpoints,
               const std::vector<tecl::v1::JobEvent>& events);

 private:
  const CheckpointRegistryOptions options_;
  StateHost* const host_;
  JobRegistry* const jobs_;
  Membership* const membership_;

  struct Registered {
    tecl::v1::Checkpoint checkpoint;
    bool rejected = false;
  };
  // The job's checkpoints not rejected, newest first (by step, then attempt).
  std::vector<tecl::v1::Checkpoint> Usable(const std::string& job_id) const;
  // Sets the job's latest_checkpoint to its newest usable one (cleared when none).
  void UpdateLatest(JobRecord& record, Change& change);

  // Guarded by host_->mu(): by job id, in registration order.
  std::map<std::string, std::vector<Registered>> checkpoints_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_MANAGER_CHECKPOINT_REGISTRY_H_
