// DynamicLossScale: the loss scaling that fp16 training needs (the policy of PyTorch's
// GradScaler). fp16 gradients of small magnitude underflow to zero; multiplying the loss by a
// large scale S before backward keeps them representable, and dividing the gradients by S before
// the optimiser step undoes it. S starts high; a step whose (averaged) gradients hold an inf or a
// NaN is skipped and S is multiplied by backoff_factor; after growth_interval clean steps in a row
// S is multiplied by growth_factor. Every rank sees the same averaged gradients, so every rank
// takes the same decision.
//
// Plain value type; not thread-safe.
#ifndef TECL_SERVICES_WORKER_TRAIN_LOSS_SCALE_H_
#define TECL_SERVICES_WORKER_TRAIN_LOSS_SCALE_H_

#include <cstdint>

namespace tecl::worker::core {

struct LossScaleOptions {
  double initial_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // Clean steps in a row before the scale grows.
  double min_scale = 1.0;
  double max_scale = 16777216.0;  // 2^24

  // Throws Error(kInvalidArgument) naming the first bad field.
  void Validate() const;
};

// What a checkpoint keeps of the scale, so a resumed fp16 run goes on where it was.
struct LossScaleState {
  double scale = 0;
  int64_t clean_streak = 0;  // Clean steps in a row since the scale last changed.
  int64_t skipped = 0;
};

class DynamicLossScale {
 public:
  explicit DynamicLossScale(const LossScaleOptions& options = {});

  double scale() const { return scale_; }
  int64_t skipped_steps() const { return skipped_; }

  LossScaleState state() const { return {scale_, clean_streak_, skipped_}; }
  // Throws Error(kDataLoss) naming the field for a state this scale could not have reached (a
  // scale outside [min_scale, max_scale] or not finite, a negative count); nothing changes then.
  void Restore(const LossScaleState& state);

  // Records one step's outcome. Returns whether the optimiser should take the step (false when
  // `found_non_finite`), and adjusts the scale for the next step.
  bool Update(bool found_non_finite);

 private:
  LossScaleOptions options_;
  double scale_;
  int64_t clean_streak_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_LOSS_SCALE_H_
