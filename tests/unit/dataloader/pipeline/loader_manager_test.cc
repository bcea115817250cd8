// LoaderManager and request validation: streams over a manifest on disk with FakeClipSource
// (cursor, stride, end, EVAL), limits, data-set errors, DescribeDataset.
#include "services/dataloader/pipeline/loader_manager.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/dataloader/pipeline/fake_clip_source.h"

namespace tecl::dataloader {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using tecl::v1::ClipBatch;
using tecl::v1::StreamBatchesRequest;

MATCHER_P2(StatusIs, code, substring, "") {
  const absl::Status& status = arg;
  *result_listener << "status " << status;
  return status.code() == code &&
         std::string(status.message()).find(substring) != std::string::npos;
}

StreamBatchesRequest TrainRequest(const std::string& root) {
  StreamBatchesRequest request;
  request.set_job_id("job-1");
  request.set_rank(0);
  request.set_world_size(1);
  tecl::v1::JobSpec* spec = request.mutable_spec();
  spec->set_seed(3);
  spec->mutable_dataset()->set_format(tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
  spec->mutable_dataset()->set_root(root);
  spec->mutable_dataset()->set_split("train");
  spec->mutable_sampling()->set_clip_length(4);
  spec->mutable_sampling()->set_crop_size(16);
  for (int speed : {1, 2}) spec->mutable_sampling()->add_speeds(speed);
  spec->mutable_sampling()->set_groups_per_batch(2);
  spec->mutable_resources()->set_prefetch_batches(2);
  return request;
}

// Blocking Next() for tests.
BatchStream::Result NextBatch(BatchStream& stream) {
  absl::Notification done;
  BatchStream::Result result = absl::UnknownError("unset");
  stream.Next([&](BatchStream::Result r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

class LoaderManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/loader_manager_XXXXXX";
    dir_ = fs::weakly_canonical(mkdtemp(pattern.data())).string();
    root_ = dir_ + "/data";
    for (int c = 0; c < 2; ++c) {
      for (int v = 0; v < 6; ++v) {
        const std::string path = absl::StrCat(root_, "/class", c, "/v", v, ".mp4");
        fs::create_directories(fs::path(path).parent_path());
        std::ofstream(path) << "";
        FakeVideo video;
        video.frames = 60 + v;
        source_.Add(path, video);
      }
    }
    std::ofstream(root_ + "/testlist.txt") << "class0/v5.mp4\nclass1/v5.mp4\n";
  }
  void TearDown() override {
    manager_.reset();
    fs::remove_all(dir_);
  }

  LoaderManager& Manager(LoaderOptions options = {}, std::vector<std::string> roots = {}) {
    options.decode_threads = 2;
    manager_ = std::make_unique<LoaderManager>(options, *DataRoots::Create(roots), &source_, &registry_);
    return *manager_;
  }

  std::string dir_, root_;
  metrics::Registry registry_;
  FakeClipSource source_;
  std::unique_ptr<LoaderManager> manager_;
};

TEST_F(LoaderManagerTest, StreamsTheCursorsStepsWithStrideUntilMaxSteps) {
  LoaderManager& manager = Manager();
  StreamBatchesRequest request = TrainRequest(root_);
  request.set_start_step(4);
  request.set_step_stride(3);
  request.set_max_steps(3);
  absl::StatusOr<std::shared_ptr<BatchStream>> stream = manager.OpenStream(request);
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<int64_t> steps;
  for (int i = 0; i < 3; ++i) {
    BatchStream::Result batch = NextBatch(**stream);
    ASSERT_TRUE(batch.ok()) << batch.status();
    steps.push_back(batch->step());
    EXPECT_THAT(batch->clips().shape(), ElementsAre(8, 4, 16, 16, 3));
  }
  EXPECT_THAT(steps, ElementsAre(4, 7, 10));
  // 12 train videos (no test list given -> all train), 2G = 4 -> 3 steps per epoch.
  EXPECT_EQ(NextBatch(**stream).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(manager.open_streams(), 1);
  stream->reset();
  // A pool thread that delivered the last batch may hold the stream a moment longer.
  ASSERT_TRUE(manager.pool().WaitUntilIdle(absl::Seconds(30)));
  EXPECT_EQ(manager.open_streams(), 0);
}

// start + index * stride used to wrap into a negative step and read out of bounds.
TEST_F(LoaderManagerTest, OverflowingCursorsAreRefusedAndTheLastStepIsServedOnce) {
  LoaderManager& manager = Manager();
  StreamBatchesRequest request = TrainRequest(root_);
  request.set_start_step(std::numeric_limits<int64_t>::max());
  request.set_step_stride(2);
  request.set_max_steps(3);
  EXPECT_THAT(manager.OpenStream(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "start_step: 9223372036854775807 is out of range; use a value in [0, "
                       "1000000000]"));
  request.set_start_step(1);
  request.set_step_stride(std::numeric_limits<int64_t>::max() / 2 + 1);
  EXPECT_THAT(manager.OpenStream(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "step_stride: 4611686018427387904"));
  EXPECT_EQ(manager.open_streams(), 0);

  // At the limits: the last step is served, nothing past it.
  request.set_start_step(work_limits::kMaxSteps);
  request.set_step_stride(work_limits::kMaxStepStride);
  request.set_max_steps(work_limits::kMaxSteps);
  absl::StatusOr<std::shared_ptr<BatchStream>> stream = manager.OpenStream(request);
  ASSERT_TRUE(stream.ok()) << stream.status();
  BatchStream::Result batch = NextBatch(**stream);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->step(), work_limits::kMaxSteps);
  EXPECT_EQ(NextBatch(**stream).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(LoaderManagerTest, TotalStepsEndsTheStreamAndSameCursorGivesSameBatches) {
  LoaderManager& manager = Manager();
  StreamBatchesRequest request = TrainRequest(root_);
  request.mutable_spec()->mutable_schedule()->set_total_steps(5);
  request.set_start_step(3);
  auto first = manager.OpenStream(request);
  auto second = manager.OpenStream(request);
  ASSERT_TRUE(first.ok() && second.ok());
  for (int64_t step : {3, 4}) {
    BatchStream::Result a = NextBatch(**first);
    BatchStream::Result b = NextBatch(**second);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->step(), step);
    EXPECT_EQ(a->epoch(), step / 3);
    a->clear_build_seconds();
    b->clear_build_seconds();
    EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
  }
  EXPECT_EQ(NextBatch(**first).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(LoaderManagerTest, EvalStreamCarriesEveryVideoOfBothSplits) {
  LoaderManager& manager = Manager();
  StreamBatchesRequest request = TrainRequest(root_);
  request.mutable_spec()->mutable_dataset()->set_test_list("testlist.txt");
  request.mutable_spec()->mutable_eval()->set_clips_per_video(2);
  request.set_mode(tecl::v1::STREAM_MODE_EVAL);
  request.set_eval_videos_per_batch(5);
  auto stream = manager.OpenStream(request);
  ASSERT_TRUE(stream.ok());
  int videos = 0, test = 0;
  bool last = false;
  while (true) {
    BatchStream::Result batch = NextBatch(**stream);
    if (batch.status().code() == absl::StatusCode::kOutOfRange) break;
    ASSERT_TRUE(batch.ok()) << batch.status();
    EXPECT_FALSE(last) << "a batch after the last one";
    last = batch->last();
    for (const tecl::v1::EvalVideo& video : batch->eval_videos()) {
      ++videos;
      test += video.split() == "test";
      EXPECT_EQ(video.num_clips(), 2);
    }
  }
  EXPECT_TRUE(last);
  EXPECT_EQ(videos, 12);
  EXPECT_EQ(test, 2);
}

TEST_F(LoaderManagerTest, InvalidRequestsAndTooManyStreams) {
  LoaderOptions options;
  options.max_streams = 1;
  LoaderManager& manager = Manager(options);
  StreamBatchesRequest request = TrainRequest(root_);
  request.set_rank(2);
  request.set_world_size(2);
  EXPECT_THAT(manager.OpenStream(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "rank: 2 is not in [0, world_size 2)"));
  EXPECT_EQ(manager.open_streams(), 0);

  request = TrainRequest(root_);
  auto first = manager.OpenStream(request);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(manager.OpenStream(request).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "--max_streams"));
  first->reset();
  ASSERT_TRUE(manager.pool().WaitUntilIdle(absl::Seconds(30)));
  EXPECT_TRUE(manager.OpenStream(request).ok());
}

TEST_F(LoaderManagerTest, DataSetErrorsComeOutOfTheStream) {
  {
    LoaderManager& manager = Manager({}, {dir_ + "/elsewhere"});
    auto stream = manager.OpenStream(TrainRequest(root_));
    ASSERT_TRUE(stream.ok());
    EXPECT_THAT(NextBatch(**stream).status(),
                StatusIs(absl::StatusCode::kPermissionDenied, "dataset.root \"" + root_ + "\" is outside"));
  }  // A stream never outlives its manager (the server ends every call before the manager goes).

  LoaderManager& open = Manager();
  StreamBatchesRequest request = TrainRequest(root_);
  request.mutable_spec()->mutable_sampling()->set_groups_per_batch(7);  // 14 videos > 12.
  auto small = open.OpenStream(request);
  ASSERT_TRUE(small.ok());
  EXPECT_THAT(NextBatch(**small).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "fewer than the 14 videos one batch needs"));
}

TEST_F(LoaderManagerTest, DescribeDatasetAndTheDefaultDataset) {
  LoaderOptions options;
  options.default_dataset.set_format(tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
  options.default_dataset.set_root(root_);
  options.default_dataset.set_test_list("testlist.txt");
  LoaderManager& manager = Manager(options);
  absl::Notification done;
  absl::StatusOr<tecl::v1::DatasetInfo> info;
  manager.DescribeDataset(tecl::v1::DatasetSpec(), [&](absl::StatusOr<tecl::v1::DatasetInfo> i) {
    info = std::move(i);
    done.Notify();
  });
  done.WaitForNotification();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->num_videos(), 12);
  EXPECT_EQ(info->num_train(), 10);
  EXPECT_EQ(info->num_test(), 2);
  EXPECT_THAT(info->classes(), ElementsAre("class0", "class1"));

  StreamBatchesRequest request = TrainRequest(root_);
  request.mutable_spec()->clear_dataset();
  auto stream = manager.OpenStream(request);
  ASSERT_TRUE(stream.ok());
  EXPECT_TRUE(NextBatch(**stream).ok());
}

// ---- Request validation ----------------------------------------------------------------------

TEST(StreamConfigTest, ValidRequestAndDefaults) {
  StreamBatchesRequest request = TrainRequest("/data");
  request.mutable_spec()->mutable_resources()->set_prefetch_batches(0);
  absl::StatusOr<StreamConfig> config = StreamConfigFromRequest(request);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mode, tecl::v1::STREAM_MODE_TRAIN);
  EXPECT_EQ(config->stride, 1);
  EXPECT_EQ(config->prefetch, 2);
  EXPECT_EQ(config->eval.clips_per_video, 10);
  EXPECT_EQ(config->eval.videos_per_batch, 8);
  EXPECT_DOUBLE_EQ(config->train.augment.crop_area_min, 0.2);  // Absent augment: METHOD.md.
  EXPECT_FALSE(config->train.same_frames);
  EXPECT_EQ(config->train.clips_per_batch(), 8);
}

TEST(StreamConfigTest, EveryBadFieldIsNamedWithItsRange) {
  struct Case {
    std::function<void(StreamBatchesRequest*)> mutate;
    std::string message;
  };
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::vector<Case> cases = {
      {[](StreamBatchesRequest* r) { r->set_world_size(0); },
       "world_size: 0 is out of range; use a value in [1, 4096]"},
      {[](StreamBatchesRequest* r) { r->set_world_size(std::numeric_limits<int32_t>::max()); },
       "world_size: 2147483647 is out of range; use a value in [1, 4096]"},
      {[](StreamBatchesRequest* r) { r->set_rank(-1); }, "rank: -1 is not in [0, world_size 1)"},
      {[](StreamBatchesRequest* r) { r->set_start_step(-5); },
       "start_step: -5 is out of range; use a value in [0, 1000000000]"},
      {[](StreamBatchesRequest* r) { r->set_start_step(kMax); },
       "start_step: 9223372036854775807 is out of range; use a value in [0, 1000000000]"},
      {[](StreamBatchesRequest* r) { r->set_step_stride(-1); },
       "step_stride: -1 is out of range; use a value in [0, 1024] (0 or 1 = every step)"},
      {[](StreamBatchesRequest* r) { r->set_step_stride(kMax); },
       "step_stride: 9223372036854775807 is out of range; use a value in [0, 1024]"},
      {[](StreamBatchesRequest* r) { r->set_max_steps(-1); },
       "max_steps: -1 is out of range; use a value in [0, 1000000000] (0 = until the end)"},
      {[](StreamBatchesRequest* r) { r->set_max_steps(kMax); },
       "max_steps: 9223372036854775807 is out of range"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_schedule()->set_total_steps(-1); },
       "spec.schedule.total_steps: -1 is out of range; use a value in [0, 1000000000]"},
      {[](StreamBatchesRequest* r) { r->set_eval_videos_per_batch(-3); },
       "eval_videos_per_batch: -3 is out of range; use a value in [0, 1024] (0 = 8)"},
      {[](StreamBatchesRequest* r) { r->set_job_id(std::string(200, 'j')); },
       "job_id: 200 bytes; use at most 128"},
      {[](StreamBatchesRequest* r) { r->set_mode(static_cast<tecl::v1::StreamMode>(9)); },
       "mode: unknown value 9"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_sampling()->set_clip_length(0); },
       "spec.sampling.clip_length: 0 is out of range; use a value in [1, 256]"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_sampling()->set_crop_size(8); },
       "spec.sampling.crop_size: 8 is out of range; use a value in [16, 1024]"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_sampling()->clear_speeds(); },
       "spec.sampling.speeds: empty"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_sampling()->add_speeds(2); },
       "spec.sampling.speeds: [1, 2, 2] must be strictly ascending"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_sampling()->set_speeds(0, -4); },
       "spec.sampling.speeds[0]: -4 must be at least 1"},
      {[](StreamBatchesRequest* r) {
         r->mutable_spec()->mutable_sampling()->set_speeds(1, std::numeric_limits<int32_t>::max());
       },
       "spec.sampling: clip_length 4 at speed 2147483647 spans 6442450942 source frames"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_sampling()->set_groups_per_batch(0); },
       "spec.sampling.groups_per_batch: 0 is out of range; use a value in [1, 4096]"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_augment()->set_hue(0.1); },
       "spec.augment.crop_area_min: 0 is out of range"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_resources()->set_prefetch_batches(100); },
       "spec.resources.prefetch_batches: 100 is out of range; use a value in [1, 64]"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_dataset()->set_fps(-1); },
       "spec.dataset.fps: -1 is out of range; use a value in [0, 240]"},
      {[](StreamBatchesRequest* r) { r->mutable_spec()->mutable_dataset()->set_root(std::string(5000, 'r')); },
       "spec.dataset.root: a path of 5000 bytes is longer than 4096"},
      {[](StreamBatchesRequest* r) {
         r->set_mode(tecl::v1::STREAM_MODE_EVAL);
         r->mutable_spec()->mutable_eval()->set_clips_per_video(500);
       },
       "spec.eval.clips_per_video: 500 is out of range; use a value in [1, 100]"},
      {[](StreamBatchesRequest* r) {
         r->mutable_spec()->mutable_method()->set_instance_positive(
             static_cast<tecl::v1::InstancePositive>(7));
       },
       "spec.method.instance_positive: unknown value 7"},
      {[](StreamBatchesRequest* r) {
         r->mutable_spec()->mutable_sampling()->set_crop_size(1024);
         r->mutable_spec()->mutable_sampling()->set_clip_length(64);
       },
       "spec.sampling.groups_per_batch: a batch of 4 videos x 2 clips is 1610612736 bytes, more "
       "than 251658240"},
      {[](StreamBatchesRequest* r) {
         r->set_mode(tecl::v1::STREAM_MODE_EVAL);
         r->set_eval_videos_per_batch(1024);
         r->mutable_spec()->mutable_sampling()->set_crop_size(512);
       },
       "spec.eval.clips_per_video: a message of 1024 videos x 10 clips is"},
  };
  for (const Case& c : cases) {
    StreamBatchesRequest request = TrainRequest("/data");
    c.mutate(&request);
    EXPECT_THAT(StreamConfigFromRequest(request).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, c.message));
  }
}

TEST(StreamConfigTest, StepsAtTheLimitsAreServedWithoutOverflow) {
  StreamBatchesRequest request = TrainRequest("/data");
  request.set_start_step(work_limits::kMaxSteps);
  request.set_step_stride(work_limits::kMaxStepStride);
  request.set_max_steps(work_limits::kMaxSteps);
  absl::StatusOr<StreamConfig> config = StreamConfigFromRequest(request);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->total_steps, work_limits::kMaxSteps);  // 0 = unbounded = the last step.
  EXPECT_EQ(StepsBelow(config->start_step, config->stride, work_limits::kMaxSteps + 1), 1);
  EXPECT_EQ(StepsBelow(0, 1, 10), 10);
  EXPECT_EQ(StepsBelow(3, 4, 10), 2);  // 3, 7.
  EXPECT_EQ(StepsBelow(10, 4, 10), 0);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(StepsBelow(0, kMax, kMax), 1);
  EXPECT_EQ(StepsBelow(kMax - 1, 2, kMax), 1);
}

}  // namespace
}  // namespace tecl::dataloader
