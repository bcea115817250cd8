#include "services/worker/runner/worker_agent.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/logging.h"

namespace tecl::worker {

// One assignment being run on its own thread.
class WorkerAgent::Run final : public RunContext {
 public:
  Run(WorkerAgent* agent, tecl::v1::Assignment assignment,
      MembershipLoop::Registration registration)
      : agent_(agent),
        assignment_(std::move(assignment)),
        registration_(std::move(registration)) {
    dataloaders_.version = assignment_.dataloaders_version();
    dataloaders_.addresses.assign(assignment_.dataloader_addresses().begin(),
                                  assignment_.dataloader_addresses().end());
  }

  DataloaderList Dataloaders() const override {
    absl::MutexLock lock(&mu_);
    return dataloaders_;
  }
  // A new list for this run's rank (ignored unless it names this run and is another version).
  void UpdateDataloaders(const tecl::v1::DataloaderPlacement& placement) {
    if (placement.job_id() != assignment_.job_id() ||
        placement.attempt() != assignment_.attempt() || placement.rank() != assignment_.rank()) {
      return;
    }
    absl::MutexLock lock(&mu_);
    if (placement.version() == dataloaders_.version) return;
    dataloaders_.version = placement.version();
    dataloaders_.addresses.assign(placement.addresses().begin(), placement.addresses().end());
    TECL_LOG(INFO) << "job " << assignment_.job_id() << " rank " << assignment_.rank()
                   << ": dataloaders now " << absl::StrJoin(dataloaders_.addresses, ", ")
                   << " (version " << dataloaders_.version << ")";
  }

  bool StopRequested() const override { return stop_.load(); }
  std::string StopReason() const override {
    absl::MutexLock lock(&mu_);
    return stop_reason_;
  }
  void RequestStop(const std::string& reason) {
    absl::MutexLock lock(&mu_);
    if (!stop_.load()) stop_reason_ = reason;
    stop_ = true;
  }

  void ReportProgress(tecl::v1::TrainerStatus status, const tecl::v1::JobProgress& progress,
                      double step_seconds, double data_wait_seconds,
                      double allreduce_seconds) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    progress_ = progress;
    step_seconds_ = step_seconds;
    data_wait_seconds_ = data_wait_seconds;
    allreduce_seconds_ = allreduce_seconds;
  }

  absl::Status RegisterCheckpoint(const tecl::v1::Checkpoint& checkpoint) override {
    tecl::v1::RegisterCheckpointRequest request;
    request.set_worker_id(registration_.worker_id);
    request.set_job_id(assignment_.job_id());
    *request.mutable_checkpoint() = checkpoint;
    absl::Status status =
        agent_->coordinator_->RegisterCheckpoint(request, registration_.session);
    if (status.ok()) return status;
    return absl::Status(status.code(), absl::StrCat("register checkpoint ", checkpoint.path(),
                                                    ": ", status.message()));
  }

  void FillHeartbeat(tecl::v1::HeartbeatRequest* request) const {
    absl::MutexLock lock(&mu_);
    request->set_status(status_);
    request->set_job_id(assignment_.job_id());
    request->set_attempt(assignment_.attempt());
    request->set_rank(assignment_.rank());
    *request->mutable_progress() = progress_;
    request->set_step_seconds(step_seconds_);
    request->set_data_wait_seconds(data_wait_seconds_);
    request->set_allreduce_seconds(allreduce_seconds_);
    request->set_dataloaders_version(dataloaders_.version);
  }

  const tecl::v1::Assignment& assignment() const { return assignment_; }
  // The registration the assignment was given to.
  const std::string& worker_id() const { return registration_.worker_id; }
  std::string session() const override { return registration_.session; }

  absl::Status RejectCheckpoint(const tecl::v1::Checkpoint& checkpoint,
                                const std::string& reason) override {
    tecl::v1::RejectCheckpointRequest request;
    request.set_worker_id(registration_.worker_id);
    request.set_job_id(assignment_.job_id());
    request.set_attempt(assignment_.attempt());
    *request.mutable_checkpoint() = checkpoint;
    request.set_reason(reason);
    return agent_->coordinator_->RejectCheckpoint(request, registration_.session);
  }
  std::thread thread;
  std::atomic<bool> done{false};
  JobOutcome outcome;  // Written by the run thread before `done`.

 private:
  WorkerAgent* const agent_;
  const tecl::v1::Assignment assignment_;
  const MembershipLoop::Registration registration_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  std::string stop_reason_ ABSL_GUARDED_BY(mu_);
  tecl::v1::TrainerStatus status_ ABSL_GUARDED_BY(mu_) = tecl::v1::TRAINER_STATUS_STARTING;
  tecl::v1::JobProgress progress_ ABSL_GUARDED_BY(mu_);
  double step_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  double data_wait_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  double allreduce_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  DataloaderList dataloaders_ ABSL_GUARDED_BY(mu_);
};

WorkerAgent::WorkerAgent(WorkerAgentOptions options, std::shared_ptr<CoordinatorClient> coordinator,
                         JobExecutor executor, metrics::Registry* registry)
    : options_(std::move(options)),
      coordinator_(std::move(coordinator)),
      executor_(std::move(executor)) {
  MembershipMetrics metrics;
  metrics.heartbeat_failures = &metrics::BuildCounter()
                                    .Name("tecl_worker_heartbeat_failures_total")
                                    .Help("Heartbeats that did not reach the coordinator.")
                                    .Register(*registry)
                                    .Add({});
  metrics.registrations =
      &metrics::BuildCounter()
           .Name("tecl_worker_registrations_total")
           .Help("Registrations with the coordinator (more than one after losses).")
           .Register(*registry)
           .Add({});
  metrics.registered = &metrics::BuildGauge()
                            .Name("tecl_worker_registered")
                            .Help("1 while this trainer is registered with the coordinator.")
                            .Register(*registry)
                            .Add({});
  outcomes_ = &metrics::BuildCounter()
                   .Name("tecl_worker_runs_total")
                   .Help("Assignments run to an end, by outcome.")
                   .Register(*registry);
  logs_ = std::make_unique<JobLogBuffer>(
      JobLogBufferOptions{},
      &metrics::BuildCounter()
           .Name("tecl_worker_log_lines_dropped_total")
           .Help("Log lines of runs dropped before reaching the coordinator (its buffer was "
                 "full while the coordinator was unreachable).")
           .Register(*registry)
           .Add({}));
  AddLogSink(logs_.get());
  MembershipLoopOptions loop;
  loop.worker = options_.worker;
  loop.coordinator_address = options_.coordinator_address;
  loop.default_heartbeat_interval = options_.default_heartbeat_interval;
  loop.backoff = options_.backoff;
  MembershipLoop::Hooks hooks;
  hooks.before_heartbeat = [this](const MembershipLoop::Registration& registration,
                                  tecl::v1::HeartbeatRequest* request) {
    BeforeHeartbeat(registration, request);
  };
  hooks.on_response = [this](const tecl::v1::HeartbeatResponse& r) { OnResponse(r); };
  hooks.on_lost = [this] { OnLost(); };
  loop_ = std::make_unique<MembershipLoop>(std::move(loop), coordinator_, std::move(hooks),
                                           metrics);
}

WorkerAgent::~WorkerAgent() {
  Shutdown();
  RemoveLogSink(logs_.get());
}

void WorkerAgent::Start() { loop_->Start(); }

std::string WorkerAgent::worker_id() const { return loop_->worker_id(); }

void WorkerAgent::BeforeHeartbeat(const MembershipLoop::Registration& registration,
                                  tecl::v1::HeartbeatRequest* request) {
  // A finished run's outcome goes first, so the coordinator sees it before the idle status.
  std::shared_ptr<Run> finished;
  std::shared_ptr<Run> running;
  {
    absl::MutexLock lock(&mu_);
    registration_ = registration;
    if (run_ != nullptr && run_->done.load()) finished = std::move(run_);
    running = run_;
  }
  if (finished != nullptr) Finish(finished);
  if (running != nullptr) {
    running->FillHeartbeat(request);
  } else {
    request->set_status(tecl::v1::TRAINER_STATUS_IDLE);
  }
  logs_->Take(request->mutable_log_lines());
}

void WorkerAgent::OnResponse(const tecl::v1::HeartbeatResponse& response) {
  logs_->Delivered();
  absl::MutexLock lock(&mu_);
  if (response.has_dataloaders() && run_ != nullptr) {
    run_->UpdateDataloaders(response.dataloaders());
  }
  switch (response.action()) {
    case tecl::v1::HeartbeatResponse::ACTION_RUN:
      if (run_ == nullptr && !shutting_down_) {
        StartRun(response.assignment());
      } else if (run_ != nullptr &&
                 (run_->assignment().job_id() != response.assignment().job_id() ||
                  run_->assignment().attempt() != response.assignment().attempt())) {
        TECL_LOG(WARNING) << "assignment for job " << response.assignment().job_id()
                          << " while job " << run_->assignment().job_id()
                          << " still runs; it will be picked up when this one ends";
      }
      break;
    case tecl::v1::HeartbeatResponse::ACTION_STOP:
      if (run_ != nullptr) {
        run_->RequestStop(response.stop_reason().empty() ? "stopped by the coordinator"
                                                         : response.stop_reason());
      }
      break;
    default:
      break;
  }
}

void WorkerAgent::OnLost() {
  absl::MutexLock lock(&mu_);
  if (run_ != nullptr) run_->RequestStop("the coordinator declared this worker lost");
}

void WorkerAgent::StartRun(const tecl::v1::Assignment& assignment) {
  logs_->Begin(assignment.job_id(), assignment.attempt(), assignment.rank());
  TECL_LOG(INFO) << "running job " << assignment.job_id() << " attempt " << assignment.attempt()
                 << " as rank " << assignment.rank() << "/" << assignment.world_size();
  auto run = std::make_shared<Run>(this, assignment, registration_);
  Run* raw = run.get();
  run->thread = std::thread([this, raw] {
    raw->outcome = executor_(raw->assignment(), raw);
    raw->done = true;
    loop_->Wake();  // Report promptly.
  });
  run_ = std::move(run);
}

void WorkerAgent::Finish(const std::shared_ptr<Run>& run) {
  run->thread.join();
  const tecl::v1::Assignment& assignment = run->assignment();
  const JobOutcome& outcome = run->outcome;
  jobs_run_.fetch_add(1);
  outcomes_->Add({{"outcome", tecl::v1::Outcome_Name(outcome.outcome)}}).Increment();
  TECL_LOG(INFO) << "job " << assignment.job_id() << " attempt " << assignment.attempt()
                 << " rank " << assignment.rank() << " ended: "
                 << tecl::v1::Outcome_Name(outcome.outcome)
                 << (outcome.reason.empty() ? "" : " (" + outcome.reason + ")");
  tecl::v1::ReportOutcomeRequest request;
  request.set_worker_id(run->worker_id());
  request.set_job_id(assignment.job_id());
  request.set_attempt(assignment.attempt());
  request.set_rank(assignment.rank());
  request.set_outcome(outcome.outcome);
  request.set_reason(outcome.reason);
  request.set_step(outcome.step);
  if (assignment.spec().kind() == tecl::v1::JOB_KIND_EVAL) {
    *request.mutable_eval_result() = outcome.eval_result;
  }
  *request.mutable_progress() = outcome.progress;
  const absl::Status status = coordinator_->ReportOutcome(request, run->session());
  if (status.code() == absl::StatusCode::kUnavailable) {
    TECL_LOG(WARNING) << "could not report the outcome of job " << assignment.job_id() << " ("
                      << status.message() << "); the coordinator will notice through heartbeats";
  } else if (!status.ok()) {
    TECL_LOG(WARNING) << "outcome report for job " << assignment.job_id()
                      << " refused: " << status.message();
  }
  logs_->End();  // After the run's last lines: they go with the next heartbeats.
}

void WorkerAgent::Shutdown() {
  std::shared_ptr<Run> run;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    if (run_ != nullptr) run_->RequestStop("the worker is shutting down");
  }
  loop_->Stop();
  {
    absl::MutexLock lock(&mu_);
    run = std::move(run_);
  }
  if (run != nullptr) Finish(run);
}

}  // namespace tecl::worker
