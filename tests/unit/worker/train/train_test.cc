// Schedule, options, and the training step (including its split around the gradient all-reduce).
#include "services/worker/train/trainer.h"

#include <ATen/autocast_mode.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <string>

#include "services/worker/model/error.h"
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

}  // namespace
}  // namespace tecl::worker::core
