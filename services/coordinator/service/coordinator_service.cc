#include "services/coordinator/service/coordinator_service.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/grpc_status.h"
#include "services/common/status_macros.h"
#include "services/coordinator/scheduler/job_state.h"

namespace tecl::coordinator {
namespace {

grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Status RequireId(absl::string_view field, const std::string& value, size_t max) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is missing"));
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " has ", value.size(), " bytes; at most ", max));
  }
  return absl::OkStatus();
}

absl::Status LimitText(absl::string_view field, const std::string& value, size_t max) {
  if (value.size() <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " has ", value.size(), " bytes; at most ", max));
}

// A unary reactor for rendezvous waits: cancels the waiter when the client goes away.
class WaitReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit WaitReactor(Rendezvous* rendezvous) : rendezvous_(rendezvous) {}

  // Records the waiter; cancels it at once if the client already went away.
  void SetWait(Rendezvous::WaitId id) {
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      id_ = id;
      cancelled = cancelled_;
    }
    if (cancelled && id != 0) rendezvous_->Cancel(id);
  }
  void OnCancel() override {
    Rendezvous::WaitId id;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = id_;
    }
    if (id != 0) rendezvous_->Cancel(id);
  }
  void OnDone() override { delete this; }

 private:
  Rendezvous* const rendezvous_;
  absl::Mutex mu_;
  Rendezvous::WaitId id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// WatchJob: sends the job and its new events after every change until the job finishes.
class WatchReactor final : public grpc::ServerWriteReactor<tecl::v1::WatchJobResponse> {
 public:
  WatchReactor(JobManager* manager, std::string job_id, int64_t after_seq)
      : manager_(manager), job_id_(std::move(job_id)), last_seq_(after_seq) {
    watch_id_ = manager_->Watch(job_id_, [this] { OnJobChanged(); });
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
    manager_->Unwatch(watch_id_);  // Waits for a notification in progress.
    delete this;
  }

 private:
  void OnJobChanged() {
    absl::StatusOr<tecl::v1::Job> job = manager_->GetJob(job_id_);
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
        manager_->ListEvents(job_id_, last_seq_, 0);
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

  JobManager* const manager_;
  const std::string job_id_;
  JobManager::WatchId watch_id_ = 0;
  absl::Mutex mu_;
  int64_t last_seq_ ABSL_GUARDED_BY(mu_);
  tecl::v1::WatchJobResponse message_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool sent_terminal_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

template <typename Response>
grpc::ServerWriteReactor<Response>* FinishStream(const absl::Status& status) {
  class Refused : public grpc::ServerWriteReactor<Response> {
   public:
    explicit Refused(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }
    void OnDone() override { delete this; }
  };
  return new Refused(status);
}

RendezvousScopeId ScopeOf(const tecl::v1::RendezvousScope& scope) {
  return {scope.job_id(), scope.attempt()};
}

}  // namespace

CoordinatorService::CoordinatorService(JobManager* manager, Rendezvous* rendezvous,
                                       TokenAuthenticator auth, RequestLimits limits)
    : manager_(manager), rendezvous_(rendezvous), auth_(std::move(auth)), limits_(limits) {}

// ---- Jobs ----

grpc::ServerUnaryReactor* CoordinatorService::SubmitJob(grpc::CallbackServerContext* context,
                                                        const tecl::v1::SubmitJobRequest* request,
                                                        tecl::v1::SubmitJobResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  if (!request->has_spec()) {
    return FinishWith(
        context, absl::InvalidArgumentError("spec is missing; teclctl submit FILE.yaml fills it"));
  }
  const size_t bytes = request->spec().ByteSizeLong();
  if (bytes > limits_.max_spec_bytes) {
    return FinishWith(
        context, absl::InvalidArgumentError(absl::StrCat("job spec: the spec is ", bytes,
                                                         " bytes, more than the limit of ",
                                                         limits_.max_spec_bytes, "; shorten it")));
  }
  if (absl::Status s = LimitText("request_id", request->request_id(), limits_.max_id_bytes);
      !s.ok()) {
    return FinishWith(context, s);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->SubmitJob(request->spec(), request->request_id(),
                      [reactor, response](absl::StatusOr<tecl::v1::Job> job) {
                        if (job.ok()) *response->mutable_job() = *std::move(job);
                        reactor->Finish(ToGrpcStatus(job.status()));
                      });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::GetJob(grpc::CallbackServerContext* context,
                                                     const tecl::v1::GetJobRequest* request,
                                                     tecl::v1::Job* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  if (absl::Status s = RequireId("job_id", request->job_id(), limits_.max_id_bytes); !s.ok()) {
    return FinishWith(context, s);
  }
  absl::StatusOr<tecl::v1::Job> job = manager_->GetJob(request->job_id());
  if (job.ok()) *response = *std::move(job);
  return FinishWith(context, job.status());
}

grpc::ServerUnaryReactor* CoordinatorService::ListJobs(grpc::CallbackServerContext* context,
                                                       const tecl::v1::ListJobsRequest* request,
                                                       tecl::v1::ListJobsResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  std::vector<tecl::v1::JobState> states;
  for (int state : request->states()) {
    if (!tecl::v1::JobState_IsValid(state) || state == tecl::v1::JOB_STATE_UNSPECIFIED) {
      return FinishWith(context, absl::InvalidArgumentError(
                                     absl::StrCat("states: ", state, " is not a job state")));
    }
    states.push_back(static_cast<tecl::v1::JobState>(state));
  }
  absl::StatusOr<ListJobsResult> result =
      manager_->ListJobs(states, request->page_size(), request->page_token());
  if (result.ok()) {
    for (auto& job : result->jobs) *response->add_jobs() = std::move(job);
    response->set_next_page_token(result->next_page_token);
  }
  return FinishWith(context, result.status());
}

grpc::ServerUnaryReactor* CoordinatorService::CancelJob(grpc::CallbackServerContext* context,
                                                        const tecl::v1::CancelJobRequest* request,
                                                        tecl::v1::Job* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = LimitText("reason", request->reason(), limits_.max_text_bytes);
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->CancelJob(request->job_id(), request->reason(),
                      [reactor, response](absl::StatusOr<tecl::v1::Job> job) {
                        if (job.ok()) *response = *std::move(job);
                        reactor->Finish(ToGrpcStatus(job.status()));
                      });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::ListEvents(grpc::CallbackServerContext* context,
                                                         const tecl::v1::ListEventsRequest* request,
                                                         tecl::v1::ListEventsResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok() && request->limit() < 0) {
    valid = absl::InvalidArgumentError("limit must be >= 0 (0 = all)");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<std::vector<tecl::v1::JobEvent>> events =
      manager_->ListEvents(request->job_id(), request->after_seq(), request->limit());
  if (events.ok()) {
    for (auto& event : *events) *response->add_events() = std::move(event);
  }
  return FinishWith(context, events.status());
}

grpc::ServerWriteReactor<tecl::v1::WatchJobResponse>* CoordinatorService::WatchJob(
    grpc::CallbackServerContext* context, const tecl::v1::WatchJobRequest* request) {
  if (auto* refused = RejectUnauthenticatedStream<tecl::v1::WatchJobResponse>(context, auth_)) {
    return refused;
  }
  if (absl::Status s = RequireId("job_id", request->job_id(), limits_.max_id_bytes); !s.ok()) {
    return FinishStream<tecl::v1::WatchJobResponse>(s);
  }
  return new WatchReactor(manager_, request->job_id(), request->after_seq());
}

// ---- Membership ----

grpc::ServerUnaryReactor* CoordinatorService::RegisterWorker(
    grpc::CallbackServerContext* context, const tecl::v1::RegisterWorkerRequest* request,
    tecl::v1::RegisterWorkerResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  const tecl::v1::WorkerInfo& w = request->worker();
  absl::Status valid;
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"worker.address", &w.address()},
        {"worker.metrics_address", &w.metrics_address()},
        {"worker.hostname", &w.hostname()},
        {"worker.version", &w.version()}}) {
    if (valid.ok()) valid = LimitText(field, *value, limits_.max_text_bytes);
  }
  if (valid.ok() && (w.gpus() < 0 || w.threads() < 0)) {
    valid = absl::InvalidArgumentError("worker.gpus and worker.threads must be >= 0");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->RegisterWorker(w, [reactor, response](auto result) {
    if (result.ok()) *response = *std::move(result);
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::Heartbeat(grpc::CallbackServerContext* context,
                                                        const tecl::v1::HeartbeatRequest* request,
                                                        tecl::v1::HeartbeatResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = RequireId("worker_id", request->worker_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = LimitText("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok() && !request->job_id().empty() && request->attempt() < 1) {
    valid = absl::InvalidArgumentError("attempt must be >= 1 when job_id is set");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->Heartbeat(*request, [reactor, response](auto result) {
    if (result.ok()) *response = *std::move(result);
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::ReportOutcome(
    grpc::CallbackServerContext* context, const tecl::v1::ReportOutcomeRequest* request,
    tecl::v1::ReportOutcomeResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = RequireId("worker_id", request->worker_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = LimitText("reason", request->reason(), limits_.max_text_bytes);
  if (valid.ok() && request->attempt() < 1)
    valid = absl::InvalidArgumentError("attempt must be >= 1");
  if (valid.ok() && request->rank() < 0) valid = absl::InvalidArgumentError("rank must be >= 0");
  if (valid.ok() && (request->outcome() == tecl::v1::OUTCOME_UNSPECIFIED ||
                     !tecl::v1::Outcome_IsValid(request->outcome()))) {
    valid =
        absl::InvalidArgumentError("outcome is missing; set succeeded, failed, fatal or stopped");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->ReportOutcome(
      *request, [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::RegisterCheckpoint(
    grpc::CallbackServerContext* context, const tecl::v1::RegisterCheckpointRequest* request,
    tecl::v1::RegisterCheckpointResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = RequireId("worker_id", request->worker_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok())
    valid = LimitText("checkpoint.path", request->checkpoint().path(), limits_.max_text_bytes);
  if (valid.ok()) valid = LimitText("checkpoint.sha256", request->checkpoint().sha256(), 128);
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->RegisterCheckpoint(
      *request, [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); });
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::ListWorkers(
    grpc::CallbackServerContext* context, const tecl::v1::ListWorkersRequest* request,
    tecl::v1::ListWorkersResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  if (!tecl::v1::WorkerKind_IsValid(request->kind())) {
    return FinishWith(context, absl::InvalidArgumentError("kind is not a worker kind"));
  }
  for (auto& worker : manager_->ListWorkers(request->kind()))
    *response->add_workers() = std::move(worker);
  return FinishWith(context, absl::OkStatus());
}

// ---- Rendezvous ----

absl::Status CoordinatorService::CheckScope(const tecl::v1::RendezvousScope& scope) const {
  TECL_RETURN_IF_ERROR(RequireId("scope.job_id", scope.job_id(), limits_.max_id_bytes));
  if (scope.attempt() < 1) return absl::InvalidArgumentError("scope.attempt must be >= 1");
  return absl::OkStatus();
}

absl::Status CoordinatorService::CheckKey(const std::string& key) const {
  return RequireId("key", key, limits_.max_key_bytes);
}

grpc::ServerUnaryReactor* CoordinatorService::StoreSet(grpc::CallbackServerContext* context,
                                                       const tecl::v1::StoreSetRequest* request,
                                                       tecl::v1::StoreSetResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status status = CheckScope(request->scope());
  if (status.ok()) status = CheckKey(request->key());
  if (status.ok()) status = LimitText("value", request->value(), limits_.max_value_bytes);
  if (status.ok())
    status = rendezvous_->Set(ScopeOf(request->scope()), request->key(), request->value());
  return FinishWith(context, status);
}

grpc::ServerUnaryReactor* CoordinatorService::StoreGet(grpc::CallbackServerContext* context,
                                                       const tecl::v1::StoreGetRequest* request,
                                                       tecl::v1::StoreGetResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKey(request->key());
  if (valid.ok() && request->wait_timeout_ms() < 0) {
    valid = absl::InvalidArgumentError("wait_timeout_ms must be >= 0 (0 = do not wait)");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  auto* reactor = new WaitReactor(rendezvous_);
  reactor->SetWait(rendezvous_->Get(ScopeOf(request->scope()), request->key(),
                                    absl::Milliseconds(request->wait_timeout_ms()),
                                    [reactor, response](absl::StatusOr<std::string> value) {
                                      if (value.ok()) response->set_value(*std::move(value));
                                      reactor->Finish(ToGrpcStatus(value.status()));
                                    }));
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::StoreAdd(grpc::CallbackServerContext* context,
                                                       const tecl::v1::StoreAddRequest* request,
                                                       tecl::v1::StoreAddResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKey(request->key());
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<int64_t> value =
      rendezvous_->Add(ScopeOf(request->scope()), request->key(), request->delta());
  if (value.ok()) response->set_value(*value);
  return FinishWith(context, value.status());
}

grpc::ServerUnaryReactor* CoordinatorService::StoreCompareSet(
    grpc::CallbackServerContext* context, const tecl::v1::StoreCompareSetRequest* request,
    tecl::v1::StoreCompareSetResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKey(request->key());
  if (valid.ok()) valid = LimitText("expected", request->expected(), limits_.max_value_bytes);
  if (valid.ok()) valid = LimitText("desired", request->desired(), limits_.max_value_bytes);
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<std::string> value =
      rendezvous_->CompareSet(ScopeOf(request->scope()), request->key(), request->expected(),
                              request->desired(), request->expect_absent());
  if (value.ok()) response->set_value(*std::move(value));
  return FinishWith(context, value.status());
}

grpc::ServerUnaryReactor* CoordinatorService::StoreWait(grpc::CallbackServerContext* context,
                                                        const tecl::v1::StoreWaitRequest* request,
                                                        tecl::v1::StoreWaitResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok() && request->keys().empty()) valid = absl::InvalidArgumentError("keys is empty");
  if (valid.ok() && static_cast<size_t>(request->keys_size()) > limits_.max_keys_per_call) {
    valid =
        absl::InvalidArgumentError(absl::StrCat("more than ", limits_.max_keys_per_call, " keys"));
  }
  for (const std::string& key : request->keys()) {
    if (valid.ok()) valid = CheckKey(key);
  }
  if (valid.ok() && request->wait_timeout_ms() < 0) {
    valid = absl::InvalidArgumentError("wait_timeout_ms must be >= 0");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  auto* reactor = new WaitReactor(rendezvous_);
  std::vector<std::string> keys(request->keys().begin(), request->keys().end());
  reactor->SetWait(rendezvous_->Wait(
      ScopeOf(request->scope()), keys, absl::Milliseconds(request->wait_timeout_ms()),
      [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); }));
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::StoreDelete(
    grpc::CallbackServerContext* context, const tecl::v1::StoreDeleteRequest* request,
    tecl::v1::StoreDeleteResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKey(request->key());
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<bool> deleted = rendezvous_->Delete(ScopeOf(request->scope()), request->key());
  if (deleted.ok()) response->set_deleted(*deleted);
  return FinishWith(context, deleted.status());
}

grpc::ServerUnaryReactor* CoordinatorService::StoreCheck(grpc::CallbackServerContext* context,
                                                         const tecl::v1::StoreCheckRequest* request,
                                                         tecl::v1::StoreCheckResponse* response) {
  if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok() && static_cast<size_t>(request->keys_size()) > limits_.max_keys_per_call) {
    valid =
        absl::InvalidArgumentError(absl::StrCat("more than ", limits_.max_keys_per_call, " keys"));
  }
  for (const std::string& key : request->keys()) {
    if (valid.ok()) valid = CheckKey(key);
  }
  if (!valid.ok()) return FinishWith(context, valid);
  std::vector<std::string> keys(request->keys().begin(), request->keys().end());
  absl::StatusOr<Rendezvous::CheckResult> result =
      rendezvous_->Check(ScopeOf(request->scope()), keys);
  if (result.ok()) {
    response->set_all_present(result->all_present);
    response->set_num_keys(result->num_keys);
  }
  return FinishWith(context, result.status());
}

}  // namespace tecl::coordinator
