#include "services/dataloader/video/demuxer.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tecl::video {
namespace {

// Codecs FFmpeg offers for text files (ANSI art and friends): a text file is not a video.
bool IsTextArtCodec(AVCodecID id) {
  return id == AV_CODEC_ID_ANSI || id == AV_CODEC_ID_BINTEXT || id == AV_CODEC_ID_XBIN ||
         id == AV_CODEC_ID_IDF;
}

}  // namespace

absl::StatusOr<FileIdentity> StatVideoFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file; check the manifest path"));
    }
    if (err == EACCES) {
      return absl::PermissionDeniedError(absl::StrCat(path, ": not readable: ", strerror(err)));
    }
    return absl::UnavailableError(absl::StrCat(path, ": stat failed: ", strerror(err)));
  }
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a video file"));
  }
  if (S_ISREG(st.st_mode) && st.st_size == 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": file is empty (0 bytes); re-copy or remove it from the data set"));
  }
  FileIdentity identity;
  identity.size = st.st_size;
  identity.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return identity;
}

absl::StatusOr<std::unique_ptr<Demuxer>> Demuxer::Open(const std::string& path,
                                                       Deadline* deadline) {
  InstallFfmpegLogCapture();
  ClearLastFfmpegError();
  if (absl::StatusOr<FileIdentity> identity = StatVideoFile(path); !identity.ok()) {
    return identity.status();
  }
  std::unique_ptr<Demuxer> demuxer(new Demuxer(path, deadline));
  AVIOInterruptCB interrupt = deadline->Callback();

  AVIOContext* io = nullptr;
  int ret = avio_open2(&io, path.c_str(), AVIO_FLAG_READ, &interrupt, nullptr);
  if (ret < 0) {
    return AvStatus(ret, path, "cannot open", absl::StatusCode::kUnavailable, deadline);
  }
  demuxer->io_.reset(io);

  const AVInputFormat* input_format = nullptr;
  ret = av_probe_input_buffer2(io, &input_format, path.c_str(), nullptr, 0, 0);
  if (ret < 0 || input_format == nullptr) {
    if (ret == AVERROR_EXIT && deadline->Expired()) {
      return deadline->ExceededStatus(path, "probing the container");
    }
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a video file: FFmpeg recognises no container format in it (",
        AvErrorString(ret < 0 ? ret : AVERROR_INVALIDDATA), ")"));
  }
  if (ret < AVPROBE_SCORE_RETRY) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a video file: its content matches no container; only the file name suggests '",
        input_format->name, "' (probe score ", ret, ")"));
  }

  AVFormatContext* format = avformat_alloc_context();
  if (format == nullptr) return absl::ResourceExhaustedError("avformat_alloc_context failed");
  format->pb = io;
  format->flags |= AVFMT_FLAG_CUSTOM_IO;
  format->interrupt_callback = interrupt;
  ClearLastFfmpegError();
  ret = avformat_open_input(&format, path.c_str(), input_format, nullptr);  // Frees on failure.
  if (ret < 0) {
    return AvStatus(ret, path,
                    absl::StrCat("damaged ", input_format->name,
                                 " file: its header cannot be read (truncated or corrupt)"),
                    absl::StatusCode::kDataLoss, deadline);
  }
  demuxer->format_ = format;

  ret = avformat_find_stream_info(format, nullptr);
  if (ret < 0) {
    return AvStatus(ret, path, "damaged file: stream parameters cannot be read",
                    absl::StatusCode::kDataLoss, deadline);
  }

  int best = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (best >= 0 && (format->streams[best]->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
    best = -1;
    for (unsigned i = 0; i < format->nb_streams; ++i) {
      const AVStream* st = format->streams[i];
      if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
          !(st->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
        best = static_cast<int>(i);
        break;
      }
    }
  }
  if (best < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a video: the ", input_format->name,
                     " file has no video stream (only audio, data or a cover picture)"));
  }
  const AVCodecParameters* par = format->streams[best]->codecpar;
  if (IsTextArtCodec(par->codec_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a video: a text file (FFmpeg reads it only as ", avcodec_get_name(par->codec_id),
        " text art)"));
  }
  demuxer->stream_index_ = best;
  for (unsigned i = 0; i < format->nb_streams; ++i) {
    if (static_cast<int>(i) != best) format->streams[i]->discard = AVDISCARD_ALL;
  }
  return demuxer;
}

Demuxer::~Demuxer() {
  if (format_ != nullptr) avformat_close_input(&format_);
  // io_ (custom I/O) is released after the format context that reads through it.
}

int Demuxer::ReadVideoPacket(AVPacket* packet) {
  int errors = 0;
  while (true) {
    const int ret = av_read_frame(format_, packet);
    if (ret == AVERROR_EOF || ret == AVERROR_EXIT || ret == AVERROR(ENOMEM)) return ret;
    if (ret < 0) {
      // A damaged stretch (a partial sample, a corrupt cluster): the demuxer resynchronises on
      // the next call, as players do; give up only when nothing readable follows.
      ++read_errors_;
      last_read_error_ = ret;
      if (++errors >= kMaxConsecutiveReadErrors) return ret;
      continue;
    }
    if (packet->stream_index == stream_index_) return 0;
    av_packet_unref(packet);
  }
}

}  // namespace tecl::video
