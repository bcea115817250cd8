// TranscodeVideo on real encoded files (ffmpeg CLI fixtures with B-frames, a long GOP and audio):
// frame for frame at the source's rate, the planned size, keyframes exactly as asked and no
// B-frames (checked independently with ffprobe), audio dropped, all-intra, and a damaged source
// that fails alone and leaves no file behind.
#include "services/dataloader/prepare/transcode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "services/dataloader/video/demuxer.h"
#include "services/dataloader/video/stored_index.h"
#include "services/dataloader/video/video_reader.h"
#include "tests/unit/dataloader/video/video_test_util.h"

namespace tecl::prepare {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using video::testing::ReferenceDecode;
using video::testing::RunFfmpeg;
using video::testing::RunShell;
using video::testing::TempDir;

// 75 frames of 128x96 at 25 fps, GOP 50 with B-frames, and an audio stream.
std::string WriteSource(const TempDir& dir) {
  const std::string path = dir.File("source.mp4");
  RunFfmpeg("-t 3 -f lavfi -i testsrc2=size=128x96:rate=25 -t 3 -f lavfi -i sine=frequency=440 "
            "-c:v libx264 -g 50 -bf 2 -pix_fmt yuv420p -c:a aac " + path);
  return path;
}

// ffprobe's view of the video frames (pict_type and key flag per frame) and the stream types.
struct Probe {
  std::string pict_types;  // One letter per frame, presentation order.
  std::vector<int> key_frames;
  std::vector<std::string> streams;
};

Probe RunProbe(const TempDir& dir, const std::string& path) {
  const std::string frames = dir.File("frames.csv"), streams = dir.File("streams.csv");
  EXPECT_EQ(RunShell("ffprobe -v error -select_streams v -show_entries frame=pict_type,key_frame "
                     "-of csv=p=0 " + path + " > " + frames),
            0);
  EXPECT_EQ(RunShell("ffprobe -v error -show_entries stream=codec_type -of csv=p=0 " + path +
                     " > " + streams),
            0);
  Probe probe;
  std::ifstream in(frames);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    // "1,I" or "0,P" (key_frame,pict_type), possibly with a trailing comma.
    std::istringstream cells(line);
    std::string key, type;
    std::getline(cells, key, ',');
    std::getline(cells, type, ',');
    probe.key_frames.push_back(std::stoi(key));
    probe.pict_types += type.empty() ? '?' : type[0];
  }
  std::ifstream types(streams);
  for (std::string line; std::getline(types, line);) probe.streams.push_back(line);
  return probe;
}

double Psnr(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
  const double mse = sum / static_cast<double>(a.size());
  return mse == 0 ? 99 : 10 * std::log10(255.0 * 255.0 / mse);
}

std::vector<std::string> FilesIn(const TempDir& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

TEST(TranscodeTest, FrameForFrameAtThePlannedSizeWithShortClosedGopsAndNoBFrames) {
  TempDir dir;
  const std::string source = WriteSource(dir);
  const std::string output = dir.File("prepared.mp4");
  TranscodeOptions options;
  options.short_side = 64;
  options.keyframe_interval = 8;
  options.crf = 16;
  options.chunk_frames = 10;  // Several chunks.
  absl::StatusOr<TranscodeResult> result = TranscodeVideo(source, output, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->frames, 75);
  EXPECT_EQ(result->width, 86);  // 128 x 64 / 96 = 85.3, to even.
  EXPECT_EQ(result->height, 64);
  EXPECT_NEAR(result->fps, 25, 1e-6);
  EXPECT_EQ(result->max_keyframe_interval, 8);
  EXPECT_EQ(result->bytes_out, static_cast<int64_t>(fs::file_size(output)));
  EXPECT_TRUE(result->index_stored);
  EXPECT_THAT(FilesIn(dir), ::testing::UnorderedElementsAre("source.mp4", "prepared.mp4",
                                                            "prepared.mp4.tecli"));
  // The stored index is the one a loader would build, and loaders use it.
  {
    video::StoredIndexRejection why;
    absl::StatusOr<video::FileIdentity> identity = video::StatVideoFile(output);
    ASSERT_TRUE(identity.ok());
    absl::StatusOr<std::shared_ptr<video::VideoIndex>> stored =
        video::ReadStoredIndex(output, *identity, {}, &why);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ((*stored)->num_frames(), 75);
    EXPECT_EQ((*stored)->reorder_depth, 0);
  }

  const Probe probe = RunProbe(dir, output);
  EXPECT_THAT(probe.streams, ::testing::ElementsAre("video")) << "audio must be dropped";
  ASSERT_EQ(probe.pict_types.size(), 75u);
  EXPECT_EQ(probe.pict_types.find('B'), std::string::npos) << probe.pict_types;
  for (int k = 0; k < 75; ++k) {
    EXPECT_EQ(probe.key_frames[k], k % 8 == 0 ? 1 : 0) << "frame " << k << ": " << probe.pict_types;
  }

  // Frame k of the copy is frame k of the source, scaled: compare with the source decoded at the
  // same size, and check that the neighbours match worse.
  video::VideoIndexCache cache;
  std::vector<video::ClipFrames> scaled;
  video::ClipRequest all;
  for (int k = 0; k < 75; ++k) all.frames.push_back(k);
  all.out_width = 86;
  all.out_height = 64;
  ASSERT_TRUE(video::DecodeClips(source, {all}, {}, &cache, &scaled, nullptr).ok());
  // The copy through the same decoder and colour conversion, at its own size.
  std::vector<video::ClipFrames> copy;
  ASSERT_TRUE(video::DecodeClips(output, {all}, {}, &cache, &copy, nullptr).ok());
  ASSERT_EQ(ReferenceDecode(output).size(), 75u);
  // Lossy (4:2:0, CAVLC, no deblocking) on busy content: a floor, and every frame closest to its
  // own source frame among its neighbours.
  for (int k = 0; k < 75; ++k) {
    const std::vector<uint8_t> frame = video::testing::ClipFrame(copy[0], k);
    const double own = Psnr(frame, video::testing::ClipFrame(scaled[0], k));
    EXPECT_GT(own, 22) << "frame " << k;
    for (int other : {k - 2, k - 1, k + 1, k + 2}) {
      if (other < 0 || other >= 75) continue;
      EXPECT_GT(own, Psnr(frame, video::testing::ClipFrame(scaled[0], other)))
          << "frame " << k << " of the copy is closer to source frame " << other;
    }
  }
}

TEST(TranscodeTest, IntraMakesEveryFrameAKeyframe) {
  TempDir dir;
  const std::string source = WriteSource(dir);
  TranscodeOptions options;
  options.short_side = 32;
  options.codec = PreparedCodec::kIntra;
  absl::StatusOr<TranscodeResult> result = TranscodeVideo(source, dir.File("intra.mp4"), options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->max_keyframe_interval, 1);
  const Probe probe = RunProbe(dir, dir.File("intra.mp4"));
  ASSERT_EQ(probe.key_frames.size(), 75u);
  for (int k = 0; k < 75; ++k) EXPECT_EQ(probe.key_frames[k], 1) << "frame " << k;
}

TEST(TranscodeTest, ADamagedSourceFailsAndLeavesNoFile) {
  TempDir dir;
  const std::string source = WriteSource(dir);
  const std::string damaged = dir.File("damaged.mp4");
  {
    std::ifstream in(source, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(damaged, std::ios::binary).write(bytes.data(), bytes.size() * 2 / 5);
  }
  absl::StatusOr<TranscodeResult> result =
      TranscodeVideo(damaged, dir.File("out.mp4"), TranscodeOptions{});
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("damaged.mp4"));
  EXPECT_THAT(FilesIn(dir), ::testing::UnorderedElementsAre("source.mp4", "damaged.mp4"));
}

// A stop order between chunks ends the transcode at once, leaving no file.
TEST(TranscodeTest, ACancelledTranscodeStopsBetweenChunksAndLeavesNoFile) {
  TempDir dir;
  const std::string source = WriteSource(dir);
  TranscodeOptions options;
  options.short_side = 32;
  options.chunk_frames = 16;
  int asked = 0;
  options.cancelled = [&] { return ++asked > 2; };
  absl::StatusOr<TranscodeResult> result = TranscodeVideo(source, dir.File("out.mp4"), options);
  ASSERT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("at frame 32 of 75"));
  EXPECT_THAT(FilesIn(dir), ::testing::UnorderedElementsAre("source.mp4"));
}

TEST(TranscodeTest, OptionsAreRangeChecked) {
  TranscodeOptions options;
  options.short_side = 15;
  EXPECT_THAT(std::string(ValidateTranscodeOptions(options).message()),
              HasSubstr("prepare.short_side: 15 is outside"));
  options = {};
  options.keyframe_interval = 0;
  EXPECT_THAT(std::string(ValidateTranscodeOptions(options).message()),
              HasSubstr("prepare.keyframe_interval"));
  options = {};
  options.decode.fps = 30;
  EXPECT_EQ(ValidateTranscodeOptions(options).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateTranscodeOptions(TranscodeOptions{}).ok());
}

TEST(TranscodeTest, PreparedSizeKeepsTheAspectWithEvenSides) {
  int w = 0, h = 0;
  PreparedSize(340, 256, 128, &w, &h);
  EXPECT_EQ(w, 170);
  EXPECT_EQ(h, 128);
  PreparedSize(256, 340, 128, &w, &h);
  EXPECT_EQ(w, 128);
  EXPECT_EQ(h, 170);
  PreparedSize(320, 240, 112, &w, &h);
  EXPECT_EQ(w, 150);
  EXPECT_EQ(h, 112);
  PreparedSize(341, 255, 0, &w, &h);
  EXPECT_EQ(w, 340);
  EXPECT_EQ(h, 254);
}

}  // namespace
}  // namespace tecl::prepare
