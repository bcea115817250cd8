// BatchStream: bounded prefetch, in-order delivery, end of stream, errors and cancellation, with
// builds completed by the test.
#include "services/dataloader/pipeline/batch_stream.h"

#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::dataloader {
namespace {

using ::testing::HasSubstr;
using tecl::v1::ClipBatch;

class FakeBuilds {
 public:
  struct Handle : BuildHandle {
    void Cancel() override { cancelled = true; }
    bool cancelled = false;
  };

  BatchStream::BuildFn Fn() {
    return [this](int64_t index, BatchBuilder::Done done) {
      absl::MutexLock lock(&mu_);
      auto handle = std::make_shared<Handle>();
      handles_[index] = handle;
      done_[index] = std::move(done);
      return handle;
    };
  }

  // Completes build `index` with a batch whose step is the index (or with `error`).
  void Complete(int64_t index, absl::Status error = absl::OkStatus()) {
    BatchBuilder::Done done;
    {
      absl::MutexLock lock(&mu_);
      done = std::move(done_.at(index));
      done_.erase(index);
    }
    if (!error.ok()) {
      done(error);
      return;
    }
    ClipBatch batch;
    batch.set_step(index);
    batch.mutable_clips()->set_data(std::string(1000, 'x'));
    done(std::move(batch));
  }

  std::vector<int64_t> Started() {
    absl::MutexLock lock(&mu_);
    std::vector<int64_t> indices;
    for (const auto& [index, handle] : handles_) indices.push_back(index);
    return indices;
  }

  bool Cancelled(int64_t index) {
    absl::MutexLock lock(&mu_);
    return handles_.at(index)->cancelled;
  }

 private:
  absl::Mutex mu_;
  std::map<int64_t, std::shared_ptr<Handle>> handles_;
  std::map<int64_t, BatchBuilder::Done> done_;
};

class BatchStreamTest : public ::testing::Test {
 protected:
  BatchStreamTest() : metrics_(registry_), pool_(2) {}

  std::shared_ptr<BatchStream> Open(int depth, int64_t num_batches,
                                    absl::Status prepare_error = absl::OkStatus()) {
    auto stream = BatchStream::Create(
        depth,
        [this, num_batches, prepare_error]() -> absl::StatusOr<BatchStream::Prepared> {
          if (!prepare_error.ok()) return prepare_error;
          return BatchStream::Prepared{builds_.Fn(), num_batches};
        },
        &pool_, &metrics_);
    stream->Start();
    EXPECT_TRUE(pool_.WaitUntilIdle(absl::Seconds(30)));
    return stream;
  }

  // Next() that must answer at once.
  static BatchStream::Result NextNow(BatchStream& stream) {
    std::optional<BatchStream::Result> result;
    stream.Next([&](BatchStream::Result r) { result = std::move(r); });
    EXPECT_TRUE(result.has_value()) << "Next() did not answer at once";
    return result.has_value() ? std::move(*result) : absl::UnknownError("no answer");
  }

  metrics::Registry registry_;
  LoaderMetrics metrics_;
  ThreadPool pool_;
  FakeBuilds builds_;
};

TEST_F(BatchStreamTest, BuildsAtMostDepthAheadOfWhatWasHandedOut) {
  auto stream = Open(/*depth=*/3, /*num_batches=*/-1);
  EXPECT_THAT(builds_.Started(), ::testing::ElementsAre(0, 1, 2));
  for (int64_t i = 0; i < 3; ++i) builds_.Complete(i);
  EXPECT_EQ(stream->ready(), 3);
  EXPECT_DOUBLE_EQ(metrics_.queue_depth.Value(), 3);
  // Nobody takes a batch: nothing more is built, however long we wait.
  EXPECT_TRUE(pool_.WaitUntilIdle(absl::Seconds(30)));
  EXPECT_EQ(stream->started(), 3);

  BatchStream::Result first = NextNow(*stream);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->step(), 0);
  EXPECT_EQ(stream->started(), 4);  // The window moved by one.
  EXPECT_DOUBLE_EQ(metrics_.queue_depth.Value(), 2);
}

TEST_F(BatchStreamTest, DeliversInOrderAndWaitsForTheNextBatch) {
  auto stream = Open(/*depth=*/2, /*num_batches=*/-1);
  std::optional<BatchStream::Result> got;
  stream->Next([&](BatchStream::Result r) { got = std::move(r); });
  EXPECT_FALSE(got.has_value());
  builds_.Complete(1);
  EXPECT_FALSE(got.has_value());  // Batch 0 comes first.
  builds_.Complete(0);
  ASSERT_TRUE(got.has_value() && got->ok());
  EXPECT_EQ((*got)->step(), 0);
  BatchStream::Result second = NextNow(*stream);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->step(), 1);
}

TEST_F(BatchStreamTest, EndsAfterTheLastBatch) {
  auto stream = Open(/*depth=*/4, /*num_batches=*/2);
  EXPECT_THAT(builds_.Started(), ::testing::ElementsAre(0, 1));
  builds_.Complete(0);
  builds_.Complete(1);
  EXPECT_TRUE(NextNow(*stream).ok());
  EXPECT_TRUE(NextNow(*stream).ok());
  EXPECT_EQ(NextNow(*stream).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(BatchStreamTest, PrepareErrorEndsTheStream) {
  auto stream = Open(2, -1, absl::FailedPreconditionError("dataset.root: \"/x\" does not exist"));
  BatchStream::Result result = NextNow(*stream);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("dataset.root"));
  EXPECT_TRUE(builds_.Started().empty());
}

TEST_F(BatchStreamTest, AFailedBatchEndsTheStreamInOrder) {
  auto stream = Open(/*depth=*/3, /*num_batches=*/-1);
  builds_.Complete(0);
  builds_.Complete(1, absl::FailedPreconditionError("dataset: no usable video left"));
  builds_.Complete(2);
  EXPECT_TRUE(NextNow(*stream).ok());
  EXPECT_EQ(stream->started(), 4);  // Handing out batch 0 moved the window.
  EXPECT_EQ(NextNow(*stream).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(NextNow(*stream).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(stream->started(), 4);  // No build after the failure.
}

TEST_F(BatchStreamTest, CancelAnswersThePendingCallFreesTheQueueAndCancelsBuilds) {
  auto stream = Open(/*depth=*/3, /*num_batches=*/-1);
  builds_.Complete(0);
  builds_.Complete(1);
  EXPECT_TRUE(NextNow(*stream).ok());
  EXPECT_TRUE(NextNow(*stream).ok());
  std::optional<BatchStream::Result> pending;
  stream->Next([&](BatchStream::Result r) { pending = std::move(r); });
  builds_.Complete(3);  // Built, waiting behind batch 2.
  EXPECT_DOUBLE_EQ(metrics_.queue_depth.Value(), 1);
  EXPECT_DOUBLE_EQ(metrics_.active_streams.Value(), 1);

  stream->Cancel();
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(builds_.Cancelled(2));
  EXPECT_TRUE(builds_.Cancelled(4));
  EXPECT_DOUBLE_EQ(metrics_.queue_depth.Value(), 0);
  EXPECT_EQ(NextNow(*stream).status().code(), absl::StatusCode::kCancelled);
  // A build finishing after the cancel is dropped.
  builds_.Complete(2);
  EXPECT_DOUBLE_EQ(metrics_.queue_depth.Value(), 0);
  stream.reset();
  EXPECT_DOUBLE_EQ(metrics_.active_streams.Value(), 0);
}

TEST_F(BatchStreamTest, DestroyingTheStreamCancelsItsBuilds) {
  auto stream = Open(/*depth=*/2, /*num_batches=*/-1);
  builds_.Complete(0);
  EXPECT_DOUBLE_EQ(metrics_.active_streams.Value(), 1);
  stream.reset();
  EXPECT_TRUE(builds_.Cancelled(1));
  EXPECT_DOUBLE_EQ(metrics_.active_streams.Value(), 0);
  EXPECT_DOUBLE_EQ(metrics_.queue_depth.Value(), 0);
  builds_.Complete(1);  // The late result finds no stream.
}

}  // namespace
}  // namespace tecl::dataloader
