#include "services/worker/train/loss_scale.h"

#include <algorithm>
#include <sstream>

#include "services/worker/model/error.h"

namespace tecl::worker::core {

void LossScaleOptions::Validate() const {
  const auto fail = [](const char* field, double value, const char* requirement) {
    std::ostringstream message;
    message << "loss scale " << field << ": " << value << " " << requirement;
    throw Error(ErrorCode::kInvalidArgument, message.str());
  };
  if (!(min_scale > 0)) fail("min_scale", min_scale, "must be > 0");
  if (!(max_scale >= min_scale)) fail("max_scale", max_scale, "must be >= min_scale");
  if (!(initial_scale >= min_scale && initial_scale <= max_scale)) {
    fail("initial_scale", initial_scale, "must lie in [min_scale, max_scale]");
  }
  if (!(growth_factor >= 1)) fail("growth_factor", growth_factor, "must be >= 1");
  if (!(backoff_factor > 0 && backoff_factor < 1)) {
    fail("backoff_factor", backoff_factor, "must lie in (0, 1)");
  }
  if (growth_interval < 1) fail("growth_interval", static_cast<double>(growth_interval), "must be >= 1");
}

DynamicLossScale::DynamicLossScale(const LossScaleOptions& options)
    : options_(options), scale_(options.initial_scale) {
  options_.Validate();
}

void DynamicLossScale::Restore(const LossScaleState& state) {
  const auto fail = [](const char* field, double value, const char* requirement) {
    std::ostringstream message;
    message << "loss_scale." << field << ": " << value << " " << requirement;
    throw Error(ErrorCode::kDataLoss, message.str());
  };
  if (!(state.scale >= options_.min_scale && state.scale <= options_.max_scale)) {
    fail("scale", state.scale, "is outside [min_scale, max_scale]");
  }
  if (state.clean_streak < 0 || state.clean_streak >= options_.growth_interval) {
    fail("clean_streak", static_cast<double>(state.clean_streak),
         "is outside [0, growth_interval)");
  }
  if (state.skipped < 0) fail("skipped", static_cast<double>(state.skipped), "is negative");
  scale_ = state.scale;
  clean_streak_ = state.clean_streak;
  skipped_ = state.skipped;
}

bool DynamicLossScale::Update(bool found_non_finite) {
  if (found_non_finite) {
    scale_ = std::max(options_.min_scale, scale_ * options_.backoff_factor);
    clean_streak_ = 0;
    ++skipped_;
    return false;
  }
  if (++clean_streak_ >= options_.growth_interval) {
    scale_ = std::min(options_.max_scale, scale_ * options_.growth_factor);
    clean_streak_ = 0;
  }
  return true;
}

}  // namespace tecl::worker::core
