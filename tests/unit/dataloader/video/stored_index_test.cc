// The stored index (stored_index.h) on ffmpeg-CLI fixtures: written and read back it equals the
// index built from the video in every field; the reader and DecodeClips use it (counted as
// stored) and decode the same frames; a stale, truncated, tampered or out-of-range index is
// rejected (counted) and the index is built from the video instead.
#include "services/dataloader/video/stored_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "services/dataloader/video/demuxer.h"
#include "services/dataloader/video/video_index.h"
#include "services/dataloader/video/video_reader.h"
#include "tests/unit/dataloader/video/video_test_util.h"

namespace tecl::video {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::RunFfmpeg;
using testing::TempDir;

std::shared_ptr<VideoIndex> Build(const std::string& path) {
  Deadline deadline(absl::Seconds(30));
  absl::StatusOr<FileIdentity> identity = StatVideoFile(path);
  EXPECT_TRUE(identity.ok());
  absl::StatusOr<std::unique_ptr<Demuxer>> demuxer = Demuxer::Open(path, &deadline);
  EXPECT_TRUE(demuxer.ok()) << demuxer.status();
  absl::StatusOr<std::shared_ptr<VideoIndex>> index = BuildVideoIndex(**demuxer, *identity);
  EXPECT_TRUE(index.ok()) << index.status();
  return *index;
}

void ExpectSame(const VideoIndex& a, const VideoIndex& b) {
  EXPECT_EQ(a.path, b.path);
  EXPECT_TRUE(a.identity == b.identity);
  EXPECT_EQ(a.stream_index, b.stream_index);
  EXPECT_EQ(av_cmp_q(a.time_base, b.time_base), 0);
  EXPECT_EQ(a.codec_id, b.codec_id);
  EXPECT_EQ(a.codec_name, b.codec_name);
  EXPECT_EQ(a.coded_width, b.coded_width);
  EXPECT_EQ(a.coded_height, b.coded_height);
  EXPECT_EQ(a.rotation_degrees, b.rotation_degrees);
  EXPECT_EQ(a.timestamps, b.timestamps);
  EXPECT_EQ(a.intra_only, b.intra_only);
  EXPECT_EQ(a.reorder_depth, b.reorder_depth);
  ASSERT_EQ(a.packets.size(), b.packets.size());
  for (size_t i = 0; i < a.packets.size(); ++i) {
    EXPECT_EQ(a.packets[i].pts, b.packets[i].pts) << i;
    EXPECT_EQ(a.packets[i].dts, b.packets[i].dts) << i;
    EXPECT_EQ(a.packets[i].pos, b.packets[i].pos) << i;
    EXPECT_EQ(a.packets[i].key, b.packets[i].key) << i;
    EXPECT_EQ(a.packets[i].discard, b.packets[i].discard) << i;
  }
  EXPECT_EQ(a.frame_ts, b.frame_ts);
  EXPECT_EQ(a.frame_packet, b.frame_packet);
  EXPECT_EQ(a.frame_start, b.frame_start);
  EXPECT_EQ(av_cmp_q(a.ts_base, b.ts_base), 0);
  EXPECT_EQ(a.duration_ts, b.duration_ts);
  EXPECT_EQ(a.duration_s, b.duration_s);
  EXPECT_EQ(a.fps, b.fps);
  ASSERT_EQ(a.carried.x264_versions.size(), b.carried.x264_versions.size());
  for (size_t i = 0; i < a.carried.x264_versions.size(); ++i) {
    EXPECT_EQ(a.carried.x264_versions[i].packet, b.carried.x264_versions[i].packet);
    EXPECT_EQ(a.carried.x264_versions[i].build, b.carried.x264_versions[i].build);
  }
}

class StoredIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h264_ = dir_.File("h264.mp4");
    RunFfmpeg("-f lavfi -i testsrc2=size=64x48:rate=25 -frames:v 60 -c:v libx264 -g 20 -bf 2 "
              "-pix_fmt yuv420p " + h264_);
    avi_ = dir_.File("mpeg4.avi");
    RunFfmpeg("-f lavfi -i testsrc2=size=64x48:rate=25 -frames:v 40 -c:v mpeg4 -g 10 -bf 1 " + avi_);
  }
  TempDir dir_;
  std::string h264_, avi_;
};

TEST_F(StoredIndexTest, WrittenAndReadBackItEqualsTheBuiltIndex) {
  for (const std::string& path : {h264_, avi_}) {
    const std::shared_ptr<VideoIndex> built = Build(path);
    ASSERT_TRUE(WriteStoredIndex(*built, path).ok());
    StoredIndexRejection why;
    absl::StatusOr<std::shared_ptr<VideoIndex>> read =
        ReadStoredIndex(path, built->identity, InputLimits{}, &why);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(why, StoredIndexRejection::kNone);
    ExpectSame(**read, *built);
  }
}

TEST_F(StoredIndexTest, TheReaderUsesItAndDecodesTheSameFrames) {
  ClipRequest clip;
  clip.frames = {3, 17, 18, 41, 59, 2};
  clip.out_width = 32;
  clip.out_height = 24;
  std::vector<ClipFrames> without, with;
  IndexLoadCounts before = GetIndexLoadCounts();
  ASSERT_TRUE(DecodeClips(h264_, {clip}, {}, nullptr, &without, nullptr).ok());
  EXPECT_EQ(GetIndexLoadCounts().built, before.built + 1);

  ASSERT_TRUE(WriteStoredIndex(*Build(h264_), h264_).ok());
  before = GetIndexLoadCounts();
  VideoIndexCache cache;
  ASSERT_TRUE(DecodeClips(h264_, {clip}, {}, &cache, &with, nullptr).ok());
  const IndexLoadCounts after = GetIndexLoadCounts();
  EXPECT_EQ(after.stored, before.stored + 1);
  EXPECT_EQ(after.built, before.built);
  EXPECT_EQ(with[0].data, without[0].data);
  absl::StatusOr<VideoInfo> info = ProbeVideo(h264_, {}, &cache);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->num_frames, 60);
}

TEST_F(StoredIndexTest, AStaleIndexIsRejectedAndTheIndexBuilt) {
  ASSERT_TRUE(WriteStoredIndex(*Build(h264_), h264_).ok());
  fs::last_write_time(h264_, fs::last_write_time(h264_) + std::chrono::seconds(5));
  absl::StatusOr<FileIdentity> identity = StatVideoFile(h264_);
  StoredIndexRejection why;
  absl::StatusOr<std::shared_ptr<VideoIndex>> read =
      ReadStoredIndex(h264_, *identity, InputLimits{}, &why);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(why, StoredIndexRejection::kStale);
  const IndexLoadCounts before = GetIndexLoadCounts();
  EXPECT_TRUE(ProbeVideo(h264_, {}, nullptr).ok());
  EXPECT_EQ(GetIndexLoadCounts().stale, before.stale + 1);
  EXPECT_EQ(GetIndexLoadCounts().built, before.built + 1);
}

TEST_F(StoredIndexTest, TruncatedTamperedAndOutOfRangeIndexesAreRejected) {
  const std::shared_ptr<VideoIndex> built = Build(h264_);
  const std::string index_path = StoredIndexPath(h264_);
  const auto rejected = [&](const char* what) {
    StoredIndexRejection why;
    absl::StatusOr<std::shared_ptr<VideoIndex>> read =
        ReadStoredIndex(h264_, built->identity, InputLimits{}, &why);
    EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss) << what;
    EXPECT_EQ(why, StoredIndexRejection::kCorrupt) << what;
    EXPECT_THAT(std::string(read.status().message()), HasSubstr("stored index rejected")) << what;
    return std::string(read.status().message());
  };
  ASSERT_TRUE(WriteStoredIndex(*built, h264_).ok());
  const auto size = fs::file_size(index_path);
  fs::resize_file(index_path, size - 7);
  EXPECT_THAT(rejected("truncated"), HasSubstr("truncated"));

  ASSERT_TRUE(WriteStoredIndex(*built, h264_).ok());
  {
    std::fstream f(index_path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size - 20));
    f.put('\x7f');
  }
  EXPECT_THAT(rejected("tampered"), HasSubstr("checksum"));

  // Checksums are no defence against a file written on purpose: the numbers are checked too.
  std::shared_ptr<VideoIndex> bad = Build(h264_);
  bad->frame_packet[5] = static_cast<int32_t>(bad->packets.size()) + 3;
  ASSERT_TRUE(WriteStoredIndex(*bad, h264_).ok());
  EXPECT_THAT(rejected("frame packet"), HasSubstr("frame 5 refers to packet"));
  bad = Build(h264_);
  bad->packets[2].pos = built->identity.size + 100;
  ASSERT_TRUE(WriteStoredIndex(*bad, h264_).ok());
  EXPECT_THAT(rejected("position"), HasSubstr("outside the video"));
  InputLimits small;
  small.max_frames = 10;
  ASSERT_TRUE(WriteStoredIndex(*built, h264_).ok());
  StoredIndexRejection why;
  EXPECT_EQ(ReadStoredIndex(h264_, built->identity, small, &why).status().code(),
            absl::StatusCode::kDataLoss);

  // The reader falls back to building it.
  bad = Build(h264_);
  bad->frame_ts[4] = bad->frame_ts[3];
  ASSERT_TRUE(WriteStoredIndex(*bad, h264_).ok());
  const IndexLoadCounts before = GetIndexLoadCounts();
  absl::StatusOr<VideoInfo> info = ProbeVideo(h264_, {}, nullptr);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->num_frames, 60);
  EXPECT_EQ(GetIndexLoadCounts().corrupt, before.corrupt + 1);
}

}  // namespace
}  // namespace tecl::video
