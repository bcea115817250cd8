// Files that are not videos, damaged files, bad requests and the per-call budget: each gives a
// specific status code with the path in the message, never a crash or a hang.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/dataloader/video/demuxer.h"
#include "services/dataloader/video/video_reader.h"
#include "tests/unit/dataloader/video/video_test_util.h"

namespace tecl::video {
namespace {

using ::tecl::video::testing::ClipFrame;
using ::tecl::video::testing::RunFfmpeg;
using ::tecl::video::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kX264[] = "-c:v libx264 -preset veryfast -pix_fmt yuv420p";

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

ClipRequest Clip(std::vector<int64_t> frames, int side = 16) {
  ClipRequest clip;
  clip.frames = std::move(frames);
  clip.out_width = side;
  clip.out_height = side;
  return clip;
}

absl::Status Decode(const std::string& path, std::vector<int64_t> frames,
                    DecodeOptions options = {}, VideoIndexCache* cache = nullptr,
                    DecodeStats* stats = nullptr) {
  std::vector<ClipFrames> out;
  return DecodeClips(path, {Clip(std::move(frames))}, options, cache, &out, stats);
}

class VideoErrorsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    RunFfmpeg("-f lavfi -i testsrc2=size=96x64:rate=25 -t 2 " + std::string(kX264) + " -g 25 " +
              dir_->File("ok.mp4"));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string File(const std::string& name) { return dir_->File(name); }
  static TempDir* dir_;
};
TempDir* VideoErrorsTest::dir_ = nullptr;

TEST_F(VideoErrorsTest, MissingFileIsNotFound) {
  const std::string path = File("absent.mp4");
  EXPECT_THAT(ProbeVideo(path, {}, nullptr).status(),
              ::testing::Property(&absl::Status::code, absl::StatusCode::kNotFound));
  const absl::Status status = Decode(path, {0});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), AllOf(HasSubstr(path), HasSubstr("no such file")));
}

TEST_F(VideoErrorsTest, EmptyFileIsDataLoss) {
  const std::string path = File("empty.mp4");
  WriteFile(path, "");
  const absl::Status status = Decode(path, {0});
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), AllOf(HasSubstr(path), HasSubstr("empty (0 bytes)")));
}

TEST_F(VideoErrorsTest, TextFileIsInvalidArgumentWhateverItsName) {
  // FFmpeg would read a *.txt file as ANSI-art "video"; it is still not a video.
  const std::string prose =
      "Minutes of the meeting.\nAttendees: everyone.\nThe video pipeline was discussed at length "
      "and nothing was decided.\n";
  for (const char* name : {"notes.txt", "notes.mp4", "notes"}) {
    const std::string path = File(name);
    WriteFile(path, prose);
    const absl::Status status = ProbeVideo(path, {}, nullptr).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << name << ": " << status;
    EXPECT_THAT(status.message(), AllOf(HasSubstr(path), HasSubstr("not a video"))) << name;
  }
}

TEST_F(VideoErrorsTest, RandomBytesAreInvalidArgument) {
  std::mt19937 rng(3);
  std::string bytes(64 * 1024, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  const std::string path = File("noise.mp4");
  WriteFile(path, bytes);
  const absl::Status status = Decode(path, {0});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(path));
}

TEST_F(VideoErrorsTest, AudioOnlyFileIsInvalidArgument) {
  const std::string path = File("tone.m4a");
  RunFfmpeg("-f lavfi -i sine=frequency=440:duration=1 -c:a aac " + path);
  const absl::Status status = Decode(path, {0});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr(path), HasSubstr("no video stream")));
}

TEST_F(VideoErrorsTest, DirectoryIsInvalidArgument) {
  const absl::Status status = Decode(dir_->path(), {0});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("directory"));
}

TEST_F(VideoErrorsTest, Mp4CutBeforeItsMoovBoxIsDataLoss) {
  // ffmpeg writes the moov box at the end unless asked otherwise; cutting the file loses it.
  const std::string path = File("cut_moov.mp4");
  const std::string ok = File("ok.mp4");
  ASSERT_EQ(testing::RunShell("head -c $(( $(stat -c %s " + ok + ") / 2 )) " + ok + " > " + path), 0);
  const absl::Status status = Decode(path, {0});
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr(path), HasSubstr("moov atom not found")));
}

// Overwrites the payload of the packets selected by `pick` (decode order) with zeros, from the
// fraction `from` of each packet on.
void ZeroPackets(const std::string& path, const std::function<bool(int)>& pick, double from = 0) {
  Deadline deadline(absl::Seconds(10));
  auto demuxer = Demuxer::Open(path, &deadline);
  ASSERT_TRUE(demuxer.ok()) << demuxer.status();
  std::vector<std::pair<int64_t, int>> spans;
  AVPacket* packet = av_packet_alloc();
  for (int i = 0; (*demuxer)->ReadVideoPacket(packet) == 0; ++i) {
    if (pick(i)) {
      const int skip = static_cast<int>(packet->size * from);
      spans.emplace_back(packet->pos + skip, packet->size - skip);
    }
    av_packet_unref(packet);
  }
  av_packet_free(&packet);
  demuxer->reset();
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  for (const auto& [pos, size] : spans) {
    ASSERT_GE(pos, 0);
    file.seekp(pos);
    const std::string zeros(size, '\0');
    file.write(zeros.data(), size);
  }
}

TEST_F(VideoErrorsTest, FileWhoseFramesAllFailToDecodeIsDataLoss) {
  const std::string path = File("zeroed.avi");
  RunFfmpeg("-f lavfi -i testsrc2=size=96x64:rate=25 -t 1 -c:v mjpeg " + path);
  ZeroPackets(path, [](int) { return true; });
  const absl::Status status = Decode(path, {3, 4});
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr(path), HasSubstr("cannot be decoded")));
}

TEST_F(VideoErrorsTest, ASingleUndecodableFrameIsReplacedByItsNeighbour) {
  const std::string path = File("one_bad.avi");
  RunFfmpeg("-f lavfi -i testsrc2=size=96x64:rate=25 -t 1 -c:v mjpeg " + path);
  ZeroPackets(path, [](int i) { return i == 5; });
  std::vector<ClipFrames> out;
  DecodeStats stats;
  ASSERT_TRUE(DecodeClips(path, {Clip({4, 5, 6}, 32)}, {}, nullptr, &out, &stats).ok());
  EXPECT_EQ(stats.frames_substituted, 1);
  EXPECT_EQ(stats.frames_used, 2);
  EXPECT_TRUE(ClipFrame(out[0], 1) == ClipFrame(out[0], 0) ||
              ClipFrame(out[0], 1) == ClipFrame(out[0], 2));
  EXPECT_NE(ClipFrame(out[0], 0), ClipFrame(out[0], 2));
}

// A P-frame whose slice data is half zeroed decodes with errors the decoder conceals and reports.
// Neither it nor the frames predicted from it are served: their stretch is decoded again from the
// keyframe before, is still damaged, and the call is DATA_LOSS marked as damaged frames (the
// dataloader's bad-file reason `damaged_frames`). Frames before the damage decode as before.
TEST_F(VideoErrorsTest, FramesTheDecoderReportsDamagedAreNotServed) {
  const std::string path = File("damaged.mp4");
  RunFfmpeg("-f lavfi -i testsrc2=size=96x64:rate=25 -t 2 " + std::string(kX264) +
            " -g 25 -bf 0 " + path);
  ZeroPackets(path, [](int i) { return i == 30; }, /*from=*/0.5);
  DecodeStats stats;
  const absl::Status status = Decode(path, {32, 33}, {}, nullptr, &stats);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_TRUE(IsDamagedFramesError(status)) << status;
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr(path), HasSubstr("frame 30 comes out of the h264 decoder damaged"),
                    HasSubstr("also when decoded from packet 0")));
  EXPECT_EQ(stats.damage_retries, 1);
  EXPECT_TRUE(Decode(path, {3, 20, 29}).ok());
  EXPECT_FALSE(IsDamagedFramesError(Decode(File("missing.mp4"), {0})));
}

TEST_F(VideoErrorsTest, BadRequestsAreRejectedBeforeDecoding) {
  const std::string path = File("ok.mp4");  // 50 frames.
  std::vector<ClipFrames> out;
  ClipRequest clip = Clip({0});
  clip.out_width = 0;
  absl::Status status = DecodeClips(path, {clip}, {}, nullptr, &out, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("output size"));

  clip = Clip({0});
  clip.crop = CropRect{0.5, 0, 0.6, 1};
  status = DecodeClips(path, {clip}, {}, nullptr, &out, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("crop"));

  status = Decode(path, {10, 50});
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(status.message(), AllOf(HasSubstr(path), HasSubstr("frame 50"), HasSubstr("50 frames")));
  EXPECT_EQ(Decode(path, {-1}).code(), absl::StatusCode::kOutOfRange);

  DecodeOptions options;
  options.fps = 10;  // 2 s at 10 fps: 20 frames.
  EXPECT_EQ(Decode(path, {20}, options).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(Decode(path, {19}, options).ok());
  options.fps = -1;
  EXPECT_EQ(Decode(path, {0}, options).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(VideoErrorsTest, BudgetCutsASlowDecode) {
  const std::string path = File("long.mp4");
  RunFfmpeg("-f lavfi -i testsrc2=size=320x240:rate=30 -t 20 " + std::string(kX264) +
            " -g 600 -bf 3 " + path);
  VideoIndexCache cache;
  ASSERT_TRUE(ProbeVideo(path, {}, &cache).ok());  // The index is built and cached.
  DecodeOptions tight;
  tight.budget = absl::Milliseconds(30);  // Opening fits; decoding 600 frames does not.
  const absl::Status status = Decode(path, {590, 599}, tight, &cache);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr(path), HasSubstr("budget")));
  // The same request within the default budget succeeds.
  DecodeStats stats;
  ASSERT_TRUE(Decode(path, {590, 599}, {}, &cache, &stats).ok());
  EXPECT_GT(stats.seconds, 0.002);
}

TEST_F(VideoErrorsTest, BudgetCutsAStreamThatNeverEnds) {
  // A FIFO fed by a writer that never stops: indexing would read forever.
  const std::string chunk_path = File("chunk.ts");
  RunFfmpeg("-f lavfi -i testsrc2=size=96x64:rate=25 -t 1 " + std::string(kX264) + " " +
            chunk_path);
  std::ifstream in(chunk_path, std::ios::binary);
  const std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string fifo = File("endless.ts");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
  signal(SIGPIPE, SIG_IGN);
  std::thread writer([&] {
    FILE* f = fopen(fifo.c_str(), "wb");
    if (f == nullptr) return;
    while (fwrite(chunk.data(), 1, chunk.size(), f) == chunk.size() && fflush(f) == 0) {
    }
    fclose(f);
  });
  DecodeOptions options;
  options.budget = absl::Milliseconds(500);
  const absl::Time start = absl::Now();
  const absl::Status status = ProbeVideo(fifo, options, nullptr).status();
  const int unblock = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // In case the reader never came.
  if (unblock >= 0) close(unblock);
  writer.join();  // The reader closed the FIFO: the writer's next write fails.
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr(fifo), HasSubstr("budget")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST_F(VideoErrorsTest, ConcurrentCallsShareOneCache) {
  const std::string path = File("ok.mp4");
  VideoIndexCache cache;
  std::vector<ClipFrames> expected;
  ASSERT_TRUE(DecodeClips(path, {Clip({3, 30, 40})}, {}, &cache, &expected, nullptr).ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        std::vector<ClipFrames> out;
        if (!DecodeClips(path, {Clip({3, 30, 40})}, {}, &cache, &out, nullptr).ok() ||
            out[0].data != expected[0].data) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace tecl::video
