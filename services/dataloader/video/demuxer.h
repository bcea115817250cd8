// Demuxer: an opened media file positioned on its video stream, with the checks that turn files
// which are not videos into INVALID_ARGUMENT and damaged ones into DATA_LOSS before any decoding.
//
// Open() opens and checks the file itself (missing: NOT_FOUND; not a regular file:
// INVALID_ARGUMENT, kRefusalNotRegularFile; zero bytes: DATA_LOSS), lets FFmpeg read it with the
// file protocol only (input_policy.h), probes the container itself
// (nothing recognised, or only a weak guess from the file name such as FFmpeg's ANSI-art reader
// for *.txt: INVALID_ARGUMENT), reads the header (unreadable, e.g. an MP4 cut before its moov
// box: DATA_LOSS), and picks the video stream (none, or only a cover picture or text art:
// INVALID_ARGUMENT), refuses a format outside kAllowedFormats (INVALID_ARGUMENT,
// kRefusalFormatNotAllowed) and a video stream larger than `limits` (INVALID_ARGUMENT,
// kRefusalTooLarge). Every read inside FFmpeg is cut when `deadline` expires (DEADLINE_EXCEEDED).
//
// Thread-compatible: one thread at a time. Owns its FFmpeg contexts; `deadline` must outlive it.
#ifndef TECL_SERVICES_DATALOADER_VIDEO_DEMUXER_H_
#define TECL_SERVICES_DATALOADER_VIDEO_DEMUXER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/dataloader/video/ffmpeg_util.h"
#include "services/dataloader/video/video_reader.h"

namespace tecl::video {

// Size and modification time, the identity under which an index is cached.
struct FileIdentity {
  int64_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileIdentity& o) const { return size == o.size && mtime_ns == o.mtime_ns; }
};

// NOT_FOUND when missing, INVALID_ARGUMENT (kRefusalNotRegularFile) for a directory, FIFO, device
// or socket, DATA_LOSS for an empty regular file.
absl::StatusOr<FileIdentity> StatVideoFile(const std::string& path);

class Demuxer {
 public:
  static absl::StatusOr<std::unique_ptr<Demuxer>> Open(const std::string& path,
                                                       Deadline* deadline,
                                                       const InputLimits& limits = {});
  ~Demuxer();
  Demuxer(const Demuxer&) = delete;
  Demuxer& operator=(const Demuxer&) = delete;

  AVFormatContext* format() const { return format_; }
  AVStream* stream() const { return format_->streams[stream_index_]; }
  int stream_index() const { return stream_index_; }
  const std::string& path() const { return path_; }
  Deadline* deadline() const { return deadline_; }
  const InputLimits& limits() const { return limits_; }

  // Reads the next packet of the video stream into `packet` (other streams are discarded).
  // Read errors of damaged stretches are skipped (counted in read_errors()) unless
  // kMaxConsecutiveReadErrors come in a row. Returns 0 on success, AVERROR_EOF at the end,
  // AVERROR_EXIT when the deadline cut a read, another AVERROR when reading cannot go on.
  int ReadVideoPacket(AVPacket* packet);
  int64_t read_errors() const { return read_errors_; }
  int last_read_error() const { return last_read_error_; }

  static constexpr int kMaxConsecutiveReadErrors = 1000;

 private:
  Demuxer(std::string path, Deadline* deadline, const InputLimits& limits)
      : path_(std::move(path)), deadline_(deadline), limits_(limits) {}

  std::string path_;
  Deadline* deadline_;
  InputLimits limits_;
  AvIoContextPtr io_;
  AVFormatContext* format_ = nullptr;  // Closed before io_ is freed (custom I/O).
  int stream_index_ = -1;
  int64_t read_errors_ = 0;
  int last_read_error_ = 0;
};

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_DEMUXER_H_
