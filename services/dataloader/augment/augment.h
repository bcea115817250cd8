// Spatial augmentation of clips (METHOD.md "Spatial augmentation"): one draw per clip, applied
// identically to every frame of that clip.
//
//   - Random resized crop (area fraction [crop_area_min, crop_area_max] of the frame, aspect
//     ratio log-uniform in [aspect_min, aspect_max], ten tries then the largest centred crop within
//     the aspect range, as torchvision's RandomResizedCrop). The crop is a normalised rectangle the
//     decoder scales straight to S x S (video::ClipRequest::crop), so no full-size frame is ever
//     materialised.
//   - Horizontal flip with flip_prob, also done by the decoder (ClipRequest::flip).
//   - Colour jitter with jitter_prob: brightness, contrast, saturation factors uniform in
//     [max(0, 1 - x), 1 + x], hue shift uniform in [-hue, hue] of a full turn, applied in a random
//     order (torchvision's ColorJitter); then grayscale with grayscale_prob.
//
// Every colour operation is affine in RGB (brightness scales; contrast blends with the clip's mean
// luma; saturation blends with each pixel's luma; hue rotates about the grey axis in YIQ space;
// grayscale projects on luma), so a clip's whole colour draw is ONE affine map composed in double
// precision and applied in 12-bit fixed point with a single clamp: one pass over the clip's bytes,
// integer arithmetic (bit-identical on every machine), auto-vectorised. This differs from
// torchvision's per-operation clamping and HSV hue only for colours near the edge of the gamut.
// Contrast uses the mean over the whole clip (not per frame), so the map is the same function for
// every frame.
//
// EVAL mode uses CenterSquareCrop and no colour change.
//
// Pure functions: thread-safe.
#ifndef TECL_SERVICES_DATALOADER_AUGMENT_AUGMENT_H_
#define TECL_SERVICES_DATALOADER_AUGMENT_AUGMENT_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "services/dataloader/sampling/rng.h"
#include "services/dataloader/video/video_reader.h"
#include "tecl/v1/job.pb.h"

namespace tecl::dataloader {

// Augmentation settings; the defaults are METHOD.md's.
struct AugmentParams {
  double crop_area_min = 0.2;
  double crop_area_max = 1.0;
  double aspect_min = 3.0 / 4.0;
  double aspect_max = 4.0 / 3.0;
  double flip_prob = 0.5;
  double jitter_prob = 0.8;
  double brightness = 0.4;
  double contrast = 0.4;
  double saturation = 0.4;
  double hue = 0.1;
  double grayscale_prob = 0.2;

  // The ranges of every field are checked with the rest of the spec
  // (services/common/work_limits.h), not here.
  static AugmentParams FromSpec(const tecl::v1::AugmentSpec& spec);
  tecl::v1::AugmentSpec ToSpec() const;
  // No augmentation: full frame, no flip, no colour change.
  static AugmentParams None();
};

// Operations of the colour jitter, in ColorDraw::order.
enum ColorOp : uint8_t { kBrightness = 0, kContrast = 1, kSaturation = 2, kHue = 3 };

struct ColorDraw {
  bool jitter = false;
  double brightness = 1.0;  // Factors (1 = unchanged).
  double contrast = 1.0;
  double saturation = 1.0;
  double hue = 0.0;  // Fraction of a turn, in [-0.5, 0.5].
  std::array<uint8_t, 4> order = {kBrightness, kContrast, kSaturation, kHue};
  bool grayscale = false;

  bool identity() const { return !jitter && !grayscale; }
};

struct SpatialDraw {
  video::CropRect crop;
  bool flip = false;
  ColorDraw color;
};

// One clip's draw for a frame of width x height pixels (display size).
SpatialDraw DrawSpatial(const AugmentParams& params, int width, int height, Rng& rng);

video::CropRect RandomResizedCrop(const AugmentParams& params, int width, int height, Rng& rng);

// The largest centred square of a width x height frame.
video::CropRect CenterSquareCrop(int width, int height);

// out = clamp((m * rgb + bias) >> kColorShift, 0, 255) per pixel.
struct ColorTransform {
  static constexpr int kColorShift = 12;
  bool identity = true;
  int32_t m[3][3] = {{1 << kColorShift, 0, 0}, {0, 1 << kColorShift, 0}, {0, 0, 1 << kColorShift}};
  int32_t bias[3] = {1 << (kColorShift - 1), 1 << (kColorShift - 1), 1 << (kColorShift - 1)};
};

// The affine map of `draw` for a clip whose mean colour is `mean_rgb` (0..255 per channel).
ColorTransform MakeColorTransform(const ColorDraw& draw, const std::array<double, 3>& mean_rgb);

// Mean of each channel over `pixels` interleaved RGB pixels.
std::array<double, 3> MeanRgb(const uint8_t* rgb, size_t pixels);

// Applies `transform` to `pixels` RGB pixels from `src` to `dst` (which may be equal).
void ApplyColorTransform(const ColorTransform& transform, const uint8_t* src, uint8_t* dst,
                         size_t pixels);

// MakeColorTransform from the clip's own mean, then ApplyColorTransform (a copy when the draw
// changes nothing).
void ApplyColor(const ColorDraw& draw, const uint8_t* src, uint8_t* dst, size_t pixels);

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_AUGMENT_AUGMENT_H_
