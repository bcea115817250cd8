// Rendezvous semantics with a FakeClock: scoping by attempt, waits, limits, cancellation.
#include "services/coordinator/rendezvous/rendezvous.h"

#include <optional>
#include <string>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::coordinator {
namespace {

using ::testing::HasSubstr;

class RendezvousTest : public ::testing::Test {
 protected:
  RendezvousTest() : rendezvous_(&clock_, Options()) { rendezvous_.BeginAttempt("job-1", 1); }
  static RendezvousOptions Options() {
    RendezvousOptions options;
    options.run_timer_thread = false;
    options.max_value_bytes = 64;
    options.max_keys = 4;
    options.max_scope_bytes = 200;
    return options;
  }
  static RendezvousScopeId Scope(int attempt = 1) { return {"job-1", attempt}; }

  FakeClock clock_;
  Rendezvous rendezvous_;
};

TEST_F(RendezvousTest, SetThenGetWithoutWaiting) {
  ASSERT_TRUE(rendezvous_.Set(Scope(), "k", "v").ok());
  std::optional<absl::StatusOr<std::string>> got;
  EXPECT_EQ(rendezvous_.Get(Scope(), "k", absl::ZeroDuration(), [&](auto r) { got = r; }), 0);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(**got, "v");
  rendezvous_.Get(Scope(), "absent", absl::ZeroDuration(), [&](auto r) { got = r; });
  EXPECT_EQ(got->status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RendezvousTest, GetWaitsUntilTheKeyIsSet) {
  std::optional<absl::StatusOr<std::string>> got;
  rendezvous_.Get(Scope(), "addr", absl::Seconds(10), [&](auto r) { got = r; });
  EXPECT_FALSE(got.has_value());
  EXPECT_EQ(rendezvous_.pending_waiters(), 1u);
  ASSERT_TRUE(rendezvous_.Set(Scope(), "other", "x").ok());
  EXPECT_FALSE(got.has_value());
  ASSERT_TRUE(rendezvous_.Set(Scope(), "addr", "10.0.0.1:29500").ok());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(**got, "10.0.0.1:29500");
  EXPECT_EQ(rendezvous_.pending_waiters(), 0u);
}

TEST_F(RendezvousTest, GetTimesOutAtItsDeadline) {
  std::optional<absl::StatusOr<std::string>> got;
  rendezvous_.Get(Scope(), "never", absl::Seconds(10), [&](auto r) { got = r; });
  clock_.Advance(absl::Seconds(9));
  rendezvous_.ExpireDue();
  EXPECT_FALSE(got.has_value());
  clock_.Advance(absl::Seconds(1));
  rendezvous_.ExpireDue();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(got->status().message()), HasSubstr("\"never\""));
}

TEST_F(RendezvousTest, WaitCompletesWhenAllKeysExist) {
  std::optional<absl::Status> waited;
  rendezvous_.Wait(Scope(), {"a", "b"}, absl::Seconds(5), [&](absl::Status s) { waited = s; });
  ASSERT_TRUE(rendezvous_.Set(Scope(), "a", "1").ok());
  EXPECT_FALSE(waited.has_value());
  ASSERT_TRUE(rendezvous_.Add(Scope(), "b", 1).ok());
  ASSERT_TRUE(waited.has_value());
  EXPECT_TRUE(waited->ok());
  // Already present: completes at once; zero wait with a missing key: at once, DEADLINE_EXCEEDED.
  rendezvous_.Wait(Scope(), {"a"}, absl::ZeroDuration(), [&](absl::Status s) { waited = s; });
  EXPECT_TRUE(waited->ok());
  rendezvous_.Wait(Scope(), {"a", "c"}, absl::ZeroDuration(), [&](absl::Status s) { waited = s; });
  EXPECT_EQ(waited->code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(RendezvousTest, AddCountsAndRefusesNonIntegers) {
  EXPECT_EQ(*rendezvous_.Add(Scope(), "n", 3), 3);
  EXPECT_EQ(*rendezvous_.Add(Scope(), "n", -1), 2);
  ASSERT_TRUE(rendezvous_.Set(Scope(), "s", "abc").ok());
  absl::StatusOr<int64_t> bad = rendezvous_.Add(Scope(), "s", 1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("not an integer"));
}

TEST_F(RendezvousTest, CompareSetFollowsC10dSemantics) {
  // Absent key and empty expected with expect_absent: set.
  EXPECT_EQ(*rendezvous_.CompareSet(Scope(), "k", "", "first", true), "first");
  // Mismatch: the stored value comes back unchanged.
  EXPECT_EQ(*rendezvous_.CompareSet(Scope(), "k", "wrong", "second", false), "first");
  // Match: replaced.
  EXPECT_EQ(*rendezvous_.CompareSet(Scope(), "k", "first", "second", false), "second");
  // Absent key without expect_absent: nothing stored.
  EXPECT_EQ(*rendezvous_.CompareSet(Scope(), "other", "x", "y", false), "");
  EXPECT_FALSE(rendezvous_.Check(Scope(), {"other"})->all_present);
}

TEST_F(RendezvousTest, DeleteAndCheck) {
  ASSERT_TRUE(rendezvous_.Set(Scope(), "a", "1").ok());
  ASSERT_TRUE(rendezvous_.Set(Scope(), "b", "2").ok());
  EXPECT_TRUE(rendezvous_.Check(Scope(), {"a", "b"})->all_present);
  EXPECT_EQ(rendezvous_.Check(Scope(), {})->num_keys, 2);
  EXPECT_TRUE(*rendezvous_.Delete(Scope(), "a"));
  EXPECT_FALSE(*rendezvous_.Delete(Scope(), "a"));
  EXPECT_FALSE(rendezvous_.Check(Scope(), {"a", "b"})->all_present);
  EXPECT_EQ(rendezvous_.Check(Scope(), {})->num_keys, 1);
}

TEST_F(RendezvousTest, UnknownJobIsNotFoundAndStaleAttemptIsAborted) {
  EXPECT_EQ(rendezvous_.Set({"job-9", 1}, "k", "v").code(), absl::StatusCode::kNotFound);
  absl::Status stale = rendezvous_.Set(Scope(2), "k", "v");
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(stale.message()), HasSubstr("attempt 2 of job job-1 is not current"));
}

TEST_F(RendezvousTest, ANewAttemptNeverSeesTheOldOnesKeys) {
  ASSERT_TRUE(rendezvous_.Set(Scope(1), "master_addr", "old").ok());
  std::optional<absl::StatusOr<std::string>> old_waiter;
  rendezvous_.Get(Scope(1), "rank_3", absl::Seconds(30), [&](auto r) { old_waiter = r; });
  rendezvous_.BeginAttempt("job-1", 2);
  // The old attempt's waiter is aborted, its calls are refused.
  ASSERT_TRUE(old_waiter.has_value());
  EXPECT_EQ(old_waiter->status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(rendezvous_.Set(Scope(1), "rank_3", "x").code(), absl::StatusCode::kAborted);
  // The new attempt starts empty.
  std::optional<absl::StatusOr<std::string>> got;
  rendezvous_.Get(Scope(2), "master_addr", absl::ZeroDuration(), [&](auto r) { got = r; });
  EXPECT_EQ(got->status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(rendezvous_.Check(Scope(2), {})->num_keys, 0);
}

TEST_F(RendezvousTest, EndingAnAttemptDropsItsKeysAndAbortsWaiters) {
  ASSERT_TRUE(rendezvous_.Set(Scope(), "k", "v").ok());
  std::optional<absl::Status> waited;
  rendezvous_.Wait(Scope(), {"x"}, absl::Seconds(30), [&](absl::Status s) { waited = s; });
  rendezvous_.EndAttempt("job-1", 1);
  ASSERT_TRUE(waited.has_value());
  EXPECT_EQ(waited->code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(waited->message()), HasSubstr("has ended"));
  EXPECT_EQ(rendezvous_.Check(Scope(), {"k"}).status().code(), absl::StatusCode::kAborted);
  // Ending an older attempt after a newer one began changes nothing.
  rendezvous_.BeginAttempt("job-1", 2);
  ASSERT_TRUE(rendezvous_.Set(Scope(2), "k", "v2").ok());
  rendezvous_.EndAttempt("job-1", 1);
  EXPECT_TRUE(rendezvous_.Check(Scope(2), {"k"})->all_present);
}

TEST_F(RendezvousTest, LimitsOnKeysValuesAndScopeSize) {
  absl::Status big = rendezvous_.Set(Scope(), "k", std::string(65, 'x'));
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(big.message()), HasSubstr("more than the limit of 64"));
  EXPECT_EQ(rendezvous_.Set(Scope(), "", "v").code(), absl::StatusCode::kInvalidArgument);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(rendezvous_.Set(Scope(), "k" + std::to_string(i), "v").ok());
  EXPECT_EQ(rendezvous_.Set(Scope(), "k4", "v").code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(rendezvous_.Set(Scope(), "k0", "replaced").ok());  // Replacing is not a new key.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(rendezvous_.Set(Scope(), "k" + std::to_string(i), std::string(60, 'v')).ok());
  }
  EXPECT_EQ(rendezvous_.Set(Scope(), "k3", std::string(60, 'v')).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(RendezvousTest, CancelAndShutdownCompleteWaitersOnce) {
  int calls = 0;
  absl::Status last;
  const auto id = rendezvous_.Wait(Scope(), {"x"}, absl::Seconds(30), [&](absl::Status s) {
    ++calls;
    last = s;
  });
  rendezvous_.Cancel(id);
  rendezvous_.Cancel(id);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(last.code(), absl::StatusCode::kCancelled);
  rendezvous_.Get(Scope(), "y", absl::Seconds(30), [&](auto r) {
    ++calls;
    last = r.status();
  });
  rendezvous_.Shutdown();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(last.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(rendezvous_.Set(Scope(), "k", "v").code(), absl::StatusCode::kUnavailable);
}

TEST(RendezvousTimerTest, TheTimerThreadExpiresWaitersOnItsOwn) {
  RendezvousOptions options;
  Rendezvous rendezvous(RealClock::Get(), options);
  rendezvous.BeginAttempt("j", 1);
  absl::Notification expired;
  absl::Status status;
  rendezvous.Wait({"j", 1}, {"k"}, absl::Milliseconds(50), [&](absl::Status s) {
    status = s;
    expired.Notify();
  });
  expired.WaitForNotification();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace tecl::coordinator
