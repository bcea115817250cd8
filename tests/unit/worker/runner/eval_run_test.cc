// RunEvalJob inside one process: an in-memory eval stream in the dataloader's wire layout (uint8
// THWC clips, one EvalVideo per video) and a fake dataloader that answers DescribeDataset; a fake
// RunContext records every progress report.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "services/client/loader_client.h"
#include "services/common/metrics.h"
#include "services/worker/runner/batch_source.h"
#include "services/worker/runner/job_runner.h"
#include "services/worker/runner/worker_agent.h"

namespace tecl::worker {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr int kVideos = 12;  // Six per split.
constexpr int kVideosPerBatch = 4;
constexpr int kClipsPerVideo = 2;
constexpr int kFrames = 4;
constexpr int kSize = 16;

tecl::v1::JobSpec EvalSpec() {
  tecl::v1::JobSpec spec;
  spec.set_kind(tecl::v1::JOB_KIND_EVAL);
  spec.set_seed(3);
  spec.mutable_dataset()->set_root("/data/motion");
  spec.mutable_model()->set_backbone("tiny3d");
  spec.mutable_sampling()->set_clip_length(kFrames);
  spec.mutable_sampling()->set_crop_size(kSize);
  spec.mutable_schedule()->set_total_steps(500);  // Not the evaluation's total.
  spec.mutable_resources()->set_trainers(1);
  spec.mutable_resources()->set_device(tecl::v1::DEVICE_CPU);
  spec.mutable_resources()->set_threads_per_trainer(1);
  auto* eval = spec.mutable_eval();
  eval->set_random_init(true);
  eval->set_clips_per_video(kClipsPerVideo);
  eval->add_recall_at(1);
  eval->set_probe_epochs(2);
  eval->set_probe_lr(0.1);
  return spec;
}

// The eval stream of kVideos videos: video v is label v % 2, train for v < 6, test after.
class EvalBatchSource final : public BatchSource {
 public:
  absl::StatusOr<tecl::v1::ClipBatch> Next() override {
    if (next_video_ >= kVideos) return absl::OutOfRangeError("past the last video");
    tecl::v1::ClipBatch batch;
    batch.set_step(next_video_ / kVideosPerBatch);
    const int videos = std::min(kVideosPerBatch, kVideos - next_video_);
    const int clips = videos * kClipsPerVideo;
    for (int d : {clips, kFrames, kSize, kSize, 3}) batch.mutable_clips()->add_shape(d);
    std::string data(static_cast<size_t>(clips) * kFrames * kSize * kSize * 3, '\0');
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = static_cast<char>((i * 31 + next_video_) % 251);
    }
    batch.mutable_clips()->set_data(data);
    for (int i = 0; i < videos; ++i, ++next_video_) {
      tecl::v1::EvalVideo* video = batch.add_eval_videos();
      video->set_manifest_index(next_video_);
      video->set_label(next_video_ % 2);
      video->set_split(next_video_ < kVideos / 2 ? "train" : "test");
      video->set_num_clips(kClipsPerVideo);
    }
    return batch;
  }
  void Cancel() override {}

 private:
  int next_video_ = 0;
};

class DescribingLoader final : public LoaderClient {
 public:
  std::unique_ptr<BatchReader> StreamBatches(const tecl::v1::StreamBatchesRequest&) override {
    return nullptr;  // The run reads through the BatchSource.
  }
  absl::StatusOr<tecl::v1::DatasetInfo> DescribeDataset(
      const tecl::v1::DescribeDatasetRequest& request) override {
    EXPECT_EQ(request.dataset().root(), "/data/motion");
    tecl::v1::DatasetInfo info;
    info.set_num_videos(kVideos);
    info.set_num_train(kVideos / 2);
    info.set_num_test(kVideos / 2);
    return info;
  }
};

class RecordingContext final : public RunContext {
 public:
  DataloaderList Dataloaders() const override { return {0, {"loader-0"}}; }
  bool StopRequested() const override { return false; }
  std::string StopReason() const override { return ""; }
  void ReportProgress(tecl::v1::TrainerStatus, const tecl::v1::JobProgress& progress, double,
                      double, double) override {
    std::lock_guard<std::mutex> lock(mu_);
    reports_.push_back(progress);
  }
  absl::Status RegisterCheckpoint(const tecl::v1::Checkpoint&) override {
    return absl::OkStatus();
  }
  absl::Status RejectCheckpoint(const tecl::v1::Checkpoint&, const std::string&) override {
    return absl::OkStatus();
  }
  std::string session() const override { return "session"; }

  std::vector<int64_t> Totals() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> totals;
    for (const auto& p : reports_) totals.push_back(p.total_steps());
    return totals;
  }
  std::vector<int64_t> Steps() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> steps;
    for (const auto& p : reports_) steps.push_back(p.step());
    return steps;
  }

 private:
  mutable std::mutex mu_;
  std::vector<tecl::v1::JobProgress> reports_;
};

JobOutcome RunEval(RecordingContext* context, LoaderClientFactory loaders,
                   metrics::Registry* registry) {
  tecl::v1::Assignment assignment;
  assignment.set_job_id("eval-1");
  assignment.set_attempt(1);
  assignment.set_rank(0);
  assignment.set_world_size(1);
  *assignment.mutable_spec() = EvalSpec();
  assignment.add_dataloader_addresses("loader-0");
  JobRunnerOptions options;
  options.registry = registry;
  options.batch_sources = [](const BatchStreamOptions&, const std::vector<std::string>&) {
    return std::make_unique<EvalBatchSource>();
  };
  options.loader_clients = std::move(loaders);
  return RunEvalJob(assignment, context, options);
}

TEST(EvalRunTest, EveryProgressReportCarriesTheDataSetsVideoCount) {
  metrics::Registry registry;
  RecordingContext context;
  const JobOutcome outcome = RunEval(
      &context, [](const std::string&) { return std::make_shared<DescribingLoader>(); },
      &registry);
  ASSERT_EQ(outcome.outcome, tecl::v1::OUTCOME_SUCCEEDED) << outcome.reason;
  EXPECT_EQ(outcome.eval_result.num_gallery(), kVideos / 2);
  EXPECT_EQ(outcome.eval_result.num_queries(), kVideos / 2);
  // The first report (STARTING) already has the total; then one report per batch.
  EXPECT_THAT(context.Totals(), Each(Eq(kVideos)));
  EXPECT_THAT(context.Steps(), ElementsAre(0, 4, 8, 12));
}

TEST(EvalRunTest, AnUnknownCountStaysZeroAndIsNeverTheSchedule) {
  metrics::Registry registry;
  RecordingContext context;
  const JobOutcome outcome =
      RunEval(&context, [](const std::string&) { return nullptr; }, &registry);
  ASSERT_EQ(outcome.outcome, tecl::v1::OUTCOME_SUCCEEDED) << outcome.reason;
  ASSERT_THAT(context.Totals(), Not(IsEmpty()));
  EXPECT_THAT(context.Totals(), Each(Eq(0)));
}

}  // namespace
}  // namespace tecl::worker
