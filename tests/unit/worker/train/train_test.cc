// Schedule, options, and the training step (including its split around the gradient all-reduce).
#include "services/worker/train/trainer.h"

#include <ATen/autocast_mode.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <string>

#include "services/worker/model/error.h"
#include "services/worker/model/model.h"
#include "services/worker/train/device_staging.h"
#include "services/worker/train/loss_scale.h"
#include "services/worker/train/schedule.h"
#include "services/worker/train/synthetic_batches.h"

namespace tecl::worker::core {
namespace {

using ::testing::HasSubstr;

TEST(ScheduleTest, WarmupThenCosineToTheFinalRatio) {
  OptimizerOptions optimizer;
  optimizer.lr = 1e-3;
  optimizer.scale_lr = false;
  ScheduleOptions schedule;
  schedule.total_steps = 110;
  schedule.warmup_steps = 10;
  schedule.final_lr_ratio = 0.1;
  const auto lr = [&](int64_t step) { return LearningRateAt(optimizer, schedule, 64, step); };
  EXPECT_DOUBLE_EQ(lr(0), 1e-4);
  EXPECT_DOUBLE_EQ(lr(4), 5e-4);
  EXPECT_DOUBLE_EQ(lr(9), 1e-3);
  EXPECT_DOUBLE_EQ(lr(10), 1e-3);                         // Cosine starts at the peak,
  EXPECT_NEAR(lr(60), 1e-3 * (0.1 + 0.9 * 0.5), 1e-12);   // is halfway down at mid-decay,
  EXPECT_NEAR(lr(35), 1e-3 * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 0.25))), 1e-12);
  EXPECT_NEAR(lr(110), 1e-4, 1e-12);                      // and ends at final_lr_ratio * peak.
  EXPECT_NEAR(lr(1000), 1e-4, 1e-12);
}

TEST(ScheduleTest, ScalesByGlobalBatchOver64) {
  OptimizerOptions optimizer;
  optimizer.lr = 3e-4;
  ScheduleOptions schedule;
  schedule.total_steps = 100;
  schedule.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(PeakLearningRate(optimizer, 128), 6e-4);
  EXPECT_DOUBLE_EQ(LearningRateAt(optimizer, schedule, 16, 0), 7.5e-5);  // No warm-up: the peak.
  optimizer.scale_lr = false;
  EXPECT_DOUBLE_EQ(PeakLearningRate(optimizer, 128), 3e-4);
}

TEST(ScheduleTest, OptionsNameTheBadField) {
  const auto message = [](const auto& options) -> std::string {
    try {
      options.Validate();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      return e.what();
    }
    return "valid";
  };
  OptimizerOptions optimizer;
  optimizer.name = "sgd";
  EXPECT_EQ(message(optimizer), "optimizer.name: \"sgd\" is not one of adamw");
  optimizer = OptimizerOptions{};
  optimizer.beta2 = 1.0;
  EXPECT_EQ(message(optimizer), "optimizer.beta2: 1 must be in [0, 1)");
  optimizer = OptimizerOptions{};
  optimizer.grad_clip_norm = -1;
  EXPECT_THAT(message(optimizer), HasSubstr("optimizer.grad_clip_norm: -1 must be >= 0"));
  ScheduleOptions schedule;
  schedule.warmup_steps = schedule.total_steps + 1;
  EXPECT_THAT(message(schedule), HasSubstr("schedule.warmup_steps: 50001 must be in [0, schedule.total_steps]"));
  schedule = ScheduleOptions{};
  schedule.final_lr_ratio = 2;
  EXPECT_EQ(message(schedule), "schedule.final_lr_ratio: 2 must be in [0, 1]");
}

// A small, fast configuration: tiny3d on 4 x 16 x 16 clips, narrow heads.
TrainerOptions SmallOptions() {
  TrainerOptions options;
  options.model.backbone = "tiny3d";
  options.model.head_hidden = 16;
  options.model.psi_hidden = 16;
  options.model.psi_dim = 8;
  options.model.projection_hidden = 16;
  options.model.projection_dim = 8;
  options.optimizer.lr = 1e-3;
  options.optimizer.scale_lr = false;
  options.schedule.total_steps = 20;
  options.schedule.warmup_steps = 2;
  options.seed = 7;
  return options;
}

Batch SmallBatch(uint64_t seed, InstancePositive positive = InstancePositive::kOtherClip) {
  SyntheticMotionOptions options;
  options.groups = 2;
  options.clip_length = 4;
  options.size = 16;
  options.video_frames = 80;
  options.instance_positive = positive;
  return MakeSyntheticMotionBatch(options, seed);
}

std::vector<torch::Tensor> Snapshot(const Trainer& trainer) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, p] : trainer.NamedParameters()) out.push_back(p.detach().clone());
  return out;
}

void ExpectSameParameters(const Trainer& a, const Trainer& b) {
  const auto pa = a.NamedParameters(), pb = b.NamedParameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
  }
}

TEST(TrainerTest, ParametersAreInAStableRegistrationOrder) {
  Trainer a(SmallOptions()), b(SmallOptions());
  const auto names = a.NamedParameters();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front().first, "backbone.features.0.weight");
  EXPECT_EQ(names.back().first, "projection.3.bias");
  ExpectSameParameters(a, b);  // Same seed: the same initial weights.
  std::set<std::string> heads;
  for (const auto& [name, p] : names) heads.insert(name.substr(0, name.find('.')));
  EXPECT_EQ(heads, (std::set<std::string>{"backbone", "psi", "speed", "direction", "order", "projection"}));
  EXPECT_EQ(names.size(), a.model()->parameters().size());
}

TEST(TrainerTest, EveryParameterGetsAGradient) {
  for (bool ablation : {false, true}) {
    TrainerOptions options = SmallOptions();
    if (ablation) options.loss.weights = {0, 0, 1, 0, 1};
    Trainer trainer(options);
    trainer.ForwardBackward(SmallBatch(1));
    for (const auto& [name, p] : trainer.NamedParameters()) {
      EXPECT_TRUE(p.grad().defined()) << name;
    }
  }
}

TEST(TrainerTest, TrainStepUsesTheScheduleAndAdvances) {
  Trainer trainer(SmallOptions());
  const auto before = Snapshot(trainer);
  for (int64_t step = 0; step < 3; ++step) {
    const StepResult result = trainer.TrainStep(SmallBatch(step));
    EXPECT_EQ(result.info.step, step);
    EXPECT_DOUBLE_EQ(result.info.learning_rate, LearningRateAt(trainer.options().optimizer,
                                                               trainer.options().schedule, 64, step));
    EXPECT_TRUE(std::isfinite(result.loss.total));
    EXPECT_TRUE(result.loss.equivariance && result.loss.speed && result.loss.direction &&
                result.loss.order && result.loss.instance);
    EXPECT_FALSE(result.info.grad_norm.has_value());
  }
  EXPECT_EQ(trainer.step(), 3);
  const auto after = Snapshot(trainer);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_FALSE(torch::equal(before[i], after[i])) << i;
}

// The seam for data-parallel training: gradients may be replaced between ForwardBackward and
// ApplyGradients (as the reducer's all-reduce does), and the step uses what is there. Two
// "ranks" with different batches that average their gradients stay identical.
TEST(TrainerTest, AveragedGradientsBetweenBackwardAndStepKeepRanksInLockstep) {
  TrainerOptions options = SmallOptions();
  options.optimizer.grad_clip_norm = 0.5;
  Trainer rank0(options), rank1(options);
  for (int step = 0; step < 2; ++step) {
    rank0.ForwardBackward(SmallBatch(100 + step));
    rank1.ForwardBackward(SmallBatch(200 + step));
    const auto p0 = rank0.NamedParameters(), p1 = rank1.NamedParameters();
    for (size_t i = 0; i < p0.size(); ++i) {
      const torch::Tensor mean = (p0[i].second.grad() + p1[i].second.grad()) / 2;
      p0[i].second.mutable_grad().copy_(mean);
      p1[i].second.mutable_grad().copy_(mean);
    }
    const StepInfo i0 = rank0.ApplyGradients(), i1 = rank1.ApplyGradients();
    EXPECT_EQ(*i0.grad_norm, *i1.grad_norm);
  }
  // Parameters agree; BatchNorm buffers stay local (they saw different batches).
  ExpectSameParameters(rank0, rank1);
}

TEST(TrainerTest, SplitStepEqualsTrainStep) {
  Trainer whole(SmallOptions()), split(SmallOptions());
  const StepResult a = whole.TrainStep(SmallBatch(5));
  const LossValues b = split.ForwardBackward(SmallBatch(5));
  split.ApplyGradients();
  EXPECT_EQ(a.loss.total, b.total);
  ExpectSameParameters(whole, split);
}

TEST(TrainerTest, ClipsTheGlobalGradientNorm) {
  TrainerOptions options = SmallOptions();
  options.optimizer.grad_clip_norm = 1e-3;
  Trainer trainer(options);
  trainer.ForwardBackward(SmallBatch(2));
  double squares = 0;
  for (const auto& [name, p] : trainer.NamedParameters()) squares += p.grad().pow(2).sum().item<double>();
  const StepInfo info = trainer.ApplyGradients();
  ASSERT_TRUE(info.grad_norm.has_value());
  EXPECT_NEAR(*info.grad_norm, std::sqrt(squares), 1e-4 * std::sqrt(squares));
  double clipped = 0;
  for (const auto& [name, p] : trainer.NamedParameters()) clipped += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(clipped), 1e-3, 1e-5);
}

TEST(TrainerTest, ZeroWeightHeadIsAbsentAndOthersTrain) {
  TrainerOptions options = SmallOptions();
  options.loss.weights.speed = 0;
  options.loss.weights.equivariance = 0;
  Trainer trainer(options);
  for (const auto& [name, p] : trainer.NamedParameters()) {
    EXPECT_NE(name.rfind("speed.", 0), 0u) << name;
    EXPECT_NE(name.rfind("psi.", 0), 0u) << name;
  }
  const auto before = Snapshot(trainer);
  const StepResult result = trainer.TrainStep(SmallBatch(3));
  EXPECT_FALSE(result.loss.speed.has_value());
  EXPECT_FALSE(result.loss.speed_accuracy.has_value());
  EXPECT_FALSE(result.loss.equivariance.has_value());
  EXPECT_TRUE(result.loss.direction.has_value());
  const auto after = Snapshot(trainer);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_FALSE(torch::equal(before[i], after[i])) << i;
}

TEST(TrainerTest, SameFramesPositives) {
  TrainerOptions options = SmallOptions();
  options.loss.instance_positive = InstancePositive::kSameFrames;
  Trainer trainer(options);
  const StepResult result = trainer.TrainStep(SmallBatch(4, InstancePositive::kSameFrames));
  EXPECT_TRUE(std::isfinite(*result.loss.instance));
  // A batch without same-frames clips does not fit this layout.
  try {
    trainer.TrainStep(SmallBatch(4));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("batch: 8 clips for 2 groups; expected 12"));
  }
  EXPECT_EQ(trainer.step(), 1);
}

TEST(TrainerTest, BadBatchChangesNothing) {
  Trainer trainer(SmallOptions());
  Batch batch = SmallBatch(1);
  batch.speed_index[0] = 9;
  const auto before = Snapshot(trainer);
  try {
    trainer.TrainStep(batch);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("speed_index 9 is outside 0..3"));
  }
  EXPECT_EQ(trainer.step(), 0);
  const auto after = Snapshot(trainer);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i]));
}

TEST(TrainerTest, NonFiniteLossIsRefused) {
  Trainer trainer(SmallOptions());
  {
    torch::NoGradGuard no_grad;
    trainer.NamedParameters().back().second.fill_(std::nan(""));
  }
  try {
    trainer.ForwardBackward(SmallBatch(1));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition);
    EXPECT_THAT(e.what(), HasSubstr("training step 0: the loss is not finite"));
  }
  try {
    trainer.ApplyGradients();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition);
    EXPECT_THAT(e.what(), HasSubstr("call ForwardBackward first"));
  }
}

TEST(TrainerTest, InvalidOptionsAreRefused) {
  TrainerOptions options = SmallOptions();
  options.model.backbone = "resnet50";
  EXPECT_THROW(Trainer{options}, Error);
  options = SmallOptions();
  options.global_batch_clips = 0;
  try {
    Trainer trainer(options);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("global batch: 0 clips per step must be >= 1"));
  }
}

TEST(SyntheticBatchTest, ValidLayoutAndDeterministic) {
  SyntheticMotionOptions options;
  options.groups = 3;
  options.clip_length = 4;
  options.size = 16;
  options.video_frames = 80;
  const Batch batch = MakeSyntheticMotionBatch(options, 11);
  EXPECT_EQ(batch.clips.sizes(), (std::vector<int64_t>{12, 4, 16, 16, 3}));
  IndexBatch(batch, {4, InstancePositive::kOtherClip});  // A valid layout.
  // Deterministic.
  EXPECT_TRUE(torch::equal(batch.clips, MakeSyntheticMotionBatch(options, 11).clips));
  EXPECT_FALSE(torch::equal(batch.clips, MakeSyntheticMotionBatch(options, 12).clips));
}

}  // namespace
}  // namespace tecl::worker::core

namespace tecl::worker::core {
namespace {

// bf16 autocast runs the backbone in bf16 on the CPU too; the heads and losses stay fp32, so the
// terms are close to the fp32 step's from the same initialisation and batch, and the step trains.
TEST(PrecisionTest, Bf16StepIsCloseToFp32AndTrains) {
  TrainerOptions fp32_options = SmallOptions();
  TrainerOptions bf16_options = SmallOptions();
  bf16_options.optimizer.precision = Precision::kBf16;
  Trainer fp32(fp32_options), bf16(bf16_options);
  const Batch batch = SmallBatch(5);
  const LossValues a = fp32.ForwardBackward(batch);
  const LossValues b = bf16.ForwardBackward(batch);
  EXPECT_NEAR(b.total, a.total, 0.05 * std::abs(a.total));
  EXPECT_NE(b.total, a.total) << "the bf16 forward computed exactly the fp32 numbers";
  ASSERT_TRUE(a.speed && b.speed);
  EXPECT_NEAR(*b.speed, *a.speed, 0.05 * std::abs(*a.speed));
  for (const auto& [name, parameter] : bf16.NamedParameters()) {
    ASSERT_TRUE(parameter.grad().defined()) << name;
    EXPECT_EQ(parameter.grad().scalar_type(), torch::kFloat) << name;  // fp32 master weights
    EXPECT_TRUE(parameter.grad().isfinite().all().item<bool>()) << name;
  }
  const auto before = bf16.NamedParameters()[0].second.detach().clone();
  const StepInfo info = bf16.ApplyGradients();
  EXPECT_FALSE(info.skipped);
  EXPECT_FALSE(info.loss_scale.has_value());
  EXPECT_FALSE(torch::equal(before, bf16.NamedParameters()[0].second));
  EXPECT_FALSE(at::autocast::is_cpu_enabled()) << "autocast must end with the forward";
}

TEST(PrecisionTest, Fp16NeedsACudaDevice) {
  TrainerOptions options = SmallOptions();
  options.optimizer.precision = Precision::kFp16;
  try {
    Trainer trainer(options);
    FAIL() << "fp16 on the CPU was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("optimizer.precision: fp16 needs a CUDA device"));
  }
}

TEST(LossScaleTest, OverflowSkipsAndBacksOffCleanStepsGrowWithinBounds) {
  LossScaleOptions options;
  options.initial_scale = 1024;
  options.growth_interval = 3;
  options.min_scale = 256;
  options.max_scale = 4096;
  DynamicLossScale scale(options);
  EXPECT_FALSE(scale.Update(/*found_non_finite=*/true));
  EXPECT_DOUBLE_EQ(scale.scale(), 512);
  EXPECT_FALSE(scale.Update(true));
  EXPECT_FALSE(scale.Update(true));
  EXPECT_DOUBLE_EQ(scale.scale(), 256);  // Not below min_scale.
  EXPECT_EQ(scale.skipped_steps(), 3);
  EXPECT_TRUE(scale.Update(false));
  EXPECT_TRUE(scale.Update(false));
  EXPECT_DOUBLE_EQ(scale.scale(), 256);
  EXPECT_TRUE(scale.Update(false));  // Third clean step in a row: grows.
  EXPECT_DOUBLE_EQ(scale.scale(), 512);
  EXPECT_TRUE(scale.Update(false));
  EXPECT_FALSE(scale.Update(true));  // An overflow resets the streak.
  EXPECT_DOUBLE_EQ(scale.scale(), 256);
  for (int i = 0; i < 30; ++i) scale.Update(false);
  EXPECT_DOUBLE_EQ(scale.scale(), 4096);  // Not above max_scale.

  LossScaleOptions bad;
  bad.backoff_factor = 1.5;
  EXPECT_THROW(DynamicLossScale{bad}, Error);
}

// What a checkpoint keeps: a restored scale goes on exactly as the original (the streak included);
// a state the scale could not have reached is refused naming the field, and changes nothing.
TEST(LossScaleTest, StateRoundTripsAndImpossibleStatesAreRefused) {
  LossScaleOptions options;
  options.growth_interval = 3;
  DynamicLossScale original(options);
  original.Update(true);
  original.Update(false);
  original.Update(false);
  DynamicLossScale restored(options);
  restored.Restore(original.state());
  EXPECT_EQ(restored.scale(), original.scale());
  EXPECT_EQ(restored.skipped_steps(), 1);
  original.Update(false);
  restored.Update(false);  // The third clean step: both grow.
  EXPECT_EQ(restored.scale(), original.scale());
  EXPECT_EQ(restored.scale(), 65536.0);

  const LossScaleState before = restored.state();
  const auto refused = [&](LossScaleState state, const char* field) {
    try {
      restored.Restore(state);
      ADD_FAILURE() << field << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kDataLoss);
      EXPECT_THAT(e.what(), HasSubstr(field));
    }
    EXPECT_EQ(restored.scale(), before.scale);
  };
  refused({std::nan(""), 0, 0}, "loss_scale.scale");
  refused({1e30, 0, 0}, "loss_scale.scale");
  refused({1024, 3, 0}, "loss_scale.clean_streak");
  refused({1024, 0, -1}, "loss_scale.skipped");
}

// Relative L2 distance of two tensors.
double RelativeL2(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(1e-12, b.norm().item<double>());
}

TEST(MemoryFormatTest, NormalizeClipsChannelsLastHasTheSameValues) {
  const Batch batch = SmallBatch(3);
  const torch::Tensor a = NormalizeClips(batch.clips, torch::kCPU);
  const torch::Tensor b = NormalizeClips(batch.clips, torch::kCPU, at::MemoryFormat::ChannelsLast3d);
  EXPECT_TRUE(a.is_contiguous());
  EXPECT_TRUE(b.is_contiguous(at::MemoryFormat::ChannelsLast3d));
  EXPECT_FALSE(b.is_contiguous());
  EXPECT_TRUE(torch::equal(a, b));
}

// The channels-last backbone computes the same step as the contiguous one (up to float rounding),
// keeps its 5-D weights channels-last through the optimiser step, and kAuto picks it only for a
// GPU in bf16/fp16.
TEST(MemoryFormatTest, ChannelsLastStepMatchesContiguous) {
  TrainerOptions contiguous_options = SmallOptions();
  contiguous_options.memory_format = MemoryFormat::kContiguous;
  TrainerOptions channels_last_options = SmallOptions();
  channels_last_options.memory_format = MemoryFormat::kChannelsLast;
  Trainer contiguous(contiguous_options), channels_last(channels_last_options);
  EXPECT_FALSE(contiguous.channels_last());
  ASSERT_TRUE(channels_last.channels_last());
  int five_d = 0;
  for (const auto& [name, p] : channels_last.NamedParameters()) {
    if (p.dim() != 5) continue;
    ++five_d;
    EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast3d)) << name;
    EXPECT_FALSE(p.is_contiguous()) << name;
  }
  EXPECT_EQ(five_d, 4) << "tiny3d has four 3-D convolutions";
  ExpectSameParameters(contiguous, channels_last);  // Same values, other layout.

  for (int step = 0; step < 2; ++step) {
    const Batch batch = SmallBatch(11 + step);
    const LossValues a = contiguous.ForwardBackward(batch);
    const LossValues b = channels_last.ForwardBackward(batch);
    EXPECT_NEAR(b.total, a.total, 1e-4 * std::abs(a.total)) << "step " << step;
    const auto pa = contiguous.NamedParameters(), pb = channels_last.NamedParameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_LT(RelativeL2(pb[i].second.grad(), pa[i].second.grad()), 1e-3) << pa[i].first;
    }
    contiguous.ApplyGradients();
    channels_last.ApplyGradients();
  }
  const auto pa = contiguous.NamedParameters(), pb = channels_last.NamedParameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_LT(RelativeL2(pb[i].second, pa[i].second), 1e-4) << pa[i].first;
    if (pb[i].second.dim() == 5) {
      EXPECT_TRUE(pb[i].second.is_contiguous(at::MemoryFormat::ChannelsLast3d)) << pb[i].first;
    }
  }

  TrainerOptions cpu_bf16 = SmallOptions();
  cpu_bf16.optimizer.precision = Precision::kBf16;
  EXPECT_FALSE(Trainer(cpu_bf16).channels_last()) << "kAuto on the CPU";
}

TEST(DeviceStagerTest, OnTheCpuTheBatchPassesThrough) {
  DeviceStager stager(torch::kCPU);
  EXPECT_FALSE(stager.asynchronous());
  Batch batch = SmallBatch(4);
  const void* data = batch.clips.data_ptr();
  StagedBatch staged = stager.Stage(batch);
  EXPECT_EQ(staged.fence, nullptr);
  const Batch ready = stager.Ready(std::move(staged));
  EXPECT_EQ(ready.clips.data_ptr(), data);
}

// The GPU half (bench/gpu/run runs it on the device machine): copies through the two page-locked
// buffers in turn arrive intact, an abandoned copy is harmless, and a step on a staged batch equals
// the step on the host batch.
TEST(DeviceStagerTest, OnAGpuCopiesArriveIntactAndTrainAsTheHostBatch) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const c10::Device gpu(c10::kCUDA, 0);
  DeviceStager stager(gpu);
  ASSERT_TRUE(stager.asynchronous());
  std::vector<Batch> host;
  std::vector<StagedBatch> staged;
  for (int i = 0; i < 5; ++i) {
    host.push_back(SmallBatch(20 + i));
    staged.push_back(stager.Stage(host.back()));
    EXPECT_TRUE(staged.back().batch.clips.is_cuda());
  }
  staged.erase(staged.begin() + 2);  // Never waited for.
  host.erase(host.begin() + 2);
  for (size_t i = 0; i < staged.size(); ++i) {
    const Batch ready = stager.Ready(std::move(staged[i]));
    EXPECT_TRUE(torch::equal(ready.clips.cpu(), host[i].clips)) << "batch " << i;
  }

  TrainerOptions options = SmallOptions();
  options.device = gpu;
  options.optimizer.precision = Precision::kBf16;
  Trainer from_host(options), from_staged(options);
  EXPECT_TRUE(from_staged.channels_last()) << "kAuto on a GPU in bf16";
  const Batch batch = SmallBatch(30);
  const LossValues a = from_host.ForwardBackward(batch);
  const LossValues b = from_staged.ForwardBackward(stager.Ready(stager.Stage(batch)));
  EXPECT_EQ(a.total, b.total);
}

}  // namespace
}  // namespace tecl::worker::core
