// Trainer: one rank's model, objective, AdamW optimiser and schedule, and the training step.
//
//   Trainer trainer(options);                  // validates, seeds, builds the model on the device
//   StepResult r = trainer.TrainStep(batch);   // normalise, forward, losses, backward, step
//
// Extension point for data-parallel training (services/worker/dist/): TrainStep is exactly
// ForwardBackward followed by ApplyGradients, and the gradient all-reduce goes in between:
//
//   GradientReducer reducer(<trainer.NamedParameters() as dist::NamedParameter>, comm, ...);
//   LossValues local = trainer.ForwardBackward(batch);  // this rank's gradients; the reducer's
//                                                       // hooks start bucket all-reduces while
//                                                       // backward still runs
//   reducer.Finalize();                                 // averaged gradients in param.grad()
//   StepInfo info = trainer.ApplyGradients();           // clip (global norm), set lr, AdamW step
//
// ForwardBackward runs exactly one backward per call and leaves every parameter's gradient set
// (it first resets them to undefined, so no gradient accumulates across calls). NamedParameters()
// is the registration order ("backbone.*", then psi, speed, direction, order, projection for the
// heads that exist): identical on every rank built from the same options, which is what the
// reducer's bucket assignment relies on. Only heads with a loss weight > 0 exist, so every
// parameter receives a gradient each step (the reducer's UnusedParameters::kError holds).
// Gradient clipping happens in ApplyGradients, i.e. on the averaged gradients, so every rank
// clips identically.
//
// The global batch (docs/global-batch.md): SetCollectives gives the trainer the step's
// collectives over the data-parallel group: `global_loss` makes L_equi and L_inst global terms
// (every rank's rows; scaled for the reducer's average), `batch_norm` makes every BatchNorm layer
// normalise with the statistics of every rank's batch (SyncBN), so that N ranks x B clips train as
// one process on N x B. Without them (one rank, or the options off) each rank's terms and BatchNorm
// statistics are its own, and BatchNorm buffers stay local to each rank. Collectives run inside
// ForwardBackward in the same order on every rank; the caller clears them (SetCollectives({}))
// before it drops the communicator they use.
//
// Errors: Error(kInvalidArgument) for bad options or an inconsistent batch (nothing changed);
// Error(kFailedPrecondition) when the loss is not finite (ForwardBackward; the step is
// discarded) or ApplyGradients is called without gradients. LibTorch's c10::Error (e.g. out of
// memory) passes through.
//
// Thread-safety: not thread-safe; one training thread (the dist reducer's hooks run on the
// autograd threads during backward, which ForwardBackward waits for). Ownership: owns the model and
// the optimiser; NamedParameters() shares the parameter tensors.
#ifndef TECL_SERVICES_WORKER_TRAIN_TRAINER_H_
#define TECL_SERVICES_WORKER_TRAIN_TRAINER_H_

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <torch/optim/adamw.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/worker/loss/batch.h"
#include "services/worker/loss/global_batch.h"
#include "services/worker/loss/objective.h"
#include "services/worker/model/batch_norm.h"
#include "services/worker/train/loss_scale.h"
#include "services/worker/model/model.h"
#include "services/worker/train/schedule.h"

namespace tecl::worker::core {

// The memory layout of the backbone's 5-D activations and convolution weights. kAuto: channels-last
// (NDHWC) on a CUDA device in bf16 or fp16, where cuDNN's tensor-core 3-D convolutions want it;
// contiguous (NCDHW) otherwise (fp32 on a GPU, and the CPU). The layout changes no result beyond
// float rounding: checkpoints and exports are written contiguous either way.
enum class MemoryFormat { kAuto, kContiguous, kChannelsLast };

// Everything a trainer needs, converted by the runner from the JobSpec.
struct TrainerOptions {
  ModelOptions model;          // JobSpec.model (+ num_speeds = sampling.speeds size).
  LossOptions loss;            // JobSpec.method.
  OptimizerOptions optimizer;  // JobSpec.optimizer.
  ScheduleOptions schedule;    // JobSpec.schedule.
  // Clips per optimiser step over all ranks (trainers x clips per rank batch); scales lr when
  // optimizer.scale_lr.
  int64_t global_batch_clips = 64;
  // Where the model lives and computes (CPU or a CUDA device). JobSpec.resources.device.
  c10::Device device = c10::Device(c10::kCPU);
  // Seeds LibTorch's global generators before the model is initialised. JobSpec.seed.
  uint64_t seed = 1;
  MemoryFormat memory_format = MemoryFormat::kAuto;

  // Throws Error(kInvalidArgument) naming the first bad field.
  void Validate() const;
  // memory_format resolved for the device and precision (kAuto's rule above).
  bool ChannelsLast() const;
};

struct StepInfo {
  int64_t step = 0;            // The optimiser step just taken (0-based).
  double learning_rate = 0;    // Used by this step.
  std::optional<double> grad_norm;  // Global gradient norm before clipping (when clipping is on).
  // fp16 only: the loss scale this step's gradients carried, and whether the step was skipped
  // because they overflowed (the parameters are unchanged; step() still advances, every rank
  // alike, so the data stream stays in step).
  std::optional<double> loss_scale;
  bool skipped = false;
};

// The collectives of a data-parallel step (see the header comment). Both empty: local step.
struct StepCollectives {
  std::optional<GlobalBatch> global_loss;
  std::shared_ptr<const BatchNormSync> batch_norm;
};

struct StepResult {
  LossValues loss;
  StepInfo info;
};

class Trainer {
 public:
  // Validates the options, seeds LibTorch's generators with options.seed, builds the model with
  // HeadsFor(loss.weights) on options.device and the AdamW optimiser over NamedParameters().
  explicit Trainer(const TrainerOptions& options);
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Validates the batch, resets the gradients, normalises the clips (NormalizeClips), runs the
  // backbone and the objective in train mode and backward. Returns this batch's terms (one device
  // synchronisation). Blocks until backward is done.
  LossValues ForwardBackward(const Batch& batch);

  // Sets (or, with {}, clears) the collectives the next steps use. Throws
  // Error(kInvalidArgument) for a global_loss without a gather or with a rank outside the world.
  void SetCollectives(StepCollectives collectives);
  const StepCollectives& collectives() const { return collectives_; }

  // Clips the gradients (optimizer.grad_clip_norm), sets the scheduled learning rate of step(),
  // takes the AdamW step and advances step().
  StepInfo ApplyGradients();

  // ForwardBackward + ApplyGradients.
  StepResult TrainStep(const Batch& batch);

  // Every trainable parameter in registration order (stable across ranks and runs).
  std::vector<std::pair<std::string, torch::Tensor>> NamedParameters() const;

  TeclModel& model() { return model_; }
  const TeclModel& model() const { return model_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  const TrainerOptions& options() const { return options_; }
  // Whether the backbone runs channels-last (options.memory_format resolved for the device).
  bool channels_last() const { return options_.ChannelsLast(); }

  // Optimiser steps taken so far (= the 0-based index of the next step).
  int64_t step() const { return step_; }
  // The data epoch, kept for checkpoints (the runner sets it from ClipBatch.epoch).
  int64_t epoch() const { return epoch_; }
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  // The learning rate the next ApplyGradients uses.
  double NextLearningRate() const;

  // Sets the counters; used by LoadCheckpoint.
  void RestoreCounters(int64_t step, int64_t epoch);
  // fp16 only: the dynamic loss scale (null otherwise); LoadCheckpoint restores it.
  DynamicLossScale* loss_scale() { return loss_scale_ ? &*loss_scale_ : nullptr; }
  const DynamicLossScale* loss_scale() const { return loss_scale_ ? &*loss_scale_ : nullptr; }

 private:
  TrainerOptions options_;
  TeclModel model_{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::vector<torch::Tensor> parameters_;
  BatchLayoutOptions layout_;
  StepCollectives collectives_;
  std::optional<DynamicLossScale> loss_scale_;  // fp16 only.
  int64_t step_ = 0;
  int64_t epoch_ = 0;
  bool gradients_ready_ = false;
};

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_TRAINER_H_
