// The synthetic motion data set: layout and split files, every video decodes with the expected
// frame count and size, motion in every stretch of every video, determinism by seed, and the
// tecl-synth binary.
#include "services/dataloader/synth/synth_dataset.h"

#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/dataloader/synth/motion_render.h"
#include "services/dataloader/synth/video_encoder.h"
#include "services/dataloader/video/video_reader.h"

namespace tecl::synth {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/tecl_synth_XXXXXX";
    if (const char* base = std::getenv("TEST_TMPDIR")) pattern = std::string(base) + "/tecl_synth_XXXXXX";
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Motion in a stretch of frames: the most pixels any frame of the stretch has changed by more
// than 10 levels (largest channel) against the stretch's first frame. (Against the first frame,
// not the previous one, so slow smooth motion counts as it accumulates.)
int64_t MovingPixels(const std::vector<std::vector<uint8_t>>& frames, size_t begin, size_t end) {
  int64_t most = 0;
  for (size_t i = begin + 1; i < end; ++i) {
    int64_t moving = 0;
    for (size_t p = 0; p + 2 < frames[i].size(); p += 3) {
      int change = 0;
      for (int c = 0; c < 3; ++c) {
        change = std::max(change, std::abs(int{frames[i][p + c]} - int{frames[begin][p + c]}));
      }
      moving += change > 10;
    }
    most = std::max(most, moving);
  }
  return most;
}

constexpr int kStretch = 8;        // Frames; a third of the default 8-frame clip at speed 3.
constexpr int64_t kMinMoving = 24;  // Moving pixels a stretch must show (see the control below).

std::vector<std::vector<uint8_t>> DecodeAll(const std::string& path, int frames, int width,
                                            int height) {
  video::ClipRequest clip;
  for (int k = 0; k < frames; ++k) clip.frames.push_back(k);
  clip.out_width = width;
  clip.out_height = height;
  std::vector<video::ClipFrames> out;
  const absl::Status status = video::DecodeClips(path, {clip}, {}, nullptr, &out, nullptr);
  EXPECT_TRUE(status.ok()) << status;
  std::vector<std::vector<uint8_t>> result;
  if (!status.ok()) return result;
  const size_t bytes = static_cast<size_t>(width) * height * 3;
  for (int k = 0; k < frames; ++k) {
    result.emplace_back(out[0].data.begin() + bytes * k, out[0].data.begin() + bytes * (k + 1));
  }
  return result;
}

SynthOptions SmallOptions(const std::string& out) {
  SynthOptions options;
  options.out = out;
  options.videos_per_class = 4;
  options.jobs = 2;
  return options;
}

TEST(SynthDatasetTest, WritesClassFoldersSplitListsAndVideosThatDecodeWithMotionThroughout) {
  TempDir dir;
  const SynthOptions options = SmallOptions(dir.path());
  const absl::StatusOr<SynthSummary> summary = WriteSynthDataset(options);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->videos, 24);
  EXPECT_EQ(summary->train, 18);
  EXPECT_EQ(summary->test, 6);  // round(4 * 0.25) per class.

  EXPECT_THAT(ReadLines(dir.File("classes.txt")),
              ElementsAre("bounce", "draw", "explode", "oscillate", "slide_stop", "spread"));
  EXPECT_THAT(ReadLines(dir.File("classInd.txt")),
              ElementsAre("1 bounce", "2 draw", "3 explode", "4 oscillate", "5 slide_stop",
                          "6 spread"));
  const std::vector<std::string> train = ReadLines(dir.File("trainlist.txt"));
  const std::vector<std::string> test = ReadLines(dir.File("testlist.txt"));
  std::set<std::string> listed(train.begin(), train.end());
  for (const std::string& t : test) EXPECT_TRUE(listed.insert(t).second) << t << " in both lists";
  EXPECT_EQ(listed.size(), 24u);

  std::set<std::string> on_disk;
  for (const auto& entry : fs::recursive_directory_iterator(dir.path())) {
    if (entry.path().extension() == ".mp4") {
      on_disk.insert(fs::relative(entry.path(), dir.path()).string());
    }
  }
  EXPECT_EQ(on_disk, listed);  // No partial files, nothing unlisted.

  std::map<std::string, int> test_per_class;
  for (const std::string& t : test) ++test_per_class[t.substr(0, t.find('/'))];
  for (const std::string& name : MotionClassNames()) EXPECT_EQ(test_per_class[name], 1) << name;

  video::VideoIndexCache cache;
  for (const std::string& relative : listed) {
    const std::string path = dir.File(relative);
    const absl::StatusOr<video::VideoInfo> info = video::ProbeVideo(path, {}, &cache);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->num_frames, 48) << relative;
    EXPECT_EQ(info->width, 64);
    EXPECT_EQ(info->height, 64);
    EXPECT_NEAR(info->fps, 24, 1e-6);
    EXPECT_EQ(info->codec, "h264");
    const auto frames = DecodeAll(path, 48, 64, 64);
    ASSERT_EQ(frames.size(), 48u);
    for (size_t begin = 0; begin + 1 < frames.size(); begin += kStretch) {
      const size_t end = std::min(frames.size(), begin + kStretch);
      EXPECT_GE(MovingPixels(frames, begin, end), kMinMoving)
          << relative << " frames " << begin << ".." << end - 1 << " hardly move";
    }
  }
}

// The control for the motion check: an encoded video without motion stays below the bar (the
// codec's noise, keyframes every 16 frames included, does not count as motion).
TEST(SynthDatasetTest, MotionCheckRejectsAStillVideo) {
  TempDir dir;
  const std::string path = dir.File("still.mp4");
  const auto rendered = RenderMotionVideo(0, 5, 64, 64, 1);
  EncoderOptions options;
  auto encoder = VideoEncoder::Open(path, options);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  for (int i = 0; i < 48; ++i) ASSERT_TRUE((*encoder)->AddFrame(rendered[0].data()).ok());
  ASSERT_TRUE((*encoder)->Finish().ok());
  const auto frames = DecodeAll(path, 48, 64, 64);
  ASSERT_EQ(frames.size(), 48u);
  for (size_t begin = 0; begin + 1 < frames.size(); begin += kStretch) {
    EXPECT_LT(MovingPixels(frames, begin, std::min(frames.size(), begin + kStretch)), kMinMoving);
  }
}

// Every class keeps moving to its last frame over many random draws (no settled tail), before
// encoding, at the default size and at a non-square one.
TEST(SynthDatasetTest, EveryClassMovesInEveryStretchOverManySeeds) {
  for (int label = 0; label < static_cast<int>(MotionClassNames().size()); ++label) {
    int64_t weakest = INT64_MAX;
    for (uint64_t seed = 1; seed <= 40; ++seed) {
      const int width = seed % 4 == 0 ? 96 : 64;
      const auto frames = RenderMotionVideo(label, MixSeed(seed, label), width, 64, 48);
      for (size_t begin = 0; begin + 1 < frames.size(); begin += kStretch) {
        const int64_t moving = MovingPixels(frames, begin, std::min(frames.size(), begin + kStretch));
        weakest = std::min(weakest, moving);
        EXPECT_GE(moving, kMinMoving) << MotionClassNames()[label] << " seed " << seed
                                      << " frames " << begin;
      }
    }
    RecordProperty(MotionClassNames()[label] + "_weakest_stretch", static_cast<int>(weakest));
  }
}

TEST(SynthDatasetTest, AppearanceVariesWithinAClass) {
  for (int label = 0; label < static_cast<int>(MotionClassNames().size()); ++label) {
    const auto a = RenderMotionVideo(label, MixSeed(1, label, 1), 64, 64, 1);
    const auto b = RenderMotionVideo(label, MixSeed(1, label, 2), 64, 64, 1);
    double diff = 0;
    for (size_t i = 0; i < a[0].size(); ++i) diff += std::abs(int{a[0][i]} - int{b[0][i]});
    EXPECT_GT(diff / a[0].size(), 10) << MotionClassNames()[label];
  }
}

TEST(SynthDatasetTest, SameSeedWritesIdenticalBytesWhateverTheThreadCount) {
  TempDir a, b, c;
  SynthOptions options = SmallOptions(a.path());
  options.classes = 3;
  options.videos_per_class = 3;
  options.jobs = 1;
  ASSERT_TRUE(WriteSynthDataset(options).ok());
  options.out = b.path();
  options.jobs = 2;
  ASSERT_TRUE(WriteSynthDataset(options).ok());
  options.out = c.path();
  options.seed = 2;
  ASSERT_TRUE(WriteSynthDataset(options).ok());
  int compared = 0;
  int differ_by_seed = 0;
  for (const auto& entry : fs::recursive_directory_iterator(a.path())) {
    if (!entry.is_regular_file()) continue;
    const std::string relative = fs::relative(entry.path(), a.path()).string();
    EXPECT_EQ(ReadBytes(entry.path().string()), ReadBytes(b.File(relative))) << relative;
    if (entry.path().extension() == ".mp4") {
      differ_by_seed += ReadBytes(entry.path().string()) != ReadBytes(c.File(relative));
    }
    ++compared;
  }
  EXPECT_EQ(compared, 9 + 4);
  EXPECT_EQ(differ_by_seed, 9);
}

TEST(SynthDatasetTest, OtherCodecsSizesAndRates) {
  TempDir dir;
  SynthOptions options = SmallOptions(dir.path());
  options.classes = 2;
  options.videos_per_class = 1;
  options.test_fraction = 0;
  options.frames = 20;
  options.width = 80;
  options.height = 48;
  options.fps = 30;
  for (const std::string codec : {"mpeg4", "mjpeg", "ffv1"}) {
    options.codec = codec;
    ASSERT_TRUE(WriteSynthDataset(options).ok()) << codec;
    const std::string path = dir.File(SynthVideoPath(options, 1, 0));
    const absl::StatusOr<video::VideoInfo> info = video::ProbeVideo(path, {}, nullptr);
    ASSERT_TRUE(info.ok()) << codec << ": " << info.status();
    EXPECT_EQ(info->num_frames, 20) << codec;
    EXPECT_EQ(info->width, 80);
    EXPECT_EQ(info->height, 48);
    EXPECT_NEAR(info->fps, 30, 0.05);  // Matroska stores milliseconds.
    EXPECT_TRUE(ReadLines(dir.File("testlist.txt")).empty());
  }
}

TEST(SynthDatasetTest, InvalidOptionsNameTheField) {
  SynthOptions options = SmallOptions("/tmp/unused");
  options.classes = 7;
  EXPECT_THAT(WriteSynthDataset(options).status().message(), HasSubstr("classes: 7"));
  options = SmallOptions("/tmp/unused");
  options.width = 63;
  EXPECT_THAT(ValidateSynthOptions(options).message(), HasSubstr("size: 63x64"));
  options = SmallOptions("/tmp/unused");
  options.test_fraction = 1;
  EXPECT_EQ(ValidateSynthOptions(options).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ValidateSynthOptions(options).message(), HasSubstr("test_fraction"));
  options = SmallOptions("");
  EXPECT_THAT(ValidateSynthOptions(options).message(), HasSubstr("out"));
  options = SmallOptions("/tmp/unused");
  options.codec = "no-such-codec";
  const absl::Status status = WriteSynthDataset(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("no-such-codec"));
}

int RunCommand(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output->append(buffer, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(SynthBinaryTest, HelpListsTheFlagsAndARunWritesTheDataSet) {
  const char* bin_dir = std::getenv("TECL_BIN_DIR");
  ASSERT_NE(bin_dir, nullptr) << "run through ctest (TECL_BIN_DIR)";
  const std::string binary = std::string(bin_dir) + "/tecl-synth";
  std::string help;
  // Abseil's --help prints the usage and exits with 1 (as every TECL binary does).
  EXPECT_EQ(RunCommand(binary + " --help", &help), 1) << help;
  for (const char* flag : {"--out", "--classes", "--videos_per_class", "--frames", "--size",
                           "--fps", "--seed", "--test_fraction", "--codec", "--gop"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
  TempDir dir;
  std::string output;
  EXPECT_EQ(RunCommand(binary + " --out " + dir.path() + " --size 3x3", &output), 2);
  EXPECT_THAT(output, HasSubstr("size"));
  output.clear();
  ASSERT_EQ(RunCommand(binary + " --out " + dir.path() + " --classes 2 --videos_per_class 2 --frames 12"
                " --size 32x48 --seed 9",
                &output),
            0)
      << output;
  EXPECT_THAT(output, HasSubstr("wrote 4 videos"));
  EXPECT_EQ(ReadLines(dir.File("trainlist.txt")).size() + ReadLines(dir.File("testlist.txt")).size(),
            4u);
  const absl::StatusOr<video::VideoInfo> info =
      video::ProbeVideo(dir.File("draw/draw_0001.mp4"), {}, nullptr);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->num_frames, 12);
  EXPECT_EQ(info->width, 32);
  EXPECT_EQ(info->height, 48);
}

}  // namespace
}  // namespace tecl::synth
