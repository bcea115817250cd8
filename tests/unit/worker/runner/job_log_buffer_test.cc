// JobLogBuffer: which lines it keeps, how they are taken for heartbeats and dropped once
// delivered, its bounds.
#include "services/worker/runner/job_log_buffer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::worker {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Texts(const google::protobuf::RepeatedPtrField<tecl::v1::LogLine>& lines) {
  std::vector<std::string> out;
  for (const auto& line : lines) out.push_back(line.text());
  return out;
}

TEST(JobLogBufferTest, KeepsLinesOfARunTaggedWithItsRankUntilDelivered) {
  JobLogBuffer buffer;
  buffer.Send(LogSeverity::kInfo, "before the run");
  buffer.Begin("job-1", 2, 3);
  buffer.Send(LogSeverity::kInfo, "a");
  buffer.Send(LogSeverity::kWarning, "b");
  buffer.End();
  buffer.Send(LogSeverity::kInfo, "after the run");

  tecl::v1::HeartbeatRequest first;
  buffer.Take(first.mutable_log_lines());
  EXPECT_THAT(Texts(first.log_lines()), ElementsAre("a", "b"));
  EXPECT_EQ(first.log_lines(0).job_id(), "job-1");
  EXPECT_EQ(first.log_lines(0).attempt(), 2);
  EXPECT_EQ(first.log_lines(0).rank(), 3);
  EXPECT_EQ(first.log_lines(0).seq(), 1);
  EXPECT_EQ(first.log_lines(1).seq(), 2);
  EXPECT_GT(first.log_lines(0).unix_ms(), 0);

  // Not delivered (the heartbeat failed): sent again, with what came since.
  buffer.Begin("job-1", 2, 3);
  buffer.Send(LogSeverity::kInfo, "c");
  tecl::v1::HeartbeatRequest second;
  buffer.Take(second.mutable_log_lines());
  EXPECT_THAT(Texts(second.log_lines()), ElementsAre("a", "b", "c"));
  buffer.Delivered();
  EXPECT_EQ(buffer.pending_lines(), 0u);
  buffer.Send(LogSeverity::kInfo, "d");
  tecl::v1::HeartbeatRequest third;
  buffer.Take(third.mutable_log_lines());
  EXPECT_THAT(Texts(third.log_lines()), ElementsAre("d"));
  EXPECT_EQ(third.log_lines(0).seq(), 4);
}

TEST(JobLogBufferTest, LinesLoggedDuringATakeStayForTheNext) {
  JobLogBuffer buffer;
  buffer.Begin("job-1", 1, 0);
  buffer.Send(LogSeverity::kInfo, "a");
  tecl::v1::HeartbeatRequest request;
  buffer.Take(request.mutable_log_lines());
  buffer.Send(LogSeverity::kInfo, "logged while the heartbeat was in flight");
  buffer.Delivered();
  tecl::v1::HeartbeatRequest next;
  buffer.Take(next.mutable_log_lines());
  EXPECT_THAT(Texts(next.log_lines()), ElementsAre("logged while the heartbeat was in flight"));
}

TEST(JobLogBufferTest, BoundsTheBufferTheTakesAndTheLines) {
  metrics::Registry registry;
  metrics::Counter& dropped =
      metrics::BuildCounter().Name("dropped_total").Help("x").Register(registry).Add({});
  JobLogBufferOptions options;
  options.max_bytes = 100;
  options.max_bytes_per_take = 25;
  options.max_lines_per_take = 3;
  options.max_line_bytes = 10;
  JobLogBuffer buffer(options, &dropped);
  buffer.Begin("job-1", 1, 0);
  for (int i = 0; i < 30; ++i) buffer.Send(LogSeverity::kInfo, "line " + std::to_string(i));
  // 200 bytes (ten lines of 6, twenty of 7) into 100: the newest 14 lines stay.
  EXPECT_EQ(buffer.dropped(), 16);
  EXPECT_EQ(dropped.Value(), 16);
  EXPECT_EQ(buffer.pending_lines(), 14u);
  tecl::v1::HeartbeatRequest request;
  buffer.Take(request.mutable_log_lines());
  EXPECT_THAT(Texts(request.log_lines()), ElementsAre("line 16", "line 17", "line 18"));
  EXPECT_EQ(request.log_lines(0).seq(), 17);  // The gap tells the coordinator.

  request.Clear();
  options.max_lines_per_take = 100;
  JobLogBuffer wide(options);
  wide.Begin("job-1", 1, 0);
  wide.Send(LogSeverity::kInfo, std::string(50, 'x'));
  wide.Send(LogSeverity::kInfo, "short");
  wide.Take(request.mutable_log_lines());
  ASSERT_EQ(request.log_lines_size(), 2);  // 10 + 5 bytes fit the take's 25.
  EXPECT_EQ(request.log_lines(0).text(), std::string(10, 'x'));  // Cut at max_line_bytes.
}

}  // namespace
}  // namespace tecl::worker
