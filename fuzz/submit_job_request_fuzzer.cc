// SubmitJob requests as the coordinator receives them (serialized tecl.v1.SubmitJobRequest): the
// adapter's shape checks, then the spec validation JobRegistry::Submit runs before storing, with
// the limits of a coordinator that confines data sets and checkpoints.
#include <cstddef>
#include <cstdint>

#include "services/coordinator/service/request_checks.h"
#include "services/coordinator/spec/job_spec.h"
#include "tecl/v1/coordinator.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tecl::coordinator;
  tecl::v1::SubmitJobRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  if (!CheckSubmitJobRequest(request, RequestLimits{}).ok()) return 0;
  SpecLimits limits;
  limits.data_roots = {"/data"};
  limits.checkpoints = SpecLimits::CheckpointConfinement{{"/ckpt"}, "/state/checkpoints"};
  (void)ValidateJobSpec(request.spec(), limits);
  return 0;
}
