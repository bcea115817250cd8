#include "services/worker/runner/job_options.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include <exception>
#include <stdexcept>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/worker/dist/communicator.h"
#include "services/worker/model/error.h"

namespace tecl::worker {
namespace {

absl::StatusCode CodeOf(core::ErrorCode code) {
  switch (code) {
    case core::ErrorCode::kInvalidArgument:
      return absl::StatusCode::kInvalidArgument;
    case core::ErrorCode::kNotFound:
      return absl::StatusCode::kNotFound;
    case core::ErrorCode::kDataLoss:
      return absl::StatusCode::kDataLoss;
    case core::ErrorCode::kFailedPrecondition:
      return absl::StatusCode::kFailedPrecondition;
    case core::ErrorCode::kUnavailable:
      return absl::StatusCode::kUnavailable;
  }
  return absl::StatusCode::kInternal;
}

// Holds a message alive for as long as a tensor views its bytes.
at::Tensor AliasBytes(const std::shared_ptr<const tecl::v1::ClipBatch>& batch,
                      const std::string& bytes, at::IntArrayRef shape, at::ScalarType dtype) {
  auto keep = std::make_shared<std::shared_ptr<const tecl::v1::ClipBatch>>(batch);
  void* data = const_cast<char*>(bytes.data());
  return at::from_blob(
      data, shape, [keep](void*) mutable { keep.reset(); }, at::TensorOptions().dtype(dtype));
}

}  // namespace

absl::StatusOr<c10::Device> DeviceForSpec(const tecl::v1::JobSpec& spec, int cuda_device) {
  if (spec.resources().device() != tecl::v1::DEVICE_CUDA) return c10::Device(c10::kCPU);
  if (!torch::cuda::is_available()) {
    return absl::InvalidArgumentError(
        "resources.device: cuda was requested but this trainer has no usable GPU (or was built "
        "against a CPU-only LibTorch); run it on a GPU node or set resources.device: cpu");
  }
  if (cuda_device < 0 || cuda_device >= static_cast<int>(torch::cuda::device_count())) {
    return absl::InvalidArgumentError(absl::StrCat("--cuda_device ", cuda_device,
                                                   " does not exist (this node has ",
                                                   torch::cuda::device_count(), " GPUs)"));
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(cuda_device));
}

absl::StatusOr<core::TrainerOptions> TrainerOptionsFromSpec(const tecl::v1::JobSpec& spec,
                                                            int world_size,
                                                            const c10::Device& device) {
  core::TrainerOptions o;
  const auto& m = spec.model();
  o.model.backbone = m.backbone();
  o.model.head_hidden = m.head_hidden();
  o.model.psi_hidden = m.psi_hidden();
  o.model.psi_dim = m.psi_dim();
  o.model.projection_hidden = m.projection_hidden();
  o.model.projection_dim = m.projection_dim();
  o.model.num_speeds = spec.sampling().speeds_size();

  const auto& method = spec.method();
  o.loss.weights.equivariance = method.weights().equivariance();
  o.loss.weights.speed = method.weights().speed();
  o.loss.weights.direction = method.weights().direction();
  o.loss.weights.order = method.weights().order();
  o.loss.weights.instance = method.weights().instance();
  o.loss.equivariance_temperature = method.equivariance_temperature();
  o.loss.instance_temperature = method.instance_temperature();
  o.loss.instance_positive = method.instance_positive() == tecl::v1::INSTANCE_POSITIVE_SAME_FRAMES
                                 ? core::InstancePositive::kSameFrames
                                 : core::InstancePositive::kOtherClip;

  const auto& opt = spec.optimizer();
  o.optimizer.name = opt.name();
  o.optimizer.lr = opt.lr();
  o.optimizer.scale_lr = opt.scale_lr();
  o.optimizer.weight_decay = opt.weight_decay();
  o.optimizer.beta1 = opt.beta1();
  o.optimizer.beta2 = opt.beta2();
  if (opt.eps() != 0) o.optimizer.eps = opt.eps();
  o.optimizer.precision = opt.precision() == tecl::v1::OptimizerSpec::PRECISION_BF16
                              ? core::Precision::kBf16
                          : opt.precision() == tecl::v1::OptimizerSpec::PRECISION_FP16
                              ? core::Precision::kFp16
                              : core::Precision::kFp32;
  o.optimizer.grad_clip_norm = opt.grad_clip_norm();

  o.schedule.total_steps = spec.schedule().total_steps();
  o.schedule.warmup_steps = spec.schedule().warmup_steps();
  o.schedule.final_lr_ratio = spec.schedule().final_lr_ratio();

  const int clips_per_video =
      method.instance_positive() == tecl::v1::INSTANCE_POSITIVE_SAME_FRAMES ? 3 : 2;
  o.global_batch_clips =
      static_cast<int64_t>(world_size) * spec.sampling().groups_per_batch() * 2 * clips_per_video;
  o.device = device;
  o.seed = spec.seed();
  try {
    o.Validate();
  } catch (...) {
    return StatusFromCurrentException("job spec");
  }
  return o;
}

absl::StatusOr<at::Tensor> ClipsFromProto(std::shared_ptr<const tecl::v1::ClipBatch> batch) {
  const auto& clips = batch->clips();
  if (clips.shape_size() != 5 || clips.shape(4) != 3) {
    return absl::InvalidArgumentError(absl::StrCat("batch ", batch->step(),
                                                   ": clips.shape must be (N, T, H, W, 3), got ",
                                                   clips.shape_size(), " dimensions"));
  }
  int64_t elements = 1;
  std::vector<int64_t> shape;
  for (int64_t d : clips.shape()) {
    if (d <= 0)
      return absl::InvalidArgumentError(
          absl::StrCat("batch ", batch->step(), ": clips.shape has a dimension <= 0"));
    elements *= d;
    shape.push_back(d);
  }
  if (static_cast<int64_t>(clips.data().size()) != elements) {
    return absl::InvalidArgumentError(absl::StrCat("batch ", batch->step(), ": clips.data holds ",
                                                   clips.data().size(), " bytes, shape needs ",
                                                   elements));
  }
  return AliasBytes(batch, clips.data(), shape, at::kByte);
}

absl::StatusOr<core::Batch> BatchFromProto(std::shared_ptr<const tecl::v1::ClipBatch> batch) {
  absl::StatusOr<at::Tensor> clips = ClipsFromProto(batch);
  if (!clips.ok()) return clips.status();
  const int64_t n = clips->size(0);
  if (batch->clip_info_size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("batch ", batch->step(), ": ", n, " clips but ",
                                                   batch->clip_info_size(), " clip_info entries"));
  }
  core::Batch b;
  b.clips = *clips;
  b.video = at::empty({n}, at::kLong);
  b.group = at::empty({n}, at::kLong);
  b.role = at::empty({n}, at::kLong);
  b.speed_index = at::empty({n}, at::kLong);
  b.reversed = at::empty({n}, at::kLong);
  auto video = b.video.accessor<int64_t, 1>();
  auto group = b.group.accessor<int64_t, 1>();
  auto role = b.role.accessor<int64_t, 1>();
  auto speed = b.speed_index.accessor<int64_t, 1>();
  auto reversed = b.reversed.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) {
    const tecl::v1::ClipInfo& info = batch->clip_info(static_cast<int>(i));
    video[i] = info.video();
    group[i] = info.group();
    role[i] = info.role();
    speed[i] = info.speed_index();
    reversed[i] = info.reversed() ? 1 : 0;
  }
  b.relation = at::empty({batch->groups_size()}, at::kLong);
  auto relation = b.relation.accessor<int64_t, 1>();
  for (int g = 0; g < batch->groups_size(); ++g) relation[g] = batch->groups(g).relation();
  return b;
}

absl::Status StatusFromCurrentException(const std::string& what) {
  const std::string prefix = what.empty() ? "" : what + ": ";
  try {
    throw;
  } catch (const core::Error& e) {
    return absl::Status(CodeOf(e.code()), prefix + e.what());
  } catch (const dist::CollectiveError& e) {
    return absl::UnavailableError(prefix + e.what());
  } catch (const std::invalid_argument& e) {
    return absl::InvalidArgumentError(prefix + e.what());
  } catch (const c10::Error& e) {
    return absl::InternalError(prefix + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return absl::InternalError(prefix + e.what());
  } catch (...) {
    return absl::InternalError(prefix + "unknown exception");
  }
}

}  // namespace tecl::worker
