#include "tests/integration/coordinator/fake_worker.h"

#include "absl/strings/str_cat.h"

namespace tecl::testing {

FakeWorker::FakeWorker(std::shared_ptr<CoordinatorClient> coordinator, FakeWorkerOptions options)
    : coordinator_(std::move(coordinator)), options_(std::move(options)) {}

FakeWorker::~FakeWorker() { Stop(); }

void FakeWorker::Start() { thread_ = std::thread(&FakeWorker::Loop, this); }

void FakeWorker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::string FakeWorker::id() const {
  absl::MutexLock lock(&mu_);
  return id_;
}

std::string FakeWorker::session() const {
  absl::MutexLock lock(&mu_);
  return session_;
}

void FakeWorker::set_outcome(tecl::v1::Outcome outcome) {
  absl::MutexLock lock(&mu_);
  options_.outcome = outcome;
}

void FakeWorker::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), options_.interval)) return;
    }
    Beat();
  }
}

void FakeWorker::Beat() {
  if (id().empty()) {
    tecl::v1::WorkerInfo w;
    w.set_kind(options_.kind);
    w.set_hostname(options_.hostname);
    w.set_device(options_.device);
    w.set_gpus(options_.gpus);
    w.set_threads(1);
    if (options_.kind == tecl::v1::WORKER_KIND_DATALOADER) w.set_address(options_.address);
    absl::StatusOr<tecl::v1::RegisterWorkerResponse> response = coordinator_->RegisterWorker(w);
    if (response.ok()) {
      absl::MutexLock lock(&mu_);
      id_ = response->worker_id();
      session_ = response->session_token();
    }
    return;
  }
  tecl::v1::HeartbeatRequest request;
  request.set_worker_id(id());
  tecl::v1::Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    outcome = options_.outcome;
  }
  if (running_) {
    step_ = std::min(step_ + options_.steps_per_beat, assignment_.spec().schedule().total_steps());
    request.set_status(tecl::v1::TRAINER_STATUS_RUNNING);
    request.set_job_id(assignment_.job_id());
    request.set_attempt(assignment_.attempt());
    request.set_rank(assignment_.rank());
    auto* p = request.mutable_progress();
    p->set_step(step_);
    p->set_total_steps(assignment_.spec().schedule().total_steps());
    p->mutable_loss()->set_total(5.0 / (1.0 + step_));
    p->set_clips_per_second(100);
    p->set_eta_s(1);
  } else {
    request.set_status(tecl::v1::TRAINER_STATUS_IDLE);
  }
  absl::StatusOr<tecl::v1::HeartbeatResponse> answer = coordinator_->Heartbeat(request, session_);
  if (answer.status().code() == absl::StatusCode::kNotFound) {
    absl::MutexLock lock(&mu_);
    id_.clear();
    running_ = false;
    return;
  }
  if (!answer.ok()) return;
  const tecl::v1::HeartbeatResponse& response = *answer;
  auto report = [&](tecl::v1::Outcome o, const std::string& reason) {
    tecl::v1::ReportOutcomeRequest r;
    r.set_worker_id(id());
    r.set_job_id(assignment_.job_id());
    r.set_attempt(assignment_.attempt());
    r.set_rank(assignment_.rank());
    r.set_outcome(o);
    r.set_reason(reason);
    r.set_step(step_);
    *r.mutable_progress() = request.progress();
    if (assignment_.spec().kind() == tecl::v1::JOB_KIND_EVAL && assignment_.rank() == 0) {
      auto* e = r.mutable_eval_result();
      e->set_encoder(assignment_.resume_from().path().empty() ? "random init"
                                                              : assignment_.resume_from().path());
      for (int k : assignment_.spec().eval().recall_at()) {
        auto* rk = e->add_retrieval();
        rk->set_k(k);
        rk->set_recall(std::min(1.0, 0.1 * k));
      }
      e->set_linear_probe_top1(0.5);
      e->set_num_queries(10);
      e->set_num_gallery(40);
      e->set_num_classes(4);
    }
    coordinator_->ReportOutcome(r, session_).IgnoreError();
    running_ = false;
    ++runs_finished_;
  };
  if (response.action() == tecl::v1::HeartbeatResponse::ACTION_STOP && running_) {
    report(tecl::v1::OUTCOME_STOPPED, response.stop_reason());
    return;
  }
  if (response.action() == tecl::v1::HeartbeatResponse::ACTION_RUN && !running_) {
    assignment_ = response.assignment();
    step_ = assignment_.resume_from().step();
    running_ = true;
    return;
  }
  if (running_ && step_ >= assignment_.spec().schedule().total_steps() &&
      outcome != tecl::v1::OUTCOME_UNSPECIFIED) {
    if (assignment_.rank() == 0 && assignment_.spec().kind() == tecl::v1::JOB_KIND_PRETRAIN) {
      tecl::v1::RegisterCheckpointRequest c;
      c.set_worker_id(id());
      c.set_job_id(assignment_.job_id());
      c.mutable_checkpoint()->set_step(step_);
      c.mutable_checkpoint()->set_attempt(assignment_.attempt());
      c.mutable_checkpoint()->set_path(absl::StrCat(assignment_.checkpoint_dir(), "/step-", step_));
      coordinator_->RegisterCheckpoint(c, session_).IgnoreError();
    }
    report(outcome, outcome == tecl::v1::OUTCOME_SUCCEEDED ? "" : options_.reason);
  }
}

}  // namespace tecl::testing
