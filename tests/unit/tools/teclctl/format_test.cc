#include "tools/teclctl/format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

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

TEST(ProgressLineTest, PrepareShowsVideosNewKeptFailedAndRate) {
  tecl::v1::Job job = JobOf(tecl::v1::JOB_KIND_PREPARE, 500);
  EXPECT_THAT(ProgressLine(job), HasSubstr(" 0/? videos   0%"));
  tecl::v1::JobProgress& p = *job.mutable_progress();
  p.set_step(50);
  p.set_total_steps(200);
  p.set_clips_per_second(2.5);
  p.set_eta_s(60);
  p.set_updated_unix_ms(1);
  p.mutable_prepare()->set_videos_prepared(30);
  p.mutable_prepare()->set_videos_kept(18);
  p.mutable_prepare()->set_videos_failed(2);
  const std::string line = ProgressLine(job);
  EXPECT_THAT(line, HasSubstr(" 50/200 videos  25%"));
  EXPECT_THAT(line, HasSubstr("30 new, 18 kept, 2 failed  2.5 videos/s"));
  EXPECT_THAT(line, Not(HasSubstr("loss")));
}

tecl::v1::WorkerInfo Rank(const std::string& job, int rank, double step_seconds, double wait) {
  tecl::v1::WorkerInfo w;
  w.set_id("trainer-" + std::to_string(rank));
  w.set_kind(tecl::v1::WORKER_KIND_TRAINER);
  w.set_state(tecl::v1::WORKER_STATE_BUSY);
  w.set_hostname("node-" + std::to_string(rank));
  w.set_job_id(job);
  w.set_attempt(1);
  w.set_rank(rank);
  w.set_last_heartbeat_unix_ms(9'000);
  tecl::v1::RankStats* stats = w.mutable_rank_stats();
  stats->set_step(120);
  stats->set_step_seconds(step_seconds);
  stats->set_data_wait_seconds(wait);
  stats->set_allreduce_seconds(step_seconds / 10);
  return w;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(text.substr(start, end - start));
  }
  return lines;
}

TEST(TopTableTest, RanksByJobWithSharesAndTheStragglerFlagged) {
  std::vector<tecl::v1::WorkerInfo> workers = {
      Rank("job-2", 1, 0.2, 0.0), Rank("job-2", 0, 0.2, 0.1), Rank("job-2", 2, 0.5, 0.4)};
  tecl::v1::WorkerInfo idle;  // Neither idle trainers nor dataloaders are rows.
  idle.set_kind(tecl::v1::WORKER_KIND_TRAINER);
  workers.push_back(idle);
  const std::vector<std::string> lines = Lines(TopTable(workers, 10'000, 1.5));
  ASSERT_EQ(lines.size(), 5u) << TopTable(workers, 10'000, 1.5);
  EXPECT_THAT(lines[0], HasSubstr("STEP TIME"));
  EXPECT_THAT(lines[1], ::testing::StartsWith("job-2/1  0 "));
  EXPECT_THAT(lines[1], HasSubstr("200 ms"));
  EXPECT_THAT(lines[1], HasSubstr("5.00"));
  EXPECT_THAT(lines[1], HasSubstr(" 50% "));  // Data wait 0.1 of 0.2 s.
  EXPECT_THAT(lines[1], HasSubstr("1s ago"));
  EXPECT_THAT(lines[1], Not(HasSubstr("STRAGGLER")));
  EXPECT_THAT(lines[2], ::testing::StartsWith("job-2/1  1 "));
  EXPECT_THAT(lines[3], HasSubstr("500 ms"));
  EXPECT_THAT(lines[3], HasSubstr("STRAGGLER"));
  EXPECT_THAT(lines[4], HasSubstr("1 straggler(s)"));
  // A looser factor flags nobody.
  EXPECT_THAT(TopTable(workers, 10'000, 3.0), Not(HasSubstr("STRAGGLER")));
  EXPECT_EQ(TopTable({idle}, 10'000, 1.5), "no rank is running\n");
}

// In synchronous training every rank's step lasts as long as the slowest one's: the fast ranks
// spend the difference waiting inside the all-reduce. The straggler is the rank whose step
// without the all-reduce is long.
TEST(TopTableTest, TheStragglerIsFoundByItsOwnTimeWhenStepTimesAreEqual) {
  std::vector<tecl::v1::WorkerInfo> workers = {
      Rank("job-3", 0, 0.5, 0.0), Rank("job-3", 1, 0.5, 0.0), Rank("job-3", 2, 0.5, 0.0)};
  workers[0].mutable_rank_stats()->set_allreduce_seconds(0.3);
  workers[1].mutable_rank_stats()->set_allreduce_seconds(0.3);
  workers[2].mutable_rank_stats()->set_allreduce_seconds(0.02);
  const std::vector<std::string> lines = Lines(TopTable(workers, 10'000, 1.5));
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_THAT(lines[1], HasSubstr("200 ms"));
  EXPECT_THAT(lines[1], Not(HasSubstr("STRAGGLER")));
  EXPECT_THAT(lines[2], Not(HasSubstr("STRAGGLER")));
  EXPECT_THAT(lines[3], HasSubstr("480 ms"));
  EXPECT_THAT(lines[3], HasSubstr("STRAGGLER"));
}

}  // namespace
}  // namespace tecl::teclctl
