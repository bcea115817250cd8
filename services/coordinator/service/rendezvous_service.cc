#include "services/coordinator/service/rendezvous_service.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/grpc_status.h"
#include "services/common/status_macros.h"

namespace tecl::coordinator {
namespace {

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

RendezvousScopeId ScopeOf(const tecl::v1::RendezvousScope& scope) {
  return {scope.job_id(), scope.attempt()};
}

}  // namespace

RendezvousService::RendezvousService(Rendezvous* rendezvous, Membership* membership,
                                     Authenticator auth, RequestLimits limits)
    : rendezvous_(rendezvous), membership_(membership), auth_(std::move(auth)), limits_(limits) {}

absl::Status RendezvousService::CheckScope(const tecl::v1::RendezvousScope& scope) const {
  TECL_RETURN_IF_ERROR(RequireId("scope.job_id", scope.job_id(), limits_.max_id_bytes));
  if (scope.attempt() < 1) return absl::InvalidArgumentError("scope.attempt must be >= 1");
  return absl::OkStatus();
}

absl::Status RendezvousService::CheckCaller(grpc::CallbackServerContext* context,
                                            const tecl::v1::RendezvousScope& scope) const {
  return membership_->CheckRendezvousCaller(SessionOf(*context), scope.job_id(), scope.attempt());
}

absl::Status RendezvousService::CheckKey(const std::string& key) const {
  return RequireId("key", key, limits_.max_key_bytes);
}

absl::Status RendezvousService::CheckKeys(
    const google::protobuf::RepeatedPtrField<std::string>& keys) const {
  if (static_cast<size_t>(keys.size()) > limits_.max_keys_per_call) {
    return absl::InvalidArgumentError(
        absl::StrCat("keys: ", keys.size(), " keys; at most ", limits_.max_keys_per_call));
  }
  for (const std::string& key : keys) TECL_RETURN_IF_ERROR(CheckKey(key));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* RendezvousService::StoreSet(grpc::CallbackServerContext* context,
                                                      const tecl::v1::StoreSetRequest* request,
                                                      tecl::v1::StoreSetResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status status = CheckScope(request->scope());
  if (status.ok()) status = CheckKey(request->key());
  if (status.ok()) status = LimitText("value", request->value(), limits_.max_value_bytes);
  if (status.ok()) status = CheckCaller(context, request->scope());
  if (status.ok()) {
    status = rendezvous_->Set(ScopeOf(request->scope()), request->key(), request->value());
  }
  return FinishWith(context, status);
}

grpc::ServerUnaryReactor* RendezvousService::StoreGet(grpc::CallbackServerContext* context,
                                                      const tecl::v1::StoreGetRequest* request,
                                                      tecl::v1::StoreGetResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKey(request->key());
  if (valid.ok() && request->wait_timeout_ms() < 0) {
    valid = absl::InvalidArgumentError("wait_timeout_ms must be >= 0 (0 = do not wait)");
  }
  if (valid.ok()) valid = CheckCaller(context, request->scope());
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

grpc::ServerUnaryReactor* RendezvousService::StoreAdd(grpc::CallbackServerContext* context,
                                                      const tecl::v1::StoreAddRequest* request,
                                                      tecl::v1::StoreAddResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKey(request->key());
  if (valid.ok()) valid = CheckCaller(context, request->scope());
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<int64_t> value =
      rendezvous_->Add(ScopeOf(request->scope()), request->key(), request->delta());
  if (value.ok()) response->set_value(*value);
  return FinishWith(context, value.status());
}

grpc::ServerUnaryReactor* RendezvousService::StoreCompareSet(
    grpc::CallbackServerContext* context, const tecl::v1::StoreCompareSetRequest* request,
    tecl::v1::StoreCompareSetResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKey(request->key());
  if (valid.ok()) valid = LimitText("expected", request->expected(), limits_.max_value_bytes);
  if (valid.ok()) valid = LimitText("desired", request->desired(), limits_.max_value_bytes);
  if (valid.ok()) valid = CheckCaller(context, request->scope());
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<std::string> value =
      rendezvous_->CompareSet(ScopeOf(request->scope()), request->key(), request->expected(),
                              request->desired(), request->expect_absent());
  if (value.ok()) response->set_value(*std::move(value));
  return FinishWith(context, value.status());
}

grpc::ServerUnaryReactor* RendezvousService::StoreWait(grpc::CallbackServerContext* context,
                                                       const tecl::v1::StoreWaitRequest* request,
                                                       tecl::v1::StoreWaitResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok() && request->keys().empty()) valid = absl::InvalidArgumentError("keys is empty");
  if (valid.ok()) valid = CheckKeys(request->keys());
  if (valid.ok() && request->wait_timeout_ms() < 0) {
    valid = absl::InvalidArgumentError("wait_timeout_ms must be >= 0");
  }
  if (valid.ok()) valid = CheckCaller(context, request->scope());
  if (!valid.ok()) return FinishWith(context, valid);
  auto* reactor = new WaitReactor(rendezvous_);
  std::vector<std::string> keys(request->keys().begin(), request->keys().end());
  reactor->SetWait(rendezvous_->Wait(
      ScopeOf(request->scope()), keys, absl::Milliseconds(request->wait_timeout_ms()),
      [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); }));
  return reactor;
}

grpc::ServerUnaryReactor* RendezvousService::StoreDelete(
    grpc::CallbackServerContext* context, const tecl::v1::StoreDeleteRequest* request,
    tecl::v1::StoreDeleteResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKey(request->key());
  if (valid.ok()) valid = CheckCaller(context, request->scope());
  if (!valid.ok()) return FinishWith(context, valid);
  absl::StatusOr<bool> deleted = rendezvous_->Delete(ScopeOf(request->scope()), request->key());
  if (deleted.ok()) response->set_deleted(*deleted);
  return FinishWith(context, deleted.status());
}

grpc::ServerUnaryReactor* RendezvousService::StoreCheck(grpc::CallbackServerContext* context,
                                                        const tecl::v1::StoreCheckRequest* request,
                                                        tecl::v1::StoreCheckResponse* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  absl::Status valid = CheckScope(request->scope());
  if (valid.ok()) valid = CheckKeys(request->keys());
  if (valid.ok()) valid = CheckCaller(context, request->scope());
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
