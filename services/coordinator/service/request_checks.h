// Shape and size checks of coordinator requests, run by the gRPC adapters before any logic
// (INVALID_ARGUMENT naming the field), and the helper that finishes a unary call with a Status.
//
// Thread-safety: pure functions.
#ifndef TECL_SERVICES_COORDINATOR_SERVICE_REQUEST_CHECKS_H_
#define TECL_SERVICES_COORDINATOR_SERVICE_REQUEST_CHECKS_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "services/common/grpc_status.h"
#include "tecl/v1/coordinator.pb.h"

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

// INVALID_ARGUMENT when `value` is empty or longer than `max` bytes.
absl::Status RequireId(absl::string_view field, const std::string& value, size_t max);
// INVALID_ARGUMENT when `value` is longer than `max` bytes.
absl::Status LimitText(absl::string_view field, const std::string& value, size_t max);

// The shape of a SubmitJob request: a spec of at most max_spec_bytes and a request id of at most
// max_id_bytes. INVALID_ARGUMENT naming what is wrong; the spec's content is checked by
// ValidateJobSpec (JobRegistry::Submit).
absl::Status CheckSubmitJobRequest(const tecl::v1::SubmitJobRequest& request,
                                   const RequestLimits& limits);

// The call's default reactor, finished with `status`.
grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     const absl::Status& status);

// A server-streaming reactor finished with `status` at once.
template <typename Response>
grpc::ServerWriteReactor<Response>* FinishStream(const absl::Status& status) {
  class Refused : public grpc::ServerWriteReactor<Response> {
   public:
    explicit Refused(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }
    void OnDone() override { delete this; }
  };
  return new Refused(status);
}

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SERVICE_REQUEST_CHECKS_H_
