// BatchStream over fake LoaderClients: steps interleaved across loaders, a broken loader dropped
// and the rest restarted from the first missing step, errors no loader can fix, the prefetch
// bound, cancel.
#include "services/worker/runner/batch_stream.h"

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::worker {
namespace {

using ::testing::HasSubstr;

// How a fake loader serves one stream.
struct Behaviour {
  int fail_after = -1;  // Batches before the stream breaks with `error` (-1: never).
  absl::Status error = absl::UnavailableError("loader went away");
  bool block = false;  // Read blocks until Cancel (a loader that never answers).
};

// Every stream the fake loaders opened, and how many batches they produced.
struct Log {
  absl::Mutex mu;
  std::vector<std::pair<std::string, tecl::v1::StreamBatchesRequest>> requests ABSL_GUARDED_BY(mu);
  int64_t produced ABSL_GUARDED_BY(mu) = 0;
};

class FakeReader final : public BatchReader {
 public:
  FakeReader(tecl::v1::StreamBatchesRequest request, Behaviour behaviour, Log* log)
      : request_(std::move(request)), behaviour_(behaviour), log_(log) {}

  bool Read(tecl::v1::ClipBatch* batch) override {
    absl::MutexLock lock(&mu_);
    if (behaviour_.block) mu_.Await(absl::Condition(&cancelled_));
    if (cancelled_) return false;
    if (behaviour_.fail_after >= 0 && sent_ >= behaviour_.fail_after) {
      status_ = behaviour_.error;
      return false;
    }
    batch->Clear();
    batch->set_step(request_.start_step() + sent_ * request_.step_stride());
    ++sent_;
    absl::MutexLock log_lock(&log_->mu);
    ++log_->produced;
    return true;
  }
  absl::Status Finish() override {
    absl::MutexLock lock(&mu_);
    return cancelled_ ? absl::CancelledError("cancelled") : status_;
  }
  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

 private:
  const tecl::v1::StreamBatchesRequest request_;
  const Behaviour behaviour_;
  Log* const log_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class FakeLoader final : public LoaderClient {
 public:
  FakeLoader(std::string address, Behaviour behaviour, Log* log)
      : address_(std::move(address)), behaviour_(behaviour), log_(log) {}
  std::unique_ptr<BatchReader> StreamBatches(
      const tecl::v1::StreamBatchesRequest& request) override {
    {
      absl::MutexLock lock(&log_->mu);
      log_->requests.emplace_back(address_, request);
    }
    return std::make_unique<FakeReader>(request, behaviour_, log_);
  }
  absl::StatusOr<tecl::v1::DatasetInfo> DescribeDataset(
      const tecl::v1::DescribeDatasetRequest&) override {
    return absl::UnimplementedError("not used");
  }

 private:
  const std::string address_;
  const Behaviour behaviour_;
  Log* const log_;
};

class BatchStreamTest : public ::testing::Test {
 protected:
  LoaderClientFactory Loaders(std::map<std::string, Behaviour> behaviours) {
    return [this, behaviours](const std::string& address) -> std::shared_ptr<LoaderClient> {
      auto it = behaviours.find(address);
      if (it == behaviours.end()) return nullptr;
      return std::make_shared<FakeLoader>(address, it->second, &log_);
    };
  }
  static BatchStreamOptions Options(int64_t end_step, int prefetch = 2) {
    BatchStreamOptions options;
    options.job_id = "job-1";
    options.end_step = end_step;
    options.prefetch = prefetch;
    options.reconnect_backoff = absl::Milliseconds(5);
    return options;
  }
  // Steps of every batch until the stream ends; its final status in `end`.
  static std::vector<int64_t> Drain(BatchStream& stream, absl::Status* end) {
    std::vector<int64_t> steps;
    while (true) {
      absl::StatusOr<tecl::v1::ClipBatch> batch = stream.Next();
      if (!batch.ok()) {
        *end = batch.status();
        return steps;
      }
      steps.push_back(batch->step());
    }
  }
  static std::vector<int64_t> Range(int64_t n) {
    std::vector<int64_t> steps;
    for (int64_t i = 0; i < n; ++i) steps.push_back(i);
    return steps;
  }

  Log log_;
};

TEST_F(BatchStreamTest, LoadersServeInterleavedStepsInOrder) {
  BatchStream stream(Options(10), {"a:1", "b:1"}, Loaders({{"a:1", {}}, {"b:1", {}}}));
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), Range(10));
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(stream.reconnects(), 0);
  absl::MutexLock lock(&log_.mu);
  ASSERT_EQ(log_.requests.size(), 2u);
  EXPECT_EQ(log_.requests[0].first, "a:1");
  EXPECT_EQ(log_.requests[0].second.start_step(), 0);
  EXPECT_EQ(log_.requests[0].second.step_stride(), 2);
  EXPECT_EQ(log_.requests[1].second.start_step(), 1);
  EXPECT_EQ(log_.requests[1].second.step_stride(), 2);
  EXPECT_EQ(log_.requests[1].second.job_id(), "job-1");
}

TEST_F(BatchStreamTest, ABrokenLoaderIsDroppedAndTheRestResumeFromTheFirstMissingStep) {
  Behaviour breaks;
  breaks.fail_after = 2;  // Steps 0 and 2, then it breaks.
  BatchStream stream(Options(12), {"a:1", "b:1"}, Loaders({{"a:1", breaks}, {"b:1", {}}}));
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), Range(12));  // Nothing lost, nothing repeated.
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange);
  EXPECT_GE(stream.reconnects(), 1);
  absl::MutexLock lock(&log_.mu);
  // The first restart starts at the step the consumer was missing: after step 0 at the earliest
  // (a gave 0), step 4 at the latest (a never gives 4), whenever the consumer noticed.
  ASSERT_GE(log_.requests.size(), 3u);
  const tecl::v1::StreamBatchesRequest& restart = log_.requests[2].second;
  EXPECT_GE(restart.start_step(), 1);
  EXPECT_LE(restart.start_step(), 4);
}

TEST_F(BatchStreamTest, AnErrorNoLoaderCanFixEndsTheStreamNamingTheLoader) {
  Behaviour refuses;
  refuses.fail_after = 0;
  refuses.error = absl::InvalidArgumentError("dataset.root: not under --data_root");
  BatchStream stream(Options(10), {"a:1"}, Loaders({{"a:1", refuses}}));
  absl::StatusOr<tecl::v1::ClipBatch> batch = stream.Next();
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(batch.status().message(), HasSubstr("dataloader a:1"));
  EXPECT_THAT(batch.status().message(), HasSubstr("dataset.root"));
}

TEST_F(BatchStreamTest, ALoaderWithoutAChannelFailsThePrecondition) {
  BatchStream stream(Options(10), {"nowhere:1"}, Loaders({}));
  absl::StatusOr<tecl::v1::ClipBatch> batch = stream.Next();
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(batch.status().message(), HasSubstr("nowhere:1"));
}

TEST_F(BatchStreamTest, ReadersStopAtThePrefetchWindow) {
  BatchStream stream(Options(1000, /*prefetch=*/3), {"a:1"}, Loaders({{"a:1", {}}}));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(stream.Next().ok());
  absl::SleepFor(absl::Milliseconds(200));  // Time for a reader that did not stop to run ahead.
  absl::MutexLock lock(&log_.mu);
  // 5 consumed, 3 ready ahead, and the one the reader holds while it waits.
  EXPECT_LE(log_.produced, 5 + 3 + 1);
}

TEST_F(BatchStreamTest, CancelUnblocksAWaitingNext) {
  Behaviour silent;
  silent.block = true;
  BatchStream stream(Options(10), {"a:1"}, Loaders({{"a:1", silent}}));
  absl::Status status;
  std::thread consumer([&] { status = stream.Next().status(); });
  absl::SleepFor(absl::Milliseconds(50));
  stream.Cancel();
  consumer.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace tecl::worker
