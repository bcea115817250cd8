// BatchBuilder with FakeClipSource: batch layout, frames of every clip (speed, reversal, shared
// transformation within a group), determinism, sharding, bad-video replacement, EVAL batches.
#include "services/dataloader/pipeline/batch_builder.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/metrics.h"
#include "services/dataloader/pipeline/fake_clip_source.h"

namespace tecl::dataloader {
namespace {

using ::testing::HasSubstr;
using tecl::v1::ClipBatch;
using tecl::v1::ClipInfo;

std::string VideoPath(int i) { return absl::StrCat("/fake/v", i, ".mp4"); }

std::shared_ptr<const Manifest> FakeManifest(int videos, int test_videos = 0) {
  auto manifest = std::make_shared<Manifest>();
  manifest->root = "/fake";
  manifest->classes = {"c0", "c1", "c2"};
  for (int i = 0; i < videos + test_videos; ++i) {
    manifest->videos.push_back({VideoPath(i), i % 3, i < videos ? Split::kTrain : Split::kTest});
  }
  return manifest;
}

TrainSettings Settings(int groups = 2, int length = 8, int size = 16) {
  TrainSettings settings;
  settings.seed = 42;
  settings.temporal.clip_length = length;
  settings.temporal.speeds = {1, 2, 4, 8};
  settings.crop_size = size;
  settings.groups_per_batch = groups;
  settings.augment = AugmentParams::None();  // Keep the fake's frame-encoding colours.
  return settings;
}

class BuilderTest : public ::testing::Test {
 protected:
  BuilderTest() : metrics_(registry_), pool_(2) {}

  void AddVideos(int count, int64_t frames = 200, int first = 0) {
    for (int i = first; i < first + count; ++i) {
      FakeVideo video;
      video.frames = frames + i;  // Distinct lengths.
      video.tag = static_cast<uint8_t>(i);
      source_.Add(VideoPath(i), video);
    }
  }

  BatchBuilder Builder() { return BatchBuilder(BuilderEnv{&source_, &pool_, &bad_, &metrics_}); }

  std::shared_ptr<const TrainSampler> Sampler(std::shared_ptr<const Manifest> manifest,
                                              TrainSettings settings) {
    absl::StatusOr<std::shared_ptr<const TrainSampler>> sampler =
        TrainSampler::Create(std::move(manifest), "train", std::move(settings));
    EXPECT_TRUE(sampler.ok()) << sampler.status();
    return *sampler;
  }

  // The source frame index of every output frame of clip `clip`.
  static std::vector<int64_t> FramesOf(const ClipBatch& batch, int clip) {
    const int64_t t = batch.clips().shape(1), h = batch.clips().shape(2), w = batch.clips().shape(3);
    const size_t frame_bytes = static_cast<size_t>(h * w * 3);
    std::vector<int64_t> frames;
    for (int64_t f = 0; f < t; ++f) {
      const auto* pixel = reinterpret_cast<const uint8_t*>(batch.clips().data().data()) +
                          (static_cast<size_t>(clip) * t + f) * frame_bytes;
      frames.push_back(FakeClipSource::FrameOf(pixel));
    }
    return frames;
  }

  double Counter(const std::string& name, const std::string& labels = "") {
    const std::string text = registry_.Serialize();
    const std::string key = name + labels + " ";
    const size_t at = text.find("\n" + key);
    return at == std::string::npos ? 0 : std::stod(text.substr(at + 1 + key.size()));
  }

  metrics::Registry registry_;
  LoaderMetrics metrics_;
  FakeClipSource source_;
  BadVideos bad_;
  ThreadPool pool_;
};

TEST_F(BuilderTest, TrainBatchLayoutAndClipFrames) {
  AddVideos(40);
  const TrainSettings settings = Settings(/*groups=*/3);
  auto sampler = Sampler(FakeManifest(40), settings);
  absl::StatusOr<ClipBatch> batch = Builder().BuildTrain(sampler, {}, /*global_step=*/1);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->step(), 1);
  EXPECT_EQ(batch->epoch(), 0);
  EXPECT_THAT(batch->clips().shape(), ::testing::ElementsAre(12, 8, 16, 16, 3));
  EXPECT_EQ(batch->clips().data().size(), 12u * 8 * 16 * 16 * 3);
  ASSERT_EQ(batch->clip_info_size(), 12);
  ASSERT_EQ(batch->groups_size(), 3);
  EXPECT_EQ(batch->videos_skipped(), 0);

  const std::vector<int> speeds = settings.temporal.speeds;
  for (int g = 0; g < 3; ++g) {
    const ClipInfo* clips[2][2];
    for (int v = 0; v < 2; ++v) {
      for (int r = 0; r < 2; ++r) {
        const int index = (2 * g + v) * 2 + r;
        clips[v][r] = &batch->clip_info(index);
        EXPECT_EQ(clips[v][r]->video(), 2 * g + v);
        EXPECT_EQ(clips[v][r]->group(), g);
        EXPECT_EQ(clips[v][r]->role(), r == 0 ? tecl::v1::CLIP_ROLE_A : tecl::v1::CLIP_ROLE_B);
        EXPECT_EQ(clips[v][r]->label(), -1);
        // The clip holds exactly start, start+s, ... (reversed when backward).
        const int speed = speeds[static_cast<size_t>(clips[v][r]->speed_index())];
        EXPECT_EQ(FramesOf(*batch, index),
                  ClipFrameIndices(clips[v][r]->start_frame(), speed, 8, clips[v][r]->reversed()))
            << "clip " << index;
      }
    }
    // Two different videos with the same transformation pair and the same relative offset.
    EXPECT_NE(clips[0][0]->manifest_index(), clips[1][0]->manifest_index());
    for (int r = 0; r < 2; ++r) {
      EXPECT_EQ(clips[0][r]->speed_index(), clips[1][r]->speed_index());
      EXPECT_EQ(clips[0][r]->reversed(), clips[1][r]->reversed());
    }
    EXPECT_EQ(clips[0][1]->start_frame() - clips[0][0]->start_frame(),
              clips[1][1]->start_frame() - clips[1][0]->start_frame());
    // The group's relation is the one of the spans.
    const int64_t len_a = SpanLength(8, speeds[static_cast<size_t>(clips[0][0]->speed_index())]);
    const int64_t len_b = SpanLength(8, speeds[static_cast<size_t>(clips[0][1]->speed_index())]);
    for (int v = 0; v < 2; ++v) {
      EXPECT_EQ(RelationOfSpans(clips[v][0]->start_frame(), len_a, clips[v][1]->start_frame(), len_b),
                batch->groups(g).relation());
    }
  }
  EXPECT_DOUBLE_EQ(Counter("tecl_dataloader_clips_total"), 12);
  EXPECT_DOUBLE_EQ(Counter("tecl_dataloader_batches_total", "{mode=\"train\"}"), 1);
  EXPECT_GT(Counter("tecl_dataloader_frames_decoded_total"), 0);
}

// The label distribution is exported, and a speed whose clips span more frames than a group's
// shorter video has is counted as unavailable (and shows as a 0 among the drawn speeds).
TEST_F(BuilderTest, LabelCountsAndSpeedsTheVideosAreTooShortFor) {
  AddVideos(20, /*frames=*/30);  // 30..49 frames: speed 8 spans 57 at L = 8, speed 4 spans 29.
  const TrainSettings settings = Settings(/*groups=*/2);
  auto sampler = Sampler(FakeManifest(20), settings);
  constexpr int kSteps = 5;
  for (int step = 0; step < kSteps; ++step) {
    absl::StatusOr<ClipBatch> batch = Builder().BuildTrain(sampler, {}, step);
    ASSERT_TRUE(batch.ok()) << batch.status();
  }
  const auto labels = [this](const char* label, const std::string& value) {
    return Counter("tecl_dataloader_labels_total",
                   absl::StrCat("{label=\"", label, "\",value=\"", value, "\"}"));
  };
  const double clips = kSteps * 2 * 4;
  EXPECT_DOUBLE_EQ(labels("speed", "1") + labels("speed", "2") + labels("speed", "4"), clips);
  EXPECT_DOUBLE_EQ(labels("speed", "8"), 0);
  EXPECT_NE(registry_.Serialize().find("tecl_dataloader_labels_total{label=\"speed\",value=\"8\"} 0"),
            std::string::npos);
  EXPECT_GT(labels("speed", "4"), 0);
  EXPECT_DOUBLE_EQ(labels("direction", "forward") + labels("direction", "backward"), clips);
  EXPECT_GT(labels("direction", "backward"), 0);
  EXPECT_DOUBLE_EQ(labels("relation", "before") + labels("relation", "after") +
                       labels("relation", "overlap"),
                   kSteps * 2);
  EXPECT_DOUBLE_EQ(Counter("tecl_dataloader_speed_unavailable_total", "{speed=\"8\"}"),
                   kSteps * 2);
  EXPECT_DOUBLE_EQ(Counter("tecl_dataloader_speed_unavailable_total", "{speed=\"4\"}"), 0);
}

TEST_F(BuilderTest, EveryClipGetsItsOwnSpatialDraw) {
  AddVideos(20);
  TrainSettings settings = Settings(/*groups=*/2);
  settings.augment = AugmentParams();  // METHOD.md defaults.
  auto sampler = Sampler(FakeManifest(20), settings);
  ASSERT_TRUE(Builder().BuildTrain(sampler, {}, 0).ok());
  const std::vector<FakeClipSource::DecodeCall> calls = source_.decode_calls();
  ASSERT_EQ(calls.size(), 4u);  // One decode call per video, with both of its clips.
  std::set<std::pair<double, double>> origins;
  for (const auto& call : calls) {
    ASSERT_EQ(call.clips.size(), 2u);
    for (const video::ClipRequest& clip : call.clips) {
      EXPECT_EQ(clip.out_width, 16);
      EXPECT_EQ(clip.frames.size(), 8u);
      origins.insert({clip.crop.x, clip.crop.y});
    }
  }
  EXPECT_EQ(origins.size(), 8u);
}

TEST_F(BuilderTest, SameCursorSameBytesOtherCursorOtherBatch) {
  AddVideos(40);
  TrainSettings settings = Settings(/*groups=*/2);
  settings.augment = AugmentParams();
  auto build = [&](int64_t step, uint64_t seed) {
    TrainSettings s = settings;
    s.seed = seed;
    // A fresh builder environment each time: nothing carries over.
    metrics::Registry registry;
    LoaderMetrics metrics(registry);
    BadVideos bad;
    ThreadPool pool(3);
    BatchBuilder builder(BuilderEnv{&source_, &pool, &bad, &metrics});
    absl::StatusOr<ClipBatch> batch = builder.BuildTrain(Sampler(FakeManifest(40), s), {}, step);
    EXPECT_TRUE(batch.ok()) << batch.status();
    batch->clear_build_seconds();
    return batch->SerializeAsString();
  };
  const std::string first = build(5, 42);
  EXPECT_EQ(build(5, 42), first);
  EXPECT_NE(build(6, 42), first);
  EXPECT_NE(build(5, 43), first);
}

TEST_F(BuilderTest, RanksTakeDisjointVideosWithinAnEpochAndEpochsCoverTheShard) {
  AddVideos(64);
  constexpr int kWorld = 3;
  // 64 videos / 3 ranks = 21 per shard, 2G = 4 -> 5 steps per epoch.
  std::map<int, std::set<int64_t>> epoch0;
  for (int rank = 0; rank < kWorld; ++rank) {
    TrainSettings settings = Settings(/*groups=*/2);
    settings.rank = rank;
    settings.world_size = kWorld;
    auto sampler = Sampler(FakeManifest(64), settings);
    ASSERT_EQ(sampler->schedule().steps_per_epoch(), 5);
    for (int64_t step = 0; step < 5; ++step) {
      absl::StatusOr<ClipBatch> batch = Builder().BuildTrain(sampler, {}, step);
      ASSERT_TRUE(batch.ok()) << batch.status();
      EXPECT_EQ(batch->epoch(), 0);
      for (const ClipInfo& clip : batch->clip_info()) epoch0[rank].insert(clip.manifest_index());
    }
    EXPECT_EQ(epoch0[rank].size(), 20u) << "rank " << rank;
    // Step 5 is the next epoch, with another permutation.
    absl::StatusOr<ClipBatch> next = Builder().BuildTrain(sampler, {}, 5);
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->epoch(), 1);
  }
  for (int a = 0; a < kWorld; ++a) {
    for (int b = a + 1; b < kWorld; ++b) {
      for (int64_t video : epoch0[a]) EXPECT_EQ(epoch0[b].count(video), 0u) << video;
    }
  }
}

TEST_F(BuilderTest, SameFramesAddsAThirdClipWithClipAsFrames) {
  AddVideos(20);
  TrainSettings settings = Settings(/*groups=*/2);
  settings.same_frames = true;
  settings.augment = AugmentParams();
  settings.augment.jitter_prob = 0;
  settings.augment.grayscale_prob = 0;
  auto sampler = Sampler(FakeManifest(20), settings);
  absl::StatusOr<ClipBatch> batch = Builder().BuildTrain(sampler, {}, 0);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->clips().shape(0), 12);
  for (int v = 0; v < 4; ++v) {
    const ClipInfo& a = batch->clip_info(3 * v);
    const ClipInfo& same = batch->clip_info(3 * v + 2);
    EXPECT_EQ(same.role(), tecl::v1::CLIP_ROLE_SAME_FRAMES);
    EXPECT_EQ(same.start_frame(), a.start_frame());
    EXPECT_EQ(same.speed_index(), a.speed_index());
    EXPECT_EQ(same.reversed(), a.reversed());
    EXPECT_EQ(FramesOf(*batch, 3 * v + 2), FramesOf(*batch, 3 * v));
  }
  for (const auto& call : source_.decode_calls()) {
    ASSERT_EQ(call.clips.size(), 3u);
    EXPECT_EQ(call.clips[2].frames, call.clips[0].frames);
    EXPECT_NE(call.clips[2].crop.x, call.clips[0].crop.x);  // Its own spatial draw.
  }
}

// Unreadable, failing and too-short videos are replaced deterministically, counted per batch and
// in the metrics, remembered, and logged once.
TEST_F(BuilderTest, BadVideosAreSkippedCountedAndReplacedDeterministically) {
  AddVideos(28);
  FakeVideo corrupt;
  corrupt.probe_error = absl::DataLossError("invalid data found when processing input");
  FakeVideo failing;
  failing.frames = 200;
  failing.decode_error = absl::DataLossError("error while decoding");
  FakeVideo short_video;
  short_video.frames = 5;  // Fewer than the 8 frames of one clip.
  source_.Add(VideoPath(28), corrupt);
  source_.Add(VideoPath(29), failing);
  source_.Add(VideoPath(30), short_video);
  // Video 31 is in the manifest but not on "disk" (NOT_FOUND).
  const TrainSettings settings = Settings(/*groups=*/4);
  auto manifest = FakeManifest(32);
  auto sampler = Sampler(manifest, settings);
  // Build a whole epoch (32 / 8 = 4 steps): every video is the primary of one slot.
  std::vector<std::string> first_pass;
  int skipped = 0;
  for (int64_t step = 0; step < 4; ++step) {
    absl::StatusOr<ClipBatch> batch = Builder().BuildTrain(sampler, {}, step);
    ASSERT_TRUE(batch.ok()) << batch.status();
    skipped += batch->videos_skipped();
    std::set<int64_t> videos;
    for (const ClipInfo& clip : batch->clip_info()) {
      EXPECT_LT(clip.manifest_index(), 28) << "a bad video made it into a batch";
      videos.insert(clip.manifest_index());
    }
    EXPECT_EQ(videos.size(), 8u);  // Replacements do not duplicate a video in the batch.
    batch->clear_build_seconds();
    first_pass.push_back(batch->SerializeAsString());
  }
  EXPECT_GE(skipped, 4);  // The 4 bad primaries, plus bad fallback candidates passed over.
  EXPECT_EQ(bad_.size(), 3u);  // Corrupt, failing, missing (too short is per job, not a bad file).
  EXPECT_DOUBLE_EQ(Counter("tecl_dataloader_bad_files_total", "{reason=\"unreadable\"}") +
                       Counter("tecl_dataloader_bad_files_total", "{reason=\"decode_error\"}") +
                       Counter("tecl_dataloader_bad_files_total", "{reason=\"not_found\"}") +
                       Counter("tecl_dataloader_bad_files_total", "{reason=\"too_short\"}"),
                   4);
  double skipped_metric = 0;
  for (const char* reason : {"unreadable", "decode_error", "not_found", "too_short"}) {
    skipped_metric += Counter("tecl_dataloader_videos_skipped_total", absl::StrCat("{reason=\"", reason, "\"}"));
  }
  EXPECT_DOUBLE_EQ(skipped_metric, skipped);

  // Again, with the bad files already known: the same bytes and the same counts.
  const int64_t decodes_before = static_cast<int64_t>(source_.decode_calls().size());
  for (int64_t step = 0; step < 4; ++step) {
    absl::StatusOr<ClipBatch> batch = Builder().BuildTrain(sampler, {}, step);
    ASSERT_TRUE(batch.ok());
    batch->clear_build_seconds();
    EXPECT_EQ(batch->SerializeAsString(), first_pass[static_cast<size_t>(step)]) << step;
  }
  for (size_t i = static_cast<size_t>(decodes_before); i < source_.decode_calls().size(); ++i) {
    EXPECT_NE(source_.decode_calls()[i].path, VideoPath(29)) << "a known bad file was decoded again";
  }

  // And from scratch (nothing known): still the same bytes.
  BadVideos fresh;
  BatchBuilder builder(BuilderEnv{&source_, &pool_, &fresh, &metrics_});
  for (int64_t step = 0; step < 4; ++step) {
    absl::StatusOr<ClipBatch> batch = builder.BuildTrain(sampler, {}, step);
    ASSERT_TRUE(batch.ok());
    batch->clear_build_seconds();
    EXPECT_EQ(batch->SerializeAsString(), first_pass[static_cast<size_t>(step)]) << step;
  }
}

// A video whose frames come out of the decoder damaged is marked bad under its own reason.
TEST_F(BuilderTest, VideoWithDamagedFramesIsCountedAsDamagedFrames) {
  AddVideos(7);
  FakeVideo damaged;
  damaged.decode_error = absl::DataLossError(
      "/fake/v7.mp4: frame 30 comes out of the h264 decoder damaged (concealed errors)");
  damaged.decode_error.SetPayload(video::kDamagedFramesPayload, absl::Cord());
  source_.Add(VideoPath(7), damaged);
  auto sampler = Sampler(FakeManifest(8), Settings(/*groups=*/2));
  for (int64_t step = 0; step < 2; ++step) {  // Every video is a primary in one of the two steps.
    absl::StatusOr<ClipBatch> batch = Builder().BuildTrain(sampler, {}, step);
    ASSERT_TRUE(batch.ok()) << batch.status();
  }
  EXPECT_STREQ(bad_.Lookup(VideoPath(7)), kReasonDamagedFrames);
  EXPECT_DOUBLE_EQ(Counter("tecl_dataloader_bad_files_total", "{reason=\"damaged_frames\"}"), 1);
  EXPECT_DOUBLE_EQ(Counter("tecl_dataloader_bad_files_total", "{reason=\"decode_error\"}"), 0);
  EXPECT_STREQ(BadVideoReason(absl::DataLossError("damaged, but not by the decoder's flags"),
                              /*decoding=*/true),
               kReasonDecodeError);
}

TEST_F(BuilderTest, NoUsableVideoIsFailedPrecondition) {
  FakeVideo corrupt;
  corrupt.probe_error = absl::DataLossError("not a video");
  for (int i = 0; i < 8; ++i) source_.Add(VideoPath(i), corrupt);
  auto sampler = Sampler(FakeManifest(8), Settings(/*groups=*/2));
  absl::StatusOr<ClipBatch> batch = Builder().BuildTrain(sampler, {}, 0);
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(batch.status().message()),
              HasSubstr("every one of the 8 videos of the split is unreadable or shorter than 8 frames"));
}

TEST_F(BuilderTest, CancelledBuildReportsCancelled) {
  AddVideos(20);
  auto sampler = Sampler(FakeManifest(20), Settings(/*groups=*/4));
  ThreadPool stalled(1);
  absl::Notification release, finished;
  stalled.Schedule([&] { release.WaitForNotification(); });  // Holds the only thread.
  BatchBuilder builder(BuilderEnv{&source_, &stalled, &bad_, &metrics_});
  absl::StatusOr<ClipBatch> result;
  std::shared_ptr<BuildHandle> handle = builder.StartTrain(sampler, {}, 0, [&](absl::StatusOr<ClipBatch> b) {
    result = std::move(b);
    finished.Notify();
  });
  handle->Cancel();
  release.Notify();
  finished.WaitForNotification();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(source_.decode_calls().empty());
}

TEST_F(BuilderTest, EvalBatchesCoverEveryVideoWithUniformCenterClips) {
  AddVideos(5, /*frames=*/100);
  FakeVideo corrupt;
  corrupt.probe_error = absl::DataLossError("moov atom not found");
  source_.Add(VideoPath(5), corrupt);
  FakeVideo tiny;
  tiny.frames = 3;
  source_.Add(VideoPath(6), tiny);
  auto manifest = FakeManifest(4, /*test_videos=*/3);  // 7 videos: 4 train, 3 test.
  EvalSettings settings;
  settings.clip_length = 8;
  settings.speed = 1;
  settings.crop_size = 16;
  settings.clips_per_video = 4;
  settings.videos_per_batch = 4;
  auto sampler = std::make_shared<const EvalSampler>(manifest, settings);
  ASSERT_EQ(sampler->num_batches(), 2);

  absl::StatusOr<ClipBatch> first = Builder().BuildEval(sampler, {}, 0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->last());
  EXPECT_THAT(first->clips().shape(), ::testing::ElementsAre(16, 8, 16, 16, 3));
  ASSERT_EQ(first->eval_videos_size(), 4);
  // Video 0 has 100 frames: starts 0, 31, 61, 92 (uniform over [0, 100 - 8]).
  std::vector<int32_t> starts;
  for (int c = 0; c < 4; ++c) starts.push_back(first->clip_info(c).start_frame());
  EXPECT_THAT(starts, ::testing::ElementsAre(0, 31, 61, 92));
  EXPECT_EQ(FramesOf(*first, 1), ClipFrameIndices(31, 1, 8, false));
  EXPECT_EQ(first->clip_info(0).label(), 0);
  EXPECT_EQ(first->clip_info(0).role(), tecl::v1::CLIP_ROLE_EVAL);
  for (const auto& call : source_.decode_calls()) {
    EXPECT_DOUBLE_EQ(call.clips[0].crop.width, 0.75);  // Centre square of 320x240.
    EXPECT_FALSE(call.clips[0].flip);
  }

  absl::StatusOr<ClipBatch> second = Builder().BuildEval(sampler, {}, 1);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->last());
  ASSERT_EQ(second->eval_videos_size(), 3);
  EXPECT_EQ(second->eval_videos(0).split(), "test");
  EXPECT_EQ(second->eval_videos(1).manifest_index(), 5);
  EXPECT_EQ(second->eval_videos(1).num_clips(), 0);  // Corrupt: skipped.
  EXPECT_EQ(second->videos_skipped(), 1);
  EXPECT_EQ(second->eval_videos(2).num_clips(), 4);  // 3 frames: kept, last frame repeated.
  EXPECT_EQ(second->clips().shape(0), 8);
  EXPECT_EQ(FramesOf(*second, 4), (std::vector<int64_t>{0, 1, 2, 2, 2, 2, 2, 2}));
  EXPECT_EQ(second->clip_info(4).manifest_index(), 6);
}

}  // namespace
}  // namespace tecl::dataloader
