// Backoff: delays grow by the multiplier up to the cap, each jittered within its band, and start
// over after Reset.
#include "services/client/backoff.h"

#include "gtest/gtest.h"

namespace tecl {
namespace {

TEST(BackoffTest, DelaysGrowToTheCapWithinTheJitterBand) {
  Backoff backoff({absl::Milliseconds(100), absl::Milliseconds(800), 2.0, 0.2}, 42);
  const double bases[] = {100, 200, 400, 800, 800, 800};
  for (double base : bases) {
    const double ms = absl::ToDoubleMilliseconds(backoff.Next());
    EXPECT_GE(ms, base * 0.8) << base;
    EXPECT_LE(ms, base * 1.2) << base;
  }
}

TEST(BackoffTest, JitterSpreadsClientsApart) {
  // Two clients retrying after the same outage do not wait the same time.
  Backoff a({absl::Milliseconds(100), absl::Seconds(5), 2.0, 0.2}, 1);
  Backoff b({absl::Milliseconds(100), absl::Seconds(5), 2.0, 0.2}, 2);
  EXPECT_NE(a.Next(), b.Next());
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff({absl::Milliseconds(10), absl::Seconds(1), 3.0, 0.0}, 7);
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(10));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(30));
  backoff.Reset();
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(10));
}

}  // namespace
}  // namespace tecl
