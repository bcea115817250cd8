// VideoEncoder: writes RGB24 frames as a video file through libavcodec/libavformat (H.264 in MP4
// by default), single-threaded and bit-exact so the same frames give the same bytes.
//
//   TECL_ASSIGN_OR_RETURN(auto encoder, VideoEncoder::Open(path, options));
//   for (...) TECL_RETURN_IF_ERROR(encoder->AddFrame(rgb.data()));
//   TECL_RETURN_IF_ERROR(encoder->Finish());
//
// Thread-compatible (one encoder per thread); owns its FFmpeg contexts. Errors name the path:
// INVALID_ARGUMENT for options the encoder refuses, UNAVAILABLE / PERMISSION_DENIED for I/O.
#ifndef TECL_SERVICES_DATALOADER_SYNTH_VIDEO_ENCODER_H_
#define TECL_SERVICES_DATALOADER_SYNTH_VIDEO_ENCODER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/dataloader/video/ffmpeg_util.h"

namespace tecl::synth {

struct EncoderOptions {
  int width = 64;
  int height = 64;
  double fps = 24;
  // libx264 (H.264), mpeg4, mjpeg, ffv1 or libvpx-vp9: any encoder name FFmpeg knows.
  std::string codec = "libx264";
  int gop = 16;      // Keyframe interval, frames.
  int quality = 20;  // libx264/libvpx-vp9 CRF; mpeg4/mjpeg qscale (2-31); ignored by ffv1.
  // libx264 only: encode for the cheapest decode (no B-frames, CAVLC instead of CABAC, no
  // deblocking filter: x264's tune=fastdecode), as prepared data sets are written.
  bool fast_decode = false;
  std::string container;  // Muxer name; empty = "mp4" (H.264, MPEG-4, MJPEG) or "matroska".
};

// The container a codec is written in by default and its file extension (".mp4", ".mkv").
std::string DefaultContainer(const std::string& codec);
std::string ContainerExtension(const std::string& container);

class VideoEncoder {
 public:
  static absl::StatusOr<std::unique_ptr<VideoEncoder>> Open(const std::string& path,
                                                            const EncoderOptions& options);
  ~VideoEncoder();
  VideoEncoder(const VideoEncoder&) = delete;
  VideoEncoder& operator=(const VideoEncoder&) = delete;

  // `rgb`: height x width x 3 bytes.
  absl::Status AddFrame(const uint8_t* rgb);
  // Flushes the encoder and writes the trailer; the file is complete after it returns OK.
  absl::Status Finish();

 private:
  VideoEncoder(std::string path, EncoderOptions options)
      : path_(std::move(path)), options_(std::move(options)) {}
  absl::Status Drain(bool flush);

  std::string path_;
  EncoderOptions options_;
  AVFormatContext* format_ = nullptr;  // Output context; freed with its I/O in the destructor.
  video::AvCodecContextPtr encoder_;
  video::AvFramePtr frame_;
  video::AvFramePtr rgb_;  // Padded copy of the caller's RGB24 picture.
  video::AvPacketPtr packet_;
  video::SwsContextPtr sws_;
  AVStream* stream_ = nullptr;
  int64_t next_pts_ = 0;
  bool finished_ = false;
};

}  // namespace tecl::synth

#endif  // TECL_SERVICES_DATALOADER_SYNTH_VIDEO_ENCODER_H_
