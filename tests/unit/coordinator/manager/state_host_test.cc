// StateHost, the mutate-commit-notify skeleton: answers only once the change (and everything
// before it) is durable, at once when nothing is written or in flight, refuses changes after a
// store failure, writes each dirty row once, and runs watchers after the lock is released.
#include "services/coordinator/manager/state_host.h"

#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/coordinator/store/fake_job_store.h"

namespace tecl::coordinator {
namespace {

using ::testing::HasSubstr;

// A store whose writes become durable only when the test says so.
class DeferredStore final : public JobStore {
 public:
  void Write(WriteBatch batch, WriteCallback done) override {
    writes_.push_back({batch.size(), std::move(done)});
  }
  absl::StatusOr<StoreSnapshot> Load() override { return StoreSnapshot(); }

  // Completes the oldest write with `status`.
  void CompleteOne(absl::Status status = absl::OkStatus()) {
    auto write = std::move(writes_.front());
    writes_.pop_front();
    write.second(status);
  }
  size_t pending() const { return writes_.size(); }
  size_t ops_of_last() const { return writes_.back().first; }

 private:
  std::deque<std::pair<size_t, WriteCallback>> writes_;
};

tecl::v1::JobEvent Event(const std::string& job, int64_t seq) {
  tecl::v1::JobEvent event;
  event.set_job_id(job);
  event.set_seq(seq);
  return event;
}

class StateHostTest : public ::testing::Test {
 protected:
  StateHostTest() : host_(&store_, &clock_) {}

  // Mutate with a change that appends `events` events; the answer lands in `answer`.
  void MakeChange(int events, std::optional<absl::Status>* answer) {
    host_.Mutate(
        [&](coordinator::Change& c) {
          for (int i = 0; i < events; ++i) c.batch.AppendEvent(Event("job-1", ++seq_));
          return absl::OkStatus();
        },
        [answer](absl::Status s) { *answer = s; });
  }

  FakeClock clock_;
  DeferredStore store_;
  StateHost host_;
  int64_t seq_ = 0;
};

TEST_F(StateHostTest, AChangeIsAnsweredOnlyOnceDurable) {
  std::optional<absl::Status> answer;
  MakeChange(1, &answer);
  EXPECT_FALSE(answer.has_value());
  ASSERT_EQ(store_.pending(), 1u);
  store_.CompleteOne();
  ASSERT_TRUE(answer.has_value());
  EXPECT_TRUE(answer->ok());
}

TEST_F(StateHostTest, NothingWrittenAndNothingInFlightIsAnsweredAtOnce) {
  std::optional<absl::Status> answer;
  MakeChange(0, &answer);
  ASSERT_TRUE(answer.has_value());
  EXPECT_TRUE(answer->ok());
  EXPECT_EQ(store_.pending(), 0u);
}

TEST_F(StateHostTest, AReadOnlyAnswerWaitsForEarlierChanges) {
  std::optional<absl::Status> first, second;
  MakeChange(1, &first);
  MakeChange(0, &second);  // E.g. a heartbeat delivering an assignment the first change made.
  EXPECT_FALSE(second.has_value()) << "answered before the earlier change was durable";
  ASSERT_EQ(store_.pending(), 2u);  // The empty batch is a barrier behind the first.
  store_.CompleteOne();
  store_.CompleteOne();
  EXPECT_TRUE(first.has_value() && first->ok());
  EXPECT_TRUE(second.has_value() && second->ok());
}

TEST_F(StateHostTest, AFailedChangeThatTouchedNothingIsAnsweredWithItsError) {
  std::optional<absl::Status> answer;
  host_.Mutate([](coordinator::Change&) { return absl::NotFoundError("no job \"x\""); },
               [&](absl::Status s) { answer = s; });
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.pending(), 0u);
}

TEST_F(StateHostTest, AFailedChangeThatChangedStateIsAnsweredWithItsErrorOnceDurable) {
  std::optional<absl::Status> answer;
  host_.Mutate(
      [&](coordinator::Change& c) {
        c.batch.AppendEvent(Event("job-1", 1));
        return absl::AbortedError("stale attempt");
      },
      [&](absl::Status s) { answer = s; });
  EXPECT_FALSE(answer.has_value());
  store_.CompleteOne();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->code(), absl::StatusCode::kAborted);
}

TEST_F(StateHostTest, AStoreFailureIsUnavailableAndRefusesLaterChanges) {
  std::optional<absl::Status> first, second;
  MakeChange(1, &first);
  store_.CompleteOne(absl::DataLossError("disk I/O error"));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(first->message()), HasSubstr("could not store the change"));
  bool ran = false;
  host_.Mutate(
      [&](coordinator::Change&) {
        ran = true;
        return absl::OkStatus();
      },
      [&](absl::Status s) { second = s; });
  EXPECT_FALSE(ran);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second->message()), HasSubstr("restart tecl-coordinator"));
  EXPECT_EQ(host_.store_error().code(), absl::StatusCode::kDataLoss);
}

TEST_F(StateHostTest, TheFailureHandlerRunsOnceWithTheFirstError) {
  std::vector<std::string> reports;
  host_.OnStoreFailure([&](const absl::Status& error) {
    reports.push_back(std::string(error.message()));
  });
  std::optional<absl::Status> a, b;
  MakeChange(1, &a);
  MakeChange(1, &b);
  EXPECT_TRUE(reports.empty());
  store_.CompleteOne(absl::DataLossError("disk I/O error"));
  store_.CompleteOne(absl::DataLossError("second error"));
  EXPECT_THAT(reports, ::testing::ElementsAre("disk I/O error"));

  // A handler set after the failure hears of it at once; nullptr removes the handler.
  std::vector<std::string> late;
  host_.OnStoreFailure([&](const absl::Status& error) {
    late.push_back(std::string(error.message()));
  });
  EXPECT_THAT(late, ::testing::ElementsAre("disk I/O error"));
  host_.OnStoreFailure(nullptr);
  EXPECT_EQ(reports.size(), 1u);
}

TEST_F(StateHostTest, RowsMarkedSeveralTimesAreWrittenOnce) {
  int writes = 0;
  host_.AddRowWriter([&](coordinator::Change& c) {
    for (const std::string& id : c.job_rows) {
      ++writes;
      tecl::v1::Job job;
      job.set_id(id);
      c.batch.UpdateJob(job);
    }
  });
  std::optional<absl::Status> answer;
  host_.Mutate(
      [&](coordinator::Change& c) {
        c.job_rows.insert("job-1");
        c.job_rows.insert("job-1");
        c.job_rows.insert("job-2");
        return absl::OkStatus();
      },
      [&](absl::Status s) { answer = s; });
  EXPECT_EQ(writes, 2);
  ASSERT_EQ(store_.pending(), 1u);
  EXPECT_EQ(store_.ops_of_last(), 2u);
}

TEST_F(StateHostTest, WatchersRunAfterTheLockIsReleasedAndMayRead) {
  int calls = 0;
  const auto watch = host_.Watch("job-1", [&] {
    ++calls;
    EXPECT_EQ(host_.Read<int>([] { return 7; }), 7);  // Would deadlock under the lock.
  });
  host_.Watch("job-2", [&] { ADD_FAILURE() << "job-2 did not change"; });
  host_.MutateInBackground([](coordinator::Change& c) { c.changed_jobs.insert("job-1"); });
  EXPECT_EQ(calls, 1);
  host_.Unwatch(watch);
  host_.MutateInBackground([](coordinator::Change& c) { c.changed_jobs.insert("job-1"); });
  EXPECT_EQ(calls, 1);
}

TEST_F(StateHostTest, SchedulingRequestsAreTakenOnce) {
  EXPECT_TRUE(host_.scheduling_requested());  // A fresh coordinator looks once.
  host_.MutateInBackground([&](coordinator::Change&) { EXPECT_TRUE(host_.TakeSchedulingRequest()); });
  EXPECT_FALSE(host_.scheduling_requested());
  host_.MutateInBackground([&](coordinator::Change&) { host_.RequestScheduling(); });
  EXPECT_TRUE(host_.scheduling_requested());
}

}  // namespace
}  // namespace tecl::coordinator
