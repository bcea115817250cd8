// PrepareDataset / tecl-prepare on a real synthetic data set: the prepared copy gives the sampler
// the same batches (videos, labels, temporal draws and frame indices) as the source; a run killed
// with SIGKILL is completed by running it again, which keeps every finished video; a damaged video
// is reported, left out of the lists and not retried; the output may not overlap the source.
#include "services/dataloader/prepare/prepare_dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "services/dataloader/manifest/manifest.h"
#include "services/dataloader/pipeline/batch_plan.h"
#include "services/dataloader/synth/synth_dataset.h"
#include "services/dataloader/video/video_reader.h"
#include "tests/unit/dataloader/video/video_test_util.h"

namespace tecl::prepare {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using video::testing::TempDir;

// 3 classes x 6 videos of 40 frames 64x48, UCF101 layout (classInd.txt, trainlist/testlist).
synth::SynthOptions Synth(const std::string& out) {
  synth::SynthOptions options;
  options.out = out;
  options.classes = 3;
  options.videos_per_class = 6;
  options.frames = 40;
  options.width = 64;
  options.height = 48;
  options.gop = 20;
  options.jobs = 2;
  return options;
}

tecl::v1::DatasetSpec Spec(const std::string& root) {
  tecl::v1::DatasetSpec spec;
  spec.set_format(tecl::v1::DatasetSpec::FORMAT_UCF101);
  spec.set_root(root);
  spec.set_class_index("classInd.txt");
  spec.set_train_list("trainlist.txt");
  spec.set_test_list("testlist.txt");
  return spec;
}

PrepareOptions Options(const std::string& source, const std::string& out) {
  PrepareOptions options;
  options.dataset = Spec(source);
  options.output_root = out;
  options.transcode.short_side = 24;  // 64x48 -> 32x24: the aspect kept exactly, so the crops too.
  options.transcode.keyframe_interval = 8;
  options.threads = 2;
  return options;
}

std::string Relative(const std::string& path, const std::string& root) {
  return fs::path(path).lexically_relative(root).string();
}

TEST(PrepareDatasetTest, ThePreparedCopyGivesTheSamplerTheSameBatches) {
  TempDir dir;
  const std::string source = dir.File("source"), out = dir.File("prepared");
  ASSERT_TRUE(synth::WriteSynthDataset(Synth(source)).ok());
  absl::StatusOr<PrepareSummary> summary = PrepareDataset(Options(source, out), {});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->progress.total, 18);
  EXPECT_EQ(summary->progress.prepared, 18);
  EXPECT_EQ(summary->progress.failed, 0);
  EXPECT_TRUE(summary->dataset_files_written);
  EXPECT_TRUE(fs::exists(fs::path(out) / "prepare.json"));

  // The pretraining spec changes only its root.
  absl::StatusOr<dataloader::Manifest> a = dataloader::LoadManifest(Spec(source), {});
  absl::StatusOr<dataloader::Manifest> b = dataloader::LoadManifest(Spec(out), {});
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ(a->classes, b->classes);
  ASSERT_EQ(a->videos.size(), b->videos.size());
  for (size_t i = 0; i < a->videos.size(); ++i) {
    EXPECT_EQ(Relative(a->videos[i].path, a->root), Relative(b->videos[i].path, b->root));
    EXPECT_EQ(a->videos[i].label, b->videos[i].label);
    EXPECT_EQ(a->videos[i].split, b->videos[i].split);
  }

  // Every group plan of the first steps: the same videos, relations, speeds, directions, starts
  // and frame indices, and the same crops.
  dataloader::TrainSettings settings;
  settings.seed = 11;
  settings.temporal.clip_length = 4;
  settings.temporal.speeds = {1, 2, 4, 8};
  settings.crop_size = 16;
  settings.groups_per_batch = 2;
  auto sa = dataloader::TrainSampler::Create(std::make_shared<const dataloader::Manifest>(*a),
                                             "train", settings);
  auto sb = dataloader::TrainSampler::Create(std::make_shared<const dataloader::Manifest>(*b),
                                             "train", settings);
  ASSERT_TRUE(sa.ok() && sb.ok());
  video::VideoIndexCache cache;
  int compared = 0;
  for (int64_t step = 0; step < 6; ++step) {
    const dataloader::StepPosition position = (*sa)->schedule().Locate(step);
    for (int group = 0; group < settings.groups_per_batch; ++group) {
      dataloader::VideoChoice choice[2][2];  // [copy][video of the group]
      for (int v = 0; v < 2; ++v) {
        const int64_t index = (*sa)->Candidate(position, 2 * group + v, 0);
        ASSERT_EQ(index, (*sb)->Candidate(position, 2 * group + v, 0));
        for (int c = 0; c < 2; ++c) {
          const dataloader::Manifest& m = c == 0 ? *a : *b;
          absl::StatusOr<video::VideoInfo> info = video::ProbeVideo(m.videos[index].path, {}, &cache);
          ASSERT_TRUE(info.ok()) << info.status();
          choice[c][v] = {index, *info};
        }
        EXPECT_EQ(choice[0][v].info.num_frames, choice[1][v].info.num_frames);
      }
      absl::StatusOr<dataloader::GroupPlan> pa =
          (*sa)->PlanGroup(position, group, choice[0][0], choice[0][1]);
      absl::StatusOr<dataloader::GroupPlan> pb =
          (*sb)->PlanGroup(position, group, choice[1][0], choice[1][1]);
      ASSERT_TRUE(pa.ok() && pb.ok());
      EXPECT_EQ(pa->relation, pb->relation);
      for (int v = 0; v < 2; ++v) {
        ASSERT_EQ(pa->videos[v].clips.size(), pb->videos[v].clips.size());
        for (size_t k = 0; k < pa->videos[v].clips.size(); ++k) {
          const dataloader::ClipPlan& x = pa->videos[v].clips[k];
          const dataloader::ClipPlan& y = pb->videos[v].clips[k];
          EXPECT_EQ(x.role, y.role);
          EXPECT_EQ(x.speed_index, y.speed_index);
          EXPECT_EQ(x.reversed, y.reversed);
          EXPECT_EQ(x.start_frame, y.start_frame);
          EXPECT_EQ(x.request.frames, y.request.frames);
          EXPECT_EQ(x.request.crop.x, y.request.crop.x);
          EXPECT_EQ(x.request.crop.width, y.request.crop.width);
          EXPECT_EQ(x.request.flip, y.request.flip);
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, 6 * 2 * 2 * 2);

  // Run again: everything is kept, nothing transcoded.
  summary = PrepareDataset(Options(source, out), {});
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->progress.kept, 18);
  EXPECT_EQ(summary->progress.prepared, 0);
}

TEST(PrepareDatasetTest, ADamagedOrMissingVideoIsReportedLeftOutOfTheListsAndNotRetried) {
  TempDir dir;
  const std::string source = dir.File("source"), out = dir.File("prepared");
  const synth::SynthOptions synth = Synth(source);
  ASSERT_TRUE(synth::WriteSynthDataset(synth).ok());
  const std::string damaged = source + "/" + synth::SynthVideoPath(synth, 1, 2);
  const auto size = fs::file_size(damaged);
  fs::resize_file(damaged, size / 3);
  // And one the lists name that does not exist.
  const std::string missing = source + "/" + synth::SynthVideoPath(synth, 2, 0);
  fs::remove(missing);
  absl::StatusOr<PrepareSummary> summary = PrepareDataset(Options(source, out), {});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->progress.prepared, 16);
  EXPECT_EQ(summary->progress.failed, 2);
  ASSERT_EQ(summary->failures.size(), 2u);
  std::vector<std::string> failed = {summary->failures[0].first, summary->failures[1].first};
  EXPECT_THAT(failed, ::testing::UnorderedElementsAre(damaged, missing));
  ASSERT_TRUE(summary->dataset_files_written) << "a missing source must not block the lists";
  absl::StatusOr<dataloader::Manifest> copy = dataloader::LoadManifest(Spec(out), {});
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->videos.size(), 16u);
  for (const dataloader::VideoEntry& video : copy->videos) {
    EXPECT_TRUE(fs::exists(video.path)) << video.path;
  }
  std::ifstream json(fs::path(out) / "prepare.json");
  const std::string text((std::istreambuf_iterator<char>(json)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("\"videos_failed\": 2"));

  summary = PrepareDataset(Options(source, out), {});
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->progress.kept, 16);
  EXPECT_EQ(summary->progress.failed, 2) << "a failed video is remembered, not retried";
  EXPECT_EQ(summary->progress.prepared, 0);
}

TEST(PrepareDatasetTest, ShardsEachDoTheirPartAndTheLastWritesTheLists) {
  TempDir dir;
  const std::string source = dir.File("source"), out = dir.File("prepared");
  ASSERT_TRUE(synth::WriteSynthDataset(Synth(source)).ok());
  PrepareOptions options = Options(source, out);
  options.num_shards = 2;
  options.shard = 1;
  absl::StatusOr<PrepareSummary> one = PrepareDataset(options, {});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->progress.prepared, 9);
  EXPECT_FALSE(one->dataset_files_written);
  EXPECT_FALSE(fs::exists(fs::path(out) / "trainlist.txt"));
  options.shard = 0;
  absl::StatusOr<PrepareSummary> zero = PrepareDataset(options, {});
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->progress.prepared, 9);
  EXPECT_TRUE(zero->dataset_files_written);
  EXPECT_TRUE(fs::exists(fs::path(out) / "trainlist.txt"));
}

// A CSV data set: the manifest is rewritten with the copies' paths (one quoted), the rest of each
// record kept.
TEST(PrepareDatasetTest, ACsvManifestIsRewrittenForTheCopy) {
  TempDir dir;
  const std::string source = dir.File("source"), out = dir.File("prepared");
  const synth::SynthOptions synth = Synth(source);
  ASSERT_TRUE(synth::WriteSynthDataset(synth).ok());
  fs::rename(source + "/" + synth::SynthVideoPath(synth, 0, 1), source + "/a,b.mp4");
  {
    std::ofstream csv(source + "/videos.csv");
    csv << "split,path,label\n"
        << "train," << synth::SynthVideoPath(synth, 0, 0) << ",bounce\n"
        << "test,\"a,b.mp4\",bounce\n"
        << "train," << synth::SynthVideoPath(synth, 2, 3) << ",explode\n";
  }
  PrepareOptions options = Options(source, out);
  options.dataset.Clear();
  options.dataset.set_format(tecl::v1::DatasetSpec::FORMAT_CSV);
  options.dataset.set_root(source);
  options.dataset.set_manifest("videos.csv");
  absl::StatusOr<PrepareSummary> summary = PrepareDataset(options, {});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->progress.prepared, 3);
  ASSERT_TRUE(summary->dataset_files_written);
  tecl::v1::DatasetSpec copy_spec = options.dataset;
  copy_spec.set_root(out);
  absl::StatusOr<dataloader::Manifest> a = dataloader::LoadManifest(options.dataset, {});
  absl::StatusOr<dataloader::Manifest> b = dataloader::LoadManifest(copy_spec, {});
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ(a->classes, b->classes);
  ASSERT_EQ(b->videos.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(Relative(a->videos[i].path, a->root), Relative(b->videos[i].path, b->root));
    EXPECT_EQ(a->videos[i].label, b->videos[i].label);
    EXPECT_EQ(a->videos[i].split, b->videos[i].split);
    EXPECT_TRUE(fs::exists(b->videos[i].path)) << b->videos[i].path;
  }
}

TEST(PrepareDatasetTest, TheOutputMayNotOverlapTheSource) {
  TempDir dir;
  const std::string source = dir.File("source");
  ASSERT_TRUE(synth::WriteSynthDataset(Synth(source)).ok());
  for (const std::string& out : {source, source + "/prepared", dir.path()}) {
    absl::StatusOr<PrepareSummary> summary = PrepareDataset(Options(source, out), {});
    EXPECT_EQ(summary.status().code(), absl::StatusCode::kFailedPrecondition) << out;
    EXPECT_THAT(std::string(summary.status().message()), HasSubstr("overlap"));
  }
  PrepareOptions bad = Options(source, dir.File("x"));
  bad.transcode.short_side = 7;
  EXPECT_THAT(std::string(PrepareDataset(bad, {}).status().message()),
              HasSubstr("prepare.short_side"));
}

// tecl-prepare killed with SIGKILL after some videos: running it again completes the copy, keeps
// every video the first run finished (same bytes, same mtime) and leaves no temporary file.
TEST(PrepareDatasetTest, AKilledRunIsCompletedByRunningItAgain) {
  const char* bin_dir = std::getenv("TECL_BIN_DIR");
  ASSERT_NE(bin_dir, nullptr) << "TECL_BIN_DIR names the folder of tecl-prepare";
  TempDir dir;
  const std::string source = dir.File("source"), out = dir.File("prepared");
  synth::SynthOptions synth = Synth(source);
  synth.videos_per_class = 12;
  synth.frames = 120;
  synth.width = 160;
  synth.height = 120;
  ASSERT_TRUE(synth::WriteSynthDataset(synth).ok());
  const std::string binary = std::string(bin_dir) + "/tecl-prepare";
  const std::vector<std::string> args = {
      binary, "--root=" + source, "--format=ucf101", "--class_index=classInd.txt",
      "--train_list=trainlist.txt", "--test_list=testlist.txt", "--out=" + out,
      "--short_side=24", "--keyframe_interval=8", "--threads=1"};
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    freopen("/dev/null", "w", stderr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  // Kill it once a few videos are finished.
  const auto records = [&] {
    int n = 0;
    std::error_code error;
    for (const auto& entry : fs::recursive_directory_iterator(out, error)) {
      if (entry.path().extension() == ".prep") ++n;
    }
    return n;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (records() < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "tecl-prepare finished before it was killed";
  ASSERT_LT(records(), 36) << "tecl-prepare finished before it was killed";
  EXPECT_FALSE(fs::exists(fs::path(out) / "prepare.json"));

  // What the first run finished, with its modification times.
  std::map<std::string, fs::file_time_type> finished;
  for (const auto& entry : fs::recursive_directory_iterator(out)) {
    if (entry.path().extension() == ".prep") {
      const std::string video = entry.path().string().substr(0, entry.path().string().size() - 5);
      finished[video] = fs::last_write_time(video);
    }
  }
  ASSERT_GE(finished.size(), 4u);

  PrepareOptions options = Options(source, out);
  absl::StatusOr<PrepareSummary> summary = PrepareDataset(options, {});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->progress.total, 36);
  EXPECT_EQ(summary->progress.kept, static_cast<int64_t>(finished.size()));
  EXPECT_EQ(summary->progress.prepared, 36 - static_cast<int64_t>(finished.size()));
  EXPECT_EQ(summary->progress.failed, 0);
  EXPECT_TRUE(summary->dataset_files_written);
  for (const auto& [video, time] : finished) {
    EXPECT_EQ(fs::last_write_time(video), time) << video << " was transcoded twice";
  }
  for (const auto& entry : fs::recursive_directory_iterator(out)) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

// A cancelled run stops before its next video and says so; what it finished counts as done for
// the next run.
TEST(PrepareDatasetTest, ACancelledRunStopsBeforeItsNextVideo) {
  TempDir dir;
  const std::string source = dir.File("source"), out = dir.File("prepared");
  ASSERT_TRUE(synth::WriteSynthDataset(Synth(source)).ok());
  PrepareOptions options = Options(source, out);
  options.threads = 1;
  int64_t finished = 0;
  options.on_progress = [&](const PrepareProgress& p) { finished = p.prepared; };
  options.cancelled = [&] { return finished >= 2; };
  absl::StatusOr<PrepareSummary> cancelled = PrepareDataset(options, {});
  ASSERT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled) << cancelled.status();
  EXPECT_EQ(finished, 2);
  EXPECT_FALSE(fs::exists(fs::path(out) / "prepare.json"));
  options.cancelled = nullptr;
  options.on_progress = nullptr;
  absl::StatusOr<PrepareSummary> resumed = PrepareDataset(options, {});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->progress.kept, 2);
  EXPECT_EQ(resumed->progress.prepared, 16);
  EXPECT_TRUE(resumed->dataset_files_written);
}

// A volume short of free space ends the run with RESOURCE_EXHAUSTED naming the field, before any
// video is written.
TEST(PrepareDatasetTest, AVolumeShortOfSpaceEndsTheRunNamingIt) {
  TempDir dir;
  const std::string source = dir.File("source"), out = dir.File("prepared");
  ASSERT_TRUE(synth::WriteSynthDataset(Synth(source)).ok());
  PrepareOptions options = Options(source, out);
  options.min_free_fraction = 0.999999;  // No real volume keeps this much free.
  absl::StatusOr<PrepareSummary> summary = PrepareDataset(options, {});
  ASSERT_EQ(summary.status().code(), absl::StatusCode::kResourceExhausted) << summary.status();
  EXPECT_THAT(std::string(summary.status().message()), HasSubstr("prepare.output_root"));
  EXPECT_THAT(std::string(summary.status().message()), HasSubstr("free"));
  int outputs = 0;
  for (const auto& entry : fs::recursive_directory_iterator(out)) {
    outputs += entry.path().extension() == ".mp4";
  }
  EXPECT_EQ(outputs, 0);
  options.min_free_fraction = 1.0;
  EXPECT_EQ(PrepareDataset(options, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tecl::prepare
