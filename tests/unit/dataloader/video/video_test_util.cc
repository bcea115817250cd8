#include "tests/unit/dataloader/video/video_test_util.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "gtest/gtest.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
}

namespace tecl::video::testing {

constexpr int kReferenceFlags = SWS_AREA | SWS_FULL_CHR_H_INT;

namespace {

// Scales with `sws` (set up for planar GBR output) and interleaves to RGB24: planar output has
// no dithering, so it is reproducible pixel for pixel.
std::vector<uint8_t> ToRgb(SwsContext* sws, const uint8_t* const* src, const int* src_stride,
                           int src_height, int width, int height) {
  const size_t plane = static_cast<size_t>(width) * height + 64;
  std::vector<uint8_t> gbr(plane * 3);
  uint8_t* dst[4] = {gbr.data(), gbr.data() + plane, gbr.data() + 2 * plane, nullptr};
  int dst_stride[4] = {width, width, width, 0};
  sws_scale(sws, src, src_stride, 0, src_height, dst, dst_stride);
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  for (size_t i = 0; i < static_cast<size_t>(width) * height; ++i) {
    rgb[i * 3 + 0] = dst[2][i];
    rgb[i * 3 + 1] = dst[0][i];
    rgb[i * 3 + 2] = dst[1][i];
  }
  return rgb;
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/tecl_video_XXXXXX";
  char* made = mkdtemp(pattern.data());
  EXPECT_NE(made, nullptr);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

int RunShell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void RunFfmpeg(const std::string& args) {
  const std::string command = "ffmpeg -nostdin -hide_banner -loglevel error -y " + args;
  ASSERT_EQ(RunShell(command), 0) << command;
}

namespace {

void FlipRows(std::vector<uint8_t>& rgb, int width, int height) {
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width / 2; ++x) {
      for (int c = 0; c < 3; ++c) {
        std::swap(rgb[(y * width + x) * 3 + c], rgb[(y * width + width - 1 - x) * 3 + c]);
      }
    }
  }
}

std::vector<RefFrame> DecodeFrom(
    const std::string& path, int start_packet,
    const std::vector<std::pair<std::string, std::string>>& decoder_options, bool keep_yuv) {
  av_log_set_level(AV_LOG_ERROR);
  std::vector<RefFrame> frames;
  AVFormatContext* format = nullptr;
  if (avformat_open_input(&format, path.c_str(), nullptr, nullptr) < 0) {
    ADD_FAILURE() << "reference: cannot open " << path;
    return frames;
  }
  avformat_find_stream_info(format, nullptr);
  const int stream = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  const AVCodecParameters* par = format->streams[stream]->codecpar;
  const AVCodec* codec = avcodec_find_decoder(par->codec_id);
  AVCodecContext* ctx = avcodec_alloc_context3(codec);
  avcodec_parameters_to_context(ctx, par);
  ctx->thread_count = 1;
  ctx->pkt_timebase = format->streams[stream]->time_base;
  AVDictionary* options = nullptr;
  for (const auto& [key, value] : decoder_options) av_dict_set(&options, key.c_str(), value.c_str(), 0);
  EXPECT_EQ(avcodec_open2(ctx, codec, &options), 0) << path;
  EXPECT_EQ(av_dict_count(options), 0) << path << ": a decoder option was not taken";
  av_dict_free(&options);
  AVPacket* packet = av_packet_alloc();
  AVFrame* frame = av_frame_alloc();
  SwsContext* sws = nullptr;
  auto receive = [&] {
    while (avcodec_receive_frame(ctx, frame) == 0) {
      RefFrame ref;
      ref.width = frame->width;
      ref.height = frame->height;
      ref.pts = frame->pts != AV_NOPTS_VALUE ? frame->pts : frame->best_effort_timestamp;
      ref.decode_error_flags = frame->decode_error_flags;
      sws = sws_getCachedContext(sws, frame->width, frame->height,
                                 static_cast<AVPixelFormat>(frame->format), frame->width,
                                 frame->height, AV_PIX_FMT_GBRP, kReferenceFlags, nullptr, nullptr,
                                 nullptr);
      ref.rgb = ToRgb(sws, frame->data, frame->linesize, frame->height, ref.width, ref.height);
      if (keep_yuv) {
        ref.yuv = std::shared_ptr<AVFrame>(av_frame_clone(frame), [](AVFrame* f) { av_frame_free(&f); });
      }
      frames.push_back(std::move(ref));
      av_frame_unref(frame);
    }
  };
  for (int index = 0; av_read_frame(format, packet) >= 0;) {
    if (packet->stream_index == stream && index++ >= start_packet) {
      while (avcodec_send_packet(ctx, packet) == AVERROR(EAGAIN)) receive();  // Queue full (dav1d).
      receive();
    }
    av_packet_unref(packet);
  }
  avcodec_send_packet(ctx, nullptr);
  receive();
  sws_freeContext(sws);
  av_frame_free(&frame);
  av_packet_free(&packet);
  avcodec_free_context(&ctx);
  avformat_close_input(&format);
  return frames;
}

}  // namespace

std::vector<RefFrame> ReferenceDecode(const std::string& path, bool keep_yuv) {
  return DecodeFrom(path, 0, {}, keep_yuv);
}

std::vector<RefFrame> ReferenceDecodeFrom(
    const std::string& path, int start_packet,
    const std::vector<std::pair<std::string, std::string>>& decoder_options) {
  return DecodeFrom(path, start_packet, decoder_options, false);
}

uint64_t Checksum(const std::vector<uint8_t>& bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (uint8_t b : bytes) {
    hash ^= b;
    hash *= 1099511628211ull;
  }
  return hash;
}

RefFrame RotateCcw(const RefFrame& in, int degrees) {
  RefFrame out = in;
  const bool transposed = degrees == 90 || degrees == 270;
  out.width = transposed ? in.height : in.width;
  out.height = transposed ? in.width : in.height;
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x;
      int sy = y;
      if (degrees == 90) {  // Output (x, y) shows input (W-1-y, x).
        sx = in.width - 1 - y;
        sy = x;
      } else if (degrees == 180) {
        sx = in.width - 1 - x;
        sy = in.height - 1 - y;
      } else if (degrees == 270) {
        sx = y;
        sy = in.height - 1 - x;
      }
      std::copy_n(&in.rgb[(static_cast<size_t>(sy) * in.width + sx) * 3], 3,
                  &out.rgb[(static_cast<size_t>(y) * out.width + x) * 3]);
    }
  }
  return out;
}

std::vector<uint8_t> ReferenceCrop(const RefFrame& full, const CropRect& crop, int out_width,
                                   int out_height, bool flip) {
  const int w = full.width;
  const int h = full.height;
  long x0 = std::clamp<long>(std::lround(crop.x * w), 0, w - 1);
  const long x1 = std::clamp<long>(std::lround((crop.x + crop.width) * w), x0 + 1, w);
  long y0 = std::clamp<long>(std::lround(crop.y * h), 0, h - 1);
  const long y1 = std::clamp<long>(std::lround((crop.y + crop.height) * h), y0 + 1, h);
  const int rw = static_cast<int>(x1 - x0);
  const int rh = static_cast<int>(y1 - y0);
  x0 &= ~1L;  // 4:2:0 chroma grid.
  y0 &= ~1L;
  SwsContext* sws = sws_getContext(rw, rh, AV_PIX_FMT_RGB24, out_width, out_height,
                                   AV_PIX_FMT_GBRP, kReferenceFlags | SWS_FULL_CHR_H_INP, nullptr,
                                   nullptr, nullptr);
  const uint8_t* src[4] = {full.rgb.data() + (y0 * w + x0) * 3, nullptr, nullptr, nullptr};
  int src_stride[4] = {w * 3, 0, 0, 0};
  std::vector<uint8_t> out = ToRgb(sws, src, src_stride, rh, out_width, out_height);
  sws_freeContext(sws);
  if (flip) FlipRows(out, out_width, out_height);
  return out;
}

std::vector<uint8_t> ReferenceYuvCrop(const AVFrame& frame, const CropRect& crop, int out_width,
                                      int out_height, bool flip) {
  const int w = frame.width;
  const int h = frame.height;
  long x0 = std::clamp<long>(std::lround(crop.x * w), 0, w - 1);
  const long x1 = std::clamp<long>(std::lround((crop.x + crop.width) * w), x0 + 1, w);
  long y0 = std::clamp<long>(std::lround(crop.y * h), 0, h - 1);
  const long y1 = std::clamp<long>(std::lround((crop.y + crop.height) * h), y0 + 1, h);
  const long rw = x1 - x0;
  const long rh = y1 - y0;
  x0 &= ~1L;  // 4:2:0 chroma grid.
  y0 &= ~1L;
  AVFrame* cropped = av_frame_clone(&frame);
  cropped->crop_left = x0;
  cropped->crop_top = y0;
  cropped->crop_right = w - x0 - rw;
  cropped->crop_bottom = h - y0 - rh;
  EXPECT_EQ(av_frame_apply_cropping(cropped, AV_FRAME_CROP_UNALIGNED), 0);
  SwsContext* sws = sws_getContext(cropped->width, cropped->height,
                                   static_cast<AVPixelFormat>(cropped->format), out_width,
                                   out_height, AV_PIX_FMT_GBRP, kReferenceFlags, nullptr, nullptr,
                                   nullptr);
  std::vector<uint8_t> out =
      ToRgb(sws, cropped->data, cropped->linesize, cropped->height, out_width, out_height);
  sws_freeContext(sws);
  av_frame_free(&cropped);
  if (flip) FlipRows(out, out_width, out_height);
  return out;
}

std::vector<uint8_t> ClipFrame(const ClipFrames& clip, int i) {
  const size_t bytes = static_cast<size_t>(clip.height) * clip.width * 3;
  return std::vector<uint8_t>(clip.data.begin() + bytes * i, clip.data.begin() + bytes * (i + 1));
}

Diff Compare(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  Diff diff;
  if (a.size() != b.size()) {
    ADD_FAILURE() << "size " << a.size() << " != " << b.size();
    diff.max = 255;
    diff.mean = 255;
    return diff;
  }
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const int d = std::abs(int{a[i]} - int{b[i]});
    sum += d;
    diff.max = std::max(diff.max, d);
  }
  diff.mean = a.empty() ? 0 : sum / static_cast<double>(a.size());
  return diff;
}

}  // namespace tecl::video::testing

namespace tecl::video::testing {

::testing::AssertionResult SameBytes(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      const Diff diff = Compare(a, b);
      return ::testing::AssertionFailure()
             << "first difference at byte " << i << " (" << int{a[i]} << " vs " << int{b[i]}
             << "), mean |diff| " << diff.mean << ", max " << diff.max;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace tecl::video::testing
