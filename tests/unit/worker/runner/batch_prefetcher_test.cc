// BatchPrefetcher over an in-memory BatchSource and a CPU DeviceStager (pass-through): order,
// epochs and contents; how far it reads ahead; the first error ends the input; destruction while
// the source blocks.
#include "services/worker/runner/batch_prefetcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "services/worker/runner/job_options.h"

namespace tecl::worker {
namespace {

using ::testing::HasSubstr;
using tecl::v1::ClipBatch;

// Step `step`'s batch: 4 clips of 1 frame 2x2, every byte a function of the step.
ClipBatch SmallBatch(int64_t step) {
  ClipBatch message;
  message.set_step(step);
  message.set_epoch(step / 2);
  for (int64_t d : {4, 1, 2, 2, 3}) message.mutable_clips()->add_shape(d);
  std::string bytes(4 * 1 * 2 * 2 * 3, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((step * 7 + i) % 251);
  message.mutable_clips()->set_data(bytes);
  for (int i = 0; i < 4; ++i) {
    tecl::v1::ClipInfo* info = message.add_clip_info();
    info->set_video(i / 2);
    info->set_speed_index(static_cast<int>(step % 3));
  }
  message.add_groups()->set_relation(tecl::v1::RELATION_OVERLAP);
  return message;
}

// Steps [0, end); step `bad` (if any) has a clip_info entry too few. Next() blocks while `hold` is
// set and counts the batches handed out.
class CountingSource final : public BatchSource {
 public:
  explicit CountingSource(int64_t end, int64_t bad = -1) : end_(end), bad_(bad) {}
  absl::StatusOr<ClipBatch> Next() override {
    while (hold_ && !cancelled_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (cancelled_) return absl::CancelledError("source cancelled");
    if (next_ >= end_) return absl::OutOfRangeError("past the last step");
    ClipBatch batch = SmallBatch(next_);
    if (next_ == bad_) batch.mutable_clip_info()->RemoveLast();
    ++next_;
    return batch;
  }
  void Cancel() override { cancelled_ = true; }

  std::atomic<int64_t> next_{0};
  std::atomic<bool> hold_{false};
  std::atomic<bool> cancelled_{false};

 private:
  const int64_t end_;
  const int64_t bad_;
};

TEST(BatchPrefetcherTest, DeliversEveryStepInOrderThenOutOfRange) {
  CountingSource source(5);
  core::DeviceStager stager(c10::Device(c10::kCPU));
  EXPECT_FALSE(stager.asynchronous());
  BatchPrefetcher prefetcher(source, stager);
  for (int64_t step = 0; step < 5; ++step) {
    absl::StatusOr<BatchPrefetcher::Item> item = prefetcher.Next();
    ASSERT_TRUE(item.ok()) << item.status();
    EXPECT_EQ(item->step, step);
    EXPECT_EQ(item->epoch, step / 2);
    absl::StatusOr<core::Batch> expected =
        BatchFromProto(std::make_shared<const ClipBatch>(SmallBatch(step)));
    ASSERT_TRUE(expected.ok());
    EXPECT_TRUE(torch::equal(item->batch.clips, expected->clips));
    EXPECT_TRUE(torch::equal(item->batch.speed_index, expected->speed_index));
    EXPECT_TRUE(torch::equal(item->batch.relation, expected->relation));
  }
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<BatchPrefetcher::Item> end = prefetcher.Next();
    EXPECT_EQ(end.status().code(), absl::StatusCode::kOutOfRange) << end.status();
  }
}

TEST(BatchPrefetcherTest, ReadsTwoBatchesAheadOfTheConsumerAndNoMore) {
  CountingSource source(100);
  core::DeviceStager stager(c10::Device(c10::kCPU));
  BatchPrefetcher prefetcher(source, stager);
  ASSERT_TRUE(prefetcher.Next().ok());
  // Step 1 waits for the consumer, step 2 is staged and waits for that slot.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (source.next_ < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(source.next_, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(source.next_, 3) << "read further ahead than two batches";
  absl::StatusOr<BatchPrefetcher::Item> item = prefetcher.Next();
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(item->step, 1);
}

TEST(BatchPrefetcherTest, ABadBatchEndsTheInputAfterTheBatchesBeforeIt) {
  CountingSource source(10, /*bad=*/2);
  core::DeviceStager stager(c10::Device(c10::kCPU));
  BatchPrefetcher prefetcher(source, stager);
  ASSERT_TRUE(prefetcher.Next().ok());
  ASSERT_TRUE(prefetcher.Next().ok());
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<BatchPrefetcher::Item> bad = prefetcher.Next();
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr("batch 2: 4 clips but 3 clip_info"));
  }
  EXPECT_EQ(source.next_, 3) << "the thread goes on reading after an error";
}

TEST(BatchPrefetcherTest, DestructionCancelsASourceThatBlocks) {
  CountingSource source(10);
  source.hold_ = true;
  core::DeviceStager stager(c10::Device(c10::kCPU));
  {
    BatchPrefetcher prefetcher(source, stager);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }  // Would hang in join if the source were not cancelled.
  EXPECT_TRUE(source.cancelled_);
  EXPECT_EQ(source.next_, 0);
}

}  // namespace
}  // namespace tecl::worker
