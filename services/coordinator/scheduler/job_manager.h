// JobManager: the coordinator's logic. Jobs and their state machine, worker membership,
// gang scheduling, failure detection and recovery, progress. No gRPC types: the service adapter
// (services/coordinator/service/) decodes requests, calls these methods and encodes the results.
//
// State lives in memory (every job, its events and attempts; every worker) and in a JobStore.
// Every change is made under one mutex, and the store batch recording it is handed to the store
// under that same mutex, so the store sees changes in the order they happened. Replies that
// acknowledge a change (a submitted job, a cancel, a worker id, an assignment delivered in a
// heartbeat) are passed to their callback only after the store made that change durable, so a
// client never learns of state that a crash could take back. Reads (GetJob, ListJobs, ...) are
// served from memory.
//
// Time comes from the injected Clock. Tick() does the periodic work (heartbeat timeouts,
// scheduling, progress persistence, forgetting long-lost workers); the service calls it from a
// background thread, tests call it after advancing a FakeClock.
//
// Scheduling: see gang_scheduler.h. Recovery: a rank that is lost (heartbeat timeout) or reports
// OUTCOME_FAILED/STOPPED ends the attempt: its ranks are told to stop, its dataloaders are freed,
// the job goes RECOVERING with the reason and the next attempt number, and is placed again like a
// pending job, resuming from its newest registered checkpoint; after restart.max_restarts
// recoveries it goes FAILED. OUTCOME_FATAL fails the job at once. docs/coordinator.md has the
// whole protocol.
//
// Thread-safety: every method is thread-safe. Callbacks run on the store's thread or inline; they
// must not call back into the JobManager. Watcher callbacks run without the JobManager's lock
// held and may call its read methods.
#ifndef TECL_SERVICES_COORDINATOR_SCHEDULER_JOB_MANAGER_H_
#define TECL_SERVICES_COORDINATOR_SCHEDULER_JOB_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/common/metrics.h"
#include "services/coordinator/rendezvous/rendezvous.h"
#include "services/coordinator/scheduler/gang_scheduler.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/coordinator/store/job_store.h"
#include "tecl/v1/coordinator.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

struct JobManagerOptions {
  // Checkpoints of jobs without checkpoint.dir go to <checkpoint_root>/<job id>.
  std::string checkpoint_root = "/tmp/tecl/checkpoints";
  // The address trainers reach the rendezvous at (Assignment.coordinator_address).
  std::string coordinator_address;
  // Interval workers are told to heartbeat at.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // A worker not working on a job is lost after this much silence (busy workers use their job's
  // restart.heartbeat_timeout_s).
  absl::Duration heartbeat_timeout = absl::Seconds(30);
  // Rank 0's progress is written to the store at most this often (and on every state change).
  absl::Duration progress_persist_interval = absl::Seconds(5);
  // Lost workers are listed this long, then forgotten.
  absl::Duration lost_worker_retention = absl::Hours(1);
  SpecLimits limits;
  SchedulerOptions scheduler;
};

struct ListJobsResult {
  std::vector<tecl::v1::Job> jobs;
  std::string next_page_token;
};

class JobManager {
 public:
  template <typename T>
  using Callback = std::function<void(absl::StatusOr<T>)>;
  using StatusCallback = std::function<void(absl::Status)>;
  using WatchId = int64_t;

  // `store`, `clock` and `rendezvous` must outlive the manager; `registry` may be null.
  JobManager(JobManagerOptions options, JobStore* store, const Clock* clock, Rendezvous* rendezvous,
             metrics::Registry* registry);
  ~JobManager();

  // Rebuilds the in-memory state from the store (at start-up, before serving). Workers that were
  // registered get a full heartbeat timeout to show up again; jobs keep their state.
  absl::Status Restore();

  // ---- Jobs ----
  // Validates and stores a job in PENDING. INVALID_ARGUMENT (nothing stored) for a bad spec;
  // ALREADY_EXISTS when `request_id` was used for a different spec (the same spec returns the
  // stored job); UNAVAILABLE when the store failed.
  void SubmitJob(const tecl::v1::JobSpec& spec, const std::string& request_id,
                 Callback<tecl::v1::Job> done);
  absl::StatusOr<tecl::v1::Job> GetJob(const std::string& job_id) const;
  // Newest first. INVALID_ARGUMENT: page_size outside [0, 1000] or a bad page_token.
  absl::StatusOr<ListJobsResult> ListJobs(const std::vector<tecl::v1::JobState>& states,
                                          int page_size, const std::string& page_token) const;
  // NOT_FOUND; FAILED_PRECONDITION when the job already finished.
  void CancelJob(const std::string& job_id, const std::string& reason,
                 Callback<tecl::v1::Job> done);
  // Events with seq > after_seq, oldest first, at most `limit` (0 = all). NOT_FOUND.
  absl::StatusOr<std::vector<tecl::v1::JobEvent>> ListEvents(const std::string& job_id,
                                                             int64_t after_seq, int limit) const;

  // ---- Membership ----
  // INVALID_ARGUMENT: no kind, or a dataloader without an address.
  void RegisterWorker(const tecl::v1::WorkerInfo& worker,
                      Callback<tecl::v1::RegisterWorkerResponse> done);
  // NOT_FOUND: unknown or lost worker (register again).
  void Heartbeat(const tecl::v1::HeartbeatRequest& request,
                 Callback<tecl::v1::HeartbeatResponse> done);
  // NOT_FOUND: unknown worker or job; ABORTED: not the job's current attempt (ignored, but the
  // worker is freed).
  void ReportOutcome(const tecl::v1::ReportOutcomeRequest& request, StatusCallback done);
  // NOT_FOUND: unknown worker or job; ABORTED: stale attempt or the job is not running;
  // INVALID_ARGUMENT: empty path, negative step or one beyond schedule.total_steps.
  void RegisterCheckpoint(const tecl::v1::RegisterCheckpointRequest& request, StatusCallback done);
  // Unspecified kind = all; by id.
  std::vector<tecl::v1::WorkerInfo> ListWorkers(tecl::v1::WorkerKind kind) const;

  // ---- Background ----
  // Heartbeat timeouts, scheduling, progress persistence, forgetting lost workers.
  void Tick();
  // Whether something happened that scheduling should look at (Tick clears it).
  bool NeedsScheduling() const;

  // ---- Watching ----
  // `on_change` runs (without the manager's lock) after every change of the job: state,
  // progress, events. UNKNOWN ids are allowed (the watcher never fires).
  WatchId Watch(const std::string& job_id, std::function<void()> on_change);
  // After Unwatch returns, `on_change` is not running and will not run again.
  void Unwatch(WatchId id);

  // The address trainers are given for the rendezvous (when known only after binding).
  void SetCoordinatorAddress(const std::string& address);

  // The store's first write failure (OK while healthy). After one, the manager refuses changes.
  absl::Status store_error() const;

 private:
  struct JobEntry {
    tecl::v1::Job job;
    int64_t seq = 0;
    std::string request_id;
    std::vector<tecl::v1::JobEvent> events;
    std::vector<tecl::v1::JobAttempt> attempts;
    std::vector<tecl::v1::Checkpoint> checkpoints;
    int bypassed = 0;
    std::set<int> running_ranks;  // Ranks that reported RUNNING in the current attempt.
    absl::Time progress_written = absl::InfinitePast();
    bool progress_dirty = false;
  };
  struct WorkerEntry {
    tecl::v1::WorkerInfo info;
    absl::Time last_heartbeat;
    absl::Time lost_at;
    bool acknowledged = false;  // Heartbeats show it runs its assignment.
    bool stopping = false;      // Told to stop (job, attempt); busy until it acknowledges.
    // Known from the store after a coordinator restart and not heard from since: it may be gone,
    // so it gets no new work until its first heartbeat or registration.
    bool restored = false;
    std::string stop_reason;
  };
  // The changes one operation makes, turned into one store batch.
  struct Mutation {
    WriteBatch batch;
    std::set<std::string> jobs;     // Job rows to rewrite.
    std::set<std::string> workers;  // Worker rows to rewrite (or delete when gone).
  };

  // Hands `m` to the store; `done` gets the store's verdict once durable.
  void Commit(Mutation& m, StatusCallback done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckStore() const;

  JobEntry* FindJob(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddEvent(JobEntry& entry, Mutation& m, const std::string& type, tecl::v1::JobState from,
                tecl::v1::JobState to, const std::string& reason, int64_t step)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Transition(JobEntry& entry, tecl::v1::JobState to, const std::string& reason,
                          Mutation& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current attempt of an active job: its trainers are told to stop, its dataloaders
  // freed, the rendezvous scope closed, the attempt row closed with `end_state`.
  void EndAttempt(JobEntry& entry, tecl::v1::JobState end_state, const std::string& reason,
                  Mutation& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A recoverable failure of the current attempt: RECOVERING, or FAILED without restarts left.
  void FailAttempt(JobEntry& entry, const std::string& reason, Mutation& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the job in a terminal state.
  void Finish(JobEntry& entry, tecl::v1::JobState state, const std::string& reason, Mutation& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartAttempt(JobEntry& entry, const Placement& placement, Mutation& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeWorker(WorkerEntry& worker, Mutation& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkLost(WorkerEntry& worker, Mutation& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  tecl::v1::Assignment AssignmentFor(const WorkerEntry& worker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration TimeoutFor(const WorkerEntry& worker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Schedule(Mutation& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails evaluation jobs whose source job ended without a checkpoint; whether `entry` may be
  // placed now.
  bool ReadyToPlace(JobEntry& entry, Mutation& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewWorkerId(tecl::v1::WorkerKind kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t NowMs() const { return absl::ToUnixMillis(clock_->Now()); }
  // Watchers of the jobs changed since the last call.
  std::vector<std::string> TakeChanged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Notify(const std::vector<std::string>& job_ids);
  void CollectMetrics();

  const JobManagerOptions options_;
  JobStore* const store_;
  const Clock* const clock_;
  Rendezvous* const rendezvous_;

  mutable absl::Mutex mu_;
  std::map<std::string, JobEntry> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::string> jobs_by_seq_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);
  std::set<int64_t> waiting_ ABSL_GUARDED_BY(mu_);  // Seqs of PENDING and RECOVERING jobs.
  std::map<std::string, WorkerEntry> workers_ ABSL_GUARDED_BY(mu_);
  int64_t next_job_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t id_state_ ABSL_GUARDED_BY(mu_) = 0;
  bool needs_scheduling_ ABSL_GUARDED_BY(mu_) = true;
  std::string coordinator_address_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> changed_ ABSL_GUARDED_BY(mu_);

  // Written from store callbacks, which never take mu_.
  mutable absl::Mutex error_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::Status store_error_ ABSL_GUARDED_BY(error_mu_);

  absl::Mutex watch_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::map<WatchId, std::pair<std::string, std::function<void()>>> watchers_
      ABSL_GUARDED_BY(watch_mu_);
  WatchId next_watch_id_ ABSL_GUARDED_BY(watch_mu_) = 1;

  // Metrics (null without a registry).
  metrics::Registry* registry_;
  metrics::Histogram* scheduling_latency_ = nullptr;
  metrics::Counter* restarts_ = nullptr;
  metrics::Family<metrics::Gauge>* jobs_gauge_ = nullptr;
  metrics::Family<metrics::Gauge>* workers_gauge_ = nullptr;
  metrics::Family<metrics::Gauge>* heartbeat_age_ = nullptr;
  std::map<std::string, std::string> heartbeat_age_workers_ ABSL_GUARDED_BY(mu_);  // id -> kind.
  // Lets the registry's collect callback outlive the manager.
  struct MetricsHook {
    absl::Mutex mu;
    JobManager* manager ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<MetricsHook> metrics_hook_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SCHEDULER_JOB_MANAGER_H_
