#include "services/worker/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

template <typename T>
[[noreturn]] void Fail(const char* field, T value, const char* requirement) {
  std::ostringstream message;
  message << field << ": " << value << " " << requirement;
  throw Error(ErrorCode::kInvalidArgument, message.str());
}

}  // namespace

void OptimizerOptions::Validate() const {
  if (name != "adamw") Fail("optimizer.name", "\"" + name + "\"", "is not one of adamw");
  if (!(lr > 0) || lr > 10) Fail("optimizer.lr", lr, "must be in (0, 10]");
  if (!(weight_decay >= 0)) Fail("optimizer.weight_decay", weight_decay, "must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1)) Fail("optimizer.beta1", beta1, "must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) Fail("optimizer.beta2", beta2, "must be in [0, 1)");
  if (!(eps >= 1e-12 && eps <= 1)) Fail("optimizer.eps", eps, "must be in [1e-12, 1]");
  if (!(grad_clip_norm >= 0)) {
    Fail("optimizer.grad_clip_norm", grad_clip_norm, "must be >= 0 (0 disables clipping)");
  }
}

void ScheduleOptions::Validate() const {
  if (total_steps < 1) Fail("schedule.total_steps", total_steps, "must be >= 1");
  if (warmup_steps < 0 || warmup_steps > total_steps) {
    Fail("schedule.warmup_steps", warmup_steps, "must be in [0, schedule.total_steps]");
  }
  if (!(final_lr_ratio >= 0 && final_lr_ratio <= 1)) {
    Fail("schedule.final_lr_ratio", final_lr_ratio, "must be in [0, 1]");
  }
}

double PeakLearningRate(const OptimizerOptions& optimizer, int64_t global_batch_clips) {
  return optimizer.scale_lr ? optimizer.lr * static_cast<double>(global_batch_clips) / 64.0
                            : optimizer.lr;
}

double LearningRateAt(const OptimizerOptions& optimizer, const ScheduleOptions& schedule,
                      int64_t global_batch_clips, int64_t step) {
  const double peak = PeakLearningRate(optimizer, global_batch_clips);
  step = std::max<int64_t>(step, 0);
  if (step < schedule.warmup_steps) {
    return peak * static_cast<double>(step + 1) / static_cast<double>(schedule.warmup_steps);
  }
  const double decay_steps =
      static_cast<double>(std::max<int64_t>(1, schedule.total_steps - schedule.warmup_steps));
  const double progress =
      std::min(1.0, static_cast<double>(step - schedule.warmup_steps) / decay_steps);
  const double r = schedule.final_lr_ratio;
  return peak * (r + (1.0 - r) * 0.5 * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace tecl::worker::core
