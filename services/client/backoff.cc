#include "services/client/backoff.h"

#include <algorithm>

namespace tecl {

Backoff::Backoff(BackoffOptions options, uint64_t seed)
    : options_(options),
      base_(options.initial),
      random_(seed != 0 ? seed : (static_cast<uint64_t>(std::random_device()()) << 32) ^
                                     std::random_device()()) {}

absl::Duration Backoff::Next() {
  const double jitter = std::clamp(options_.jitter, 0.0, 1.0);
  std::uniform_real_distribution<double> factor(1.0 - jitter, 1.0 + jitter);
  const absl::Duration delay = base_ * factor(random_);
  base_ = std::min(options_.max, base_ * std::max(1.0, options_.multiplier));
  return delay;
}

}  // namespace tecl
