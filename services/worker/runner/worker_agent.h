// A trainer worker's life: its MembershipLoop (services/client/membership_loop.h) registers with
// the coordinator and heartbeats, carrying the run's status and progress; assignments arrive in
// heartbeat responses and each is run with a JobExecutor on a run thread; its outcome is reported
// before the next heartbeat, and the trainer goes back to idle. One process serves many jobs.
//
// Failure handling: an unreachable coordinator does not stop a running job (heartbeats are retried;
// the job goes on); a coordinator that no longer knows this worker (NOT_FOUND, e.g. it was declared
// lost) stops the current run, whose attempt is being recovered elsewhere, and the loop registers
// again. A stop order (ACTION_STOP) for the current job stops the run at the next step boundary.
// A new dataloader list for the running rank (HeartbeatResponse.dataloaders: a loader was lost or
// replaced) is kept for the run (RunContext::Dataloaders) and its version reported in the
// following heartbeats. The process's log lines while a run is on travel to the coordinator in
// the heartbeats (JobLogBuffer), for `teclctl logs`.
//
// Thread-safety: Start/Shutdown from one thread; the agent owns the loop's thread and, while a
// job runs, a run thread. RunContext methods are thread-safe.
#ifndef TECL_SERVICES_WORKER_RUNNER_WORKER_AGENT_H_
#define TECL_SERVICES_WORKER_RUNNER_WORKER_AGENT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/client/coordinator_client.h"
#include "services/client/membership_loop.h"
#include "services/common/metrics.h"
#include "services/worker/runner/job_log_buffer.h"
#include "tecl/v1/coordinator.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::worker {

// A rank's dataloaders as the coordinator placed them last.
struct DataloaderList {
  int32_t version = 0;  // The assignment's dataloaders_version until a new list arrives.
  std::vector<std::string> addresses;
};

// What a running job sees of the agent: stop orders, progress, checkpoint registration, changes of
// its dataloaders. The process group and the input are not reached through it (JobRunnerOptions'
// factories). Implementations are thread-safe.
class RunContext {
 public:
  virtual ~RunContext() = default;
  // The rank's dataloaders now: the assignment's, or the newest list the coordinator sent.
  virtual DataloaderList Dataloaders() const = 0;
  // True once the coordinator ordered a stop, the agent lost its registration, or it shuts down.
  virtual bool StopRequested() const = 0;
  virtual std::string StopReason() const = 0;
  // Progress carried by the following heartbeats.
  virtual void ReportProgress(tecl::v1::TrainerStatus status, const tecl::v1::JobProgress& progress,
                              double step_seconds, double data_wait_seconds,
                              double allreduce_seconds) = 0;
  // Registers a completely written checkpoint with the coordinator (blocks; retries UNAVAILABLE).
  // ABORTED when the attempt is no longer current.
  virtual absl::Status RegisterCheckpoint(const tecl::v1::Checkpoint& checkpoint) = 0;
  // Tells the coordinator that a checkpoint of the assignment's candidates cannot be used (blocks;
  // retries UNAVAILABLE): it is not offered again.
  virtual absl::Status RejectCheckpoint(const tecl::v1::Checkpoint& checkpoint,
                                        const std::string& reason) = 0;
  // The session of the registration the run belongs to: the trainer's credential for the
  // rendezvous of its process group.
  virtual std::string session() const = 0;
};

struct JobOutcome {
  tecl::v1::Outcome outcome = tecl::v1::OUTCOME_FAILED;
  std::string reason;
  int64_t step = 0;
  tecl::v1::EvalResult eval_result;  // Eval jobs.
  tecl::v1::JobProgress progress;
};

// Runs one assignment to its end. Must return promptly (within a step) once
// context->StopRequested() is true. Must not throw.
using JobExecutor =
    std::function<JobOutcome(const tecl::v1::Assignment& assignment, RunContext* context)>;

struct WorkerAgentOptions {
  tecl::v1::WorkerInfo worker;  // kind, device, gpus, threads, hostname, metrics address.
  std::string coordinator_address;  // For log lines.
  absl::Duration default_heartbeat_interval = absl::Seconds(1);
  // Between failed registrations and heartbeats.
  BackoffOptions backoff = {absl::Milliseconds(500), absl::Seconds(5), 2.0, 0.2};
};

class WorkerAgent {
 public:
  WorkerAgent(WorkerAgentOptions options, std::shared_ptr<CoordinatorClient> coordinator,
              JobExecutor executor, metrics::Registry* registry);
  ~WorkerAgent();  // Shutdown().

  void Start();
  // Stops the current run (reported as OUTCOME_STOPPED), stops heartbeating. Blocks until done.
  void Shutdown();

  // The id from the latest registration; empty before the first one.
  std::string worker_id() const;
  int64_t jobs_run() const { return jobs_run_.load(); }

 private:
  class Run;

  // MembershipLoop hooks (on the loop's thread).
  void BeforeHeartbeat(const MembershipLoop::Registration& registration,
                       tecl::v1::HeartbeatRequest* request);
  void OnResponse(const tecl::v1::HeartbeatResponse& response);
  void OnLost();
  void StartRun(const tecl::v1::Assignment& assignment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Joins a finished (or stopped) run and reports its outcome.
  void Finish(const std::shared_ptr<Run>& run);

  const WorkerAgentOptions options_;
  const std::shared_ptr<CoordinatorClient> coordinator_;
  const JobExecutor executor_;
  std::atomic<int64_t> jobs_run_{0};
  metrics::Family<metrics::Counter>* outcomes_;
  std::unique_ptr<JobLogBuffer> logs_;  // A LogSink from the constructor to the destructor.

  mutable absl::Mutex mu_;
  MembershipLoop::Registration registration_ ABSL_GUARDED_BY(mu_);  // The latest heard of.
  std::shared_ptr<Run> run_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Declared last: its thread calls the hooks above, so it is stopped first.
  std::unique_ptr<MembershipLoop> loop_;
};

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_WORKER_AGENT_H_
