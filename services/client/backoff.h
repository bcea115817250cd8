// Backoff: the delays between retries of one failing operation. Each delay is the current base
// times a random factor in [1 - jitter, 1 + jitter] (so that many clients retrying after the same
// outage spread out instead of arriving together), and the base grows by `multiplier` up to
// `max` after each delay. Reset() after a success.
//
// Every retry loop of TECL's clients (registration, heartbeats, outcome and checkpoint reports,
// batch streams) uses one; none sleeps on a fixed schedule.
//
// Thread-compatible: one Backoff per retry loop.
#ifndef TECL_SERVICES_CLIENT_BACKOFF_H_
#define TECL_SERVICES_CLIENT_BACKOFF_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace tecl {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(200);
  absl::Duration max = absl::Seconds(5);
  double multiplier = 2.0;
  // Each delay is the base times a factor drawn from [1 - jitter, 1 + jitter]; in [0, 1].
  double jitter = 0.2;
};

class Backoff {
 public:
  // `seed` 0 draws a random seed.
  explicit Backoff(BackoffOptions options = {}, uint64_t seed = 0);

  // The delay before the next retry (never above max * (1 + jitter)).
  absl::Duration Next();
  // Back to `initial`.
  void Reset() { base_ = options_.initial; }

  const BackoffOptions& options() const { return options_; }

 private:
  const BackoffOptions options_;
  absl::Duration base_;
  std::mt19937_64 random_;
};

}  // namespace tecl

#endif  // TECL_SERVICES_CLIENT_BACKOFF_H_
