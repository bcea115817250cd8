#include "services/coordinator/state/job_logs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tecl::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;

tecl::v1::LogLine Line(const std::string& job, int rank, const std::string& text) {
  tecl::v1::LogLine line;
  line.set_job_id(job);
  line.set_attempt(1);
  line.set_rank(rank);
  line.set_text(text);
  return line;
}

std::vector<std::string> Texts(const LogPage& page) {
  std::vector<std::string> out;
  for (const auto& line : page.lines) out.push_back(line.text());
  return out;
}

TEST(JobLogsTest, ReadsPageByPageWithCursorsAndFiltersByRank) {
  JobLogs logs;
  logs.Append(Line("job-a", 0, "a0"));
  logs.Append(Line("job-b", 0, "b0"));
  logs.Append(Line("job-a", 1, "a1"));
  logs.Append(Line("job-a", 0, "a2"));

  LogPage all = logs.Read("job-a", {});
  EXPECT_THAT(Texts(all), ElementsAre("a0", "a1", "a2"));
  EXPECT_EQ(all.lines[0].cursor(), 1);
  EXPECT_EQ(all.lines[2].cursor(), 3);
  EXPECT_EQ(all.next_cursor, 3);
  EXPECT_FALSE(all.more);
  EXPECT_NE(all.tail_id, 0);

  LogQuery rank0;
  rank0.rank = 0;
  EXPECT_THAT(Texts(logs.Read("job-a", rank0)), ElementsAre("a0", "a2"));

  LogQuery paged;
  paged.max_lines = 2;
  LogPage first = logs.Read("job-a", paged);
  EXPECT_THAT(Texts(first), ElementsAre("a0", "a1"));
  EXPECT_TRUE(first.more);
  paged.after_cursor = first.next_cursor;
  LogPage second = logs.Read("job-a", paged);
  EXPECT_THAT(Texts(second), ElementsAre("a2"));
  EXPECT_FALSE(second.more);

  // A follower past the end gets nothing and keeps its cursor.
  LogQuery follow;
  follow.after_cursor = 3;
  LogPage none = logs.Read("job-a", follow);
  EXPECT_TRUE(none.lines.empty());
  EXPECT_EQ(none.next_cursor, 3);

  // A rank's follower skips past other ranks' lines.
  LogQuery rank1;
  rank1.rank = 1;
  rank1.after_cursor = 2;
  LogPage rest = logs.Read("job-a", rank1);
  EXPECT_TRUE(rest.lines.empty());
  EXPECT_EQ(rest.next_cursor, 3);

  EXPECT_EQ(logs.Read("no-such-job", {}).tail_id, 0);
}

TEST(JobLogsTest, TheNewestTailLines) {
  JobLogs logs;
  for (int i = 0; i < 10; ++i) logs.Append(Line("job", i % 2, std::to_string(i)));
  LogQuery query;
  query.tail = 3;
  EXPECT_THAT(Texts(logs.Read("job", query)), ElementsAre("7", "8", "9"));
  query.rank = 0;
  LogPage page = logs.Read("job", query);
  EXPECT_THAT(Texts(page), ElementsAre("4", "6", "8"));
  EXPECT_EQ(page.next_cursor, 10);  // Followers go on after the newest line of any rank.
}

TEST(JobLogsTest, EvictsTheOldestLinesPastTheJobsBoundAndReportsThemSkipped) {
  JobLogsOptions options;
  options.max_bytes_per_job = 10 * (96 + 3 + 3);  // Ten lines of "job" and a 3-byte text.
  JobLogs logs(options);
  for (int i = 100; i < 125; ++i) logs.Append(Line("job", 0, std::to_string(i)));
  LogPage page = logs.Read("job", {});
  ASSERT_EQ(page.lines.size(), 10u);
  EXPECT_EQ(page.lines.front().text(), "115");
  EXPECT_EQ(page.lines.front().cursor(), 16);
  EXPECT_EQ(page.skipped, 15);
  LogQuery later;
  later.after_cursor = 20;
  EXPECT_EQ(logs.Read("job", later).skipped, 0);
  EXPECT_EQ(logs.bytes(), options.max_bytes_per_job);
}

TEST(JobLogsTest, DropsTheLeastRecentlyWrittenJobPastMaxJobs) {
  JobLogsOptions options;
  options.max_jobs = 2;
  JobLogs logs(options);
  logs.Append(Line("a", 0, "x"));
  logs.Append(Line("b", 0, "x"));
  const int64_t a_id = logs.Read("a", {}).tail_id;
  logs.Append(Line("a", 0, "y"));  // a is now newer than b.
  logs.Append(Line("c", 0, "x"));
  EXPECT_EQ(logs.jobs(), 2);
  EXPECT_TRUE(logs.Read("b", {}).lines.empty());
  EXPECT_EQ(logs.Read("a", {}).tail_id, a_id);
  EXPECT_EQ(logs.Read("a", {}).lines.size(), 2u);
  logs.Append(Line("b", 0, "again"));  // A new tail: a new id, cursors from 1.
  LogPage b = logs.Read("b", {});
  EXPECT_EQ(b.lines[0].cursor(), 1);
  EXPECT_NE(b.tail_id, a_id);
}

TEST(JobLogsTest, CutsLongLinesAndBoundsAPage) {
  JobLogs logs;
  logs.Append(Line("job", 0, std::string(10000, 'x')));
  LogPage page = logs.Read("job", {});
  ASSERT_EQ(page.lines.size(), 1u);
  EXPECT_EQ(page.lines[0].text().size(), kMaxLogLineBytes);
  EXPECT_THAT(page.lines[0].text(), EndsWith("[cut at 4 KiB]"));

  for (int i = 0; i < 1000; ++i) logs.Append(Line("job", 0, std::string(4000, 'y')));
  LogQuery query;
  query.max_lines = kMaxLogLinesPerRead;
  LogPage bounded = logs.Read("job", query);
  EXPECT_TRUE(bounded.more);
  EXPECT_LT(bounded.lines.size(), 1000u);
  EXPECT_GT(bounded.lines.size(), 400u);
}

}  // namespace
}  // namespace tecl::coordinator
