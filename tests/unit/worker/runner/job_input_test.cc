// JobInput over a fake RunContext and a fake BatchSource: the source opens on the context's current
// dataloaders, a new dataloader list reaches SetAddresses, a stop order cancels the source, the
// source's failovers are counted in the job's metrics, and the stream options take the spec's
// loader timeouts.
#include "services/worker/runner/job_input.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/metrics.h"

namespace tecl::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Long enough never to be reached by a working watcher (it polls every 50 ms).
constexpr absl::Duration kPatience = absl::Seconds(30);

class FakeRunContext final : public RunContext {
 public:
  DataloaderList Dataloaders() const override {
    absl::MutexLock lock(&mu_);
    return dataloaders_;
  }
  bool StopRequested() const override {
    absl::MutexLock lock(&mu_);
    return stop_;
  }
  std::string StopReason() const override { return "stopped by the test"; }
  void ReportProgress(tecl::v1::TrainerStatus, const tecl::v1::JobProgress&, double, double,
                      double) override {}
  absl::Status RegisterCheckpoint(const tecl::v1::Checkpoint&) override {
    return absl::OkStatus();
  }
  absl::Status RejectCheckpoint(const tecl::v1::Checkpoint&, const std::string&) override {
    return absl::OkStatus();
  }
  std::string session() const override { return "session"; }

  void SetDataloaders(DataloaderList list) {
    absl::MutexLock lock(&mu_);
    dataloaders_ = std::move(list);
  }
  void Stop() {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }

 private:
  mutable absl::Mutex mu_;
  DataloaderList dataloaders_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

// What the input did to its source.
struct SourceLog {
  absl::Mutex mu;
  BatchStreamOptions options ABSL_GUARDED_BY(mu);
  std::vector<std::string> opened_with ABSL_GUARDED_BY(mu);
  std::vector<std::vector<std::string>> set_addresses ABSL_GUARDED_BY(mu);
  absl::Notification addresses_set;
  absl::Notification cancelled;
  absl::Notification destroyed;
};

class FakeSource final : public BatchSource {
 public:
  explicit FakeSource(SourceLog* log) : log_(log) {}
  ~FakeSource() override { log_->destroyed.Notify(); }
  absl::StatusOr<tecl::v1::ClipBatch> Next() override { return tecl::v1::ClipBatch(); }
  void Cancel() override {
    if (!log_->cancelled.HasBeenNotified()) log_->cancelled.Notify();
  }
  void SetAddresses(std::vector<std::string> addresses) override {
    absl::MutexLock lock(&log_->mu);
    log_->set_addresses.push_back(std::move(addresses));
    if (!log_->addresses_set.HasBeenNotified()) log_->addresses_set.Notify();
  }

 private:
  SourceLog* const log_;
};

class JobInputTest : public ::testing::Test {
 protected:
  JobInputTest() : metrics_(registry_, "job-1", 1) {
    context_.SetDataloaders({0, {"a:1", "b:1"}});
  }

  BatchSourceFactory Factory() {
    return [this](const BatchStreamOptions& options, const std::vector<std::string>& addresses) {
      absl::MutexLock lock(&log_.mu);
      log_.options = options;
      log_.opened_with = addresses;
      return std::make_unique<FakeSource>(&log_);
    };
  }

  std::unique_ptr<JobInput> Open() {
    BatchStreamOptions options;
    options.job_id = "job-1";
    options.rank = 1;
    absl::StatusOr<std::unique_ptr<JobInput>> input =
        JobInput::Open(Factory(), options, &context_, &metrics_);
    EXPECT_TRUE(input.ok()) << input.status();
    return input.ok() ? std::move(*input) : nullptr;
  }

  metrics::Registry registry_;
  JobMetrics metrics_;
  FakeRunContext context_;
  SourceLog log_;
};

TEST_F(JobInputTest, OpensOnTheCurrentDataloaders) {
  context_.SetDataloaders({3, {"c:1", "b:1"}});
  std::unique_ptr<JobInput> input = Open();
  ASSERT_NE(input, nullptr);
  EXPECT_TRUE(input->source().Next().ok());
  {
    absl::MutexLock lock(&log_.mu);
    EXPECT_THAT(log_.opened_with, ElementsAre("c:1", "b:1"));
    EXPECT_EQ(log_.options.job_id, "job-1");
  }
  input.reset();
  EXPECT_TRUE(log_.destroyed.HasBeenNotified());
  absl::MutexLock lock(&log_.mu);
  EXPECT_THAT(log_.set_addresses, IsEmpty());  // The version it opened with is not news.
}

TEST_F(JobInputTest, ANewDataloaderListReachesTheSource) {
  std::unique_ptr<JobInput> input = Open();
  ASSERT_NE(input, nullptr);
  context_.SetDataloaders({1, {"b:1"}});
  ASSERT_TRUE(log_.addresses_set.WaitForNotificationWithTimeout(kPatience));
  input.reset();  // Joins the watcher: nothing is added after this.
  absl::MutexLock lock(&log_.mu);
  ASSERT_EQ(log_.set_addresses.size(), 1u);
  EXPECT_THAT(log_.set_addresses[0], ElementsAre("b:1"));
  EXPECT_FALSE(log_.cancelled.HasBeenNotified());
}

TEST_F(JobInputTest, AStopOrderCancelsTheSource) {
  std::unique_ptr<JobInput> input = Open();
  ASSERT_NE(input, nullptr);
  context_.Stop();
  EXPECT_TRUE(log_.cancelled.WaitForNotificationWithTimeout(kPatience));
}

TEST_F(JobInputTest, FailoversAreCountedByReason) {
  std::unique_ptr<JobInput> input = Open();
  ASSERT_NE(input, nullptr);
  BatchStreamOptions options;
  {
    absl::MutexLock lock(&log_.mu);
    options = log_.options;
  }
  ASSERT_TRUE(options.on_failover);
  options.on_failover("a:1", "stalled");
  options.on_failover("b:1", "error");
  options.on_failover("a:1", "stalled");
  const std::string text = registry_.Serialize();
  EXPECT_THAT(text, HasSubstr(R"(tecl_worker_loader_failovers_total{job_id="job-1",rank="1",)"
                              R"(reason="stalled"} 2)"));
  EXPECT_THAT(text, HasSubstr(R"(tecl_worker_loader_failovers_total{job_id="job-1",rank="1",)"
                              R"(reason="error"} 1)"));
}

TEST_F(JobInputTest, WithoutAFactoryTheInputCannotOpen) {
  absl::StatusOr<std::unique_ptr<JobInput>> input =
      JobInput::Open(nullptr, BatchStreamOptions(), &context_, &metrics_);
  EXPECT_EQ(input.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(input.status().message(), HasSubstr("batch source factory"));
}

TEST_F(JobInputTest, StreamOptionsTakeTheSpecsLoaderTimeouts) {
  tecl::v1::Assignment a;
  a.set_job_id("job-2");
  a.set_rank(1);
  a.set_world_size(2);
  a.mutable_spec()->mutable_resources()->set_prefetch_batches(3);
  BatchStreamOptions options = JobInput::StreamOptions(a, tecl::v1::STREAM_MODE_TRAIN);
  EXPECT_EQ(options.job_id, "job-2");
  EXPECT_EQ(options.rank, 1);
  EXPECT_EQ(options.world_size, 2);
  EXPECT_EQ(options.prefetch, 3);
  EXPECT_EQ(options.stall_timeout, absl::Seconds(60));  // 0 in the spec: the defaults.
  EXPECT_EQ(options.start_timeout, absl::Seconds(300));

  a.mutable_spec()->mutable_restart()->set_loader_stall_timeout_s(2.5);
  a.mutable_spec()->mutable_restart()->set_loader_start_timeout_s(30);
  options = JobInput::StreamOptions(a, tecl::v1::STREAM_MODE_EVAL);
  EXPECT_EQ(options.mode, tecl::v1::STREAM_MODE_EVAL);
  EXPECT_EQ(options.stall_timeout, absl::Milliseconds(2500));
  EXPECT_EQ(options.start_timeout, absl::Seconds(30));
}

}  // namespace
}  // namespace tecl::worker
