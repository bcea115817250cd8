#include "services/worker/runner/rendezvous_store.h"

#include <torch/csrc/distributed/c10d/exception.h>

#include <sstream>

namespace tecl::worker {
namespace {

// Margin for the RPC itself on top of the server-side wait.
constexpr std::chrono::milliseconds kRpcMargin{10000};

// c10d's kNoTimeout (0) means "wait forever"; the rendezvous service reads 0 as "do not wait".
std::chrono::milliseconds BlockingWait(std::chrono::milliseconds timeout) {
  return timeout.count() <= 0 ? std::chrono::hours(24) : timeout;
}

std::vector<uint8_t> ToBytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string ToString(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

}  // namespace

RendezvousStore::RendezvousStore(std::shared_ptr<tecl::v1::Coordinator::StubInterface> stub,
                                 std::string job_id, int attempt, std::chrono::milliseconds timeout)
    : c10d::Store(timeout), stub_(std::move(stub)), job_id_(std::move(job_id)), attempt_(attempt) {}

tecl::v1::RendezvousScope RendezvousStore::Scope() const {
  tecl::v1::RendezvousScope scope;
  scope.set_job_id(job_id_);
  scope.set_attempt(attempt_);
  return scope;
}

void RendezvousStore::SetDeadline(grpc::ClientContext* context,
                                  std::chrono::milliseconds wait) const {
  context->set_deadline(std::chrono::system_clock::now() + wait + kRpcMargin);
}

void RendezvousStore::Fail(const char* op, const std::string& key,
                           const grpc::Status& status) const {
  std::ostringstream message;
  message << "rendezvous " << op << " \"" << key << "\" for job " << job_id_ << " attempt "
          << attempt_ << ": " << status.error_message();
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    throw c10d::TimeoutError(message.str());
  }
  throw c10d::C10dError(message.str());
}

void RendezvousStore::set(const std::string& key, const std::vector<uint8_t>& value) {
  tecl::v1::StoreSetRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  request.set_value(ToString(value));
  tecl::v1::StoreSetResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::milliseconds(0));
  grpc::Status status = stub_->StoreSet(&context, request, &response);
  if (!status.ok()) Fail("set", key, status);
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
  tecl::v1::StoreCompareSetResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::milliseconds(0));
  grpc::Status status = stub_->StoreCompareSet(&context, request, &response);
  if (!status.ok()) Fail("compareSet", key, status);
  return ToBytes(response.value());
}

std::vector<uint8_t> RendezvousStore::get(const std::string& key) {
  tecl::v1::StoreGetRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  request.set_wait_timeout_ms(BlockingWait(timeout_).count());
  tecl::v1::StoreGetResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, BlockingWait(timeout_));
  grpc::Status status = stub_->StoreGet(&context, request, &response);
  if (!status.ok()) Fail("get", key, status);
  return ToBytes(response.value());
}

int64_t RendezvousStore::add(const std::string& key, int64_t value) {
  tecl::v1::StoreAddRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  request.set_delta(value);
  tecl::v1::StoreAddResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::milliseconds(0));
  grpc::Status status = stub_->StoreAdd(&context, request, &response);
  if (!status.ok()) Fail("add", key, status);
  return response.value();
}

bool RendezvousStore::deleteKey(const std::string& key) {
  tecl::v1::StoreDeleteRequest request;
  *request.mutable_scope() = Scope();
  request.set_key(key);
  tecl::v1::StoreDeleteResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::milliseconds(0));
  grpc::Status status = stub_->StoreDelete(&context, request, &response);
  if (!status.ok()) Fail("delete", key, status);
  return response.deleted();
}

bool RendezvousStore::check(const std::vector<std::string>& keys) {
  tecl::v1::StoreCheckRequest request;
  *request.mutable_scope() = Scope();
  for (const auto& key : keys) request.add_keys(key);
  tecl::v1::StoreCheckResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::milliseconds(0));
  grpc::Status status = stub_->StoreCheck(&context, request, &response);
  if (!status.ok()) Fail("check", keys.empty() ? "" : keys.front(), status);
  return response.all_present();
}

int64_t RendezvousStore::getNumKeys() {
  tecl::v1::StoreCheckRequest request;
  *request.mutable_scope() = Scope();
  tecl::v1::StoreCheckResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::milliseconds(0));
  grpc::Status status = stub_->StoreCheck(&context, request, &response);
  if (!status.ok()) Fail("getNumKeys", "", status);
  return response.num_keys();
}

void RendezvousStore::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void RendezvousStore::wait(const std::vector<std::string>& keys,
                           const std::chrono::milliseconds& timeout) {
  tecl::v1::StoreWaitRequest request;
  *request.mutable_scope() = Scope();
  for (const auto& key : keys) request.add_keys(key);
  request.set_wait_timeout_ms(BlockingWait(timeout).count());
  tecl::v1::StoreWaitResponse response;
  grpc::ClientContext context;
  SetDeadline(&context, BlockingWait(timeout));
  grpc::Status status = stub_->StoreWait(&context, request, &response);
  if (!status.ok()) Fail("wait", keys.empty() ? "" : keys.front(), status);
}

}  // namespace tecl::worker
