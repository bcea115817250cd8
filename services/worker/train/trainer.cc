#include "services/worker/train/trainer.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <utility>
#include <vector>

#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

// Autocast of `precision` on `device`'s type for the scope (nothing for fp32), restoring the
// previous state after it.
class AutocastScope {
 public:
  AutocastScope(const c10::Device& device, Precision precision) {
    if (precision == Precision::kFp32) return;
    active_ = true;
    cuda_ = device.is_cuda();
    const at::ScalarType type = precision == Precision::kBf16 ? at::kBFloat16 : at::kHalf;
    if (cuda_) {
      was_enabled_ = at::autocast::is_enabled();
      previous_type_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_autocast_gpu_dtype(type);
      at::autocast::set_enabled(true);
    } else {
      was_enabled_ = at::autocast::is_cpu_enabled();
      previous_type_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_autocast_cpu_dtype(type);
      at::autocast::set_cpu_enabled(true);
    }
    at::autocast::increment_nesting();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;
  ~AutocastScope() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    if (cuda_) {
      at::autocast::set_enabled(was_enabled_);
      at::autocast::set_autocast_gpu_dtype(previous_type_);
    } else {
      at::autocast::set_cpu_enabled(was_enabled_);
      at::autocast::set_autocast_cpu_dtype(previous_type_);
    }
  }

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  at::ScalarType previous_type_ = at::kFloat;
};

}  // namespace

void TrainerOptions::Validate() const {
  model.Validate();
  loss.Validate();
  optimizer.Validate();
  schedule.Validate();
  if (optimizer.precision == Precision::kFp16 && !device.is_cuda()) {
    throw Error(ErrorCode::kInvalidArgument,
                "optimizer.precision: fp16 needs a CUDA device (CPU autocast has no fp16); use "
                "bf16 or fp32");
  }
  if (global_batch_clips < 1) {
    std::ostringstream message;
    message << "global batch: " << global_batch_clips << " clips per step must be >= 1";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
}

bool TrainerOptions::ChannelsLast() const {
  return memory_format == MemoryFormat::kChannelsLast ||
         (memory_format == MemoryFormat::kAuto && device.is_cuda() &&
          optimizer.precision != Precision::kFp32);
}

Trainer::Trainer(const TrainerOptions& options) : options_(options) {
  options_.Validate();
  torch::manual_seed(options_.seed);
  model_ = TeclModel(options_.model, HeadsFor(options_.loss.weights));
  model_->to(options_.device);
  if (options_.ChannelsLast()) {
    // The 3-D convolution weights (and any other 5-D tensor) in NDHWC; autograd gives their
    // gradients, and AdamW its moments, the same layout.
    torch::NoGradGuard no_grad;
    for (auto& item : model_->named_parameters(/*recurse=*/true)) {
      torch::Tensor& p = item.value();
      if (p.dim() == 5) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast3d));
    }
  }
  for (const auto& item : model_->named_parameters(/*recurse=*/true)) {
    if (item.value().requires_grad()) parameters_.push_back(item.value());
  }
  const double lr = LearningRateAt(options_.optimizer, options_.schedule,
                                   options_.global_batch_clips, /*step=*/0);
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      parameters_, torch::optim::AdamWOptions(lr)
                       .betas({options_.optimizer.beta1, options_.optimizer.beta2})
                       .weight_decay(options_.optimizer.weight_decay)
                       .eps(options_.optimizer.eps));
  if (options_.optimizer.precision == Precision::kFp16) loss_scale_.emplace();
  // Let cuDNN pick the fastest convolution algorithms for the (fixed) clip shape.
  if (options_.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  layout_.num_speeds = options_.model.num_speeds;
  layout_.instance_positive = options_.loss.instance_positive;
}

LossValues Trainer::ForwardBackward(const Batch& batch) {
  const BatchIndex index = IndexBatch(batch, layout_).To(options_.device);
  gradients_ready_ = false;
  for (torch::Tensor& parameter : parameters_) parameter.mutable_grad() = torch::Tensor();
  model_->train();
  torch::Tensor features;
  {
    // The backbone in the job's precision; the heads and the losses in fp32.
    AutocastScope autocast(options_.device, options_.optimizer.precision);
    features = model_->forward(NormalizeClips(
        batch.clips, options_.device,
        channels_last() ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous));
  }
  features = features.to(torch::kFloat);
  const GlobalBatch* global = collectives_.global_loss ? &*collectives_.global_loss : nullptr;
  const LossTerms terms = ComputeLosses(*model_, features, index, options_.loss, global);
  if (loss_scale_) {
    (terms.for_backward * loss_scale_->scale()).backward();
  } else {
    terms.for_backward.backward();
  }
  const LossValues values = ToValues(terms);
  if (!std::isfinite(values.total)) {
    for (torch::Tensor& parameter : parameters_) parameter.mutable_grad() = torch::Tensor();
    std::ostringstream message;
    message << "training step " << step_ << ": the loss is not finite (" << values.ToString()
            << "); lower optimizer.lr or set optimizer.grad_clip_norm, and resume from an earlier "
               "checkpoint";
    throw Error(ErrorCode::kFailedPrecondition, message.str());
  }
  gradients_ready_ = true;
  return values;
}

void Trainer::SetCollectives(StepCollectives collectives) {
  if (collectives.global_loss) {
    const GlobalBatch& global = *collectives.global_loss;
    if (!global.gather || global.world_size < 1 || global.rank < 0 ||
        global.rank >= global.world_size) {
      std::ostringstream message;
      message << "SetCollectives: a global loss needs a gather and a rank in [0, world_size), got "
              << "rank " << global.rank << " of " << global.world_size;
      throw Error(ErrorCode::kInvalidArgument, message.str());
    }
  }
  SetBatchNormSync(*model_, collectives.batch_norm);
  collectives_ = std::move(collectives);
}

StepInfo Trainer::ApplyGradients() {
  if (!gradients_ready_) {
    throw Error(ErrorCode::kFailedPrecondition,
                "ApplyGradients: no gradients; call ForwardBackward first (once per step)");
  }
  StepInfo info;
  info.step = step_;
  info.learning_rate = NextLearningRate();
  if (loss_scale_) {
    // Unscale the (averaged) gradients; skip the step if any overflowed.
    info.loss_scale = loss_scale_->scale();
    std::vector<torch::Tensor> finite;
    for (torch::Tensor& parameter : parameters_) {
      if (parameter.grad().defined()) finite.push_back(parameter.grad().isfinite().all());
    }
    const bool all_finite = finite.empty() || torch::stack(finite).all().item<bool>();
    if (!loss_scale_->Update(!all_finite)) {
      for (torch::Tensor& parameter : parameters_) parameter.mutable_grad() = torch::Tensor();
      info.skipped = true;
      ++step_;
      gradients_ready_ = false;
      return info;
    }
    torch::NoGradGuard no_grad;
    for (torch::Tensor& parameter : parameters_) {
      if (parameter.grad().defined()) parameter.mutable_grad().div_(*info.loss_scale);
    }
  }
  if (options_.optimizer.grad_clip_norm > 0) {
    info.grad_norm = torch::nn::utils::clip_grad_norm_(parameters_, options_.optimizer.grad_clip_norm);
  }
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(info.learning_rate);
  }
  optimizer_->step();
  ++step_;
  gradients_ready_ = false;
  return info;
}

StepResult Trainer::TrainStep(const Batch& batch) {
  StepResult result;
  result.loss = ForwardBackward(batch);
  result.info = ApplyGradients();
  return result;
}

std::vector<std::pair<std::string, torch::Tensor>> Trainer::NamedParameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : model_->named_parameters(/*recurse=*/true)) {
    if (item.value().requires_grad()) out.emplace_back(item.key(), item.value());
  }
  return out;
}

double Trainer::NextLearningRate() const {
  return LearningRateAt(options_.optimizer, options_.schedule, options_.global_batch_clips, step_);
}

void Trainer::RestoreCounters(int64_t step, int64_t epoch) {
  step_ = step;
  epoch_ = epoch;
  gradients_ready_ = false;
}

}  // namespace tecl::worker::core
