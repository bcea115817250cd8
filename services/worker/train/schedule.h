// Optimiser and learning-rate schedule options, and the schedule itself: linear warm-up to the
// peak learning rate, then cosine decay to final_lr_ratio * peak (docs/core.md "Optimiser").
//
// The schedule is a pure function of the step, so the "scheduler state" a resume needs is the step
// count alone. Thread-safe (plain values).
#ifndef TECL_SERVICES_WORKER_TRAIN_SCHEDULE_H_
#define TECL_SERVICES_WORKER_TRAIN_SCHEDULE_H_

#include <cstdint>
#include <string>

namespace tecl::worker::core {

// OptimizerSpec.precision.
enum class Precision { kFp32, kBf16, kFp16 };

// Mirrors tecl.v1.OptimizerSpec.
struct OptimizerOptions {
  // Only "adamw". OptimizerSpec.name.
  std::string name = "adamw";
  // Base learning rate at a global batch of 64 clips. OptimizerSpec.lr.
  double lr = 3e-4;
  // Multiply lr by global_batch_clips / 64. OptimizerSpec.scale_lr.
  bool scale_lr = true;
  // Decoupled weight decay (AdamW), applied to every parameter. OptimizerSpec.weight_decay.
  double weight_decay = 1e-4;
  // OptimizerSpec.beta1 / beta2.
  double beta1 = 0.9;
  double beta2 = 0.999;
  // Added to AdamW's denominator. OptimizerSpec.eps.
  double eps = 1e-8;
  // The backbone's autocast type; heads and losses stay fp32. kFp16 needs a CUDA device and adds
  // dynamic loss scaling (DynamicLossScale). OptimizerSpec.precision.
  Precision precision = Precision::kFp32;
  // Clip the global gradient L2 norm to this before the step; 0 disables. OptimizerSpec.grad_clip_norm.
  double grad_clip_norm = 0;

  // Throws Error(kInvalidArgument) naming the first bad field.
  void Validate() const;
};

// Mirrors tecl.v1.ScheduleSpec (log_interval is the runner's).
struct ScheduleOptions {
  // Optimiser steps of the whole job. ScheduleSpec.total_steps.
  int64_t total_steps = 50000;
  // Linear warm-up steps (the spec's default is 5% of total_steps). ScheduleSpec.warmup_steps.
  int64_t warmup_steps = 2500;
  // The cosine ends at this fraction of the peak. ScheduleSpec.final_lr_ratio.
  double final_lr_ratio = 0;

  // Throws Error(kInvalidArgument) naming the first bad field.
  void Validate() const;
};

// The peak learning rate: lr, times global_batch_clips / 64 when scale_lr.
double PeakLearningRate(const OptimizerOptions& optimizer, int64_t global_batch_clips);

// The learning rate of optimiser step `step` (0-based: the step about to be taken):
//   step < warmup:  peak * (step + 1) / warmup
//   otherwise:      peak * (r + (1 - r) * (1 + cos(pi * p)) / 2),
//                   p = min(1, (step - warmup) / max(1, total - warmup)), r = final_lr_ratio.
// Steps past total_steps stay at r * peak.
double LearningRateAt(const OptimizerOptions& optimizer, const ScheduleOptions& schedule,
                      int64_t global_batch_clips, int64_t step);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_SCHEDULE_H_
