#include "services/client/membership_loop.h"

#include <utility>

#include "services/common/logging.h"

namespace tecl {

MembershipLoop::MembershipLoop(MembershipLoopOptions options,
                               std::shared_ptr<CoordinatorClient> coordinator, Hooks hooks,
                               MembershipMetrics metrics)
    : options_(std::move(options)),
      coordinator_(std::move(coordinator)),
      hooks_(std::move(hooks)),
      metrics_(metrics),
      interval_(options_.default_heartbeat_interval) {}

MembershipLoop::~MembershipLoop() { Stop(); }

void MembershipLoop::Start() { thread_ = std::thread(&MembershipLoop::Loop, this); }

void MembershipLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void MembershipLoop::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

std::string MembershipLoop::worker_id() const {
  absl::MutexLock lock(&mu_);
  return registration_.worker_id;
}

MembershipLoop::Registration MembershipLoop::registration() const {
  absl::MutexLock lock(&mu_);
  return registration_;
}

bool MembershipLoop::WaitUntilRegistered(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto registered = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return !registration_.worker_id.empty();
  };
  return mu_.AwaitWithTimeout(absl::Condition(&registered), timeout);
}

bool MembershipLoop::Sleep(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || woken_; };
  mu_.AwaitWithTimeout(absl::Condition(&wake), duration);
  woken_ = false;
  return !stopping_;
}

void MembershipLoop::Failed(absl::string_view what, const absl::Status& status) {
  if (metrics_.heartbeat_failures != nullptr) metrics_.heartbeat_failures->Increment();
  if (failures_in_a_row_++ % 10 == 0) {
    TECL_LOG(WARNING) << what << " the coordinator at " << options_.coordinator_address
                      << " failed: " << status << "; retrying (this worker keeps serving)";
  }
}

void MembershipLoop::Loop() {
  Backoff backoff(options_.backoff);
  while (true) {
    Registration current = registration();
    if (current.worker_id.empty()) {
      if (metrics_.registered != nullptr) metrics_.registered->Set(0);
      absl::StatusOr<tecl::v1::RegisterWorkerResponse> registered =
          coordinator_->RegisterWorker(options_.worker);
      if (!registered.ok()) {
        Failed("registering with", registered.status());
        if (!Sleep(backoff.Next())) return;
        continue;
      }
      current = {registered->worker_id(), registered->session_token()};
      {
        absl::MutexLock lock(&mu_);
        registration_ = current;
        if (registered->heartbeat_interval_ms() > 0) {
          interval_ = absl::Milliseconds(registered->heartbeat_interval_ms());
        }
      }
      TECL_LOG(INFO) << "registered with the coordinator at " << options_.coordinator_address
                     << " as " << current.worker_id
                     << (options_.worker.address().empty()
                             ? ""
                             : " (address " + options_.worker.address() + ")");
      if (metrics_.registered != nullptr) metrics_.registered->Set(1);
      if (metrics_.registrations != nullptr) metrics_.registrations->Increment();
      failures_in_a_row_ = 0;
      backoff.Reset();
    }

    tecl::v1::HeartbeatRequest request;
    if (hooks_.before_heartbeat) hooks_.before_heartbeat(current, &request);
    request.set_worker_id(current.worker_id);
    absl::StatusOr<tecl::v1::HeartbeatResponse> response =
        coordinator_->Heartbeat(request, current.session);
    absl::Duration wait;
    if (response.ok()) {
      failures_in_a_row_ = 0;
      backoff.Reset();
      absl::MutexLock lock(&mu_);
      if (response->heartbeat_interval_ms() > 0) {
        interval_ = absl::Milliseconds(response->heartbeat_interval_ms());
      }
      wait = interval_;
    } else if (response.status().code() == absl::StatusCode::kNotFound ||
               response.status().code() == absl::StatusCode::kPermissionDenied) {
      TECL_LOG(WARNING) << "the coordinator at " << options_.coordinator_address
                        << " no longer knows worker " << current.worker_id << " ("
                        << response.status().message() << "); registering again";
      {
        absl::MutexLock lock(&mu_);
        registration_ = {};
      }
      if (metrics_.registered != nullptr) metrics_.registered->Set(0);
      if (hooks_.on_lost) hooks_.on_lost();
      continue;
    } else {
      Failed("a heartbeat to", response.status());
      wait = backoff.Next();
    }
    if (response.ok() && hooks_.on_response) hooks_.on_response(*response);
    if (!Sleep(wait)) return;
  }
}

}  // namespace tecl
