// JobService: the gRPC adapter of tecl.v1.JobService (callback API) over the coordinator's
// JobRegistry (submit, get, list, events, watch), AttemptController (cancel) and JobLogs (logs).
//
// Every handler first refuses calls without a credential or of a role that may not make them
// (submit and cancel: user; reads: user or reader), then checks the request's shape and sizes
// (INVALID_ARGUMENT before any logic runs), calls the logic, encodes the result and finishes.
// Nothing blocks inside a reaction: submits and cancels finish from the store's commit thread once
// durable; WatchJob is a streaming reactor fed by the StateHost's change notifications.
//
// Thread-safe. The coordinator must outlive the service (and the gRPC server).
#ifndef TECL_SERVICES_COORDINATOR_SERVICE_JOB_SERVICE_H_
#define TECL_SERVICES_COORDINATOR_SERVICE_JOB_SERVICE_H_

#include "services/common/auth.h"
#include "services/coordinator/manager/coordinator.h"
#include "services/coordinator/service/request_checks.h"
#include "tecl/v1/coordinator_service.grpc.pb.h"

namespace tecl::coordinator {

class JobService final : public tecl::v1::JobService::CallbackService {
 public:
  JobService(Coordinator* coordinator, Authenticator auth, RequestLimits limits = {});

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const tecl::v1::SubmitJobRequest* request,
                                      tecl::v1::SubmitJobResponse* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const tecl::v1::GetJobRequest* request,
                                   tecl::v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const tecl::v1::ListJobsRequest* request,
                                     tecl::v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const tecl::v1::CancelJobRequest* request,
                                      tecl::v1::Job* response) override;
  grpc::ServerUnaryReactor* ListEvents(grpc::CallbackServerContext* context,
                                       const tecl::v1::ListEventsRequest* request,
                                       tecl::v1::ListEventsResponse* response) override;
  grpc::ServerUnaryReactor* GetJobLogs(grpc::CallbackServerContext* context,
                                       const tecl::v1::GetJobLogsRequest* request,
                                       tecl::v1::GetJobLogsResponse* response) override;
  grpc::ServerWriteReactor<tecl::v1::WatchJobResponse>* WatchJob(
      grpc::CallbackServerContext* context, const tecl::v1::WatchJobRequest* request) override;

 private:
  Coordinator* const coordinator_;
  const Authenticator auth_;
  const RequestLimits limits_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SERVICE_JOB_SERVICE_H_
