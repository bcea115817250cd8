#include "services/dataloader/augment/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tecl::dataloader {
namespace {

using Mat3 = std::array<std::array<double, 3>, 3>;
using Vec3 = std::array<double, 3>;

constexpr Vec3 kLuma = {0.299, 0.587, 0.114};  // ITU-R BT.601, as torchvision's rgb_to_grayscale.
constexpr double kPi = 3.14159265358979323846;

Mat3 Multiply(const Mat3& a, const Mat3& b) {
  Mat3 c{};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      double sum = 0;
      for (int k = 0; k < 3; ++k) sum += a[i][k] * b[k][j];
      c[i][j] = sum;
    }
  }
  return c;
}

Vec3 Multiply(const Mat3& a, const Vec3& v) {
  Vec3 out{};
  for (int i = 0; i < 3; ++i) out[i] = a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2];
  return out;
}

Mat3 Identity() { return {{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}}; }

// Every channel becomes the pixel's luma.
Mat3 LumaProjection() {
  Mat3 m{};
  for (int i = 0; i < 3; ++i) m[i] = kLuma;
  return m;
}

// s * x + (1 - s) * luma(x).
Mat3 SaturationMatrix(double s) {
  Mat3 m = LumaProjection();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) m[i][j] = (1 - s) * m[i][j] + (i == j ? s : 0);
  }
  return m;
}

// Rotation by `turns` of a full circle about the grey axis, in YIQ space.
Mat3 HueMatrix(double turns) {
  constexpr Mat3 kRgbToYiq = {{{0.299, 0.587, 0.114},
                               {0.595716, -0.274453, -0.321263},
                               {0.211456, -0.522591, 0.311135}}};
  constexpr Mat3 kYiqToRgb = {{{1.0, 0.9563, 0.6210}, {1.0, -0.2721, -0.6474}, {1.0, -1.1070, 1.7046}}};
  const double angle = 2 * kPi * turns;
  const double c = std::cos(angle), s = std::sin(angle);
  const Mat3 rotation = {{{1, 0, 0}, {0, c, -s}, {0, s, c}}};
  return Multiply(kYiqToRgb, Multiply(rotation, kRgbToYiq));
}

}  // namespace

AugmentParams AugmentParams::FromSpec(const tecl::v1::AugmentSpec& spec) {
  AugmentParams p;
  p.crop_area_min = spec.crop_area_min();
  p.crop_area_max = spec.crop_area_max();
  p.aspect_min = spec.aspect_min();
  p.aspect_max = spec.aspect_max();
  p.flip_prob = spec.flip_prob();
  p.jitter_prob = spec.jitter_prob();
  p.brightness = spec.brightness();
  p.contrast = spec.contrast();
  p.saturation = spec.saturation();
  p.hue = spec.hue();
  p.grayscale_prob = spec.grayscale_prob();
  return p;
}

tecl::v1::AugmentSpec AugmentParams::ToSpec() const {
  tecl::v1::AugmentSpec spec;
  spec.set_crop_area_min(crop_area_min);
  spec.set_crop_area_max(crop_area_max);
  spec.set_aspect_min(aspect_min);
  spec.set_aspect_max(aspect_max);
  spec.set_flip_prob(flip_prob);
  spec.set_jitter_prob(jitter_prob);
  spec.set_brightness(brightness);
  spec.set_contrast(contrast);
  spec.set_saturation(saturation);
  spec.set_hue(hue);
  spec.set_grayscale_prob(grayscale_prob);
  return spec;
}

AugmentParams AugmentParams::None() {
  AugmentParams p;
  p.crop_area_min = p.crop_area_max = 1.0;
  p.flip_prob = p.jitter_prob = p.grayscale_prob = 0.0;
  p.brightness = p.contrast = p.saturation = p.hue = 0.0;
  return p;
}

video::CropRect CenterSquareCrop(int width, int height) {
  video::CropRect crop;
  if (width <= 0 || height <= 0) return crop;
  if (width >= height) {
    crop.width = static_cast<double>(height) / width;
    crop.x = (1.0 - crop.width) / 2;
  } else {
    crop.height = static_cast<double>(width) / height;
    crop.y = (1.0 - crop.height) / 2;
  }
  return crop;
}

video::CropRect RandomResizedCrop(const AugmentParams& params, int width, int height, Rng& rng) {
  video::CropRect crop;
  if (width <= 0 || height <= 0) return crop;
  const double w_total = width, h_total = height;
  const double area = w_total * h_total;
  const double log_min = std::log(params.aspect_min), log_max = std::log(params.aspect_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.Uniform(params.crop_area_min, params.crop_area_max);
    const double aspect = std::exp(log_min == log_max ? log_min : rng.Uniform(log_min, log_max));
    const double w = std::sqrt(target * aspect);
    const double h = std::sqrt(target / aspect);
    if (w <= w_total && h <= h_total) {
      crop.width = w / w_total;
      crop.height = h / h_total;
      crop.x = rng.Uniform(0.0, 1.0) * (1.0 - crop.width);
      crop.y = rng.Uniform(0.0, 1.0) * (1.0 - crop.height);
      return crop;
    }
  }
  // The largest centred crop whose aspect lies in the range.
  const double ratio = w_total / h_total;
  double w = w_total, h = h_total;
  if (ratio < params.aspect_min) {
    h = w / params.aspect_min;
  } else if (ratio > params.aspect_max) {
    w = h * params.aspect_max;
  }
  crop.width = w / w_total;
  crop.height = h / h_total;
  crop.x = (1.0 - crop.width) / 2;
  crop.y = (1.0 - crop.height) / 2;
  return crop;
}

SpatialDraw DrawSpatial(const AugmentParams& params, int width, int height, Rng& rng) {
  SpatialDraw draw;
  draw.crop = RandomResizedCrop(params, width, height, rng);
  draw.flip = rng.Bernoulli(params.flip_prob);
  ColorDraw& color = draw.color;
  color.jitter = rng.Bernoulli(params.jitter_prob);
  if (color.jitter) {
    color.brightness = rng.Uniform(std::max(0.0, 1 - params.brightness), 1 + params.brightness);
    color.contrast = rng.Uniform(std::max(0.0, 1 - params.contrast), 1 + params.contrast);
    color.saturation = rng.Uniform(std::max(0.0, 1 - params.saturation), 1 + params.saturation);
    color.hue = rng.Uniform(-params.hue, params.hue);
    for (int i = 3; i > 0; --i) {
      std::swap(color.order[static_cast<size_t>(i)], color.order[rng.Below(static_cast<uint64_t>(i) + 1)]);
    }
  }
  color.grayscale = rng.Bernoulli(params.grayscale_prob);
  return draw;
}

ColorTransform MakeColorTransform(const ColorDraw& draw, const std::array<double, 3>& mean_rgb) {
  ColorTransform transform;
  if (draw.identity()) return transform;
  // out = a * rgb + b, composed operation by operation.
  Mat3 a = Identity();
  Vec3 b = {0, 0, 0};
  auto apply = [&](const Mat3& m) {
    a = Multiply(m, a);
    b = Multiply(m, b);
  };
  if (draw.jitter) {
    for (uint8_t op : draw.order) {
      switch (op) {
        case kBrightness:
          for (auto& row : a) for (double& v : row) v *= draw.brightness;
          for (double& v : b) v *= draw.brightness;
          break;
        case kContrast: {
          // Blend with the clip's mean luma as it is at this point of the chain.
          const Vec3 mean = Multiply(a, Vec3{mean_rgb[0], mean_rgb[1], mean_rgb[2]});
          const double mean_luma = kLuma[0] * (mean[0] + b[0]) + kLuma[1] * (mean[1] + b[1]) +
                                   kLuma[2] * (mean[2] + b[2]);
          for (auto& row : a) for (double& v : row) v *= draw.contrast;
          for (double& v : b) v = draw.contrast * v + (1 - draw.contrast) * mean_luma;
          break;
        }
        case kSaturation:
          apply(SaturationMatrix(draw.saturation));
          break;
        case kHue:
          apply(HueMatrix(draw.hue));
          break;
        default:
          break;
      }
    }
  }
  if (draw.grayscale) apply(LumaProjection());
  constexpr double kScale = 1 << ColorTransform::kColorShift;
  transform.identity = false;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      transform.m[i][j] = static_cast<int32_t>(std::lround(a[i][j] * kScale));
    }
    transform.bias[i] =
        static_cast<int32_t>(std::lround(b[i] * kScale)) + (1 << (ColorTransform::kColorShift - 1));
  }
  return transform;
}

std::array<double, 3> MeanRgb(const uint8_t* rgb, size_t pixels) {
  if (pixels == 0) return {0, 0, 0};
  uint64_t sum[3] = {0, 0, 0};
  // Per-channel sums in 32-bit blocks (no overflow for up to 2^24 pixels per block).
  constexpr size_t kBlock = size_t{1} << 24;
  for (size_t start = 0; start < pixels; start += kBlock) {
    const size_t end = std::min(pixels, start + kBlock);
    uint32_t r = 0, g = 0, b = 0;
    for (size_t p = start; p < end; ++p) {
      r += rgb[3 * p];
      g += rgb[3 * p + 1];
      b += rgb[3 * p + 2];
    }
    sum[0] += r;
    sum[1] += g;
    sum[2] += b;
  }
  const double n = static_cast<double>(pixels);
  return {sum[0] / n, sum[1] / n, sum[2] / n};
}

namespace {

// out = clamp((m * rgb + bias) >> shift) over blocks of planar lanes: the interleaved bytes are
// split and joined by short scalar loops, the arithmetic runs on contiguous arrays of a fixed
// length, which vectorises. Lane is int16_t when every coefficient fits (widening 16x16->32-bit
// multiplies), int32_t otherwise.
template <typename Lane>
void ApplyBlocks(const ColorTransform& t, const uint8_t* src, uint8_t* dst, size_t pixels) {
  const Lane m00 = static_cast<Lane>(t.m[0][0]), m01 = static_cast<Lane>(t.m[0][1]),
             m02 = static_cast<Lane>(t.m[0][2]), m10 = static_cast<Lane>(t.m[1][0]),
             m11 = static_cast<Lane>(t.m[1][1]), m12 = static_cast<Lane>(t.m[1][2]),
             m20 = static_cast<Lane>(t.m[2][0]), m21 = static_cast<Lane>(t.m[2][1]),
             m22 = static_cast<Lane>(t.m[2][2]);
  const int32_t b0 = t.bias[0], b1 = t.bias[1], b2 = t.bias[2];
  constexpr int kShift = ColorTransform::kColorShift;
  constexpr size_t kBlock = 64;
  alignas(64) Lane r[kBlock], g[kBlock], b[kBlock];
  alignas(64) int32_t o0[kBlock], o1[kBlock], o2[kBlock];
  for (size_t start = 0; start < pixels; start += kBlock) {
    const size_t n = std::min(kBlock, pixels - start);
    const uint8_t* in = src + 3 * start;
    for (size_t i = 0; i < n; ++i) {
      r[i] = in[3 * i];
      g[i] = in[3 * i + 1];
      b[i] = in[3 * i + 2];
    }
    for (size_t i = 0; i < kBlock; ++i) {
      const int32_t v0 = (int32_t{m00} * r[i] + int32_t{m01} * g[i] + int32_t{m02} * b[i] + b0) >> kShift;
      const int32_t v1 = (int32_t{m10} * r[i] + int32_t{m11} * g[i] + int32_t{m12} * b[i] + b1) >> kShift;
      const int32_t v2 = (int32_t{m20} * r[i] + int32_t{m21} * g[i] + int32_t{m22} * b[i] + b2) >> kShift;
      o0[i] = v0 < 0 ? 0 : (v0 > 255 ? 255 : v0);
      o1[i] = v1 < 0 ? 0 : (v1 > 255 ? 255 : v1);
      o2[i] = v2 < 0 ? 0 : (v2 > 255 ? 255 : v2);
    }
    uint8_t* out = dst + 3 * start;
    for (size_t i = 0; i < n; ++i) {
      out[3 * i] = static_cast<uint8_t>(o0[i]);
      out[3 * i + 1] = static_cast<uint8_t>(o1[i]);
      out[3 * i + 2] = static_cast<uint8_t>(o2[i]);
    }
  }
}

}  // namespace

void ApplyColorTransform(const ColorTransform& t, const uint8_t* src, uint8_t* dst,
                         size_t pixels) {
  if (t.identity) {
    if (src != dst) std::memcpy(dst, src, pixels * 3);
    return;
  }
  bool fits_int16 = true;
  for (const auto& row : t.m) {
    for (int32_t v : row) fits_int16 = fits_int16 && v >= INT16_MIN && v <= INT16_MAX;
  }
  if (fits_int16) {
    ApplyBlocks<int16_t>(t, src, dst, pixels);
  } else {
    ApplyBlocks<int32_t>(t, src, dst, pixels);
  }
}

void ApplyColor(const ColorDraw& draw, const uint8_t* src, uint8_t* dst, size_t pixels) {
  if (draw.identity()) {
    if (src != dst) std::memcpy(dst, src, pixels * 3);
    return;
  }
  const bool needs_mean = draw.jitter && draw.contrast != 1.0;
  const std::array<double, 3> mean = needs_mean ? MeanRgb(src, pixels) : std::array<double, 3>{};
  ApplyColorTransform(MakeColorTransform(draw, mean), src, dst, pixels);
}

}  // namespace tecl::dataloader
