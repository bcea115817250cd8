#include "services/coordinator/service/job_service.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/grpc_status.h"
#include "services/coordinator/state/job_state.h"

namespace tecl::coordinator {
namespace {

// WatchJob: sends the job and its new events after every change until the job finishes.
class WatchReactor final : public grpc::ServerWriteReactor<tecl::v1::WatchJobResponse> {
 public:
  WatchReactor(Coordinator* coordinator, std::string job_id, int64_t after_seq)
      : coordinator_(coordinator), job_id_(std::move(job_id)), last_seq_(after_seq) {
    watch_id_ = coordinator_->host().Watch(job_id_, [this] { OnJobChanged(); });
    OnJobChanged();
  }

  void OnWriteDone(bool ok) override {
    bool again = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (finished_) return;
      if (!ok) {
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
        return;
      }
      if (sent_terminal_) {
        FinishLocked(grpc::Status::OK);
        return;
      }
      again = dirty_;
      dirty_ = false;
    }
    if (again) OnJobChanged();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (!finished_) FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    coordinator_->host().Unwatch(watch_id_);  // Waits for a notification in progress.
    delete this;
  }

 private:
  void OnJobChanged() {
    absl::StatusOr<tecl::v1::Job> job = coordinator_->jobs().Get(job_id_);
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (writing_) {
      dirty_ = true;
      return;
    }
    if (!job.ok()) {
      FinishLocked(ToGrpcStatus(job.status()));
      return;
    }
    absl::StatusOr<std::vector<tecl::v1::JobEvent>> events =
        coordinator_->jobs().ListEvents(job_id_, last_seq_, 0);
    message_.Clear();
    *message_.mutable_job() = *std::move(job);
    if (events.ok()) {
      for (auto& event : *events) {
        last_seq_ = std::max(last_seq_, event.seq());
        *message_.add_events() = std::move(event);
      }
    }
    sent_terminal_ = IsTerminal(message_.job().state());
    writing_ = true;
    StartWrite(&message_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    finished_ = true;
    Finish(status);
  }

  Coordinator* const coordinator_;
  const std::string job_id_;
  StateHost::WatchId watch_id_ = 0;
  absl::Mutex mu_;
  int64_t last_seq_ ABSL_GUARDED_BY(mu_);
  tecl::v1::WatchJobResponse message_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool sent_terminal_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

JobService::JobService(Coordinator* coordinator, Authenticator auth, RequestLimits limits)
    : coordinator_(coordinator), auth_(std::move(auth)), limits_(limits) {}

grpc::ServerUnaryReactor* JobService::SubmitJob(grpc::CallbackServerContext* context,
                                                const tecl::v1::SubmitJobRequest* request,
                                                tecl::v1::SubmitJobResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kUser})) return refused;
  if (absl::Status s = CheckSubmitJobRequest(*request, limits_); !s.ok()) {
    return FinishWith(context, s);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  coordinator_->jobs().Submit(request->spec(), request->request_id(),
                              [reactor, response](absl::StatusOr<tecl::v1::Job> job) {
                                if (job.ok()) *response->mutable_job() = *std::move(job);
                                reactor->Finish(ToGrpcStatus(job.status()));
                              });
  return reactor;
}

grpc::ServerUnaryReactor* JobService::GetJob(grpc::CallbackServerContext* context,
                                             const tecl::v1::GetJobRequest* request,
                                             tecl::v1::Job* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kUser, Role::kReader})) return refused;
  if (absl::Status s = RequireId("job_id", request->job_id(), limits_.max_id_bytes); !s.ok()) {
    return FinishWith(context, s);
  }
  absl::StatusOr<tecl::v1::Job> job = coordinator_->jobs().Get(request->job_id());
  if (job.ok()) *response = *std::move(job);
  return FinishWith(context, job.status());
}

grpc::ServerUnaryReactor* JobService::ListJobs(grpc::CallbackServerContext* context,
                                               const tecl::v1::ListJobsRequest* request,
                                               tecl::v1::ListJobsResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kUser, Role::kReader})) return refused;
  std::vector<tecl::v1::JobState> states;
  for (int state : request->states()) {
    if (!tecl::v1::JobState_IsValid(state) || state == tecl::v1::JOB_STATE_UNSPECIFIED) {
      return FinishWith(context, absl::InvalidArgumentError(
                                     absl::StrCat("states: ", state, " is not a job state")));
    }
    states.push_back(static_cast<tecl::v1::JobState>(state));
  }
  absl::StatusOr<ListJobsResult> result =
      coordinator_->jobs().List(states, request->page_size(), request->page_token());
  if (result.ok()) {
    for (auto& job : result->jobs) *response->add_jobs() = std::move(job);
    response->set_next_page_token(result->next_page_token);
  }
  return FinishWith(context, result.status());
}

grpc::ServerUnaryReactor* JobService::CancelJob(grpc::CallbackServerContext* context,
                                                const tecl::v1::CancelJobRequest* request,
                                                tecl::v1::Job* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kUser})) return refused;
  absl::Status valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = LimitText("reason", request->reason(), limits_.max_text_bytes);
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  coordinator_->attempts().Cancel(request->job_id(), request->reason(),
                                  [reactor, response](absl::StatusOr<tecl::v1::Job> job) {
                                    if (job.ok()) *response = *std::move(job);
                                    reactor->Finish(ToGrpcStatus(job.status()));
                                  });
  return reactor;
}

grpc::ServerUnaryReactor* JobService::ListEvents(grpc::CallbackServerContext* context,
                                                 const tecl::v1::ListEventsRequest* request,
                                                 tecl::v1::ListEventsResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kUser, Role::kReader})) return refused;
  absl::Status valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok() && request->limit() < 0) {
    valid = absl::InvalidArgumentError("limit must be >= 0 (0 = all)");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<std::vector<tecl::v1::JobEvent>> events =
      coordinator_->jobs().ListEvents(request->job_id(), request->after_seq(), request->limit());
  if (events.ok()) {
    for (auto& event : *events) *response->add_events() = std::move(event);
  }
  return FinishWith(context, events.status());
}

grpc::ServerUnaryReactor* JobService::GetJobLogs(grpc::CallbackServerContext* context,
                                                 const tecl::v1::GetJobLogsRequest* request,
                                                 tecl::v1::GetJobLogsResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kUser, Role::kReader})) return refused;
  absl::Status valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok() && request->has_rank() && request->rank() < 0) {
    valid = absl::InvalidArgumentError("rank must be >= 0 (leave it unset for every rank)");
  }
  if (valid.ok() && request->after_cursor() < 0) {
    valid = absl::InvalidArgumentError("after_cursor must be >= 0 (0 = from the oldest line)");
  }
  if (valid.ok() && (request->max_lines() < 0 || request->max_lines() > kMaxLogLinesPerRead)) {
    valid = absl::InvalidArgumentError(absl::StrCat("max_lines must be in [0, ",
                                                    kMaxLogLinesPerRead, "] (0 = 1000)"));
  }
  if (valid.ok() && request->tail() < 0) {
    valid = absl::InvalidArgumentError("tail must be >= 0 (0 = every line)");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<tecl::v1::GetJobLogsResponse> logs = coordinator_->GetJobLogs(*request);
  if (logs.ok()) *response = *std::move(logs);
  return FinishWith(context, logs.status());
}

grpc::ServerWriteReactor<tecl::v1::WatchJobResponse>* JobService::WatchJob(
    grpc::CallbackServerContext* context, const tecl::v1::WatchJobRequest* request) {
  if (auto* refused = RefuseStream<tecl::v1::WatchJobResponse>(context, auth_,
                                                                {Role::kUser, Role::kReader})) {
    return refused;
  }
  if (absl::Status s = RequireId("job_id", request->job_id(), limits_.max_id_bytes); !s.ok()) {
    return FinishStream<tecl::v1::WatchJobResponse>(s);
  }
  return new WatchReactor(coordinator_, request->job_id(), request->after_seq());
}

}  // namespace tecl::coordinator
