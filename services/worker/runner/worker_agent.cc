#include "services/worker/runner/worker_agent.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"

namespace tecl::worker {
namespace {

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

}  // namespace

// One assignment being run on its own thread.
class WorkerAgent::Run final : public RunContext {
 public:
  Run(WorkerAgent* agent, tecl::v1::Assignment assignment)
      : agent_(agent), assignment_(std::move(assignment)) {}

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
    return agent_->RegisterCheckpointFor(assignment_, checkpoint);
  }

  std::shared_ptr<tecl::v1::Coordinator::StubInterface> coordinator() override {
    return agent_->coordinator_;
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
  }

  const tecl::v1::Assignment& assignment() const { return assignment_; }
  std::thread thread;
  std::atomic<bool> done{false};
  JobOutcome outcome;  // Written by the run thread before `done`.

 private:
  WorkerAgent* const agent_;
  const tecl::v1::Assignment assignment_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  std::string stop_reason_ ABSL_GUARDED_BY(mu_);
  tecl::v1::TrainerStatus status_ ABSL_GUARDED_BY(mu_) = tecl::v1::TRAINER_STATUS_STARTING;
  tecl::v1::JobProgress progress_ ABSL_GUARDED_BY(mu_);
  double step_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  double data_wait_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  double allreduce_seconds_ ABSL_GUARDED_BY(mu_) = 0;
};

WorkerAgent::WorkerAgent(WorkerAgentOptions options,
                         std::shared_ptr<tecl::v1::Coordinator::StubInterface> coordinator,
                         JobExecutor executor, metrics::Registry* registry)
    : options_(std::move(options)),
      coordinator_(std::move(coordinator)),
      executor_(std::move(executor)) {
  heartbeat_failures_ = &metrics::BuildCounter()
                             .Name("tecl_worker_heartbeat_failures_total")
                             .Help("Heartbeats that did not reach the coordinator.")
                             .Register(*registry)
                             .Add({});
  registrations_ = &metrics::BuildCounter()
                        .Name("tecl_worker_registrations_total")
                        .Help("Registrations with the coordinator (more than one after losses).")
                        .Register(*registry)
                        .Add({});
  outcomes_ = &metrics::BuildCounter()
                   .Name("tecl_worker_runs_total")
                   .Help("Assignments run to an end, by outcome.")
                   .Register(*registry);
}

WorkerAgent::~WorkerAgent() { Shutdown(); }

void WorkerAgent::Start() { heartbeat_thread_ = std::thread(&WorkerAgent::HeartbeatLoop, this); }

std::string WorkerAgent::worker_id() const {
  absl::MutexLock lock(&mu_);
  return worker_id_;
}

absl::Status WorkerAgent::Register() {
  tecl::v1::RegisterWorkerRequest request;
  *request.mutable_worker() = options_.worker;
  tecl::v1::RegisterWorkerResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, options_.rpc_timeout);
  grpc::Status status = coordinator_->RegisterWorker(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("register with the coordinator: ",
                                               status.error_message()));
  }
  registrations_->Increment();
  absl::MutexLock lock(&mu_);
  worker_id_ = response.worker_id();
  TECL_LOG(INFO) << "registered as worker " << worker_id_;
  return absl::OkStatus();
}

void WorkerAgent::HeartbeatLoop() {
  absl::Duration backoff = options_.retry_backoff;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_) return;
    }
    absl::Duration wait;
    if (worker_id().empty()) {
      absl::Status status = Register();
      if (status.ok()) {
        backoff = options_.retry_backoff;
        continue;
      }
      TECL_LOG(WARNING) << status.message() << "; retrying in " << absl::FormatDuration(backoff);
      wait = backoff;
      backoff = std::min(backoff * 2, absl::Seconds(5));
    } else {
      wait = HeartbeatOnce();
    }
    absl::MutexLock lock(&mu_);
    auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return shutting_down_ || (run_ != nullptr && run_->done.load());
    };
    mu_.AwaitWithTimeout(absl::Condition(&wake), wait);
  }
}

absl::Duration WorkerAgent::HeartbeatOnce() {
  // Report a finished run first, so that the coordinator sees its outcome before the idle status.
  std::shared_ptr<Run> finished;
  {
    absl::MutexLock lock(&mu_);
    if (run_ != nullptr && run_->done.load()) finished = std::move(run_);
  }
  if (finished != nullptr) {
    finished->thread.join();
    ReportOutcome(finished->assignment(), finished->outcome);
  }

  tecl::v1::HeartbeatRequest request;
  std::shared_ptr<Run> run;
  {
    absl::MutexLock lock(&mu_);
    request.set_worker_id(worker_id_);
    run = run_;
  }
  if (run != nullptr) {
    run->FillHeartbeat(&request);
  } else {
    request.set_status(tecl::v1::TRAINER_STATUS_IDLE);
  }
  tecl::v1::HeartbeatResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, options_.rpc_timeout);
  grpc::Status status = coordinator_->Heartbeat(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    TECL_LOG(WARNING) << "the coordinator no longer knows worker " << request.worker_id()
                      << ": registering again";
    absl::MutexLock lock(&mu_);
    if (run_ != nullptr) run_->RequestStop("the coordinator declared this worker lost");
    worker_id_.clear();
    return absl::ZeroDuration();
  }
  if (!status.ok()) {
    heartbeat_failures_->Increment();
    TECL_LOG(WARNING) << "heartbeat failed: " << status.error_message();
    return options_.retry_backoff;
  }
  const absl::Duration interval = response.heartbeat_interval_ms() > 0
                                      ? absl::Milliseconds(response.heartbeat_interval_ms())
                                      : options_.default_heartbeat_interval;
  absl::MutexLock lock(&mu_);
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
  return interval;
}

void WorkerAgent::StartRun(const tecl::v1::Assignment& assignment) {
  TECL_LOG(INFO) << "running job " << assignment.job_id() << " attempt " << assignment.attempt()
                 << " as rank " << assignment.rank() << "/" << assignment.world_size();
  auto run = std::make_shared<Run>(this, assignment);
  Run* raw = run.get();
  run->thread = std::thread([this, raw] {
    raw->outcome = executor_(raw->assignment(), raw);
    raw->done = true;
    absl::MutexLock lock(&mu_);  // Wakes the heartbeat loop to report promptly.
  });
  run_ = std::move(run);
}

void WorkerAgent::ReportOutcome(const tecl::v1::Assignment& assignment, const JobOutcome& outcome) {
  jobs_run_.fetch_add(1);
  outcomes_->Add({{"outcome", tecl::v1::Outcome_Name(outcome.outcome)}}).Increment();
  TECL_LOG(INFO) << "job " << assignment.job_id() << " attempt " << assignment.attempt()
                 << " rank " << assignment.rank() << " ended: "
                 << tecl::v1::Outcome_Name(outcome.outcome)
                 << (outcome.reason.empty() ? "" : " (" + outcome.reason + ")");
  tecl::v1::ReportOutcomeRequest request;
  request.set_worker_id(worker_id());
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
  absl::Duration backoff = options_.retry_backoff;
  for (int attempt = 0; attempt < 8; ++attempt) {
    tecl::v1::ReportOutcomeResponse response;
    grpc::ClientContext context;
    SetDeadline(&context, options_.rpc_timeout);
    grpc::Status status = coordinator_->ReportOutcome(&context, request, &response);
    if (status.ok() || status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      if (!status.ok()) {
        TECL_LOG(WARNING) << "outcome report for job " << assignment.job_id()
                          << " refused: " << status.error_message();
      }
      return;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
  TECL_LOG(WARNING) << "could not report the outcome of job " << assignment.job_id()
                    << "; the coordinator will notice through heartbeats";
}

absl::Status WorkerAgent::RegisterCheckpointFor(const tecl::v1::Assignment& assignment,
                                                const tecl::v1::Checkpoint& checkpoint) {
  tecl::v1::RegisterCheckpointRequest request;
  request.set_worker_id(worker_id());
  request.set_job_id(assignment.job_id());
  *request.mutable_checkpoint() = checkpoint;
  absl::Duration backoff = options_.retry_backoff;
  grpc::Status status;
  for (int attempt = 0; attempt < 8; ++attempt) {
    tecl::v1::RegisterCheckpointResponse response;
    grpc::ClientContext context;
    SetDeadline(&context, options_.rpc_timeout);
    status = coordinator_->RegisterCheckpoint(&context, request, &response);
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("register checkpoint ", checkpoint.path(), ": ",
                                   status.error_message()));
}

void WorkerAgent::Shutdown() {
  std::shared_ptr<Run> run;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    run = std::move(run_);
    if (run != nullptr) run->RequestStop("the worker is shutting down");
  }
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  if (run != nullptr) {
    run->thread.join();
    ReportOutcome(run->assignment(), run->outcome);
  }
}

}  // namespace tecl::worker
