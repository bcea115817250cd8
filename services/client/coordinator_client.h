// CoordinatorClient: every call TECL's processes make to the coordinator (JobService,
// MembershipService and RendezvousService of coordinator_service.proto), as blocking methods that
// return absl::Status / StatusOr and own their deadlines and retries. teclctl, the dataloader's
// and the trainer's membership loop, the trainer's rendezvous store and the benchmarks use it; no
// caller builds a grpc::ClientContext of its own.
//
// Deadlines: every unary call gets ClientOptions::rpc_timeout; rendezvous calls that wait get
// their wait on top; WatchJob gets the caller's timeout (none by default).
// Retries: ReportOutcome, RegisterCheckpoint and RejectCheckpoint (idempotent on the coordinator)
// are retried on UNAVAILABLE with a jittered Backoff, up to ClientOptions::max_attempts calls;
// SubmitJob is retried likewise when it carries a request id (idempotent then). Every other call is
// tried once: its caller's loop decides.
// Sessions: a worker's calls after RegisterWorker carry the session token it returned
// (`x-tecl-session` metadata; the `session` parameters below); the coordinator refuses them
// without it (docs/security.md).
//
// NewCoordinatorClient (grpc_coordinator_client.h) builds the gRPC implementation over the
// generated StubInterfaces; tests of the callers use fakes of this interface
// (tests/support/fake_coordinator_client.h runs the coordinator's logic in process). This header
// has no gRPC types.
//
// Thread-safety: implementations are thread-safe; calls block the calling thread.
#ifndef TECL_SERVICES_CLIENT_COORDINATOR_CLIENT_H_
#define TECL_SERVICES_CLIENT_COORDINATOR_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/client/backoff.h"
#include "tecl/v1/coordinator.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl {

struct ClientOptions {
  // Deadline of every unary call (waiting rendezvous calls: their wait plus this).
  absl::Duration rpc_timeout = absl::Seconds(10);
  // Between the attempts of retried calls.
  BackoffOptions backoff;
  // Calls made by a retried call before it gives up with the last error.
  int max_attempts = 8;
};

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;

  // ---- JobService ----
  virtual absl::StatusOr<tecl::v1::Job> SubmitJob(const tecl::v1::JobSpec& spec,
                                                  const std::string& request_id) = 0;
  virtual absl::StatusOr<tecl::v1::Job> GetJob(const std::string& job_id) = 0;
  virtual absl::StatusOr<tecl::v1::ListJobsResponse> ListJobs(
      const tecl::v1::ListJobsRequest& request) = 0;
  virtual absl::StatusOr<tecl::v1::Job> CancelJob(const std::string& job_id,
                                                  const std::string& reason) = 0;
  virtual absl::StatusOr<std::vector<tecl::v1::JobEvent>> ListEvents(const std::string& job_id,
                                                                     int64_t after_seq,
                                                                     int limit) = 0;
  // One page of the job's trainer log lines (JobService.GetJobLogs).
  virtual absl::StatusOr<tecl::v1::GetJobLogsResponse> GetJobLogs(
      const tecl::v1::GetJobLogsRequest& request) = 0;
  // Calls `on_update` with every message of the job's watch stream until the stream ends: OK after
  // the job's terminal message; CANCELLED when `on_update` returned false; DEADLINE_EXCEEDED after
  // `timeout` (zero = no deadline); the stream's error otherwise. Blocks.
  virtual absl::Status WatchJob(
      const std::string& job_id, int64_t after_seq, absl::Duration timeout,
      const std::function<bool(const tecl::v1::WatchJobResponse&)>& on_update) = 0;

  // ---- MembershipService ----
  virtual absl::StatusOr<tecl::v1::RegisterWorkerResponse> RegisterWorker(
      const tecl::v1::WorkerInfo& worker) = 0;
  virtual absl::StatusOr<tecl::v1::HeartbeatResponse> Heartbeat(
      const tecl::v1::HeartbeatRequest& request, const std::string& session) = 0;
  // Retried on UNAVAILABLE.
  virtual absl::Status ReportOutcome(const tecl::v1::ReportOutcomeRequest& request,
                                     const std::string& session) = 0;
  // Retried on UNAVAILABLE.
  virtual absl::Status RegisterCheckpoint(const tecl::v1::RegisterCheckpointRequest& request,
                                          const std::string& session) = 0;
  // Retried on UNAVAILABLE.
  virtual absl::Status RejectCheckpoint(const tecl::v1::RejectCheckpointRequest& request,
                                        const std::string& session) = 0;
  virtual absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> ListWorkers(
      tecl::v1::WorkerKind kind) = 0;

  // ---- RendezvousService (a trainer's session) ----
  virtual absl::Status StoreSet(const tecl::v1::StoreSetRequest& request,
                                const std::string& session) = 0;
  virtual absl::StatusOr<std::string> StoreGet(const tecl::v1::StoreGetRequest& request,
                                               const std::string& session) = 0;
  virtual absl::StatusOr<int64_t> StoreAdd(const tecl::v1::StoreAddRequest& request,
                                           const std::string& session) = 0;
  virtual absl::StatusOr<std::string> StoreCompareSet(
      const tecl::v1::StoreCompareSetRequest& request, const std::string& session) = 0;
  virtual absl::Status StoreWait(const tecl::v1::StoreWaitRequest& request,
                                 const std::string& session) = 0;
  virtual absl::StatusOr<bool> StoreDelete(const tecl::v1::StoreDeleteRequest& request,
                                           const std::string& session) = 0;
  virtual absl::StatusOr<tecl::v1::StoreCheckResponse> StoreCheck(
      const tecl::v1::StoreCheckRequest& request, const std::string& session) = 0;
};

}  // namespace tecl

#endif  // TECL_SERVICES_CLIENT_COORDINATOR_CLIENT_H_
