#include "services/dataloader/synth/video_encoder.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

extern "C" {
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

namespace tecl::synth {
namespace {

using video::AvStatus;

absl::Status Fail(int averror, const std::string& path, const std::string& what) {
  return AvStatus(averror, path, what, absl::StatusCode::kUnavailable);
}

AVPixelFormat PickPixelFormat(const AVCodec* codec) {
  if (codec->pix_fmts == nullptr) return AV_PIX_FMT_YUV420P;
  if (codec->id == AV_CODEC_ID_MJPEG) return AV_PIX_FMT_YUVJ420P;  // Full-range, as JPEG is.
  for (const AVPixelFormat* f = codec->pix_fmts; *f != AV_PIX_FMT_NONE; ++f) {
    if (*f == AV_PIX_FMT_YUV420P) return *f;
  }
  for (const AVPixelFormat* f = codec->pix_fmts; *f != AV_PIX_FMT_NONE; ++f) {
    if (*f == AV_PIX_FMT_YUVJ420P) return *f;
  }
  return codec->pix_fmts[0];
}

}  // namespace

std::string DefaultContainer(const std::string& codec) {
  if (codec == "libx264" || codec == "mpeg4" || codec == "mjpeg" || codec == "h264") return "mp4";
  return "matroska";
}

std::string ContainerExtension(const std::string& container) {
  if (container == "mp4") return ".mp4";
  if (container == "avi") return ".avi";
  if (container == "webm") return ".webm";
  if (container == "mov") return ".mov";
  return ".mkv";
}

absl::StatusOr<std::unique_ptr<VideoEncoder>> VideoEncoder::Open(const std::string& path,
                                                                 const EncoderOptions& options) {
  video::InstallFfmpegLogCapture();
  video::ClearLastFfmpegError();
  std::unique_ptr<VideoEncoder> enc(new VideoEncoder(path, options));
  const std::string container =
      options.container.empty() ? DefaultContainer(options.codec) : options.container;

  const AVCodec* codec = avcodec_find_encoder_by_name(options.codec.c_str());
  if (codec == nullptr || codec->type != AVMEDIA_TYPE_VIDEO) {
    return absl::InvalidArgumentError(absl::StrCat(
        "codec \"", options.codec,
        "\" is not a video encoder of this FFmpeg build; use libx264, mpeg4, mjpeg, ffv1 or "
        "libvpx-vp9"));
  }
  int ret = avformat_alloc_output_context2(&enc->format_, nullptr, container.c_str(), path.c_str());
  if (ret < 0 || enc->format_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("container \"", container, "\" is not known to this FFmpeg build"));
  }
  enc->format_->flags |= AVFMT_FLAG_BITEXACT;

  enc->encoder_.reset(avcodec_alloc_context3(codec));
  AVCodecContext* ctx = enc->encoder_.get();
  const AVRational rate = av_d2q(options.fps, 100000);
  ctx->width = options.width;
  ctx->height = options.height;
  ctx->time_base = av_inv_q(rate);
  ctx->framerate = rate;
  ctx->gop_size = options.gop;
  ctx->pix_fmt = PickPixelFormat(codec);
  ctx->thread_count = 1;  // Bit-exact output: the same frames always give the same bytes.
  ctx->flags |= AV_CODEC_FLAG_BITEXACT;
  if (enc->format_->oformat->flags & AVFMT_GLOBALHEADER) ctx->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

  AVDictionary* opts = nullptr;
  const std::string name = codec->name;
  if (name == "libx264") {
    ctx->max_b_frames = options.fast_decode ? 0 : 2;
    av_dict_set(&opts, "preset", "veryfast", 0);
    if (options.fast_decode) av_dict_set(&opts, "tune", "fastdecode", 0);
    av_dict_set(&opts, "crf", std::to_string(options.quality).c_str(), 0);
    // Keyframes exactly every `gop` frames; no scene-cut keyframes. No macroblock-tree rate
    // control: on tiny frames it reads memory it never wrote, so the same frames encoded twice
    // in one process could give different bytes.
    av_dict_set(&opts, "x264-params",
                absl::StrCat("scenecut=0:min-keyint=", options.gop, ":threads=1:mbtree=0").c_str(),
                0);
  } else if (name == "libvpx-vp9") {
    av_dict_set(&opts, "crf", std::to_string(options.quality).c_str(), 0);
    av_dict_set(&opts, "b", "0", 0);
    av_dict_set(&opts, "deadline", "realtime", 0);
    av_dict_set(&opts, "cpu-used", "8", 0);
  } else if (name == "mpeg4" || name == "mjpeg") {
    ctx->max_b_frames = name == "mpeg4" ? 2 : 0;
    ctx->flags |= AV_CODEC_FLAG_QSCALE;
    ctx->global_quality = FF_QP2LAMBDA * std::clamp(options.quality, 2, 31);
  }
  ret = avcodec_open2(ctx, codec, &opts);
  av_dict_free(&opts);
  if (ret < 0) {
    return AvStatus(ret, path,
                    absl::StrCat("the ", name, " encoder refuses ", options.width, "x",
                                 options.height, " at ", options.fps, " fps"),
                    absl::StatusCode::kInvalidArgument);
  }

  enc->stream_ = avformat_new_stream(enc->format_, nullptr);
  if (enc->stream_ == nullptr) return absl::ResourceExhaustedError("avformat_new_stream failed");
  enc->stream_->time_base = ctx->time_base;
  enc->stream_->avg_frame_rate = rate;
  ret = avcodec_parameters_from_context(enc->stream_->codecpar, ctx);
  if (ret < 0) return Fail(ret, path, "stream parameters");

  ret = avio_open(&enc->format_->pb, path.c_str(), AVIO_FLAG_WRITE);
  if (ret < 0) return Fail(ret, path, "cannot create the file");
  ret = avformat_write_header(enc->format_, nullptr);
  if (ret < 0) return Fail(ret, path, "cannot write the container header");

  enc->frame_.reset(av_frame_alloc());
  enc->frame_->format = ctx->pix_fmt;
  enc->frame_->width = ctx->width;
  enc->frame_->height = ctx->height;
  ret = av_frame_get_buffer(enc->frame_.get(), 0);
  if (ret < 0) return Fail(ret, path, "frame buffer");
  // Zero the whole allocation, padding included: the encoder's SIMD reads past row ends, and
  // uninitialised bytes there would make the output differ from run to run.
  for (AVBufferRef* buf : enc->frame_->buf) {
    if (buf != nullptr) std::memset(buf->data, 0, buf->size);
  }
  enc->rgb_.reset(av_frame_alloc());
  enc->rgb_->format = AV_PIX_FMT_RGB24;
  enc->rgb_->width = ctx->width;
  enc->rgb_->height = ctx->height;
  ret = av_frame_get_buffer(enc->rgb_.get(), 0);
  if (ret < 0) return Fail(ret, path, "frame buffer");
  for (AVBufferRef* buf : enc->rgb_->buf) {  // Padding reads the same every time.
    if (buf != nullptr) std::memset(buf->data, 0, buf->size);
  }
  enc->packet_.reset(av_packet_alloc());
  enc->sws_.reset(sws_getContext(ctx->width, ctx->height, AV_PIX_FMT_RGB24, ctx->width,
                                 ctx->height, ctx->pix_fmt, SWS_BILINEAR | SWS_ACCURATE_RND |
                                 SWS_BITEXACT, nullptr, nullptr, nullptr));
  if (enc->sws_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": cannot convert RGB24 to ", av_get_pix_fmt_name(ctx->pix_fmt)));
  }
  return enc;
}

VideoEncoder::~VideoEncoder() {
  if (format_ != nullptr) {
    if (format_->pb != nullptr) avio_closep(&format_->pb);
    avformat_free_context(format_);
  }
}

absl::Status VideoEncoder::AddFrame(const uint8_t* rgb) {
  int ret = av_frame_make_writable(frame_.get());
  if (ret < 0) return Fail(ret, path_, "frame buffer");
  // swscale's SIMD loads run past the end of a row: give it padded rows, never the caller's
  // buffer (whatever follows that in memory would leak into the picture).
  const size_t row = static_cast<size_t>(options_.width) * 3;
  for (int y = 0; y < options_.height; ++y) {
    std::memcpy(rgb_->data[0] + static_cast<size_t>(y) * rgb_->linesize[0], rgb + y * row, row);
  }
  sws_scale(sws_.get(), rgb_->data, rgb_->linesize, 0, options_.height, frame_->data,
            frame_->linesize);
  frame_->pts = next_pts_++;
  ret = avcodec_send_frame(encoder_.get(), frame_.get());
  if (ret < 0) return Fail(ret, path_, "encoding a frame");
  return Drain(false);
}

absl::Status VideoEncoder::Drain(bool flush) {
  while (true) {
    const int ret = avcodec_receive_packet(encoder_.get(), packet_.get());
    if (ret == AVERROR(EAGAIN) && !flush) return absl::OkStatus();
    if (ret == AVERROR_EOF) return absl::OkStatus();
    if (ret < 0) return Fail(ret, path_, "encoding");
    av_packet_rescale_ts(packet_.get(), encoder_->time_base, stream_->time_base);
    packet_->stream_index = stream_->index;
    const int written = av_interleaved_write_frame(format_, packet_.get());
    if (written < 0) return Fail(written, path_, "writing a packet");
  }
}

absl::Status VideoEncoder::Finish() {
  if (finished_) return absl::OkStatus();
  finished_ = true;
  int ret = avcodec_send_frame(encoder_.get(), nullptr);
  if (ret < 0) return Fail(ret, path_, "flushing the encoder");
  if (absl::Status s = Drain(true); !s.ok()) return s;
  ret = av_write_trailer(format_);
  if (ret < 0) return Fail(ret, path_, "writing the trailer");
  ret = avio_closep(&format_->pb);
  if (ret < 0) return Fail(ret, path_, "closing the file");
  return absl::OkStatus();
}

}  // namespace tecl::synth
