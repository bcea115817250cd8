// Test helpers for the FFmpeg decoder: encoded fixtures written with the ffmpeg CLI into a
// temporary folder, and an independent reference decoder (plain libavcodec, every packet from the
// start, frames in decoder output order, converted to full-size RGB with the same scaler
// flags) that seek-based decoding must reproduce exactly.
#ifndef TECL_TESTS_UNIT_DATALOADER_VIDEO_VIDEO_TEST_UTIL_H_
#define TECL_TESTS_UNIT_DATALOADER_VIDEO_VIDEO_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "services/dataloader/video/video_reader.h"

extern "C" {
#include <libavutil/frame.h>
}

namespace tecl::video::testing {

// A fresh folder under TEST_TMPDIR or /tmp, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs `ffmpeg -nostdin -hide_banner -loglevel error -y <args>`; fails the test on error.
void RunFfmpeg(const std::string& args);
// Runs a shell command; returns its exit status.
int RunShell(const std::string& command);

// One decoded frame as RGB24 (height x width x 3) with its timestamp.
struct RefFrame {
  int width = 0;
  int height = 0;
  int64_t pts = 0;  // frame->pts, or best_effort_timestamp when absent.
  std::vector<uint8_t> rgb;
  std::shared_ptr<AVFrame> yuv;  // The decoded picture, when asked for.
  int decode_error_flags = 0;    // As the decoder set them (0: no error reported).
};

// Decodes every frame of `path` sequentially from the start (single-threaded decoder, no
// seeking, no skipping), in decoder output (presentation) order.
std::vector<RefFrame> ReferenceDecode(const std::string& path, bool keep_yuv = false);

// Like ReferenceDecode, but a fresh decoder opened with `decoder_options` (AVOptions such as
// {"x264_build", "150"}) is sent the video packets from `start_packet` (decode order) on: a
// decode started at that keyframe by the plainest loop, without any state from before it.
std::vector<RefFrame> ReferenceDecodeFrom(
    const std::string& path, int start_packet,
    const std::vector<std::pair<std::string, std::string>>& decoder_options);

// 64-bit FNV-1a of a frame's bytes, to report per-frame checksums.
uint64_t Checksum(const std::vector<uint8_t>& bytes);

// Rotates an RGB frame counter-clockwise by `degrees_ccw` (0, 90, 180, 270).
RefFrame RotateCcw(const RefFrame& frame, int degrees_ccw);

// The reference for a crop: the region of `full` (pixel rectangle as documented in
// frame_writer.h, origin on the 4:2:0 chroma grid) scaled with swscale to out_w x out_h.
std::vector<uint8_t> ReferenceCrop(const RefFrame& full, const CropRect& crop, int out_width,
                                   int out_height, bool flip);

// The same crop made independently in the YUV domain: FFmpeg's own av_frame_apply_cropping at
// that pixel rectangle, then one swscale call to the output size (as the reader does).
std::vector<uint8_t> ReferenceYuvCrop(const AVFrame& frame, const CropRect& crop, int out_width,
                                      int out_height, bool flip);

// Frame `i` of a decoded clip.
std::vector<uint8_t> ClipFrame(const ClipFrames& clip, int i);

// Mean and max absolute difference of two equal-size byte buffers.
struct Diff {
  double mean = 0;
  int max = 0;
};
Diff Compare(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

// Success when byte-identical; otherwise says where and by how much they differ.
::testing::AssertionResult SameBytes(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

}  // namespace tecl::video::testing

#endif  // TECL_TESTS_UNIT_DATALOADER_VIDEO_VIDEO_TEST_UTIL_H_
