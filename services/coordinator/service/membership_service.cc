#include "services/coordinator/service/membership_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/grpc_status.h"

namespace tecl::coordinator {
namespace {

// Finishes `reactor` with the result of a logic call, writing the value into `response`.
template <typename T>
Callback<T> Answer(grpc::ServerUnaryReactor* reactor, T* response) {
  return [reactor, response](absl::StatusOr<T> result) {
    if (result.ok()) *response = *std::move(result);
    reactor->Finish(ToGrpcStatus(result.status()));
  };
}

StatusCallback Answer(grpc::ServerUnaryReactor* reactor) {
  return [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); };
}

}  // namespace

MembershipService::MembershipService(Coordinator* coordinator, Authenticator auth,
                                     RequestLimits limits)
    : coordinator_(coordinator), auth_(std::move(auth)), limits_(limits) {}

grpc::ServerUnaryReactor* MembershipService::RegisterWorker(
    grpc::CallbackServerContext* context, const tecl::v1::RegisterWorkerRequest* request,
    tecl::v1::RegisterWorkerResponse* response) {
  absl::StatusOr<Principal> caller =
      auth_.Authorize(*context, {Role::kTrainer, Role::kDataloader});
  if (!caller.ok()) return FinishWith(context, caller.status());
  const tecl::v1::WorkerInfo& w = request->worker();
  absl::Status valid;
  const Role kind_role =
      w.kind() == tecl::v1::WORKER_KIND_DATALOADER ? Role::kDataloader : Role::kTrainer;
  if (!caller->insecure && w.kind() != tecl::v1::WORKER_KIND_UNSPECIFIED &&
      caller->role != kind_role) {
    return FinishWith(context, absl::PermissionDeniedError(absl::StrCat(
                                   caller->Describe(), " may not register as a ",
                                   RoleName(kind_role), "; register with a ",
                                   RoleName(kind_role), "'s credentials")));
  }
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
  coordinator_->membership().Register(w, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* MembershipService::Heartbeat(grpc::CallbackServerContext* context,
                                                       const tecl::v1::HeartbeatRequest* request,
                                                       tecl::v1::HeartbeatResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer, Role::kDataloader})) return refused;
  absl::Status valid = RequireId("worker_id", request->worker_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = LimitText("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok() && !request->job_id().empty() && request->attempt() < 1) {
    valid = absl::InvalidArgumentError("attempt must be >= 1 when job_id is set");
  }
  for (int i = 0; valid.ok() && i < request->log_lines_size(); ++i) {
    const tecl::v1::LogLine& line = request->log_lines(i);
    const std::string field = absl::StrCat("log_lines[", i, "]");
    valid = RequireId(field + ".job_id", line.job_id(), limits_.max_id_bytes);
    if (valid.ok() && (line.seq() < 1 || line.attempt() < 1 || line.rank() < 0)) {
      valid = absl::InvalidArgumentError(
          absl::StrCat(field, ": seq and attempt must be >= 1 and rank >= 0 (seq ", line.seq(),
                       ", attempt ", line.attempt(), ", rank ", line.rank(), ")"));
    }
  }
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  coordinator_->membership().Heartbeat(*request, SessionOf(*context), Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* MembershipService::ReportOutcome(
    grpc::CallbackServerContext* context, const tecl::v1::ReportOutcomeRequest* request,
    tecl::v1::ReportOutcomeResponse* response) {
  // Dataloaders report the ranks of prepare jobs; the manager checks the placement.
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer, Role::kDataloader})) return refused;
  absl::Status valid = RequireId("worker_id", request->worker_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = LimitText("reason", request->reason(), limits_.max_text_bytes);
  if (valid.ok() && request->attempt() < 1) {
    valid = absl::InvalidArgumentError("attempt must be >= 1");
  }
  if (valid.ok() && request->rank() < 0) valid = absl::InvalidArgumentError("rank must be >= 0");
  if (valid.ok() && request->step() < 0) valid = absl::InvalidArgumentError("step must be >= 0");
  if (valid.ok() && (request->outcome() == tecl::v1::OUTCOME_UNSPECIFIED ||
                     !tecl::v1::Outcome_IsValid(request->outcome()))) {
    valid =
        absl::InvalidArgumentError("outcome is missing; set succeeded, failed, fatal or stopped");
  }
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  coordinator_->attempts().ReportOutcome(*request, SessionOf(*context), Answer(reactor));
  return reactor;
}

grpc::ServerUnaryReactor* MembershipService::RegisterCheckpoint(
    grpc::CallbackServerContext* context, const tecl::v1::RegisterCheckpointRequest* request,
    tecl::v1::RegisterCheckpointResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status valid = RequireId("worker_id", request->worker_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok()) {
    valid = LimitText("checkpoint.path", request->checkpoint().path(), limits_.max_text_bytes);
  }
  if (valid.ok()) valid = LimitText("checkpoint.sha256", request->checkpoint().sha256(), 128);
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  coordinator_->checkpoints().Register(*request, SessionOf(*context), Answer(reactor));
  return reactor;
}

grpc::ServerUnaryReactor* MembershipService::RejectCheckpoint(
    grpc::CallbackServerContext* context, const tecl::v1::RejectCheckpointRequest* request,
    tecl::v1::RejectCheckpointResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status valid = RequireId("worker_id", request->worker_id(), limits_.max_id_bytes);
  if (valid.ok()) valid = RequireId("job_id", request->job_id(), limits_.max_id_bytes);
  if (valid.ok() && request->attempt() < 1) {
    valid = absl::InvalidArgumentError("attempt must be >= 1");
  }
  if (valid.ok()) {
    valid = LimitText("checkpoint.path", request->checkpoint().path(), limits_.max_text_bytes);
  }
  if (valid.ok()) valid = LimitText("reason", request->reason(), limits_.max_text_bytes);
  if (!valid.ok()) return FinishWith(context, valid);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  coordinator_->checkpoints().Reject(*request, SessionOf(*context), Answer(reactor));
  return reactor;
}

grpc::ServerUnaryReactor* MembershipService::ListWorkers(
    grpc::CallbackServerContext* context, const tecl::v1::ListWorkersRequest* request,
    tecl::v1::ListWorkersResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kUser, Role::kReader})) return refused;
  if (!tecl::v1::WorkerKind_IsValid(request->kind())) {
    return FinishWith(context, absl::InvalidArgumentError("kind is not a worker kind"));
  }
  for (auto& worker : coordinator_->membership().List(request->kind())) {
    *response->add_workers() = std::move(worker);
  }
  return FinishWith(context, absl::OkStatus());
}

}  // namespace tecl::coordinator
