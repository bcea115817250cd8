// FrameWriter: writes one decoded frame into one clip slot: crop (a swscale source rectangle),
// scale to the output size, convert to RGB24, rotate to the displayed orientation and flip.
//
// The crop is given in the displayed frame (after rotation metadata) in normalised coordinates
// and mapped back onto the decoded picture. Its pixel rectangle is
//   x0 = round(x * W), x1 = round((x + width) * W) (at least one pixel), likewise in y,
// then its origin is moved down to the chroma grid (even x for 4:2:0 and 4:2:2, even y for
// 4:2:0; at most one pixel, size unchanged) so every plane is cropped by a pointer offset at the
// same picture position. swscale then scales that rectangle straight to the output size
// (kSwsFlags; colour matrix and range from the frame) as planar RGB, which is interleaved while
// rotating and flipping. Pixel formats without a plain per-plane
// layout (palettes, bit-packed, Bayer) are converted to full-size RGB24 first.
//
// Thread-compatible; owns its swscale contexts and scratch buffers (reused across frames).
#ifndef TECL_SERVICES_DATALOADER_VIDEO_FRAME_WRITER_H_
#define TECL_SERVICES_DATALOADER_VIDEO_FRAME_WRITER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "services/dataloader/video/ffmpeg_util.h"
#include "services/dataloader/video/video_reader.h"

namespace tecl::video {

// The swscale flags every conversion uses (tests build their references with the same).
// Area averaging (the right filter for the mostly-downscaling crops of training) with chroma
// interpolated to full resolution before conversion (without it 4:2:0 colour edges smear).
inline constexpr int kSwsFlags = SWS_AREA | SWS_FULL_CHR_H_INT;

// Pixel rectangle of a crop in a W x H picture (before chroma alignment).
struct PixelRect {
  int x = 0;
  int y = 0;
  int width = 0;
  int height = 0;
};
PixelRect CropToPixels(const CropRect& crop, int width, int height);

// The crop in the decoded (coded) picture for a crop of the displayed picture, `rotation` being
// the clockwise rotation (0, 90, 180, 270) that displays the decoded picture.
CropRect DisplayedToCoded(const CropRect& displayed, int rotation);

class FrameWriter {
 public:
  FrameWriter() = default;
  ~FrameWriter();
  FrameWriter(const FrameWriter&) = delete;
  FrameWriter& operator=(const FrameWriter&) = delete;

  // Writes `frame` into `dst` (out_height x out_width x 3, row-major). INTERNAL when swscale
  // cannot convert the frame's pixel format.
  absl::Status Write(const AVFrame& frame, const CropRect& crop, int rotation, bool flip,
                     int out_width, int out_height, uint8_t* dst);

 private:
  // Scales `rect` of `frame` to tw x th planar GBR into scratch_.
  absl::Status ScaleToScratch(const AVFrame& frame, PixelRect rect, int tw, int th);

  // The parameters swscale contexts were set up for (rebuilt when any differs).
  struct SwsKey {
    int src_width = -1, src_height = -1, src_format = -1, dst_format = -1;
    int dst_width = -1, dst_height = -1;
    int colorspace = -1, range = -1;
    bool operator==(const SwsKey& o) const {
      return src_width == o.src_width && src_height == o.src_height &&
             src_format == o.src_format && dst_format == o.dst_format && dst_width == o.dst_width &&
             dst_height == o.dst_height && colorspace == o.colorspace && range == o.range;
    }
  };
  static absl::Status Prepare(SwsContextPtr& ctx, SwsKey& current, const SwsKey& wanted);

  SwsContextPtr sws_;       // Crop rectangle -> output size.
  SwsKey sws_key_;
  SwsContextPtr full_sws_;  // Full picture -> RGB24 (unusual pixel formats only).
  SwsKey full_sws_key_;
  std::vector<uint8_t> scratch_;   // tw x th planar G, B, R in decoded orientation, padded.
  std::vector<uint8_t> full_rgb_;  // Full picture as RGB24, padded.
};

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_FRAME_WRITER_H_
