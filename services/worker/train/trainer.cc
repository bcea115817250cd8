#include "services/worker/train/trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <utility>

#include "services/worker/model/error.h"

namespace tecl::worker::core {

void TrainerOptions::Validate() const {
  model.Validate();
  loss.Validate();
  optimizer.Validate();
  schedule.Validate();
  if (global_batch_clips < 1) {
    std::ostringstream message;
    message << "global batch: " << global_batch_clips << " clips per step must be >= 1";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
}

Trainer::Trainer(const TrainerOptions& options) : options_(options) {
  options_.Validate();
  torch::manual_seed(options_.seed);
  model_ = TeclModel(options_.model, HeadsFor(options_.loss.weights));
  model_->to(options_.device);
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
  layout_.num_speeds = options_.model.num_speeds;
  layout_.instance_positive = options_.loss.instance_positive;
}

LossValues Trainer::ForwardBackward(const Batch& batch) {
  const BatchIndex index = IndexBatch(batch, layout_).To(options_.device);
  gradients_ready_ = false;
  for (torch::Tensor& parameter : parameters_) parameter.mutable_grad() = torch::Tensor();
  model_->train();
  const torch::Tensor features = model_->forward(NormalizeClips(batch.clips, options_.device));
  const GlobalBatch* global = collectives_.global_loss ? &*collectives_.global_loss : nullptr;
  const LossTerms terms = ComputeLosses(*model_, features, index, options_.loss, global);
  terms.for_backward.backward();
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
