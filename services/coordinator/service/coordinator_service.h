// CoordinatorService: the gRPC adapter of the coordinator (tecl.v1.Coordinator, callback API).
//
// Every handler first refuses unauthenticated calls, then checks the request's shape and sizes
// (missing ids, negative numbers, oversized specs, keys and values -> INVALID_ARGUMENT, before any
// logic runs), calls JobManager / Rendezvous, encodes the result and finishes. Nothing blocks
// inside a reaction: durable writes finish the call from the store's commit thread, rendezvous
// waits finish from the thread that sets the key or the rendezvous timer, and WatchJob is a
// streaming reactor fed by JobManager's change notifications.
//
// Thread-safe. The manager and the rendezvous must outlive the service (and the gRPC server).
#ifndef TECL_SERVICES_COORDINATOR_SERVICE_COORDINATOR_SERVICE_H_
#define TECL_SERVICES_COORDINATOR_SERVICE_COORDINATOR_SERVICE_H_

#include <cstddef>

#include "services/common/auth.h"
#include "services/coordinator/rendezvous/rendezvous.h"
#include "services/coordinator/scheduler/job_manager.h"
#include "tecl/v1/coordinator.grpc.pb.h"

namespace tecl::coordinator {

// Request limits checked before any logic runs.
struct RequestLimits {
  size_t max_spec_bytes = 1 << 20;
  size_t max_id_bytes = 128;         // Job, worker and request ids.
  size_t max_text_bytes = 64 << 10;  // Reasons, addresses, paths, host names.
  size_t max_key_bytes = 4096;       // Rendezvous keys.
  size_t max_value_bytes = 1 << 20;  // Rendezvous values.
  size_t max_keys_per_call = 4096;   // StoreWait / StoreCheck.
};

class CoordinatorService final : public tecl::v1::Coordinator::CallbackService {
 public:
  CoordinatorService(JobManager* manager, Rendezvous* rendezvous, TokenAuthenticator auth,
                     RequestLimits limits = {});

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
  grpc::ServerWriteReactor<tecl::v1::WatchJobResponse>* WatchJob(
      grpc::CallbackServerContext* context, const tecl::v1::WatchJobRequest* request) override;
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
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const tecl::v1::ListWorkersRequest* request,
                                        tecl::v1::ListWorkersResponse* response) override;
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

  JobManager* const manager_;
  Rendezvous* const rendezvous_;
  const TokenAuthenticator auth_;
  const RequestLimits limits_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SERVICE_COORDINATOR_SERVICE_H_
