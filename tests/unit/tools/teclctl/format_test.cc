#include "tools/teclctl/format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tecl/v1/job.pb.h"

namespace tecl::teclctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

tecl::v1::Job JobOf(tecl::v1::JobKind kind, int64_t schedule_steps) {
  tecl::v1::Job job;
  job.set_state(tecl::v1::JOB_STATE_RUNNING);
  job.mutable_spec()->set_kind(kind);
  job.mutable_spec()->mutable_schedule()->set_total_steps(schedule_steps);
  return job;
}

TEST(ProgressLineTest, PretrainingShowsTheScheduleUntilATrainerReports) {
  tecl::v1::Job job = JobOf(tecl::v1::JOB_KIND_PRETRAIN, 500);
  EXPECT_THAT(ProgressLine(job), HasSubstr(" 0/500 "));
  job.mutable_progress()->set_step(125);
  job.mutable_progress()->set_total_steps(500);
  job.mutable_progress()->set_updated_unix_ms(1);
  EXPECT_THAT(ProgressLine(job), HasSubstr(" 125/500  25%"));
}

TEST(ProgressLineTest, EvaluationNeverShowsTheScheduleAsItsVideoCount) {
  tecl::v1::Job job = JobOf(tecl::v1::JOB_KIND_EVAL, 500);  // The spec's default schedule.
  const std::string unknown = ProgressLine(job);
  EXPECT_THAT(unknown, HasSubstr(" 0/? videos   0%"));
  EXPECT_THAT(unknown, Not(HasSubstr("500")));
  job.mutable_progress()->set_total_steps(240);
  job.mutable_progress()->set_step(60);
  job.mutable_progress()->set_updated_unix_ms(1);
  EXPECT_THAT(ProgressLine(job), HasSubstr(" 60/240 videos  25%"));
}

}  // namespace
}  // namespace tecl::teclctl
