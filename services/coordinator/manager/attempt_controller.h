// AttemptController: a job's attempts, from placement to their end. It places waiting jobs on
// free workers (gang_scheduler.h), starts attempts (assigns ranks, opens the rendezvous scope),
// turns heartbeats into the RUNNING state and progress, ends attempts on outcomes, cancels and
// failures, and recovers: a rank that is lost, fails, or stops unasked ends the attempt; the job
// goes RECOVERING with the next attempt number and is placed again, resuming from its newest
// checkpoint, until restart.max_restarts recoveries; OUTCOME_FATAL fails it at once.
// A lost dataloader is not a lost rank: it leaves its rank's placement (the rank streams from its
// other loaders), a free dataloader is placed in its stead when there is one, and the trainer
// hears of each new list in its heartbeat responses; only a rank left without a dataloader ends
// the attempt. docs/coordinator.md has the whole protocol.
//
// Prepare jobs (kind: prepare, docs/prepare.md) run on dataloaders alone: each attempt's ranks
// are the free dataloaders up to resources.dataloaders (at least one), rank r transcoding shard r
// of world_size. Their ranks are run, stopped, lost and recovered like trainers' (a lost loader
// ends the attempt; the next one, on the loaders free then, finds the finished videos done and
// redoes the rest). The job's progress is the sum of its ranks'; it succeeds when a rank reports
// success having written the data set files (it found every shard's videos done), or when every
// rank of the attempt succeeded (then without the files, a failure of the attempt).
//
// CancelJob and ReportOutcome (JobService, MembershipService) enter here; Membership calls it
// back through Membership::Listener, JobRegistry through its created hook.
//
// Thread-safety: the entry points are thread-safe; the rest runs under the host's lock (from a
// StateHost::Mutate change). Everything it is given must outlive it.
#ifndef TECL_SERVICES_COORDINATOR_MANAGER_ATTEMPT_CONTROLLER_H_
#define TECL_SERVICES_COORDINATOR_MANAGER_ATTEMPT_CONTROLLER_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "services/common/metrics.h"
#include "services/coordinator/manager/checkpoint_registry.h"
#include "services/coordinator/manager/job_registry.h"
#include "services/coordinator/manager/membership.h"
#include "services/coordinator/manager/state_host.h"
#include "services/coordinator/rendezvous/rendezvous.h"
#include "services/coordinator/scheduler/gang_scheduler.h"
#include "services/coordinator/store/job_store.h"
#include "tecl/v1/coordinator.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

struct AttemptControllerOptions {
  // The address trainers reach the rendezvous at (Assignment.coordinator_address).
  std::string coordinator_address;
  SchedulerOptions scheduler;
};

class AttemptController final : public Membership::Listener {
 public:
  // `rendezvous` may be null (no process groups: tests of the rest).
  AttemptController(AttemptControllerOptions options, StateHost* host, JobRegistry* jobs,
                    Membership* membership, CheckpointRegistry* checkpoints,
                    Rendezvous* rendezvous, metrics::Registry* registry);

  // ---- Entry points ----
  // Moves the job to CANCELLED (durably) and tells its workers to stop. NOT_FOUND;
  // FAILED_PRECONDITION when the job already finished.
  void Cancel(const std::string& job_id, const std::string& reason,
              Callback<tecl::v1::Job> done);
  // A rank's end of an attempt; its worker is freed. Recorded as an "outcome" event of the
  // reported attempt with the rank's step, current or not. NOT_FOUND: unknown worker or job;
  // PERMISSION_DENIED: `session` is not the worker's, or the worker was not placed as that rank of
  // that attempt; ABORTED: not the job's current attempt (ignored otherwise).
  void ReportOutcome(const tecl::v1::ReportOutcomeRequest& request, const std::string& session,
                     StatusCallback done);
  // The rendezvous address given to trainers (when known only after binding).
  void SetCoordinatorAddress(const std::string& address);

  // ---- Under the host's lock ----
  // Places waiting jobs whose gang fits the free workers.
  void Schedule(Change& change);
  // Rebuilds what it keeps of a job read from the store (start-up), and its rendezvous scope.
  void RestoreJob(const JobRecord& record);
  // The phase of a worker read from the store, from what its attempt became: a trainer of an
  // ended attempt is STOPPING (`stop_reason` says why), a dataloader of one is IDLE.
  WorkerPhase RestoredPhase(const tecl::v1::WorkerInfo& info, std::string* stop_reason) const;
  // The job exists (JobRegistry's created hook): rendezvous calls for it get ABORTED, not
  // NOT_FOUND, until an attempt opens.
  void OnJobCreated(const tecl::v1::Job& job);

  // ---- Membership::Listener ----
  tecl::v1::Assignment AssignmentFor(const WorkerRecord& worker) override;
  void OnRunning(const WorkerRecord& worker, const tecl::v1::HeartbeatRequest& request,
                 tecl::v1::HeartbeatResponse* response, Change& change) override;
  void OnAssignmentDropped(const std::string& description, const std::string& job_id, int attempt,
                           int rank, Change& change) override;
  void OnWorkerLost(const LostWorker& lost, Change& change) override;
  bool RunsAssignment(const WorkerRecord& worker) override;

 private:
  // What is known of a job's current attempt besides its record.
  struct Attempts {
    std::set<int> running_ranks;  // Ranks of the current attempt that reported RUNNING.
    int bypassed = 0;             // Times a later job started while it waited (scheduler).
    // Prepare jobs: each rank's latest progress and the ranks that finished their shard.
    std::map<int, tecl::v1::JobProgress> rank_progress;
    std::set<int> succeeded_ranks;
  };

  static bool IsPrepare(const tecl::v1::Job& job) {
    return job.spec().kind() == tecl::v1::JOB_KIND_PREPARE;
  }
  // A prepare job's progress: the sum of its ranks' (videos, bytes, rates) into the job's.
  void SumPrepareProgress(JobRecord& record, Change& change);
  // A prepare rank finished its shard (ApplyOutcome of OUTCOME_SUCCEEDED).
  void PrepareRankSucceeded(JobRecord& record, const tecl::v1::ReportOutcomeRequest& request,
                            Change& change);
  // SCHEDULED -> RUNNING once every rank of the attempt reported running (or, prepare, finished).
  void MaybeRunning(JobRecord& record, Change& change);

  // Ends the current attempt of an active job: its trainers are told to stop, its dataloaders
  // freed, its rendezvous scope closed, its row closed with `end_state`.
  void EndAttempt(JobRecord& record, tecl::v1::JobState end_state, const std::string& reason,
                  Change& change);
  // A recoverable failure of the current attempt: RECOVERING, or FAILED without restarts left.
  void FailAttempt(JobRecord& record, const std::string& reason, Change& change);
  // Ends the job in a terminal state.
  void Finish(JobRecord& record, tecl::v1::JobState state, const std::string& reason,
              Change& change);
  void StartAttempt(JobRecord& record, const Placement& placement, Change& change);
  // A lost dataloader of the current attempt leaves its rank's placement; a rank left with none
  // fails the attempt.
  void DropDataloader(JobRecord& record, const LostWorker& lost, Change& change);
  // Places free dataloaders (taken from `free`) in the ranks of running attempts that lost some.
  void ReplaceDataloaders(std::vector<WorkerSlot>* free, Change& change);
  // The rank's dataloaders changed: a new version, the attempt's row and the job's rewritten.
  void PlacementChanged(JobRecord& record, tecl::v1::RankAssignment& rank, Change& change);
  // The addresses of the rank's dataloaders, in stream order.
  std::vector<std::string> DataloaderAddresses(const tecl::v1::RankAssignment& rank);
  // Fails evaluation jobs whose source job ended without a checkpoint; whether `record` may be
  // placed now.
  bool ReadyToPlace(JobRecord& record, Change& change);
  // The attempt's outcome on the job, for a report of its current attempt.
  absl::Status ApplyOutcome(JobRecord& record, const tecl::v1::ReportOutcomeRequest& request,
                            const std::string& who, Change& change);

  const AttemptControllerOptions options_;
  StateHost* const host_;
  JobRegistry* const jobs_;
  Membership* const membership_;
  CheckpointRegistry* const checkpoints_;
  Rendezvous* const rendezvous_;

  // Guarded by host_->mu().
  std::map<std::string, Attempts> attempts_;
  std::string coordinator_address_;
  // Active jobs with a rank short of its dataloaders_per_trainer (a loader was lost).
  std::set<std::string> short_of_dataloaders_;

  metrics::Counter* restarts_ = nullptr;
  metrics::Counter* dataloaders_dropped_ = nullptr;
  metrics::Counter* dataloaders_replaced_ = nullptr;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_MANAGER_ATTEMPT_CONTROLLER_H_
