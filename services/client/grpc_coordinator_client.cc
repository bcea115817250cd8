#include "services/client/grpc_coordinator_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/auth.h"
#include "services/common/grpc_status.h"

namespace tecl {
namespace {

using namespace tecl::v1;  // NOLINT: the generated messages and stubs.

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  if (timeout > absl::ZeroDuration()) {
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMicroseconds(timeout));
  }
}

// One unary call: `invoke(context, response)` with the deadline and, when given, the worker's
// session set.
template <typename Response, typename Invoke>
absl::StatusOr<Response> Unary(absl::Duration timeout, Invoke invoke,
                               const std::string& session = "") {
  grpc::ClientContext context;
  SetDeadline(&context, timeout);
  if (!session.empty()) context.AddMetadata(kSessionMetadata, session);
  Response response;
  const grpc::Status status = invoke(&context, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

template <typename Stub>
absl::Status Missing(const std::shared_ptr<Stub>& stub, const char* service) {
  if (stub != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("this client has no ", service, " stub; build it with NewCoordinatorClient"));
}

class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  GrpcCoordinatorClient(std::shared_ptr<JobService::StubInterface> jobs,
                        std::shared_ptr<MembershipService::StubInterface> membership,
                        std::shared_ptr<RendezvousService::StubInterface> rendezvous,
                        ClientOptions options)
      : jobs_(std::move(jobs)),
        membership_(std::move(membership)),
        rendezvous_(std::move(rendezvous)),
        options_(std::move(options)) {}

  // ---- JobService ----

  absl::StatusOr<Job> SubmitJob(const JobSpec& spec, const std::string& request_id) override {
    if (absl::Status s = Missing(jobs_, "JobService"); !s.ok()) return s;
    SubmitJobRequest request;
    *request.mutable_spec() = spec;
    request.set_request_id(request_id);
    absl::StatusOr<SubmitJobResponse> response;
    auto call = [&] {
      response = Unary<SubmitJobResponse>(options_.rpc_timeout, [&](auto* c, auto* r) {
        return jobs_->SubmitJob(c, request, r);
      });
      return response.status();
    };
    // Only a submit with a request id may be repeated without creating a second job.
    const absl::Status status = request_id.empty() ? call() : Retry(call);
    if (!status.ok()) return status;
    return response->job();
  }

  absl::StatusOr<Job> GetJob(const std::string& job_id) override {
    if (absl::Status s = Missing(jobs_, "JobService"); !s.ok()) return s;
    GetJobRequest request;
    request.set_job_id(job_id);
    return Unary<Job>(options_.rpc_timeout,
                      [&](auto* c, auto* r) { return jobs_->GetJob(c, request, r); });
  }

  absl::StatusOr<ListJobsResponse> ListJobs(const ListJobsRequest& request) override {
    if (absl::Status s = Missing(jobs_, "JobService"); !s.ok()) return s;
    return Unary<ListJobsResponse>(options_.rpc_timeout,
                                   [&](auto* c, auto* r) { return jobs_->ListJobs(c, request, r); });
  }

  absl::StatusOr<Job> CancelJob(const std::string& job_id, const std::string& reason) override {
    if (absl::Status s = Missing(jobs_, "JobService"); !s.ok()) return s;
    CancelJobRequest request;
    request.set_job_id(job_id);
    request.set_reason(reason);
    return Unary<Job>(options_.rpc_timeout,
                      [&](auto* c, auto* r) { return jobs_->CancelJob(c, request, r); });
  }

  absl::StatusOr<std::vector<JobEvent>> ListEvents(const std::string& job_id, int64_t after_seq,
                                                   int limit) override {
    if (absl::Status s = Missing(jobs_, "JobService"); !s.ok()) return s;
    ListEventsRequest request;
    request.set_job_id(job_id);
    request.set_after_seq(after_seq);
    request.set_limit(limit);
    absl::StatusOr<ListEventsResponse> response = Unary<ListEventsResponse>(
        options_.rpc_timeout, [&](auto* c, auto* r) { return jobs_->ListEvents(c, request, r); });
    if (!response.ok()) return response.status();
    return std::vector<JobEvent>(response->events().begin(), response->events().end());
  }

  absl::StatusOr<GetJobLogsResponse> GetJobLogs(const GetJobLogsRequest& request) override {
    if (absl::Status s = Missing(jobs_, "JobService"); !s.ok()) return s;
    return Unary<GetJobLogsResponse>(
        options_.rpc_timeout, [&](auto* c, auto* r) { return jobs_->GetJobLogs(c, request, r); });
  }

  absl::Status WatchJob(const std::string& job_id, int64_t after_seq, absl::Duration timeout,
                        const std::function<bool(const WatchJobResponse&)>& on_update) override {
    if (absl::Status s = Missing(jobs_, "JobService"); !s.ok()) return s;
    WatchJobRequest request;
    request.set_job_id(job_id);
    request.set_after_seq(after_seq);
    grpc::ClientContext context;
    SetDeadline(&context, timeout);
    std::unique_ptr<grpc::ClientReaderInterface<WatchJobResponse>> reader =
        jobs_->WatchJob(&context, request);
    WatchJobResponse update;
    bool stopped = false;
    while (reader->Read(&update)) {
      if (!on_update(update)) {
        stopped = true;
        context.TryCancel();
        break;
      }
    }
    const grpc::Status status = reader->Finish();
    if (stopped) return absl::CancelledError("watch stopped by the caller");
    return FromGrpcStatus(status);
  }

  // ---- MembershipService ----

  absl::StatusOr<RegisterWorkerResponse> RegisterWorker(const WorkerInfo& worker) override {
    if (absl::Status s = Missing(membership_, "MembershipService"); !s.ok()) return s;
    RegisterWorkerRequest request;
    *request.mutable_worker() = worker;
    return Unary<RegisterWorkerResponse>(options_.rpc_timeout, [&](auto* c, auto* r) {
      return membership_->RegisterWorker(c, request, r);
    });
  }

  absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& request,
                                              const std::string& session) override {
    if (absl::Status s = Missing(membership_, "MembershipService"); !s.ok()) return s;
    return Unary<HeartbeatResponse>(
        options_.rpc_timeout,
        [&](auto* c, auto* r) { return membership_->Heartbeat(c, request, r); }, session);
  }

  absl::Status ReportOutcome(const ReportOutcomeRequest& request,
                             const std::string& session) override {
    if (absl::Status s = Missing(membership_, "MembershipService"); !s.ok()) return s;
    return Retry([&] {
      return Unary<ReportOutcomeResponse>(
                 options_.rpc_timeout,
                 [&](auto* c, auto* r) { return membership_->ReportOutcome(c, request, r); },
                 session)
          .status();
    });
  }

  absl::Status RegisterCheckpoint(const RegisterCheckpointRequest& request,
                                  const std::string& session) override {
    if (absl::Status s = Missing(membership_, "MembershipService"); !s.ok()) return s;
    return Retry([&] {
      return Unary<RegisterCheckpointResponse>(
                 options_.rpc_timeout,
                 [&](auto* c, auto* r) { return membership_->RegisterCheckpoint(c, request, r); },
                 session)
          .status();
    });
  }

  absl::Status RejectCheckpoint(const RejectCheckpointRequest& request,
                                const std::string& session) override {
    if (absl::Status s = Missing(membership_, "MembershipService"); !s.ok()) return s;
    return Retry([&] {
      return Unary<RejectCheckpointResponse>(
                 options_.rpc_timeout,
                 [&](auto* c, auto* r) { return membership_->RejectCheckpoint(c, request, r); },
                 session)
          .status();
    });
  }

  absl::StatusOr<std::vector<WorkerInfo>> ListWorkers(WorkerKind kind) override {
    if (absl::Status s = Missing(membership_, "MembershipService"); !s.ok()) return s;
    ListWorkersRequest request;
    request.set_kind(kind);
    absl::StatusOr<ListWorkersResponse> response =
        Unary<ListWorkersResponse>(options_.rpc_timeout, [&](auto* c, auto* r) {
          return membership_->ListWorkers(c, request, r);
        });
    if (!response.ok()) return response.status();
    return std::vector<WorkerInfo>(response->workers().begin(), response->workers().end());
  }

  // ---- RendezvousService ----

  absl::Status StoreSet(const StoreSetRequest& request,
                                       const std::string& session) override {
    if (absl::Status s = Missing(rendezvous_, "RendezvousService"); !s.ok()) return s;
    return Unary<StoreSetResponse>(options_.rpc_timeout, [&](auto* c, auto* r) {
             return rendezvous_->StoreSet(c, request, r);
           }, session)
        .status();
  }

  absl::StatusOr<std::string> StoreGet(const StoreGetRequest& request,
                                       const std::string& session) override {
    if (absl::Status s = Missing(rendezvous_, "RendezvousService"); !s.ok()) return s;
    absl::StatusOr<StoreGetResponse> response = Unary<StoreGetResponse>(
        Waiting(request.wait_timeout_ms()),
        [&](auto* c, auto* r) { return rendezvous_->StoreGet(c, request, r); }, session);
    if (!response.ok()) return response.status();
    return std::move(*response->mutable_value());
  }

  absl::StatusOr<int64_t> StoreAdd(const StoreAddRequest& request,
                                       const std::string& session) override {
    if (absl::Status s = Missing(rendezvous_, "RendezvousService"); !s.ok()) return s;
    absl::StatusOr<StoreAddResponse> response = Unary<StoreAddResponse>(
        options_.rpc_timeout, [&](auto* c, auto* r) { return rendezvous_->StoreAdd(c, request, r); }, session);
    if (!response.ok()) return response.status();
    return response->value();
  }

  absl::StatusOr<std::string> StoreCompareSet(const StoreCompareSetRequest& request,
                                              const std::string& session) override {
    if (absl::Status s = Missing(rendezvous_, "RendezvousService"); !s.ok()) return s;
    absl::StatusOr<StoreCompareSetResponse> response =
        Unary<StoreCompareSetResponse>(options_.rpc_timeout, [&](auto* c, auto* r) {
          return rendezvous_->StoreCompareSet(c, request, r);
        }, session);
    if (!response.ok()) return response.status();
    return std::move(*response->mutable_value());
  }

  absl::Status StoreWait(const StoreWaitRequest& request,
                                        const std::string& session) override {
    if (absl::Status s = Missing(rendezvous_, "RendezvousService"); !s.ok()) return s;
    return Unary<StoreWaitResponse>(Waiting(request.wait_timeout_ms()), [&](auto* c, auto* r) {
             return rendezvous_->StoreWait(c, request, r);
           }, session)
        .status();
  }

  absl::StatusOr<bool> StoreDelete(const StoreDeleteRequest& request,
                                          const std::string& session) override {
    if (absl::Status s = Missing(rendezvous_, "RendezvousService"); !s.ok()) return s;
    absl::StatusOr<StoreDeleteResponse> response =
        Unary<StoreDeleteResponse>(options_.rpc_timeout, [&](auto* c, auto* r) {
          return rendezvous_->StoreDelete(c, request, r);
        }, session);
    if (!response.ok()) return response.status();
    return response->deleted();
  }

  absl::StatusOr<StoreCheckResponse> StoreCheck(const StoreCheckRequest& request,
                                         const std::string& session) override {
    if (absl::Status s = Missing(rendezvous_, "RendezvousService"); !s.ok()) return s;
    return Unary<StoreCheckResponse>(options_.rpc_timeout, [&](auto* c, auto* r) {
      return rendezvous_->StoreCheck(c, request, r);
    }, session);
  }

 private:
  // The deadline of a call that waits up to `wait_ms` on the server.
  absl::Duration Waiting(int64_t wait_ms) const {
    return absl::Milliseconds(wait_ms) + options_.rpc_timeout;
  }

  // Calls `call` until it returns anything but UNAVAILABLE, at most max_attempts times.
  template <typename Call>
  absl::Status Retry(Call call) const {
    Backoff backoff(options_.backoff);
    absl::Status status;
    for (int attempt = 1;; ++attempt) {
      status = call();
      if (status.code() != absl::StatusCode::kUnavailable || attempt >= options_.max_attempts) {
        return status;
      }
      absl::SleepFor(backoff.Next());
    }
  }

  const std::shared_ptr<JobService::StubInterface> jobs_;
  const std::shared_ptr<MembershipService::StubInterface> membership_;
  const std::shared_ptr<RendezvousService::StubInterface> rendezvous_;
  const ClientOptions options_;
};

}  // namespace

std::shared_ptr<CoordinatorClient> NewCoordinatorClient(
    const std::shared_ptr<grpc::ChannelInterface>& channel, ClientOptions options) {
  return NewCoordinatorClient(JobService::NewStub(channel), MembershipService::NewStub(channel),
                              RendezvousService::NewStub(channel), std::move(options));
}

std::shared_ptr<CoordinatorClient> NewCoordinatorClient(
    std::shared_ptr<JobService::StubInterface> jobs,
    std::shared_ptr<MembershipService::StubInterface> membership,
    std::shared_ptr<RendezvousService::StubInterface> rendezvous, ClientOptions options) {
  return std::make_shared<GrpcCoordinatorClient>(std::move(jobs), std::move(membership),
                                                 std::move(rendezvous), std::move(options));
}

}  // namespace tecl
