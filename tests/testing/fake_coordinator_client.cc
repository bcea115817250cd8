#include "tests/testing/fake_coordinator_client.h"

#include <memory>
#include <utility>

#include "absl/synchronization/notification.h"
#include "services/coordinator/state/job_state.h"

namespace tecl {
namespace {

using coordinator::Callback;
using coordinator::StatusCallback;

// Runs `start(callback)` and waits for the callback's result.
template <typename T>
absl::StatusOr<T> Await(const std::function<void(Callback<T>)>& start) {
  auto result = std::make_shared<absl::StatusOr<T>>(absl::UnknownError("no answer"));
  auto done = std::make_shared<absl::Notification>();
  start([result, done](absl::StatusOr<T> r) {
    *result = std::move(r);
    done->Notify();
  });
  done->WaitForNotification();
  return std::move(*result);
}

absl::Status AwaitStatus(const std::function<void(StatusCallback)>& start) {
  auto result = std::make_shared<absl::Status>();
  auto done = std::make_shared<absl::Notification>();
  start([result, done](absl::Status s) {
    *result = std::move(s);
    done->Notify();
  });
  done->WaitForNotification();
  return *result;
}

coordinator::RendezvousScopeId ScopeOf(const tecl::v1::RendezvousScope& scope) {
  return {scope.job_id(), scope.attempt()};
}

}  // namespace

FakeCoordinatorClient::FakeCoordinatorClient(coordinator::Coordinator* coordinator,
                                             coordinator::Rendezvous* rendezvous)
    : coordinator_(coordinator), rendezvous_(rendezvous) {}

void FakeCoordinatorClient::SetUnreachable(bool unreachable) {
  absl::MutexLock lock(&mu_);
  unreachable_ = unreachable;
}

int FakeCoordinatorClient::calls(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(method);
  return it == calls_.end() ? 0 : it->second;
}

absl::Status FakeCoordinatorClient::Enter(const std::string& method) {
  absl::MutexLock lock(&mu_);
  ++calls_[method];
  if (unreachable_) return absl::UnavailableError("the coordinator is unreachable (fake)");
  return absl::OkStatus();
}

absl::Status FakeCoordinatorClient::NeedRendezvous(const tecl::v1::RendezvousScope& scope,
                                                   const std::string& session) const {
  if (rendezvous_ == nullptr) {
    return absl::FailedPreconditionError("this fake client has no rendezvous");
  }
  return coordinator_->membership().CheckRendezvousCaller(session, scope.job_id(),
                                                          scope.attempt());
}

absl::StatusOr<tecl::v1::Job> FakeCoordinatorClient::SubmitJob(const tecl::v1::JobSpec& spec,
                                                               const std::string& request_id) {
  if (absl::Status s = Enter("SubmitJob"); !s.ok()) return s;
  return Await<tecl::v1::Job>(
      [&](Callback<tecl::v1::Job> done) { coordinator_->jobs().Submit(spec, request_id, done); });
}

absl::StatusOr<tecl::v1::Job> FakeCoordinatorClient::GetJob(const std::string& job_id) {
  if (absl::Status s = Enter("GetJob"); !s.ok()) return s;
  return coordinator_->jobs().Get(job_id);
}

absl::StatusOr<tecl::v1::ListJobsResponse> FakeCoordinatorClient::ListJobs(
    const tecl::v1::ListJobsRequest& request) {
  if (absl::Status s = Enter("ListJobs"); !s.ok()) return s;
  std::vector<tecl::v1::JobState> states;
  for (int state : request.states()) states.push_back(static_cast<tecl::v1::JobState>(state));
  auto result = coordinator_->jobs().List(states, request.page_size(), request.page_token());
  if (!result.ok()) return result.status();
  tecl::v1::ListJobsResponse response;
  for (auto& job : result->jobs) *response.add_jobs() = std::move(job);
  response.set_next_page_token(result->next_page_token);
  return response;
}

absl::StatusOr<tecl::v1::Job> FakeCoordinatorClient::CancelJob(const std::string& job_id,
                                                               const std::string& reason) {
  if (absl::Status s = Enter("CancelJob"); !s.ok()) return s;
  return Await<tecl::v1::Job>(
      [&](Callback<tecl::v1::Job> done) { coordinator_->attempts().Cancel(job_id, reason, done); });
}

absl::StatusOr<std::vector<tecl::v1::JobEvent>> FakeCoordinatorClient::ListEvents(
    const std::string& job_id, int64_t after_seq, int limit) {
  if (absl::Status s = Enter("ListEvents"); !s.ok()) return s;
  return coordinator_->jobs().ListEvents(job_id, after_seq, limit);
}

absl::StatusOr<tecl::v1::GetJobLogsResponse> FakeCoordinatorClient::GetJobLogs(
    const tecl::v1::GetJobLogsRequest& request) {
  if (absl::Status s = Enter("GetJobLogs"); !s.ok()) return s;
  return coordinator_->GetJobLogs(request);
}

absl::Status FakeCoordinatorClient::WatchJob(
    const std::string& job_id, int64_t after_seq, absl::Duration timeout,
    const std::function<bool(const tecl::v1::WatchJobResponse&)>& on_update) {
  if (absl::Status s = Enter("WatchJob"); !s.ok()) return s;
  const absl::Time deadline =
      timeout > absl::ZeroDuration() ? absl::Now() + timeout : absl::InfiniteFuture();
  absl::Mutex mu;
  int64_t changes = 0;
  const auto watch = coordinator_->host().Watch(job_id, [&] {
    absl::MutexLock lock(&mu);
    ++changes;
  });
  absl::Status result;
  int64_t seen = -1;
  while (true) {
    {
      absl::MutexLock lock(&mu);
      auto changed = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return changes != seen; };
      if (!mu.AwaitWithDeadline(absl::Condition(&changed), deadline)) {
        result = absl::DeadlineExceededError("watch deadline passed");
        break;
      }
      seen = changes;
    }
    auto job = coordinator_->jobs().Get(job_id);
    if (!job.ok()) {
      result = job.status();
      break;
    }
    tecl::v1::WatchJobResponse update;
    *update.mutable_job() = *job;
    auto events = coordinator_->jobs().ListEvents(job_id, after_seq, 0);
    if (events.ok()) {
      for (auto& event : *events) {
        after_seq = std::max(after_seq, event.seq());
        *update.add_events() = std::move(event);
      }
    }
    if (!on_update(update)) {
      result = absl::CancelledError("watch stopped by the caller");
      break;
    }
    if (coordinator::IsTerminal(job->state())) break;
  }
  coordinator_->host().Unwatch(watch);
  return result;
}

absl::StatusOr<tecl::v1::RegisterWorkerResponse> FakeCoordinatorClient::RegisterWorker(
    const tecl::v1::WorkerInfo& worker) {
  if (absl::Status s = Enter("RegisterWorker"); !s.ok()) return s;
  return Await<tecl::v1::RegisterWorkerResponse>(
      [&](Callback<tecl::v1::RegisterWorkerResponse> done) {
        coordinator_->membership().Register(worker, done);
      });
}

absl::StatusOr<tecl::v1::HeartbeatResponse> FakeCoordinatorClient::Heartbeat(
    const tecl::v1::HeartbeatRequest& request, const std::string& session) {
  if (absl::Status s = Enter("Heartbeat"); !s.ok()) return s;
  return Await<tecl::v1::HeartbeatResponse>([&](Callback<tecl::v1::HeartbeatResponse> done) {
    coordinator_->membership().Heartbeat(request, session, done);
  });
}

absl::Status FakeCoordinatorClient::ReportOutcome(const tecl::v1::ReportOutcomeRequest& request,
                                                  const std::string& session) {
  if (absl::Status s = Enter("ReportOutcome"); !s.ok()) return s;
  return AwaitStatus([&](StatusCallback done) {
    coordinator_->attempts().ReportOutcome(request, session, done);
  });
}

absl::Status FakeCoordinatorClient::RegisterCheckpoint(
    const tecl::v1::RegisterCheckpointRequest& request, const std::string& session) {
  if (absl::Status s = Enter("RegisterCheckpoint"); !s.ok()) return s;
  return AwaitStatus([&](StatusCallback done) {
    coordinator_->checkpoints().Register(request, session, done);
  });
}

absl::Status FakeCoordinatorClient::RejectCheckpoint(
    const tecl::v1::RejectCheckpointRequest& request, const std::string& session) {
  if (absl::Status s = Enter("RejectCheckpoint"); !s.ok()) return s;
  return AwaitStatus([&](StatusCallback done) {
    coordinator_->checkpoints().Reject(request, session, done);
  });
}

absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> FakeCoordinatorClient::ListWorkers(
    tecl::v1::WorkerKind kind) {
  if (absl::Status s = Enter("ListWorkers"); !s.ok()) return s;
  return coordinator_->membership().List(kind);
}

absl::Status FakeCoordinatorClient::StoreSet(const tecl::v1::StoreSetRequest& request, const std::string& session) {
  if (absl::Status s = Enter("StoreSet"); !s.ok()) return s;
  if (absl::Status s = NeedRendezvous(request.scope(), session); !s.ok()) return s;
  return rendezvous_->Set(ScopeOf(request.scope()), request.key(), request.value());
}

absl::StatusOr<std::string> FakeCoordinatorClient::StoreGet(
    const tecl::v1::StoreGetRequest& request, const std::string& session) {
  if (absl::Status s = Enter("StoreGet"); !s.ok()) return s;
  if (absl::Status s = NeedRendezvous(request.scope(), session); !s.ok()) return s;
  return Await<std::string>([&](Callback<std::string> done) {
    rendezvous_->Get(ScopeOf(request.scope()), request.key(),
                     absl::Milliseconds(request.wait_timeout_ms()), done);
  });
}

absl::StatusOr<int64_t> FakeCoordinatorClient::StoreAdd(const tecl::v1::StoreAddRequest& request, const std::string& session) {
  if (absl::Status s = Enter("StoreAdd"); !s.ok()) return s;
  if (absl::Status s = NeedRendezvous(request.scope(), session); !s.ok()) return s;
  return rendezvous_->Add(ScopeOf(request.scope()), request.key(), request.delta());
}

absl::StatusOr<std::string> FakeCoordinatorClient::StoreCompareSet(
    const tecl::v1::StoreCompareSetRequest& request, const std::string& session) {
  if (absl::Status s = Enter("StoreCompareSet"); !s.ok()) return s;
  if (absl::Status s = NeedRendezvous(request.scope(), session); !s.ok()) return s;
  return rendezvous_->CompareSet(ScopeOf(request.scope()), request.key(), request.expected(),
                                 request.desired(), request.expect_absent());
}

absl::Status FakeCoordinatorClient::StoreWait(const tecl::v1::StoreWaitRequest& request, const std::string& session) {
  if (absl::Status s = Enter("StoreWait"); !s.ok()) return s;
  if (absl::Status s = NeedRendezvous(request.scope(), session); !s.ok()) return s;
  std::vector<std::string> keys(request.keys().begin(), request.keys().end());
  return AwaitStatus([&](StatusCallback done) {
    rendezvous_->Wait(ScopeOf(request.scope()), keys,
                      absl::Milliseconds(request.wait_timeout_ms()), done);
  });
}

absl::StatusOr<bool> FakeCoordinatorClient::StoreDelete(
    const tecl::v1::StoreDeleteRequest& request, const std::string& session) {
  if (absl::Status s = Enter("StoreDelete"); !s.ok()) return s;
  if (absl::Status s = NeedRendezvous(request.scope(), session); !s.ok()) return s;
  return rendezvous_->Delete(ScopeOf(request.scope()), request.key());
}

absl::StatusOr<tecl::v1::StoreCheckResponse> FakeCoordinatorClient::StoreCheck(
    const tecl::v1::StoreCheckRequest& request, const std::string& session) {
  if (absl::Status s = Enter("StoreCheck"); !s.ok()) return s;
  if (absl::Status s = NeedRendezvous(request.scope(), session); !s.ok()) return s;
  std::vector<std::string> keys(request.keys().begin(), request.keys().end());
  auto result = rendezvous_->Check(ScopeOf(request.scope()), keys);
  if (!result.ok()) return result.status();
  tecl::v1::StoreCheckResponse response;
  response.set_all_present(result->all_present);
  response.set_num_keys(result->num_keys);
  return response;
}

}  // namespace tecl
