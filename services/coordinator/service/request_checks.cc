#include "services/coordinator/service/request_checks.h"

#include "absl/strings/str_cat.h"
#include "services/common/grpc_status.h"

namespace tecl::coordinator {

absl::Status RequireId(absl::string_view field, const std::string& value, size_t max) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is missing"));
  return LimitText(field, value, max);
}

absl::Status LimitText(absl::string_view field, const std::string& value, size_t max) {
  if (value.size() <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " has ", value.size(), " bytes; at most ", max));
}

absl::Status CheckSubmitJobRequest(const tecl::v1::SubmitJobRequest& request,
                                   const RequestLimits& limits) {
  if (!request.has_spec()) {
    return absl::InvalidArgumentError("spec is missing; teclctl submit FILE.yaml fills it");
  }
  const size_t bytes = request.spec().ByteSizeLong();
  if (bytes > limits.max_spec_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("job spec: the spec is ", bytes,
                                                   " bytes, more than the limit of ",
                                                   limits.max_spec_bytes, "; shorten it"));
  }
  return LimitText("request_id", request.request_id(), limits.max_id_bytes);
}

grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace tecl::coordinator
