// PrepareAgent::RunAssignment: a dataloader's run of one shard of a prepare job, its confinement
// (--write_root), its outcomes and progress, on a real synthetic data set.
#include "services/dataloader/service/prepare_agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "services/dataloader/synth/synth_dataset.h"
#include "tests/unit/dataloader/video/video_test_util.h"

namespace tecl::dataloader {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using video::testing::TempDir;

tecl::v1::Assignment Assignment(const std::string& source, const std::string& out, int rank,
                                int world_size) {
  tecl::v1::Assignment a;
  a.set_job_id("job-000007");
  a.set_attempt(1);
  a.set_rank(rank);
  a.set_world_size(world_size);
  tecl::v1::JobSpec& spec = *a.mutable_spec();
  spec.set_kind(tecl::v1::JOB_KIND_PREPARE);
  spec.mutable_dataset()->set_format(tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
  spec.mutable_dataset()->set_root(source);
  spec.mutable_dataset()->set_train_list("trainlist.txt");
  spec.mutable_prepare()->set_output_root(out);
  spec.mutable_prepare()->set_short_side(24);
  spec.mutable_prepare()->set_keyframe_interval(8);
  spec.mutable_prepare()->set_codec(tecl::v1::PrepareSpec::CODEC_H264);
  spec.mutable_prepare()->set_crf(20);
  spec.mutable_resources()->set_decode_threads(2);
  return a;
}

std::unique_ptr<PrepareAgent> Agent(std::vector<std::string> write_roots,
                                    metrics::Registry* registry = nullptr) {
  PrepareAgentOptions options;
  options.write_roots = std::move(write_roots);
  absl::StatusOr<std::unique_ptr<PrepareAgent>> agent =
      PrepareAgent::Create(std::move(options), nullptr, registry);
  EXPECT_TRUE(agent.ok()) << agent.status();
  return agent.ok() ? *std::move(agent) : nullptr;
}

class PrepareAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = dir_.File("raw");
    out_ = dir_.File("writable/prepared");
    synth::SynthOptions synth;
    synth.out = source_;
    synth.classes = 2;
    synth.videos_per_class = 3;
    synth.frames = 24;
    synth.width = 64;
    synth.height = 48;
    synth.gop = 12;
    synth.jobs = 2;
    ASSERT_TRUE(synth::WriteSynthDataset(synth).ok());
  }
  TempDir dir_;
  std::string source_;
  std::string out_;
  std::atomic<bool> no_stop_{false};
};

TEST_F(PrepareAgentTest, ALoaderWithoutAWriteRootWritesNothing) {
  const PrepareRunOutcome outcome =
      Agent({})->RunAssignment(Assignment(source_, out_, 0, 1), no_stop_);
  EXPECT_EQ(outcome.outcome, tecl::v1::OUTCOME_FATAL);
  EXPECT_THAT(outcome.reason, HasSubstr("--write_root"));
  EXPECT_FALSE(fs::exists(out_));
}

TEST_F(PrepareAgentTest, AnOutputOutsideTheWriteRootsIsRefused) {
  const PrepareRunOutcome outcome = Agent({dir_.File("elsewhere")})
                                        ->RunAssignment(Assignment(source_, out_, 0, 1), no_stop_);
  EXPECT_EQ(outcome.outcome, tecl::v1::OUTCOME_FATAL);
  EXPECT_THAT(outcome.reason, HasSubstr("prepare.output_root"));
  EXPECT_THAT(outcome.reason, HasSubstr(dir_.File("elsewhere")));
  EXPECT_FALSE(fs::exists(out_));
}

TEST_F(PrepareAgentTest, ShardsSucceedAndTheLastWritesTheDataSetFiles) {
  metrics::Registry registry;
  std::unique_ptr<PrepareAgent> agent = Agent({dir_.File("writable")}, &registry);
  std::vector<int64_t> steps;
  const PrepareRunOutcome first = agent->RunAssignment(
      Assignment(source_, out_, 0, 2), no_stop_,
      [&](const tecl::v1::JobProgress& p) { steps.push_back(p.step()); });
  ASSERT_EQ(first.outcome, tecl::v1::OUTCOME_SUCCEEDED) << first.reason;
  EXPECT_EQ(first.progress.prepare().videos_total(), 3);
  EXPECT_EQ(first.progress.prepare().videos_prepared(), 3);
  EXPECT_FALSE(first.progress.prepare().dataset_files_written());
  EXPECT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps.back(), 3);
  const PrepareRunOutcome second = agent->RunAssignment(Assignment(source_, out_, 1, 2), no_stop_);
  ASSERT_EQ(second.outcome, tecl::v1::OUTCOME_SUCCEEDED) << second.reason;
  EXPECT_TRUE(second.progress.prepare().dataset_files_written());
  EXPECT_THAT(second.reason, HasSubstr("lists and prepare.json written"));
  EXPECT_TRUE(fs::exists(fs::path(out_) / "prepare.json"));
  EXPECT_TRUE(fs::exists(fs::path(out_) / "trainlist.txt"));
  EXPECT_GT(second.progress.prepare().bytes_out(), 0);
  const std::string text = registry.Serialize();
  EXPECT_THAT(text, HasSubstr("tecl_dataloader_prepare_videos_total{outcome=\"prepared\"} 6"));
  // A run of the whole set again keeps everything.
  const PrepareRunOutcome again = agent->RunAssignment(Assignment(source_, out_, 0, 1), no_stop_);
  ASSERT_EQ(again.outcome, tecl::v1::OUTCOME_SUCCEEDED) << again.reason;
  EXPECT_EQ(again.progress.prepare().videos_kept(), 6);
  EXPECT_EQ(again.progress.prepare().videos_prepared(), 0);
}

TEST_F(PrepareAgentTest, AStoppedRunReportsStoppedAndABadDataSetIsFatal) {
  std::unique_ptr<PrepareAgent> agent = Agent({dir_.File("writable")});
  std::atomic<bool> stop{true};
  const PrepareRunOutcome stopped = agent->RunAssignment(Assignment(source_, out_, 0, 1), stop);
  EXPECT_EQ(stopped.outcome, tecl::v1::OUTCOME_STOPPED) << stopped.reason;
  const PrepareRunOutcome missing =
      agent->RunAssignment(Assignment(dir_.File("nothing-here"), out_, 0, 1), no_stop_);
  EXPECT_EQ(missing.outcome, tecl::v1::OUTCOME_FATAL) << missing.reason;
}

}  // namespace
}  // namespace tecl::dataloader
