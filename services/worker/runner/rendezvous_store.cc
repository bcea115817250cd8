#include "services/worker/runner/rendezvous_store.h"

#include <torch/csrc/distributed/c10d/exception.h>

#include <sstream>
#include <utility>

namespace tecl::worker {
namespace {

// c10d's kNoTimeout (0) means "wait forever"; the rendezvous service reads 0 as "do not wait".
std::chrono::milliseconds BlockingWait(std::chrono::milliseconds timeout) {
  return timeout.count() <= 0 ? std::chrono::hours(24) : timeout;
}

std::vector<uint8_t> ToBytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string ToString(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

}  // namespace

RendezvousStore::RendezvousStore(std::shared_ptr<CoordinatorClient> coordinator,
                                 std::string session, std::string job_id, int attempt,
                                 std::chrono::milliseconds timeout)
    : c10d::Store(timeout),
      coordinator_(std::move(coordinator)),
      session_(std::move(session)),
      job_id_(std::move(job_id)),
      attempt_(attempt) {}

tecl::v1::RendezvousScope RendezvousStore::Scope() const {
  tecl::v1::RendezvousScope scope;
  scope.set_job_id(job_id_);
  scope.set_attempt(attempt_);
  return scope;
}

void RendezvousStore::Fail(const char* op, const std::string& key,
                           const absl::Status& status) const {
  std::ostringstream message;
  message << "rendezvous " << op << " \"" << key << "\" for job " << job_id_ << " attempt "
          << attempt_ << ": " << status.message();
  if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    throw c10d::TimeoutError(message.str());
  }
  throw c10d::C10dError(message.str());
}

void RendezvousStore::set(const std::string& key, const std::vector<uint8_t>& value) {
  tecl::v1::StoreSetRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  request.set_value(ToString(value));
  if (absl::Status s = coordinator_->StoreSet(request, session_); !s.ok()) Fail("set", key, s);
}

std::vector<uint8_t> RendezvousStore::compareSet(const std::string& key,
                                                 const std::vector<uint8_t>& expected,
                                                 const std::vector<uint8_t>& desired) {
  tecl::v1::StoreCompareSetRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  request.set_expected(ToString(expected));
  request.set_desired(ToString(desired));
  // c10d semantics: an empty expected value matches an absent key.
  request.set_expect_absent(expected.empty());
  absl::StatusOr<std::string> value = coordinator_->StoreCompareSet(request, session_);
  if (!value.ok()) Fail("compareSet", key, value.status());
  return ToBytes(*value);
}

std::vector<uint8_t> RendezvousStore::get(const std::string& key) {
  tecl::v1::StoreGetRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  request.set_wait_timeout_ms(BlockingWait(timeout_).count());
  absl::StatusOr<std::string> value = coordinator_->StoreGet(request, session_);
  if (!value.ok()) Fail("get", key, value.status());
  return ToBytes(*value);
}

int64_t RendezvousStore::add(const std::string& key, int64_t value) {
  tecl::v1::StoreAddRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  request.set_delta(value);
  absl::StatusOr<int64_t> sum = coordinator_->StoreAdd(request, session_);
  if (!sum.ok()) Fail("add", key, sum.status());
  return *sum;
}

bool RendezvousStore::deleteKey(const std::string& key) {
  tecl::v1::StoreDeleteRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  absl::StatusOr<bool> deleted = coordinator_->StoreDelete(request, session_);
  if (!deleted.ok()) Fail("delete", key, deleted.status());
  return *deleted;
}

bool RendezvousStore::check(const std::vector<std::string>& keys) {
  tecl::v1::StoreCheckRequest request;
  *request.mutable_scope() = Scope();
  for (const auto& key : keys) request.add_keys(key);
  absl::StatusOr<tecl::v1::StoreCheckResponse> response = coordinator_->StoreCheck(request, session_);
  if (!response.ok()) Fail("check", keys.empty() ? "" : keys.front(), response.status());
  return response->all_present();
}

int64_t RendezvousStore::getNumKeys() {
  tecl::v1::StoreCheckRequest request;
  *request.mutable_scope() = Scope();
  absl::StatusOr<tecl::v1::StoreCheckResponse> response = coordinator_->StoreCheck(request, session_);
  if (!response.ok()) Fail("getNumKeys", "", response.status());
  return response->num_keys();
}

void RendezvousStore::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void RendezvousStore::wait(const std::vector<std::string>& keys,
                           const std::chrono::milliseconds& timeout) {
  tecl::v1::StoreWaitRequest request;
  *request.mutable_scope() = Scope();
  for (const auto& key : keys) request.add_keys(key);
  request.set_wait_timeout_ms(BlockingWait(timeout).count());
  if (absl::Status s = coordinator_->StoreWait(request, session_); !s.ok()) {
    Fail("wait", keys.empty() ? "" : keys.front(), s);
  }
}

CommunicatorFactory RendezvousCommunicators(std::shared_ptr<CoordinatorClient> coordinator,
                                            GlooOptions gloo) {
  return [coordinator = std::move(coordinator),
          gloo = std::move(gloo)](const CommunicatorRequest& request) {
    auto store = c10::make_intrusive<RendezvousStore>(coordinator, request.session, request.job_id,
                                                      request.attempt, request.timeout);
    dist::GroupOptions group;
    group.rank = request.rank;
    group.world_size = request.world_size;
    group.backend = request.backend;
    group.timeout = request.timeout;
    group.gloo_interface = gloo.interface;
    group.gloo_hostname = gloo.hostname;
    group.cuda_device = request.device.is_cuda() ? request.device.index() : 0;
    return dist::CreateCommunicator(store, group);
  };
}

}  // namespace tecl::worker
