// Ownership wrappers for FFmpeg objects, the one AVERROR -> absl::Status mapping, and the
// wall-clock budget that cuts blocking FFmpeg calls (an AVIOInterruptCB).
//
// Every FFmpeg object the video library creates is held by one of the unique_ptr aliases below,
// so an early return never leaks. FFmpeg's own log lines at error level are captured per thread
// (not printed) and the most recent one is appended to the Status made by AvStatus(), so a
// caller reads "moov atom not found" instead of a bare "Invalid data found".
//
// Thread-safety: the wrappers are plain owners (one thread at a time per object); AvStatus() and
// the log capture are thread-safe (the capture is thread-local). Deadline is not thread-safe.
#ifndef TECL_SERVICES_DATALOADER_VIDEO_FFMPEG_UTIL_H_
#define TECL_SERVICES_DATALOADER_VIDEO_FFMPEG_UTIL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

namespace tecl::video {

struct AvFormatInputDeleter {
  void operator()(AVFormatContext* ctx) const { avformat_close_input(&ctx); }
};
struct AvIoContextDeleter {  // For contexts made by avio_open2().
  void operator()(AVIOContext* ctx) const { avio_closep(&ctx); }
};
struct AvCodecContextDeleter {
  void operator()(AVCodecContext* ctx) const { avcodec_free_context(&ctx); }
};
struct AvFrameDeleter {
  void operator()(AVFrame* frame) const { av_frame_free(&frame); }
};
struct AvPacketDeleter {
  void operator()(AVPacket* packet) const { av_packet_free(&packet); }
};
struct SwsContextDeleter {
  void operator()(SwsContext* ctx) const { sws_freeContext(ctx); }
};

using AvFormatInputPtr = std::unique_ptr<AVFormatContext, AvFormatInputDeleter>;
using AvIoContextPtr = std::unique_ptr<AVIOContext, AvIoContextDeleter>;
using AvCodecContextPtr = std::unique_ptr<AVCodecContext, AvCodecContextDeleter>;
using AvFramePtr = std::unique_ptr<AVFrame, AvFrameDeleter>;
using AvPacketPtr = std::unique_ptr<AVPacket, AvPacketDeleter>;
using SwsContextPtr = std::unique_ptr<SwsContext, SwsContextDeleter>;

// The wall-clock budget of one call. Install() points an AVIOInterruptCB at it so blocking reads
// inside FFmpeg return AVERROR_EXIT once the deadline has passed; loops also poll Expired().
class Deadline {
 public:
  explicit Deadline(absl::Duration budget) : budget_(budget), deadline_(absl::Now() + budget) {}
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  bool Expired() const { return absl::Now() > deadline_; }
  absl::Duration Remaining() const { return deadline_ - absl::Now(); }
  absl::Duration budget() const { return budget_; }
  AVIOInterruptCB Callback() { return AVIOInterruptCB{&Deadline::Interrupt, this}; }
  // DEADLINE_EXCEEDED naming `path` and what was being done.
  absl::Status ExceededStatus(absl::string_view path, absl::string_view doing) const;

 private:
  static int Interrupt(void* self) { return static_cast<Deadline*>(self)->Expired() ? 1 : 0; }

  absl::Duration budget_;
  absl::Time deadline_;
};

// Turns an FFmpeg error code into a Status: "<path>: <what>: <av_strerror>[; FFmpeg: <last log
// line>]". AVERROR(ENOENT) is NOT_FOUND, AVERROR(EACCES|EPERM) PERMISSION_DENIED, AVERROR_EXIT
// after `deadline` expired DEADLINE_EXCEEDED, AVERROR(ENOMEM) RESOURCE_EXHAUSTED, anything else
// `fallback` (the caller knows whether the input is not a video or a damaged one).
absl::Status AvStatus(int averror, absl::string_view path, absl::string_view what,
                      absl::StatusCode fallback, const Deadline* deadline = nullptr);

// The text of av_strerror(averror).
std::string AvErrorString(int averror);

// Installs (once per process) the FFmpeg log callback that captures error-level lines per thread
// instead of printing them. Called by every entry point of the library.
void InstallFfmpegLogCapture();
// Clears / returns the calling thread's last captured FFmpeg error line.
void ClearLastFfmpegError();
std::string LastFfmpegError();

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_FFMPEG_UTIL_H_
