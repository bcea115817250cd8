#include "services/dataloader/video/frame_writer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

extern "C" {
#include <libavutil/pixdesc.h>
}

namespace tecl::video {
namespace {

constexpr int kStrideAlign = 32;
constexpr int kPadding = 64;  // swscale's SIMD stores may run a little past a row's end.

int AlignUp(int value, int align) { return (value + align - 1) / align * align; }

int SwsColorspace(AVColorSpace space) {
  switch (space) {
    case AVCOL_SPC_BT709:
      return SWS_CS_ITU709;
    case AVCOL_SPC_FCC:
      return SWS_CS_FCC;
    case AVCOL_SPC_SMPTE240M:
      return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL:
      return SWS_CS_BT2020;
    default:
      return SWS_CS_DEFAULT;
  }
}

}  // namespace

PixelRect CropToPixels(const CropRect& crop, int width, int height) {
  PixelRect rect;
  const long x0 = std::clamp<long>(std::lround(crop.x * width), 0, width - 1);
  const long x1 = std::clamp<long>(std::lround((crop.x + crop.width) * width), x0 + 1, width);
  const long y0 = std::clamp<long>(std::lround(crop.y * height), 0, height - 1);
  const long y1 = std::clamp<long>(std::lround((crop.y + crop.height) * height), y0 + 1, height);
  rect.x = static_cast<int>(x0);
  rect.y = static_cast<int>(y0);
  rect.width = static_cast<int>(x1 - x0);
  rect.height = static_cast<int>(y1 - y0);
  return rect;
}

CropRect DisplayedToCoded(const CropRect& d, int rotation) {
  switch (rotation) {
    case 90:
      return CropRect{d.y, 1 - d.x - d.width, d.height, d.width};
    case 180:
      return CropRect{1 - d.x - d.width, 1 - d.y - d.height, d.width, d.height};
    case 270:
      return CropRect{1 - d.y - d.height, d.x, d.height, d.width};
    default:
      return d;
  }
}

FrameWriter::~FrameWriter() = default;

absl::Status FrameWriter::Prepare(SwsContextPtr& ctx, SwsKey& current, const SwsKey& wanted) {
  if (ctx != nullptr && current == wanted) return absl::OkStatus();
  ctx.reset(sws_getContext(wanted.src_width, wanted.src_height,
                           static_cast<AVPixelFormat>(wanted.src_format), wanted.dst_width,
                           wanted.dst_height, static_cast<AVPixelFormat>(wanted.dst_format),
                           kSwsFlags, nullptr, nullptr, nullptr));
  if (ctx == nullptr) {
    current = SwsKey{};
    return absl::InternalError(absl::StrCat(
        "swscale cannot convert ", av_get_pix_fmt_name(static_cast<AVPixelFormat>(wanted.src_format)),
        " ", wanted.src_width, "x", wanted.src_height, " to ",
        av_get_pix_fmt_name(static_cast<AVPixelFormat>(wanted.dst_format)), " ", wanted.dst_width,
        "x", wanted.dst_height));
  }
  const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(wanted.src_format));
  if (desc != nullptr && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3) {
    sws_setColorspaceDetails(ctx.get(), sws_getCoefficients(wanted.colorspace), wanted.range,
                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
  }
  current = wanted;
  return absl::OkStatus();
}

absl::Status FrameWriter::ScaleToScratch(const AVFrame& frame, PixelRect rect, int tw, int th) {
  const AVPixelFormat format = static_cast<AVPixelFormat>(frame.format);
  const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(format);
  if (desc == nullptr) return absl::InternalError("decoded frame has no pixel format");
  const int colorspace = SwsColorspace(frame.colorspace);
  const int range = frame.color_range == AVCOL_RANGE_JPEG ? 1 : 0;
  // Planar G, B, R scratch: swscale's planar RGB output is several times faster than packed
  // RGB24 with full chroma interpolation; Write() interleaves while it rotates and flips.
  const int stride = AlignUp(tw, kStrideAlign);
  const size_t plane = static_cast<size_t>(stride) * th + kPadding;
  scratch_.resize(plane * 3);
  uint8_t* dst[4] = {scratch_.data(), scratch_.data() + plane, scratch_.data() + 2 * plane,
                     nullptr};
  int dst_stride[4] = {stride, stride, stride, 0};

  const bool plain_layout = !(desc->flags & (AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BITSTREAM |
                                             AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_BAYER));
  if (plain_layout) {
    // Crop by per-plane pointer offsets from an origin on the chroma grid.
    rect.x &= ~((1 << desc->log2_chroma_w) - 1);
    rect.y &= ~((1 << desc->log2_chroma_h) - 1);
    const uint8_t* src[4] = {nullptr, nullptr, nullptr, nullptr};
    const int planes = av_pix_fmt_count_planes(format);
    for (int p = 0; p < planes && p < 4; ++p) {
      int step = 0;
      for (int c = 0; c < desc->nb_components; ++c) {
        if (desc->comp[c].plane == p) {
          step = desc->comp[c].step;
          break;
        }
      }
      const bool chroma_plane = (p == 1 || p == 2) && !(desc->flags & AV_PIX_FMT_FLAG_RGB);
      const int hshift = chroma_plane ? desc->log2_chroma_w : 0;
      const int vshift = chroma_plane ? desc->log2_chroma_h : 0;
      src[p] = frame.data[p] + static_cast<ptrdiff_t>(rect.y >> vshift) * frame.linesize[p] +
               static_cast<ptrdiff_t>(rect.x >> hshift) * step;
    }
    const SwsKey key{rect.width, rect.height, format, AV_PIX_FMT_GBRP, tw, th, colorspace, range};
    if (absl::Status s = Prepare(sws_, sws_key_, key); !s.ok()) return s;
    sws_scale(sws_.get(), src, frame.linesize, 0, rect.height, dst, dst_stride);
    return absl::OkStatus();
  }

  // Palette, bit-packed or Bayer pictures: whole picture to RGB24, then crop that.
  const int full_stride = AlignUp(frame.width * 3, kStrideAlign);
  full_rgb_.resize(static_cast<size_t>(full_stride) * frame.height + kPadding);
  const SwsKey full_key{frame.width,  frame.height, format,    AV_PIX_FMT_RGB24,
                        frame.width, frame.height, colorspace, range};
  if (absl::Status s = Prepare(full_sws_, full_sws_key_, full_key); !s.ok()) return s;
  uint8_t* full_dst[4] = {full_rgb_.data(), nullptr, nullptr, nullptr};
  int full_dst_stride[4] = {full_stride, 0, 0, 0};
  sws_scale(full_sws_.get(), frame.data, frame.linesize, 0, frame.height, full_dst,
            full_dst_stride);
  const uint8_t* src[4] = {full_rgb_.data() + static_cast<size_t>(rect.y) * full_stride + rect.x * 3,
                           nullptr, nullptr, nullptr};
  int src_stride[4] = {full_stride, 0, 0, 0};
  const SwsKey key{rect.width, rect.height, AV_PIX_FMT_RGB24, AV_PIX_FMT_GBRP, tw, th,
                   SWS_CS_DEFAULT, 1};
  if (absl::Status s = Prepare(sws_, sws_key_, key); !s.ok()) return s;
  sws_scale(sws_.get(), src, src_stride, 0, rect.height, dst, dst_stride);
  return absl::OkStatus();
}

absl::Status FrameWriter::Write(const AVFrame& frame, const CropRect& crop, int rotation,
                                bool flip, int out_width, int out_height, uint8_t* dst) {
  const bool transposed = rotation == 90 || rotation == 270;
  const int tw = transposed ? out_height : out_width;  // Scratch size, decoded orientation.
  const int th = transposed ? out_width : out_height;
  const PixelRect rect = CropToPixels(DisplayedToCoded(crop, rotation), frame.width, frame.height);
  if (absl::Status s = ScaleToScratch(frame, rect, tw, th); !s.ok()) return s;

  const int stride = AlignUp(tw, kStrideAlign);
  const size_t plane = static_cast<size_t>(stride) * th + kPadding;
  const uint8_t* g = scratch_.data();
  const uint8_t* b = g + plane;
  const uint8_t* r = b + plane;
  const size_t row_bytes = static_cast<size_t>(out_width) * 3;
  for (int y = 0; y < out_height; ++y) {
    uint8_t* out_row = dst + y * row_bytes;
    if (rotation == 0) {
      const size_t row = static_cast<size_t>(y) * stride;
      for (int x = 0; x < out_width; ++x) {
        const size_t at = row + (flip ? out_width - 1 - x : x);
        out_row[x * 3 + 0] = r[at];
        out_row[x * 3 + 1] = g[at];
        out_row[x * 3 + 2] = b[at];
      }
      continue;
    }
    for (int x = 0; x < out_width; ++x) {
      const int X = flip ? out_width - 1 - x : x;  // Column of the unflipped displayed picture.
      int sx = X;
      int sy = y;
      switch (rotation) {
        case 90:
          sx = y;
          sy = th - 1 - X;
          break;
        case 180:
          sx = tw - 1 - X;
          sy = th - 1 - y;
          break;
        case 270:
          sx = tw - 1 - y;
          sy = X;
          break;
        default:
          break;
      }
      const size_t at = static_cast<size_t>(sy) * stride + sx;
      out_row[x * 3 + 0] = r[at];
      out_row[x * 3 + 1] = g[at];
      out_row[x * 3 + 2] = b[at];
    }
  }
  return absl::OkStatus();
}

}  // namespace tecl::video
