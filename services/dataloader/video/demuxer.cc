#include "services/dataloader/video/demuxer.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/dataloader/video/input_policy.h"

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
  // A FIFO, a device or a socket could block a reader forever: refused before anything opens it.
  if (absl::Status status = CheckRegularFileMode(path, st.st_mode); !status.ok()) return status;
  if (st.st_size == 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": file is empty (0 bytes); re-copy or remove it from the data set"));
  }
  FileIdentity identity;
  identity.size = st.st_size;
  identity.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return identity;
}

absl::StatusOr<std::unique_ptr<Demuxer>> Demuxer::Open(const std::string& path,
                                                       Deadline* deadline,
                                                       const InputLimits& limits) {
  InstallFfmpegLogCapture();
  ClearLastFfmpegError();
  // Checked and opened here (a FIFO or device is refused without blocking); FFmpeg opens the same
  // file through its /proc/self/fd link, with the file protocol only.
  absl::StatusOr<CheckedFile> file = CheckedFile::Open(path);
  if (!file.ok()) return file.status();
  std::unique_ptr<Demuxer> demuxer(new Demuxer(path, deadline, limits));
  AVIOInterruptCB interrupt = deadline->Callback();

  AVIOContext* io = nullptr;
  AVDictionary* io_options = RestrictedInputOptions();
  int ret = avio_open2(&io, file->ProcPath().c_str(), AVIO_FLAG_READ, &interrupt, &io_options);
  av_dict_free(&io_options);
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
  if (!IsAllowedFormat(input_format->name)) {
    return WithRefusal(
        absl::InvalidArgumentError(absl::StrCat(
            path, ": the ", input_format->name,
            " format is not read (playlists and lists such as HLS, DASH and concat name other "
            "files or URLs); the formats read are ",
            AllowedFormatNames(), "; transcode it (e.g. to MP4) or remove it from the data set")),
        kRefusalFormatNotAllowed);
  }

  AVFormatContext* format = avformat_alloc_context();
  if (format == nullptr) return absl::ResourceExhaustedError("avformat_alloc_context failed");
  format->pb = io;
  format->flags |= AVFMT_FLAG_CUSTOM_IO;
  format->interrupt_callback = interrupt;
  ClearLastFfmpegError();
  AVDictionary* format_options = RestrictedInputOptions();
  ret = avformat_open_input(&format, path.c_str(), input_format, &format_options);  // Frees on failure.
  av_dict_free(&format_options);
  if (ret < 0) {
    return AvStatus(ret, path,
                    absl::StrCat("damaged ", input_format->name,
                                 " file: its header cannot be read (truncated or corrupt)"),
                    absl::StatusCode::kDataLoss, deadline);
  }
  demuxer->format_ = format;

  // Probing the streams decodes a few frames: no larger than the limits allow.
  std::vector<AVDictionary*> stream_options(format->nb_streams, nullptr);
  for (AVDictionary*& options : stream_options) {
    av_dict_set_int(&options, "max_pixels", int64_t{limits.max_width} * limits.max_height, 0);
  }
  ret = avformat_find_stream_info(format, stream_options.empty() ? nullptr : stream_options.data());
  for (AVDictionary*& options : stream_options) av_dict_free(&options);
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
  if (par->width > limits.max_width || par->height > limits.max_height) {
    return WithRefusal(
        absl::InvalidArgumentError(absl::StrCat(
            path, ": the video is ", par->width, "x", par->height, ", larger than the limit of ",
            limits.max_width, "x", limits.max_height,
            " (--max_video_width, --max_video_height); scale it down or raise the limits")),
        kRefusalTooLarge);
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
