// FakeCoordinatorClient: a CoordinatorClient that runs the coordinator's logic in process (the
// managers of services/coordinator/manager/ on a FakeJobStore or any JobStore) with no gRPC, for
// tests of its callers: the membership loop, the trainer's agent, teclctl's commands. Calls go
// straight to the managers' entry points and wait for their answers.
//
// Worker calls are checked against their session as the real services check them (the
// principal's role is not: there is no transport).
//
// SetUnreachable(true) makes every call fail with UNAVAILABLE (a coordinator that is down);
// calls() counts the calls made per method.
//
// Thread-safe. The coordinator (and rendezvous, when given) must outlive the client.
#ifndef TECL_TESTS_TESTING_FAKE_COORDINATOR_CLIENT_H_
#define TECL_TESTS_TESTING_FAKE_COORDINATOR_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/client/coordinator_client.h"
#include "services/coordinator/manager/coordinator.h"
#include "services/coordinator/rendezvous/rendezvous.h"

namespace tecl {

class FakeCoordinatorClient final : public CoordinatorClient {
 public:
  // `rendezvous` may be null (rendezvous calls then fail with FAILED_PRECONDITION).
  FakeCoordinatorClient(coordinator::Coordinator* coordinator,
                        coordinator::Rendezvous* rendezvous = nullptr);

  void SetUnreachable(bool unreachable);
  // Calls made so far by method name ("Heartbeat", ...).
  int calls(const std::string& method) const;

  absl::StatusOr<tecl::v1::Job> SubmitJob(const tecl::v1::JobSpec& spec,
                                          const std::string& request_id) override;
  absl::StatusOr<tecl::v1::Job> GetJob(const std::string& job_id) override;
  absl::StatusOr<tecl::v1::ListJobsResponse> ListJobs(
      const tecl::v1::ListJobsRequest& request) override;
  absl::StatusOr<tecl::v1::Job> CancelJob(const std::string& job_id,
                                          const std::string& reason) override;
  absl::StatusOr<std::vector<tecl::v1::JobEvent>> ListEvents(const std::string& job_id,
                                                             int64_t after_seq,
                                                             int limit) override;
  absl::StatusOr<tecl::v1::GetJobLogsResponse> GetJobLogs(
      const tecl::v1::GetJobLogsRequest& request) override;
  absl::Status WatchJob(
      const std::string& job_id, int64_t after_seq, absl::Duration timeout,
      const std::function<bool(const tecl::v1::WatchJobResponse&)>& on_update) override;
  absl::StatusOr<tecl::v1::RegisterWorkerResponse> RegisterWorker(
      const tecl::v1::WorkerInfo& worker) override;
  absl::StatusOr<tecl::v1::HeartbeatResponse> Heartbeat(const tecl::v1::HeartbeatRequest& request,
                                                        const std::string& session) override;
  absl::Status ReportOutcome(const tecl::v1::ReportOutcomeRequest& request,
                             const std::string& session) override;
  absl::Status RegisterCheckpoint(const tecl::v1::RegisterCheckpointRequest& request,
                                  const std::string& session) override;
  absl::Status RejectCheckpoint(const tecl::v1::RejectCheckpointRequest& request,
                                const std::string& session) override;
  absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> ListWorkers(
      tecl::v1::WorkerKind kind) override;
  absl::Status StoreSet(const tecl::v1::StoreSetRequest& request,
                        const std::string& session) override;
  absl::StatusOr<std::string> StoreGet(const tecl::v1::StoreGetRequest& request,
                                       const std::string& session) override;
  absl::StatusOr<int64_t> StoreAdd(const tecl::v1::StoreAddRequest& request,
                                   const std::string& session) override;
  absl::StatusOr<std::string> StoreCompareSet(const tecl::v1::StoreCompareSetRequest& request,
                                              const std::string& session) override;
  absl::Status StoreWait(const tecl::v1::StoreWaitRequest& request,
                         const std::string& session) override;
  absl::StatusOr<bool> StoreDelete(const tecl::v1::StoreDeleteRequest& request,
                                   const std::string& session) override;
  absl::StatusOr<tecl::v1::StoreCheckResponse> StoreCheck(const tecl::v1::StoreCheckRequest& request,
                                                          const std::string& session) override;

 private:
  // UNAVAILABLE while unreachable; counts the call.
  absl::Status Enter(const std::string& method);
  // FAILED_PRECONDITION without a rendezvous; else the session check of the rendezvous service.
  absl::Status NeedRendezvous(const tecl::v1::RendezvousScope& scope,
                              const std::string& session) const;

  coordinator::Coordinator* const coordinator_;
  coordinator::Rendezvous* const rendezvous_;
  mutable absl::Mutex mu_;
  bool unreachable_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, int> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tecl

#endif  // TECL_TESTS_TESTING_FAKE_COORDINATOR_CLIENT_H_
