#include "services/dataloader/service/coordinator_registration.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"

namespace tecl::dataloader {
namespace {

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(absl::ToInt64Microseconds(timeout)));
}

}  // namespace

CoordinatorRegistration::CoordinatorRegistration(
    RegistrationOptions options, std::shared_ptr<tecl::v1::Coordinator::StubInterface> coordinator,
    metrics::Registry* registry)
    : options_(std::move(options)),
      coordinator_(std::move(coordinator)),
      registered_gauge_(metrics::BuildGauge()
                            .Name("tecl_dataloader_registered")
                            .Help("1 while this dataloader is registered with the coordinator")
                            .Register(*registry)
                            .Add({})),
      failures_(metrics::BuildCounter()
                    .Name("tecl_dataloader_heartbeat_failures_total")
                    .Help("Registrations and heartbeats that did not reach the coordinator")
                    .Register(*registry)
                    .Add({})),
      interval_(options_.default_heartbeat_interval) {}

CoordinatorRegistration::~CoordinatorRegistration() { Stop(); }

void CoordinatorRegistration::Start() {
  thread_ = std::thread(&CoordinatorRegistration::Loop, this);
}

void CoordinatorRegistration::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::string CoordinatorRegistration::worker_id() const {
  absl::MutexLock lock(&mu_);
  return worker_id_;
}

bool CoordinatorRegistration::WaitUntilRegistered(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto registered = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !worker_id_.empty(); };
  return mu_.AwaitWithTimeout(absl::Condition(&registered), timeout);
}

bool CoordinatorRegistration::Sleep(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
  mu_.AwaitWithTimeout(absl::Condition(&stopping), duration);
  return !stopping_;
}

absl::Status CoordinatorRegistration::Register() {
  tecl::v1::RegisterWorkerRequest request;
  *request.mutable_worker() = options_.worker;
  tecl::v1::RegisterWorkerResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, options_.rpc_timeout);
  const grpc::Status status = coordinator_->RegisterWorker(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  absl::MutexLock lock(&mu_);
  worker_id_ = response.worker_id();
  if (response.heartbeat_interval_ms() > 0) {
    interval_ = absl::Milliseconds(response.heartbeat_interval_ms());
  }
  return absl::OkStatus();
}

absl::Status CoordinatorRegistration::Heartbeat() {
  tecl::v1::HeartbeatRequest request;
  request.set_worker_id(worker_id());
  tecl::v1::HeartbeatResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, options_.rpc_timeout);
  const grpc::Status status = coordinator_->Heartbeat(&context, request, &response);
  absl::MutexLock lock(&mu_);
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) worker_id_.clear();
    return FromGrpcStatus(status);
  }
  if (response.heartbeat_interval_ms() > 0) {
    interval_ = absl::Milliseconds(response.heartbeat_interval_ms());
  }
  return absl::OkStatus();
}

void CoordinatorRegistration::Loop() {
  absl::Duration backoff = options_.initial_backoff;
  int failures_in_a_row = 0;
  auto report_failure = [&](absl::string_view what, const absl::Status& status) {
    failures_.Increment();
    if (failures_in_a_row++ % 10 == 0) {
      TECL_LOG(WARNING) << what << " the coordinator at " << options_.coordinator_address
                        << " failed: " << status << "; retrying (this dataloader keeps serving)";
    }
  };
  while (true) {
    if (worker_id().empty()) {
      registered_gauge_.Set(0);
      const absl::Status status = Register();
      if (!status.ok()) {
        report_failure("registering with", status);
        if (!Sleep(backoff)) return;
        backoff = std::min(backoff * 2, options_.max_backoff);
        continue;
      }
      TECL_LOG(INFO) << "registered with the coordinator at " << options_.coordinator_address
                     << " as " << worker_id() << " (address " << options_.worker.address() << ")";
      registered_gauge_.Set(1);
      failures_in_a_row = 0;
      backoff = options_.initial_backoff;
    }
    absl::Duration interval;
    {
      absl::MutexLock lock(&mu_);
      interval = interval_;
    }
    if (!Sleep(interval)) return;
    const absl::Status status = Heartbeat();
    if (status.ok()) {
      failures_in_a_row = 0;
      continue;
    }
    if (status.code() == absl::StatusCode::kNotFound) {
      TECL_LOG(WARNING) << "the coordinator at " << options_.coordinator_address
                        << " no longer knows this dataloader (" << status.message()
                        << "); registering again";
      registered_gauge_.Set(0);
      continue;
    }
    report_failure("a heartbeat to", status);
  }
}

}  // namespace tecl::dataloader
