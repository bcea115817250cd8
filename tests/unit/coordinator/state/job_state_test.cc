// The job state machine: every (from, to) pair is allowed or refused as documented.
#include "services/coordinator/state/job_state.h"

#include <set>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::coordinator {
namespace {

using ::testing::HasSubstr;
using S = tecl::v1::JobState;

constexpr S kPending = tecl::v1::JOB_STATE_PENDING;
constexpr S kScheduled = tecl::v1::JOB_STATE_SCHEDULED;
constexpr S kRunning = tecl::v1::JOB_STATE_RUNNING;
constexpr S kRecovering = tecl::v1::JOB_STATE_RECOVERING;
constexpr S kSucceeded = tecl::v1::JOB_STATE_SUCCEEDED;
constexpr S kFailed = tecl::v1::JOB_STATE_FAILED;
constexpr S kCancelled = tecl::v1::JOB_STATE_CANCELLED;
constexpr S kUnspecified = tecl::v1::JOB_STATE_UNSPECIFIED;

TEST(JobStateTest, EveryPairIsAllowedExactlyWhenTheTableSaysSo) {
  const std::set<std::pair<S, S>> allowed = {
      {kPending, kScheduled},    {kPending, kCancelled},    {kPending, kFailed},
      {kScheduled, kRunning},    {kScheduled, kRecovering}, {kScheduled, kSucceeded},
      {kScheduled, kFailed},     {kScheduled, kCancelled},  {kRunning, kRecovering},
      {kRunning, kSucceeded},    {kRunning, kFailed},       {kRunning, kCancelled},
      {kRecovering, kScheduled}, {kRecovering, kFailed},    {kRecovering, kCancelled},
  };
  const S all[] = {kUnspecified, kPending,   kScheduled, kRunning,
                   kRecovering,  kSucceeded, kFailed,    kCancelled};
  int checked = 0;
  for (S from : all) {
    for (S to : all) {
      EXPECT_EQ(IsTransitionAllowed(from, to), allowed.count({from, to}) > 0)
          << StateName(from) << " -> " << StateName(to);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 64);
}

TEST(JobStateTest, TerminalStates) {
  EXPECT_TRUE(IsTerminal(kSucceeded));
  EXPECT_TRUE(IsTerminal(kFailed));
  EXPECT_TRUE(IsTerminal(kCancelled));
  EXPECT_FALSE(IsTerminal(kPending));
  EXPECT_FALSE(IsTerminal(kRecovering));
}

TEST(JobStateTest, IllegalTransitionsAreFailedPreconditionNamingTheStates) {
  absl::Status status = CheckTransition("job-000007", kPending, kRunning);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("job job-000007 cannot go from pending to running"));
  status = CheckTransition("job-000007", kSucceeded, kCancelled);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("already finished (succeeded)"));
  EXPECT_TRUE(CheckTransition("job-000007", kRecovering, kScheduled).ok());
}

}  // namespace
}  // namespace tecl::coordinator
