// MembershipService: the gRPC adapter of tecl.v1.MembershipService (callback API) over the
// coordinator's Membership (register, heartbeat, list), AttemptController (outcomes) and
// CheckpointRegistry (checkpoints).
//
// Every handler first refuses calls without a credential or of a role that may not make them
// (RegisterWorker: a trainer or dataloader registering its own kind; Heartbeat: either, with its
// session; ReportOutcome, RegisterCheckpoint, RejectCheckpoint: a trainer with its session;
// ListWorkers: user or
// reader), then checks the request's shape and sizes
// (INVALID_ARGUMENT before any logic runs), calls the logic and finishes from the store's commit
// thread once the change is durable (or at once when nothing changed and nothing is in flight).
//
// Thread-safe. The coordinator must outlive the service (and the gRPC server).
#ifndef TECL_SERVICES_COORDINATOR_SERVICE_MEMBERSHIP_SERVICE_H_
#define TECL_SERVICES_COORDINATOR_SERVICE_MEMBERSHIP_SERVICE_H_

#include "services/common/auth.h"
#include "services/coordinator/manager/coordinator.h"
#include "services/coordinator/service/request_checks.h"
#include "tecl/v1/coordinator_service.grpc.pb.h"

namespace tecl::coordinator {

class MembershipService final : public tecl::v1::MembershipService::CallbackService {
 public:
  MembershipService(Coordinator* coordinator, Authenticator auth, RequestLimits limits = {});

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* context,
                                           const tecl::v1::RegisterWorkerRequest* request,
                                           tecl::v1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const tecl::v1::HeartbeatRequest* request,
                                      tecl::v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* ReportOutcome(grpc::CallbackServerContext* context,
                                          const tecl::v1::ReportOutcomeRequest* request,
                                          tecl::v1::ReportOutcomeResponse* response) override;
  grpc::ServerUnaryReactor* RegisterCheckpoint(
      grpc::CallbackServerContext* context, const tecl::v1::RegisterCheckpointRequest* request,
      tecl::v1::RegisterCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* RejectCheckpoint(
      grpc::CallbackServerContext* context, const tecl::v1::RejectCheckpointRequest* request,
      tecl::v1::RejectCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const tecl::v1::ListWorkersRequest* request,
                                        tecl::v1::ListWorkersResponse* response) override;

 private:
  Coordinator* const coordinator_;
  const Authenticator auth_;
  const RequestLimits limits_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SERVICE_MEMBERSHIP_SERVICE_H_
