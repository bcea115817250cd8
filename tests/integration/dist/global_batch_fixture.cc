#include "tests/integration/dist/global_batch_fixture.h"

#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "services/worker/train/synthetic_batches.h"

namespace tecl::worker::testing {

std::vector<ExactnessConfig> ExactnessConfigs() {
  const auto only = [](const std::string& name, double core::LossWeights::*term) {
    ExactnessConfig config;
    config.name = name;
    config.weights = core::LossWeights{0, 0, 0, 0, 0};
    config.weights.*term = 1.0;
    return config;
  };
  std::vector<ExactnessConfig> configs;
  configs.push_back(ExactnessConfig{"all", core::LossWeights{}, true, true});
  configs.push_back(only("equi", &core::LossWeights::equivariance));
  configs.push_back(only("speed", &core::LossWeights::speed));
  configs.push_back(only("dir", &core::LossWeights::direction));
  configs.push_back(only("order", &core::LossWeights::order));
  configs.push_back(only("inst", &core::LossWeights::instance));
  configs.push_back(ExactnessConfig{"off", core::LossWeights{}, false, false});
  return configs;
}

core::TrainerOptions ExactnessTrainerOptions(const ExactnessConfig& config, int world_size) {
  core::TrainerOptions options;
  options.model.backbone = "tiny3d";
  options.model.head_hidden = 32;
  options.model.psi_hidden = 32;
  options.model.psi_dim = 16;
  options.model.projection_hidden = 32;
  options.model.projection_dim = 16;
  options.model.num_speeds = 4;
  options.loss.weights = config.weights;
  options.optimizer.lr = 1e-3;
  // Adam's normalisation turns float noise in a near-zero gradient into a full step of either
  // sign; a larger eps keeps the comparison after k steps about the gradients, not that noise.
  options.optimizer.eps = 1e-3;
  options.optimizer.scale_lr = false;
  options.schedule.total_steps = 1000;  // lr nearly constant over the k steps
  options.schedule.warmup_steps = 0;
  options.global_batch_clips = int64_t{world_size} * 4 * kExactGroupsPerRank;
  options.seed = 7;
  return options;
}

core::Batch GlobalStepBatch(int step, int world_size) {
  core::SyntheticMotionOptions options;
  options.groups = int64_t{world_size} * kExactGroupsPerRank;
  options.clip_length = 8;
  options.size = 32;
  options.video_frames = 160;
  return core::MakeSyntheticMotionBatch(options, /*seed=*/1000 + static_cast<uint64_t>(step));
}

core::Batch RankSlice(const core::Batch& global, int rank) {
  const int64_t clips_per_video = global.clips.size(0) / (2 * global.relation.size(0));
  const int64_t videos = 2 * kExactGroupsPerRank;
  const int64_t first_group = int64_t{rank} * kExactGroupsPerRank;
  const int64_t first_video = 2 * first_group;
  const int64_t first_clip = first_video * clips_per_video;
  const int64_t clips = videos * clips_per_video;
  core::Batch slice;
  slice.clips = global.clips.narrow(0, first_clip, clips).contiguous();
  slice.video = global.video.narrow(0, first_clip, clips) - first_video;
  slice.group = global.group.narrow(0, first_clip, clips) - first_group;
  slice.role = global.role.narrow(0, first_clip, clips).clone();
  slice.speed_index = global.speed_index.narrow(0, first_clip, clips).clone();
  slice.reversed = global.reversed.narrow(0, first_clip, clips).clone();
  slice.relation = global.relation.narrow(0, first_group, kExactGroupsPerRank).clone();
  return slice;
}

torch::Tensor LossTable(const std::vector<core::LossValues>& losses) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  torch::Tensor table = torch::full({static_cast<int64_t>(losses.size()), 6}, nan, torch::kDouble);
  for (size_t i = 0; i < losses.size(); ++i) {
    const core::LossValues& v = losses[i];
    const double row[6] = {v.total,
                           v.equivariance.value_or(nan),
                           v.speed.value_or(nan),
                           v.direction.value_or(nan),
                           v.order.value_or(nan),
                           v.instance.value_or(nan)};
    for (int j = 0; j < 6; ++j) table[static_cast<int64_t>(i)][j] = row[j];
  }
  return table;
}

TrainerState StateOf(core::Trainer& trainer) {
  TrainerState state;
  for (const auto& [name, parameter] : trainer.NamedParameters()) {
    state.parameters.push_back(parameter.detach().clone());
    state.gradients.push_back(parameter.grad().defined() ? parameter.grad().clone()
                                                         : torch::zeros_like(parameter));
  }
  for (const auto& buffer : trainer.model()->buffers(/*recurse=*/true)) {
    state.buffers.push_back(buffer.detach().clone());
  }
  return state;
}

void LoadState(core::Trainer& trainer, const TrainerState& state) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& [name, parameter] : trainer.NamedParameters()) parameter.copy_(state.parameters.at(i++));
  i = 0;
  for (auto& buffer : trainer.model()->buffers(/*recurse=*/true)) buffer.copy_(state.buffers.at(i++));
}

// Layout: [header (steps, P, B), then per step P parameters, B buffers, P gradients, then P
// final parameters, B final buffers, then the loss table].
void SaveRecord(const RankRecord& record, const std::string& path) {
  const TrainerState& last = record.final_state;
  std::vector<torch::Tensor> out = {torch::tensor(
      {static_cast<int64_t>(record.steps.size()), static_cast<int64_t>(last.parameters.size()),
       static_cast<int64_t>(last.buffers.size())},
      torch::kLong)};
  const auto append = [&out](const std::vector<torch::Tensor>& part) {
    out.insert(out.end(), part.begin(), part.end());
  };
  for (const TrainerState& step : record.steps) {
    append(step.parameters);
    append(step.buffers);
    append(step.gradients);
  }
  append(last.parameters);
  append(last.buffers);
  out.push_back(record.losses);
  torch::save(out, path);
}

RankRecord LoadRecord(const std::string& path, size_t parameters, size_t buffers) {
  std::vector<torch::Tensor> in;
  torch::load(in, path);
  if (in.empty() || in[0].numel() != 3 || in[0][1].item<int64_t>() != int64_t(parameters) ||
      in[0][2].item<int64_t>() != int64_t(buffers)) {
    throw std::runtime_error(path + ": not a record of " + std::to_string(parameters) +
                             " parameters and " + std::to_string(buffers) + " buffers");
  }
  const size_t steps = static_cast<size_t>(in[0][0].item<int64_t>());
  if (in.size() != 1 + steps * (2 * parameters + buffers) + parameters + buffers + 1) {
    throw std::runtime_error(path + ": " + std::to_string(in.size()) + " tensors do not fit");
  }
  size_t next = 1;
  const auto take = [&](size_t n) {
    std::vector<torch::Tensor> part(in.begin() + next, in.begin() + next + n);
    next += n;
    return part;
  };
  RankRecord record;
  for (size_t s = 0; s < steps; ++s) {
    TrainerState state;
    state.parameters = take(parameters);
    state.buffers = take(buffers);
    state.gradients = take(parameters);
    record.steps.push_back(std::move(state));
  }
  record.final_state.parameters = take(parameters);
  record.final_state.buffers = take(buffers);
  record.losses = in[next];
  return record;
}

}  // namespace tecl::worker::testing
