// RendezvousService: the gRPC adapter of tecl.v1.RendezvousService (callback API) over the
// coordinator's Rendezvous key-value store.
//
// Every handler first refuses calls that are not a trainer's (UNAUTHENTICATED / PERMISSION_DENIED),
// then checks the scope, keys and sizes (INVALID_ARGUMENT before any logic runs) and that the
// caller's session is a trainer of the scope's attempt (PERMISSION_DENIED): a trainer cannot read or
// write another job's or attempt's keys. Waiting calls (StoreGet with a wait, StoreWait) never
// hold a gRPC thread: the reactor finishes from the thread that sets the key, the rendezvous
// timer, the attempt's end, or the client's cancellation.
//
// Thread-safe. The rendezvous must outlive the service (and the gRPC server).
#ifndef TECL_SERVICES_COORDINATOR_SERVICE_RENDEZVOUS_SERVICE_H_
#define TECL_SERVICES_COORDINATOR_SERVICE_RENDEZVOUS_SERVICE_H_

#include <string>

#include "services/common/auth.h"
#include "services/coordinator/manager/membership.h"
#include "services/coordinator/rendezvous/rendezvous.h"
#include "services/coordinator/service/request_checks.h"
#include "tecl/v1/coordinator_service.grpc.pb.h"

namespace tecl::coordinator {

class RendezvousService final : public tecl::v1::RendezvousService::CallbackService {
 public:
  // `membership` says which trainer a session is and which attempt it is in.
  RendezvousService(Rendezvous* rendezvous, Membership* membership, Authenticator auth,
                    RequestLimits limits = {});

  grpc::ServerUnaryReactor* StoreSet(grpc::CallbackServerContext* context,
                                     const tecl::v1::StoreSetRequest* request,
                                     tecl::v1::StoreSetResponse* response) override;
  grpc::ServerUnaryReactor* StoreGet(grpc::CallbackServerContext* context,
                                     const tecl::v1::StoreGetRequest* request,
                                     tecl::v1::StoreGetResponse* response) override;
  grpc::ServerUnaryReactor* StoreAdd(grpc::CallbackServerContext* context,
                                     const tecl::v1::StoreAddRequest* request,
                                     tecl::v1::StoreAddResponse* response) override;
  grpc::ServerUnaryReactor* StoreCompareSet(grpc::CallbackServerContext* context,
                                            const tecl::v1::StoreCompareSetRequest* request,
                                            tecl::v1::StoreCompareSetResponse* response) override;
  grpc::ServerUnaryReactor* StoreWait(grpc::CallbackServerContext* context,
                                      const tecl::v1::StoreWaitRequest* request,
                                      tecl::v1::StoreWaitResponse* response) override;
  grpc::ServerUnaryReactor* StoreDelete(grpc::CallbackServerContext* context,
                                        const tecl::v1::StoreDeleteRequest* request,
                                        tecl::v1::StoreDeleteResponse* response) override;
  grpc::ServerUnaryReactor* StoreCheck(grpc::CallbackServerContext* context,
                                       const tecl::v1::StoreCheckRequest* request,
                                       tecl::v1::StoreCheckResponse* response) override;

 private:
  // INVALID_ARGUMENT: a scope without a job id or with an attempt < 1.
  absl::Status CheckScope(const tecl::v1::RendezvousScope& scope) const;
  // PERMISSION_DENIED unless the caller's session is a trainer of the scope's (job, attempt).
  // Checked after the request's shape.
  absl::Status CheckCaller(grpc::CallbackServerContext* context,
                           const tecl::v1::RendezvousScope& scope) const;
  absl::Status CheckKey(const std::string& key) const;
  // Scope and at most max_keys_per_call valid keys.
  absl::Status CheckKeys(const google::protobuf::RepeatedPtrField<std::string>& keys) const;

  Rendezvous* const rendezvous_;
  Membership* const membership_;
  const Authenticator auth_;
  const RequestLimits limits_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SERVICE_RENDEZVOUS_SERVICE_H_
