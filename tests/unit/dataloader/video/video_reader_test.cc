// DecodeClips against an independent sequential decode, on real files of many codecs and
// containers written by the ffmpeg CLI, including the files that break popular loaders.
#include "services/dataloader/video/video_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/dataloader/video/frame_writer.h"
#include "services/dataloader/video/video_index.h"
#include "tests/unit/dataloader/video/video_test_util.h"

namespace tecl::video {
namespace {

using ::tecl::video::testing::Checksum;
using ::tecl::video::testing::ClipFrame;
using ::tecl::video::testing::Compare;
using ::tecl::video::testing::ReferenceCrop;
using ::tecl::video::testing::ReferenceDecode;
using ::tecl::video::testing::ReferenceDecodeFrom;
using ::tecl::video::testing::RefFrame;
using ::tecl::video::testing::RotateCcw;
using ::tecl::video::testing::RunFfmpeg;
using ::tecl::video::testing::SameBytes;
using ::tecl::video::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

static_assert(kSwsFlags == (SWS_AREA | SWS_FULL_CHR_H_INT),
              "the reference decoder converts with SWS_AREA | SWS_FULL_CHR_H_INT");

constexpr char kSource[] = "-f lavfi -i testsrc2=size=192x144:rate=30";
constexpr char kX264[] = "-c:v libx264 -preset veryfast -pix_fmt yuv420p";

struct Fixture {
  std::string name;  // File name; the extension picks the container.
  std::string args;  // ffmpeg arguments between the input and the output file.
  std::string from;  // Stream-copy from this fixture instead of the test source, if set.
  int rotation_ccw = 0;  // Expected display rotation, counter-clockwise.
  std::string source = kSource;  // ffmpeg input arguments.
  std::string x264_core;  // If set, the x264 version SEI is patched to name this core (3 digits).
};

// Every fixture is 1-4 s of testsrc2 (each frame differs: a counter and moving patterns).
std::vector<Fixture> AllFixtures() {
  const std::string x264 = kX264;
  return {
      {"h264_bframes.mp4",
       "-t 4 " + x264 + " -x264-params keyint=48:min-keyint=48:scenecut=0:bframes=3:b-pyramid=normal"},
      {"h264_long_gop.mp4",
       "-t 4 " + x264 + " -x264-params keyint=250:min-keyint=250:scenecut=0:bframes=3"},
      {"h264_open_gop.mp4",
       "-t 4 " + x264 + " -x264-params keyint=40:min-keyint=40:scenecut=0:bframes=3:open-gop=1"},
      {"h264_faststart.mp4", "-t 3 " + x264 + " -g 30 -bf 2 -movflags +faststart"},
      {"h264.ts", "-t 3 " + x264 + " -g 30 -bf 2"},  // MPEG-TS: start time 1.4 s.
      {"h264_offset.mp4", "-t 3 " + x264 + " -g 30 -bf 2 -output_ts_offset 7.5"},
      {"h264_rot90.mp4", "-c copy -metadata:s:v:0 rotate=90", "h264_bframes.mp4", 90},
      {"h264_rot180.mp4", "-c copy -metadata:s:v:0 rotate=180", "h264_bframes.mp4", 180},
      {"h264_rot270.mp4", "-c copy -metadata:s:v:0 rotate=270", "h264_bframes.mp4", 270},
      {"h264_no_cues.mkv", "-c copy", "h264_bframes.mp4"},  // Written to a pipe: no cues.
      {"h264_annexb.h264", "-c copy -bsf:v h264_mp4toannexb", "h264_bframes.mp4"},  // No pts.
      {"h264_vfr.mp4",
       "-t 4 -vf 'settb=1/1000,setpts=N*40+mod(N\\,2)*15' -fps_mode passthrough "
       "-enc_time_base 1/1000 -video_track_timescale 1000 " + x264 + " -bf 2 -g 24"},
      {"h264_odd_444.mp4", "-t 2 -vf scale=97:61 -c:v libx264 -preset veryfast -pix_fmt yuv444p -g 20"},
      {"h264_1frame.mp4", "-frames:v 1 " + x264},
      {"h264_2frames.mp4", "-frames:v 2 " + x264 + " -bf 3"},
      {"h264_3frames.mp4", "-frames:v 3 " + x264 + " -bf 3"},
      {"mpeg4_bframes.avi", "-t 3 -c:v mpeg4 -bf 2 -g 24 -q:v 4"},  // AVI: pts missing.
      {"mpeg4_bframes.mp4", "-t 3 -c:v mpeg4 -bf 2 -g 24 -q:v 4"},
      {"mpeg2_open_gop.mpg", "-t 3 -c:v mpeg2video -bf 2 -g 15 -q:v 4"},
      {"vp9.webm",
       "-t 3 -c:v libvpx-vp9 -g 30 -deadline good -cpu-used 8 -lag-in-frames 10 "
       "-auto-alt-ref 1 -b:v 300k"},
      {"theora.ogv", "-t 3 -c:v libtheora -g 30 -q:v 5"},
      {"mjpeg.avi", "-t 2 -c:v mjpeg -q:v 5"},
      {"ffv1_odd.mkv", "-t 2 -vf scale=97:61 -c:v ffv1 -pix_fmt yuv420p"},
      // Soft colour edges, like natural footage (no saturated one-pixel colour edges).
      {"blurred.mp4", "-t 2 -vf gblur=sigma=2.5 " + x264 + " -g 30"},
      // x264's High 4:4:4 Predictive (lossless, CABAC, 8x8 transform) with its version SEI patched
      // to name core 150: FFmpeg then decodes it as an x264 before 151 wrote it. These frames of
      // testsrc2 decode without error either way but to other pixels from the second keyframe on
      // (X264VersionOfTheFirstKeyframeReachesDecodesStartedLater). One encoder thread: the
      // encoder's choices, which this depends on, do not then vary with the machine.
      {"h264_444_x264_core150.mp4",
       "-frames:v 12 -threads 1 -c:v libx264 -preset veryfast -profile:v high444 -pix_fmt yuv444p "
       "-qp 0 -x264-params keyint=3:bframes=0",
       "", 0, "-f lavfi -i testsrc2=size=96x64:rate=30,trim=start_frame=21,setpts=PTS-STARTPTS",
       "150"},
      // HEVC with B-frames and x265's default open GOPs (CRA keyframes with leading pictures).
      {"hevc_open_gop.mp4",
       "-t 3 -c:v libx265 -preset ultrafast -x265-params keyint=30:min-keyint=30:bframes=3:log-level=error"},
      {"hevc_closed_gop.mkv",
       "-t 3 -c:v libx265 -preset ultrafast "
       "-x265-params keyint=30:min-keyint=30:bframes=3:open-gop=0:log-level=error"},
      {"vp8.webm", "-t 3 -c:v libvpx -g 30 -deadline realtime -cpu-used 8 -b:v 300k"},
      {"av1.mp4", "-t 2 -c:v libaom-av1 -usage realtime -cpu-used 8 -g 30 -b:v 200k"},
      // Xvid's user data selects the decoder's Xvid workarounds and IDCT.
      {"mpeg4_xvid.avi", "-t 2 -c:v libxvid -g 24 -bf 0 -q:v 4"},
  };
}

// Rewrites the version in the x264 SEI of `path` ("x264 - core NNN") to `core`, in place (same
// length, so the container stays valid).
void PatchX264Core(const std::string& path, const std::string& core) {
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string tag = "x264 - core ";
  const size_t at = bytes.find(tag);
  ASSERT_NE(at, std::string::npos) << path << ": no x264 version SEI";
  ASSERT_EQ(bytes.find(tag, at + 1), std::string::npos) << path << ": more than one x264 SEI";
  const size_t digits = at + tag.size();
  ASSERT_EQ(bytes.find(' ', digits), digits + core.size()) << path << ": core is not " << core.size()
                                                           << " digits long";
  bytes.replace(digits, core.size(), core);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Writes every fixture once per test binary.
class Fixtures {
 public:
  static Fixtures& Get() {
    static Fixtures* fixtures = new Fixtures();
    return *fixtures;
  }
  std::string Path(const std::string& name) const { return dir_.File(name); }
  const std::vector<RefFrame>& Reference(const std::string& name) {
    auto it = reference_.find(name);
    if (it == reference_.end()) it = reference_.emplace(name, ReferenceDecode(Path(name))).first;
    return it->second;
  }
  const TempDir& dir() const { return dir_; }

 private:
  Fixtures() {
    for (const Fixture& f : AllFixtures()) {
      const std::string out = dir_.File(f.name);
      if (f.from.empty()) {
        RunFfmpeg(f.source + " " + f.args + " " + out);
      } else if (f.name.size() > 4 && f.name.substr(f.name.size() - 4) == ".mkv") {
        RunFfmpeg("-i " + dir_.File(f.from) + " " + f.args + " -f matroska pipe:1 > " + out);
      } else {
        RunFfmpeg("-i " + dir_.File(f.from) + " " + f.args + " " + out);
      }
      if (!f.x264_core.empty()) PatchX264Core(out, f.x264_core);
    }
  }
  TempDir dir_;
  std::map<std::string, std::vector<RefFrame>> reference_;
};

ClipRequest FullFrameClip(const VideoInfo& info, std::vector<int64_t> frames) {
  ClipRequest clip;
  clip.frames = std::move(frames);
  clip.out_width = info.width;
  clip.out_height = info.height;
  return clip;
}

class SeekAccuracyTest : public ::testing::TestWithParam<Fixture> {};

// Frame k reached by seeking (random access, many k, several clips per call, reversed and
// strided) is byte-identical to frame k of a full sequential decode of the same file.
TEST_P(SeekAccuracyTest, RandomAccessMatchesSequentialDecode) {
  const Fixture& fixture = GetParam();
  const std::string path = Fixtures::Get().Path(fixture.name);
  const std::vector<RefFrame>& ref = Fixtures::Get().Reference(fixture.name);
  ASSERT_FALSE(ref.empty());
  VideoIndexCache cache;
  const absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->num_frames, static_cast<int64_t>(ref.size()));
  EXPECT_EQ(info->rotation_degrees, (360 - fixture.rotation_ccw) % 360);
  const RefFrame displayed0 = RotateCcw(ref[0], fixture.rotation_ccw);
  EXPECT_EQ(info->width, displayed0.width);
  EXPECT_EQ(info->height, displayed0.height);
  EXPECT_GT(info->fps, 0);
  EXPECT_GT(info->duration_s, 0);

  const int64_t n = info->num_frames;
  std::mt19937 rng(1234);
  std::vector<int64_t> ks = {0, n - 1, n / 2};
  for (int i = 0; i < 24; ++i) ks.push_back(std::uniform_int_distribution<int64_t>(0, n - 1)(rng));
  int64_t total_decoded = 0;
  for (int64_t k : ks) {
    std::vector<ClipFrames> out;
    DecodeStats stats;
    const std::vector<ClipRequest> clips = {FullFrameClip(*info, {k})};
    ASSERT_TRUE(DecodeClips(path, clips, DecodeOptions{}, &cache, &out, &stats).ok());
    const RefFrame expected = RotateCcw(ref[k], fixture.rotation_ccw);
    ASSERT_TRUE(SameBytes(ClipFrame(out[0], 0), expected.rgb)) << fixture.name << " frame " << k;
    EXPECT_EQ(stats.frames_used, 1);
    EXPECT_EQ(stats.frames_substituted, 0);
    total_decoded += stats.frames_decoded;
  }
  EXPECT_GE(total_decoded, static_cast<int64_t>(ks.size()));

  // Several clips in one call: forward strided, reversed, repeated frames.
  std::vector<ClipRequest> clips;
  for (int c = 0; c < 3; ++c) {
    const int64_t speed = 1 + c;
    const int64_t length = std::min<int64_t>(6, (n - 1) / speed + 1);
    const int64_t start = std::uniform_int_distribution<int64_t>(0, n - 1 - (length - 1) * speed)(rng);
    std::vector<int64_t> frames;
    for (int64_t i = 0; i < length; ++i) frames.push_back(start + i * speed);
    if (c == 1) std::reverse(frames.begin(), frames.end());
    if (c == 2) frames.push_back(frames.front());
    clips.push_back(FullFrameClip(*info, frames));
  }
  std::vector<ClipFrames> out;
  DecodeStats stats;
  ASSERT_TRUE(DecodeClips(path, clips, DecodeOptions{}, &cache, &out, &stats).ok());
  ASSERT_EQ(out.size(), clips.size());
  for (size_t c = 0; c < clips.size(); ++c) {
    ASSERT_EQ(out[c].frames, static_cast<int>(clips[c].frames.size()));
    for (size_t i = 0; i < clips[c].frames.size(); ++i) {
      const RefFrame expected = RotateCcw(ref[clips[c].frames[i]], fixture.rotation_ccw);
      ASSERT_TRUE(SameBytes(ClipFrame(out[c], static_cast<int>(i)), expected.rgb))
          << fixture.name << " clip " << c << " position " << i;
    }
  }
}

std::string FixtureTestName(const ::testing::TestParamInfo<Fixture>& info) {
  std::string name = info.param.name;
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllFormats, SeekAccuracyTest, ::testing::ValuesIn(AllFixtures()),
                         FixtureTestName);

class KeyframeStartTest : public ::testing::TestWithParam<Fixture> {};

// Seek-exactness: a decode that starts at a keyframe gives the frames of a decode of the whole
// file from its start. For every packet that decoding starts at (every keyframe that some frame
// needs), one DecodeClips call asks for exactly the frames that start there, so its one span starts
// at that keyframe with a fresh decoder; every frame's checksum must equal that of the same frame
// of the sequential decode, with no frame stood in for and nothing decoded twice.
TEST_P(KeyframeStartTest, DecodeStartedAtEachKeyframeEqualsTheSequentialDecode) {
  const Fixture& fixture = GetParam();
  const std::string path = Fixtures::Get().Path(fixture.name);
  const std::vector<RefFrame>& ref = Fixtures::Get().Reference(fixture.name);
  VideoIndexCache cache;
  const absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->num_frames, static_cast<int64_t>(ref.size()));
  const absl::StatusOr<std::shared_ptr<const VideoIndex>> index = cache.Get(path, DecodeOptions{});
  ASSERT_TRUE(index.ok()) << index.status();
  std::map<int32_t, std::vector<int64_t>> frames_by_start;
  for (int64_t k = 0; k < info->num_frames; ++k) {
    frames_by_start[(*index)->frame_start[k]].push_back(k);
  }
  std::vector<std::string> mismatches;
  for (const auto& [start, frames] : frames_by_start) {
    std::vector<ClipFrames> out;
    DecodeStats stats;
    const absl::Status status =
        DecodeClips(path, {FullFrameClip(*info, frames)}, DecodeOptions{}, &cache, &out, &stats);
    ASSERT_TRUE(status.ok()) << "from packet " << start << ": " << status;
    EXPECT_EQ(stats.frames_substituted, 0) << "from packet " << start;
    EXPECT_EQ(stats.damage_retries, 0) << "from packet " << start;
    int32_t last_packet = start;
    for (int64_t k : frames) last_packet = std::max(last_packet, (*index)->frame_packet[k]);
    EXPECT_LE(stats.frames_decoded, last_packet - start + 1)
        << "from packet " << start << ": decoded again from elsewhere";
    for (size_t i = 0; i < frames.size(); ++i) {
      const uint64_t got = Checksum(ClipFrame(out[0], static_cast<int>(i)));
      const uint64_t want = Checksum(RotateCcw(ref[frames[i]], fixture.rotation_ccw).rgb);
      if (got != want) {
        mismatches.push_back(absl::StrFormat("frame %d from packet %d: %016x, sequential %016x",
                                             frames[i], start, got, want));
      }
    }
  }
  EXPECT_THAT(mismatches, IsEmpty()) << frames_by_start.size() << " starts";
  RecordProperty("keyframe_starts", static_cast<int>(frames_by_start.size()));
}

INSTANTIATE_TEST_SUITE_P(AllFormats, KeyframeStartTest, ::testing::ValuesIn(AllFixtures()),
                         FixtureTestName);

// The x264 4:4:4 case. FFmpeg reads the x264 version from the SEI of the first keyframe and works
// around bugs of x264 before build 151 by it (4:4:4 CABAC contexts beside macroblocks without the
// 8x8 transform, lossless 8x8 intra prediction). The fixture decodes without error both ways; a
// plain decoder opened at a later keyframe never sees the SEI and gives other frames, which is what
// the index's carried version prevents.
TEST(VideoReaderTest, X264VersionOfTheFirstKeyframeReachesDecodesStartedLater) {
  const std::string name = "h264_444_x264_core150.mp4";
  const std::string path = Fixtures::Get().Path(name);
  const std::vector<RefFrame>& ref = Fixtures::Get().Reference(name);
  ASSERT_EQ(ref.size(), 12u);
  for (const RefFrame& frame : ref) ASSERT_EQ(frame.decode_error_flags, 0) << frame.pts;
  VideoIndexCache cache;
  const absl::StatusOr<std::shared_ptr<const VideoIndex>> index = cache.Get(path, DecodeOptions{});
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ((*index)->carried.x264_versions.size(), 1u);
  EXPECT_EQ((*index)->carried.x264_versions[0].packet, 0);
  EXPECT_EQ((*index)->carried.x264_versions[0].build, 150);
  const absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok());

  int reproduced = 0;
  for (int32_t key = 1; key < static_cast<int32_t>((*index)->packets.size()); ++key) {
    if (!(*index)->packets[key].key) continue;
    const size_t first = static_cast<size_t>(key);  // No B-frames: packet k carries frame k.
    const std::vector<RefFrame> plain = ReferenceDecodeFrom(path, key, {});
    const std::vector<RefFrame> carried = ReferenceDecodeFrom(path, key, {{"x264_build", "150"}});
    ASSERT_EQ(plain.size(), ref.size() - first);
    ASSERT_EQ(carried.size(), ref.size() - first);
    int plain_differ = 0;
    for (size_t i = 0; i < plain.size(); ++i) {
      EXPECT_EQ(plain[i].decode_error_flags, 0);
      plain_differ += plain[i].rgb != ref[first + i].rgb;
      EXPECT_TRUE(SameBytes(carried[i].rgb, ref[first + i].rgb)) << "key " << key << " +" << i;
    }
    if (plain_differ == 0) continue;
    ++reproduced;
    std::vector<int64_t> frames;
    for (size_t k = first; k < ref.size() && (*index)->frame_start[k] == key; ++k) frames.push_back(k);
    std::vector<ClipFrames> out;
    ASSERT_TRUE(DecodeClips(path, {FullFrameClip(*info, frames)}, {}, &cache, &out, nullptr).ok());
    for (size_t i = 0; i < frames.size(); ++i) {
      EXPECT_TRUE(SameBytes(ClipFrame(out[0], static_cast<int>(i)), ref[frames[i]].rgb))
          << "frame " << frames[i] << " decoded from packet " << key;
    }
  }
  EXPECT_GE(reproduced, 1) << "no keyframe of " << name << " decodes differently without the "
                           << "x264 version: this libx264 made other choices, and the fixture "
                           << "needs another source or frame range to exercise the x264 < 151 path";
}

// The index finds the x264 version SEI of every container's packets (length-prefixed in MP4 and
// MKV, Annex B in MPEG-TS and raw streams) at packet 0, and none in other codecs.
TEST(VideoReaderTest, IndexFindsTheX264VersionInTheFirstPacket) {
  VideoIndexCache cache;
  for (const std::string name :
       {"h264_bframes.mp4", "h264.ts", "h264_no_cues.mkv", "h264_annexb.h264", "h264_vfr.mp4"}) {
    const std::string path = Fixtures::Get().Path(name);
    std::string bytes;
    {
      std::ifstream in(path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    const size_t at = bytes.find("x264 - core ");
    ASSERT_NE(at, std::string::npos) << name;
    const int core = std::atoi(bytes.c_str() + at + 12);
    const auto index = cache.Get(path, DecodeOptions{});
    ASSERT_TRUE(index.ok()) << index.status();
    ASSERT_EQ((*index)->carried.x264_versions.size(), 1u) << name;
    EXPECT_EQ((*index)->carried.x264_versions[0].packet, 0) << name;
    EXPECT_EQ((*index)->carried.x264_versions[0].build, core) << name;
    EXPECT_EQ((*index)->carried.X264BuildAt(1000), core) << name;
  }
  for (const std::string name : {"hevc_open_gop.mp4", "vp9.webm", "mpeg4_bframes.mp4"}) {
    const auto index = cache.Get(Fixtures::Get().Path(name), DecodeOptions{});
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_THAT((*index)->carried.x264_versions, IsEmpty()) << name;
  }
}

TEST(VideoReaderTest, ReversedClipIsTheReversedSequenceAndSpeedTakesEverySthFrame) {
  const std::string path = Fixtures::Get().Path("h264_bframes.mp4");
  const std::vector<RefFrame>& ref = Fixtures::Get().Reference("h264_bframes.mp4");
  VideoIndexCache cache;
  const absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok()) << info.status();
  for (int speed : {1, 2, 4, 8}) {
    const int length = 8;
    const int64_t start = 5;
    std::vector<int64_t> forward;
    for (int i = 0; i < length; ++i) forward.push_back(start + i * speed);
    std::vector<int64_t> backward(forward.rbegin(), forward.rend());
    std::vector<ClipFrames> out;
    ASSERT_TRUE(DecodeClips(path, {FullFrameClip(*info, forward), FullFrameClip(*info, backward)},
                            DecodeOptions{}, &cache, &out, nullptr)
                    .ok());
    for (int i = 0; i < length; ++i) {
      EXPECT_TRUE(SameBytes(ClipFrame(out[0], i), ref[start + i * speed].rgb)) << "speed " << speed;
      EXPECT_TRUE(SameBytes(ClipFrame(out[1], i), ClipFrame(out[0], length - 1 - i))) << "speed " << speed;
    }
  }
}

ClipRequest RandomCropClip(std::mt19937& rng, int64_t num_frames, int out_side, bool flip) {
  std::uniform_real_distribution<double> unit(0, 1);
  ClipRequest clip;
  const double area = 0.2 + 0.8 * unit(rng);
  const double aspect = 0.75 + 0.58 * unit(rng);
  clip.crop.width = std::min(1.0, std::sqrt(area * aspect));
  clip.crop.height = std::min(1.0, std::sqrt(area / aspect));
  clip.crop.x = (1 - clip.crop.width) * unit(rng);
  clip.crop.y = (1 - clip.crop.height) * unit(rng);
  clip.out_width = out_side;
  clip.out_height = out_side;
  clip.flip = flip;
  clip.frames = {std::uniform_int_distribution<int64_t>(0, num_frames - 1)(rng)};
  return clip;
}

// Crop + resize is byte-identical to cropping the decoded picture with FFmpeg's own
// av_frame_apply_cropping at the documented pixel rectangle and scaling it with one swscale call:
// the crop geometry, the chroma-aligned plane offsets and the flip are exact.
TEST(VideoReaderTest, CropAndResizeEqualFfmpegCroppingOfTheDecodedPicture) {
  const std::string path = Fixtures::Get().Path("h264_bframes.mp4");
  const std::vector<RefFrame> ref = ReferenceDecode(path, /*keep_yuv=*/true);
  VideoIndexCache cache;
  const absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok()) << info.status();
  std::mt19937 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    const ClipRequest clip =
        RandomCropClip(rng, info->num_frames, trial % 2 == 0 ? 64 : 112, trial % 3 == 0);
    std::vector<ClipFrames> out;
    ASSERT_TRUE(DecodeClips(path, {clip}, DecodeOptions{}, &cache, &out, nullptr).ok());
    const auto expected = testing::ReferenceYuvCrop(*ref[clip.frames[0]].yuv, clip.crop,
                                                    clip.out_width, clip.out_height, clip.flip);
    ASSERT_TRUE(SameBytes(ClipFrame(out[0], 0), expected)) << "trial " << trial;
  }
}

// Scaling the YUV region straight to RGB (the reader) against the textbook path: convert the
// whole frame to RGB, then scale the same region of that. Both are valid resamplings; they
// interpolate 4:2:0 chroma in a different order, so they differ where chroma changes fast
// (measured on softened testsrc2 downscales: mean |diff| up to 3.2, max 49 levels). The
// tolerance is mean < 4 and max <= 64 levels; a crop off by one pixel already exceeds it.
TEST(VideoReaderTest, CropAndResizeAgreeWithScalingTheRgbFrameWithinTolerance) {
  const std::string path = Fixtures::Get().Path("blurred.mp4");
  const std::vector<RefFrame>& ref = Fixtures::Get().Reference("blurred.mp4");
  VideoIndexCache cache;
  const absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok()) << info.status();
  std::mt19937 rng(11);
  double worst_mean = 0;
  int worst_max = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const ClipRequest clip =
        RandomCropClip(rng, info->num_frames, trial % 2 == 0 ? 48 : 64, trial % 3 == 0);
    std::vector<ClipFrames> out;
    ASSERT_TRUE(DecodeClips(path, {clip}, DecodeOptions{}, &cache, &out, nullptr).ok());
    const auto expected =
        ReferenceCrop(ref[clip.frames[0]], clip.crop, clip.out_width, clip.out_height, clip.flip);
    const auto diff = Compare(ClipFrame(out[0], 0), expected);
    EXPECT_LT(diff.mean, 4.0) << "trial " << trial;
    EXPECT_LE(diff.max, 64) << "trial " << trial;
    if (trial < 4) {  // The tolerance has teeth: the same crop moved by one pixel fails it.
      ClipRequest moved = clip;
      moved.crop.x = std::max(0.0, clip.crop.x - 2.0 / 192);
      moved.crop.y = std::max(0.0, clip.crop.y - 2.0 / 144);
      std::vector<ClipFrames> shifted;
      ASSERT_TRUE(DecodeClips(path, {moved}, DecodeOptions{}, &cache, &shifted, nullptr).ok());
      const auto off = Compare(ClipFrame(shifted[0], 0), expected);
      EXPECT_TRUE(off.mean >= 4.0 || off.max > 64) << "trial " << trial << ": " << off.mean;
    }
    worst_mean = std::max(worst_mean, diff.mean);
    worst_max = std::max(worst_max, diff.max);
  }
  RecordProperty("worst_mean_abs_diff", std::to_string(worst_mean));
  RecordProperty("worst_max_abs_diff", std::to_string(worst_max));
}

// A crop of a rotated video is taken in the displayed picture: it equals the corresponding crop
// of the same (stream-copied) pictures without rotation metadata, rotated for display, flipped.
TEST(VideoReaderTest, CropOfRotatedVideoIsInDisplayedCoordinates) {
  const std::string plain = Fixtures::Get().Path("h264_bframes.mp4");
  const CropRect d{0.25, 0.125, 0.5, 0.625};  // Displayed, normalised.
  for (const auto& [name, ccw] : std::vector<std::pair<std::string, int>>{
           {"h264_rot90.mp4", 90}, {"h264_rot180.mp4", 180}, {"h264_rot270.mp4", 270}}) {
    // Displayed = decoded turned counter-clockwise by `ccw`; the same region in the decoded one:
    CropRect coded = d;
    if (ccw == 90) coded = CropRect{1 - d.y - d.height, d.x, d.height, d.width};
    if (ccw == 180) coded = CropRect{1 - d.x - d.width, 1 - d.y - d.height, d.width, d.height};
    if (ccw == 270) coded = CropRect{d.y, 1 - d.x - d.width, d.height, d.width};
    const bool transposed = ccw != 180;
    ClipRequest rotated;
    rotated.frames = {10, 50};
    rotated.crop = d;
    rotated.out_width = 30;
    rotated.out_height = 42;
    rotated.flip = true;
    ClipRequest unrotated = rotated;
    unrotated.crop = coded;
    unrotated.flip = false;
    unrotated.out_width = transposed ? 42 : 30;
    unrotated.out_height = transposed ? 30 : 42;
    std::vector<ClipFrames> a, b;
    ASSERT_TRUE(DecodeClips(Fixtures::Get().Path(name), {rotated}, DecodeOptions{}, nullptr, &a, nullptr).ok());
    ASSERT_TRUE(DecodeClips(plain, {unrotated}, DecodeOptions{}, nullptr, &b, nullptr).ok());
    for (int i = 0; i < 2; ++i) {
      RefFrame picture;
      picture.width = unrotated.out_width;
      picture.height = unrotated.out_height;
      picture.rgb = ClipFrame(b[0], i);
      RefFrame shown = RotateCcw(picture, ccw);
      testing::RefFrame flipped = shown;
      for (int y = 0; y < shown.height; ++y) {
        for (int x = 0; x < shown.width; ++x) {
          for (int c = 0; c < 3; ++c) {
            flipped.rgb[(y * shown.width + x) * 3 + c] =
                shown.rgb[(y * shown.width + shown.width - 1 - x) * 3 + c];
          }
        }
      }
      EXPECT_TRUE(SameBytes(ClipFrame(a[0], i), flipped.rgb)) << name << " frame " << i;
    }
  }
}

TEST(VideoReaderTest, RotationMatchesFfmpegAutorotate) {
  const std::string path = Fixtures::Get().Path("h264_rot90.mp4");
  const std::string raw = Fixtures::Get().dir().File("rot90_cli.rgb");
  RunFfmpeg("-i " + path + " -frames:v 1 -f rawvideo -pix_fmt rgb24 " + raw);
  FILE* f = fopen(raw.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::vector<uint8_t> cli(144 * 192 * 3);
  ASSERT_EQ(fread(cli.data(), 1, cli.size(), f), cli.size());
  fclose(f);
  std::vector<ClipFrames> out;
  VideoInfo info;
  info.width = 144;
  info.height = 192;
  ASSERT_TRUE(DecodeClips(path, {FullFrameClip(info, {0})}, DecodeOptions{}, nullptr, &out, nullptr).ok());
  // The CLI converts with other scaler settings, so the match is close rather than exact; the
  // opposite orientation is far off.
  RefFrame ours;
  ours.width = 144;
  ours.height = 192;
  ours.rgb = ClipFrame(out[0], 0);
  EXPECT_LT(Compare(ours.rgb, cli).mean, 6.0);
  EXPECT_GT(Compare(RotateCcw(ours, 180).rgb, cli).mean, 30.0);
}

TEST(VideoReaderTest, FixedRateResamplingPicksTheFrameShownAtEachInstant) {
  const std::string path = Fixtures::Get().Path("h264_bframes.mp4");  // 30 fps, 120 frames.
  const std::vector<RefFrame>& ref = Fixtures::Get().Reference("h264_bframes.mp4");
  VideoIndexCache cache;
  DecodeOptions half;
  half.fps = 15;
  absl::StatusOr<VideoInfo> info = ProbeVideo(path, half, &cache);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->num_frames, 60);
  EXPECT_DOUBLE_EQ(info->fps, 15);
  std::vector<ClipFrames> out;
  ASSERT_TRUE(DecodeClips(path, {FullFrameClip(*info, {0, 1, 7, 59})}, half, &cache, &out, nullptr).ok());
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 0), ref[0].rgb));
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 1), ref[2].rgb));
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 2), ref[14].rgb));
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 3), ref[118].rgb));
  DecodeOptions twice;
  twice.fps = 60;
  info = ProbeVideo(path, twice, &cache);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->num_frames, 240);
  ASSERT_TRUE(DecodeClips(path, {FullFrameClip(*info, {0, 1, 2, 3, 239})}, twice, &cache, &out, nullptr).ok());
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 0), ref[0].rgb));
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 1), ref[0].rgb));
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 2), ref[1].rgb));
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 3), ref[1].rgb));
  EXPECT_TRUE(SameBytes(ClipFrame(out[0], 4), ref[119].rgb));
}

TEST(VideoReaderTest, ResamplingVariableFrameRateFollowsTimestamps) {
  // Frame n is shown from n*40 + (n odd ? 15 : 0) ms.
  const std::string path = Fixtures::Get().Path("h264_vfr.mp4");
  const std::vector<RefFrame>& ref = Fixtures::Get().Reference("h264_vfr.mp4");
  DecodeOptions options;
  options.fps = 50;  // k shown at 20k ms.
  absl::StatusOr<VideoInfo> info = ProbeVideo(path, options, nullptr);
  ASSERT_TRUE(info.ok());
  std::vector<int64_t> ks = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<ClipFrames> out;
  ASSERT_TRUE(DecodeClips(path, {FullFrameClip(*info, ks)}, options, nullptr, &out, nullptr).ok());
  for (int64_t k : ks) {
    const int64_t t = 20 * k;
    int64_t shown = 0;
    for (int64_t n = 0; n < static_cast<int64_t>(ref.size()); ++n) {
      if (n * 40 + (n % 2) * 15 <= t) shown = n;
    }
    EXPECT_TRUE(SameBytes(ClipFrame(out[0], static_cast<int>(k)), ref[shown].rgb)) << "k=" << k;
  }
}

// Random 16-frame clips on a long-GOP video decode about span + half a keyframe interval.
TEST(VideoReaderTest, FramesDecodedPerFrameUsedStayNearOnePlusHalfKeyframeIntervalOverSpan) {
  const std::string path = Fixtures::Get().Path("h264_bframes.mp4");  // GOP 48, 120 frames.
  VideoIndexCache cache;
  absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok());
  std::mt19937 rng(99);
  int64_t decoded = 0;
  int64_t used = 0;
  for (int i = 0; i < 40; ++i) {
    const int64_t start = std::uniform_int_distribution<int64_t>(0, info->num_frames - 16)(rng);
    std::vector<int64_t> frames;
    for (int f = 0; f < 16; ++f) frames.push_back(start + f);
    std::vector<ClipFrames> out;
    DecodeStats stats;
    ClipRequest clip = FullFrameClip(*info, frames);
    clip.out_width = 32;
    clip.out_height = 32;
    ASSERT_TRUE(DecodeClips(path, {clip}, DecodeOptions{}, &cache, &out, &stats).ok());
    EXPECT_EQ(stats.frames_used, 16);
    decoded += stats.frames_decoded;
    used += stats.frames_used;
  }
  const double ratio = static_cast<double>(decoded) / used;
  // Expected 1 + 48/2/16 = 2.5 decoding everything; discarded non-reference frames lower it.
  EXPECT_LE(ratio, 2.5 * 1.15);
  EXPECT_GE(ratio, 1.0);
  RecordProperty("frames_decoded_per_frame_used", std::to_string(ratio));
}

TEST(VideoReaderTest, NonReferenceFramesOutsideTheClipAreDiscarded) {
  const std::string path = Fixtures::Get().Path("h264_long_gop.mp4");  // One GOP of 120 frames.
  const std::vector<RefFrame>& ref = Fixtures::Get().Reference("h264_long_gop.mp4");
  VideoIndexCache cache;
  absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok());
  std::vector<ClipFrames> out;
  DecodeStats stats;
  ASSERT_TRUE(DecodeClips(path, {FullFrameClip(*info, {100, 101, 102})}, DecodeOptions{}, &cache,
                          &out, &stats)
                  .ok());
  EXPECT_GT(stats.packets_skipped, 20);
  EXPECT_LT(stats.frames_decoded, 100);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(SameBytes(ClipFrame(out[0], i), ref[100 + i].rgb));
}

TEST(VideoReaderTest, IndexIsCachedAndRebuiltWhenTheFileChanges) {
  TempDir dir;
  const std::string path = dir.File("v.mp4");
  RunFfmpeg(std::string(kSource) + " -frames:v 10 " + kX264 + " " + path);
  VideoIndexCache cache(2);
  absl::StatusOr<VideoInfo> info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->num_frames, 10);
  EXPECT_EQ(cache.size(), 1u);
  auto first = cache.Get(path, DecodeOptions{});
  auto again = cache.Get(path, DecodeOptions{});
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ(first->get(), again->get());
  RunFfmpeg(std::string(kSource) + " -frames:v 14 " + kX264 + " " + path);
  info = ProbeVideo(path, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->num_frames, 14);
  EXPECT_EQ(cache.size(), 1u);
  for (const char* name : {"a.mp4", "b.mp4"}) {
    RunFfmpeg(std::string(kSource) + " -frames:v 3 " + kX264 + " " + dir.File(name));
    ASSERT_TRUE(ProbeVideo(dir.File(name), DecodeOptions{}, &cache).ok());
  }
  EXPECT_EQ(cache.size(), 2u);
}

// An MP4 cut at 60 % (its sample table intact): the readable frames decode exactly as a plain
// sequential decode gives them; the partial last sample, which the decoder rejects, is stood in
// for by its neighbour and counted.
TEST(VideoReaderTest, TruncatedFileDecodesTheFramesBeforeTheDamage) {
  TempDir dir;
  const std::string full = Fixtures::Get().Path("h264_faststart.mp4");
  const std::string cut = dir.File("cut.mp4");
  ASSERT_EQ(testing::RunShell("head -c $(( $(stat -c %s " + full + ") * 6 / 10 )) " + full +
                              " > " + cut),
            0);
  const std::vector<RefFrame> ref = ReferenceDecode(cut);
  VideoIndexCache cache;
  absl::StatusOr<VideoInfo> info = ProbeVideo(cut, DecodeOptions{}, &cache);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GT(info->num_frames, 20);
  EXPECT_LT(info->num_frames, 90);
  const auto index = cache.Get(cut, DecodeOptions{});
  ASSERT_TRUE(index.ok());
  std::map<int64_t, const RefFrame*> ref_by_pts;
  for (const RefFrame& frame : ref) ref_by_pts[frame.pts] = &frame;

  std::vector<int64_t> all;
  for (int64_t k = 0; k < info->num_frames; ++k) all.push_back(k);
  std::vector<ClipFrames> out;
  DecodeStats stats;
  ASSERT_TRUE(DecodeClips(cut, {FullFrameClip(*info, all)}, DecodeOptions{}, &cache, &out, &stats).ok());
  int64_t undecodable = 0;
  for (int64_t k = 0; k < info->num_frames; ++k) {
    auto it = ref_by_pts.find((*index)->frame_ts[k]);
    if (it != ref_by_pts.end()) {
      EXPECT_TRUE(SameBytes(ClipFrame(out[0], static_cast<int>(k)), it->second->rgb)) << k;
      continue;
    }
    ++undecodable;
    const bool like_previous = k > 0 && ClipFrame(out[0], static_cast<int>(k)) == ClipFrame(out[0], static_cast<int>(k - 1));
    const bool like_next = k + 1 < info->num_frames && ClipFrame(out[0], static_cast<int>(k)) == ClipFrame(out[0], static_cast<int>(k + 1));
    EXPECT_TRUE(like_previous || like_next) << k;
  }
  EXPECT_GE(undecodable, 1);
  EXPECT_EQ(stats.frames_substituted, undecodable);
}

}  // namespace
}  // namespace tecl::video
