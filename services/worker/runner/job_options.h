// The seam between the job's wire types and the LibTorch-only trainer core: JobSpec -> core
// options, ClipBatch -> core::Batch (zero copy), and the core's exceptions -> absl::Status.
//
// The core throws (core::Error, c10::Error, dist::CollectiveError); everything above this file
// speaks absl::Status. StatusFromCurrentException is the one place the two meet.
//
// Thread-safety: pure functions.
#ifndef TECL_SERVICES_WORKER_RUNNER_JOB_OPTIONS_H_
#define TECL_SERVICES_WORKER_RUNNER_JOB_OPTIONS_H_

#include <c10/core/Device.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/worker/loss/batch.h"
#include "services/worker/train/trainer.h"
#include "tecl/v1/dataloader.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::worker {

// The device a job's spec asks for: CPU, or CUDA device `cuda_device` (INVALID_ARGUMENT when the
// spec asks for CUDA and this binary's LibTorch has no CUDA or the machine has no GPU).
absl::StatusOr<c10::Device> DeviceForSpec(const tecl::v1::JobSpec& spec, int cuda_device);

// The trainer options of a (validated, defaults filled) pretraining spec run by `world_size`
// ranks. INVALID_ARGUMENT naming the field when the core refuses a value.
absl::StatusOr<core::TrainerOptions> TrainerOptionsFromSpec(const tecl::v1::JobSpec& spec,
                                                            int world_size,
                                                            const c10::Device& device);

// A view of a TRAIN batch in the core's layout. The clip tensor aliases the message's bytes (no
// copy); the returned batch keeps `batch` alive. INVALID_ARGUMENT for an inconsistent message
// (shape and byte count disagree, clip_info count differs from the clip count).
absl::StatusOr<core::Batch> BatchFromProto(std::shared_ptr<const tecl::v1::ClipBatch> batch);

// A view of a batch's clips as uint8 (N, T, H, W, 3), aliasing the message (kept alive).
absl::StatusOr<at::Tensor> ClipsFromProto(std::shared_ptr<const tecl::v1::ClipBatch> batch);

// Call inside a catch block: maps the in-flight exception to a Status. core::Error keeps its code;
// dist::CollectiveError -> UNAVAILABLE (a peer failed; the attempt is restartable);
// std::invalid_argument -> INVALID_ARGUMENT; c10::Error and the rest -> INTERNAL. The message is
// prefixed by `what`.
absl::Status StatusFromCurrentException(const std::string& what);

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_JOB_OPTIONS_H_
