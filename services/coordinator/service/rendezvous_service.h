// RendezvousService: the gRPC adapter of tecl.v1.RendezvousService (callback API) over the
// coordinator's Rendezvous key-value store.
//
// Every handler first refuses unauthenticated calls, then checks the scope, keys and sizes
// (INVALID_ARGUMENT before any logic runs). Waiting calls (StoreGet with a wait, StoreWait) never
// hold a gRPC thread: the reactor finishes from the thread that sets the key, the rendezvous
// timer, the attempt's end, or the client's cancellation.
//
// Thread-safe. The rendezvous must outlive the service (and the gRPC server).
#ifndef TECL_SERVICES_COORDINATOR_SERVICE_RENDEZVOUS_SERVICE_H_
#define TECL_SERVICES_COORDINATOR_SERVICE_RENDEZVOUS_SERVICE_H_

#include <string>

#include "services/common/auth.h"
#include "services/coordinator/rendezvous/rendezvous.h"
#include "services/coordinator/service/request_checks.h"
#include "tecl/v1/coordinator_service.grpc.pb.h"

namespace tecl::coordinator {

class RendezvousService final : public tecl::v1::RendezvousService::CallbackService {
 public:
  RendezvousService(Rendezvous* rendezvous, TokenAuthenticator auth, RequestLimits limits = {});

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
  absl::Status CheckScope(const tecl::v1::RendezvousScope& scope) const;
  absl::Status CheckKey(const std::string& key) const;
  // Scope and at most max_keys_per_call valid keys.
  absl::Status CheckKeys(const google::protobuf::RepeatedPtrField<std::string>& keys) const;

  Rendezvous* const rendezvous_;
  const TokenAuthenticator auth_;
  const RequestLimits limits_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SERVICE_RENDEZVOUS_SERVICE_H_
