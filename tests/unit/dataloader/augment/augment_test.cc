// Spatial augmentation: crop geometry, draw probabilities, the colour map's operations, and that a
// clip's draw is the same function for every frame.
#include "services/dataloader/augment/augment.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::dataloader {
namespace {

std::vector<uint8_t> RandomPixels(size_t pixels, uint64_t seed) {
  Rng rng(HashKey({seed}));
  std::vector<uint8_t> data(pixels * 3);
  for (uint8_t& v : data) v = static_cast<uint8_t>(rng.Below(256));
  return data;
}

TEST(CropTest, RandomResizedCropRespectsAreaAndAspect) {
  const AugmentParams params;  // area [0.2, 1], aspect [3/4, 4/3].
  const int width = 320, height = 240;
  double min_area = 1, max_area = 0;
  for (int i = 0; i < 5000; ++i) {
    Rng rng(HashKey({1, static_cast<uint64_t>(i)}));
    const video::CropRect crop = RandomResizedCrop(params, width, height, rng);
    ASSERT_GE(crop.x, 0);
    ASSERT_GE(crop.y, 0);
    ASSERT_LE(crop.x + crop.width, 1 + 1e-12);
    ASSERT_LE(crop.y + crop.height, 1 + 1e-12);
    const double area = crop.width * crop.height;
    const double aspect = (crop.width * width) / (crop.height * height);
    min_area = std::min(min_area, area);
    max_area = std::max(max_area, area);
    ASSERT_GE(area, 0.2 - 1e-9);
    ASSERT_LE(area, 1 + 1e-9);
    ASSERT_GE(aspect, 0.75 - 1e-9);
    ASSERT_LE(aspect, 4.0 / 3 + 1e-9);
  }
  EXPECT_LT(min_area, 0.25);  // The range is used, not one corner of it.
  EXPECT_GT(max_area, 0.9);
}

TEST(CropTest, CenterSquareIsTheShortSide) {
  const video::CropRect wide = CenterSquareCrop(320, 240);
  EXPECT_DOUBLE_EQ(wide.width, 0.75);
  EXPECT_DOUBLE_EQ(wide.x, 0.125);
  EXPECT_DOUBLE_EQ(wide.height, 1.0);
  EXPECT_DOUBLE_EQ(wide.y, 0.0);
  const video::CropRect tall = CenterSquareCrop(100, 200);
  EXPECT_DOUBLE_EQ(tall.height, 0.5);
  EXPECT_DOUBLE_EQ(tall.y, 0.25);
}

TEST(DrawTest, ProbabilitiesFollowTheParameters) {
  const AugmentParams params;
  int flips = 0, jitters = 0, grays = 0;
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i) {
    Rng rng(HashKey({2, static_cast<uint64_t>(i)}));
    const SpatialDraw draw = DrawSpatial(params, 320, 240, rng);
    flips += draw.flip;
    jitters += draw.color.jitter;
    grays += draw.color.grayscale;
    if (draw.color.jitter) {
      ASSERT_GE(draw.color.brightness, 0.6);
      ASSERT_LE(draw.color.brightness, 1.4);
      ASSERT_GE(draw.color.hue, -0.1);
      ASSERT_LE(draw.color.hue, 0.1);
    }
  }
  EXPECT_NEAR(flips / double{kDraws}, 0.5, 0.015);
  EXPECT_NEAR(jitters / double{kDraws}, 0.8, 0.015);
  EXPECT_NEAR(grays / double{kDraws}, 0.2, 0.015);

  Rng a(HashKey({3})), b(HashKey({3}));
  const SpatialDraw da = DrawSpatial(params, 320, 240, a), db = DrawSpatial(params, 320, 240, b);
  EXPECT_EQ(da.crop.x, db.crop.x);
  EXPECT_EQ(da.color.contrast, db.color.contrast);
  EXPECT_EQ(da.color.order, db.color.order);

  const AugmentParams none = AugmentParams::None();
  Rng c(HashKey({4}));
  const SpatialDraw plain = DrawSpatial(none, 320, 240, c);
  EXPECT_TRUE(plain.color.identity());
  EXPECT_FALSE(plain.flip);
  EXPECT_DOUBLE_EQ(plain.crop.width * plain.crop.height, 1.0);
}

// The colour map of a clip is one function of the pixel: the same pixel value gives the same
// output in every frame, and reordering the frames reorders the output frames.
TEST(ColorTest, OneDrawForEveryFrameOfTheClip) {
  constexpr size_t kFramePixels = 64 * 64;
  std::vector<uint8_t> clip = RandomPixels(kFramePixels * 4, 5);
  // Frame 3 repeats frame 0.
  std::copy(clip.begin(), clip.begin() + kFramePixels * 3, clip.begin() + kFramePixels * 9);
  ColorDraw draw;
  draw.jitter = true;
  draw.brightness = 1.3;
  draw.contrast = 0.7;
  draw.saturation = 1.4;
  draw.hue = 0.08;
  draw.order = {kHue, kContrast, kBrightness, kSaturation};
  std::vector<uint8_t> out(clip.size());
  ApplyColor(draw, clip.data(), out.data(), clip.size() / 3);
  EXPECT_TRUE(std::equal(out.begin(), out.begin() + kFramePixels * 3, out.begin() + kFramePixels * 9));
  EXPECT_NE(out, clip);

  // Swap frames 1 and 2: the clip mean is unchanged, so their outputs swap.
  std::vector<uint8_t> swapped = clip;
  std::swap_ranges(swapped.begin() + kFramePixels * 3, swapped.begin() + kFramePixels * 6,
                   swapped.begin() + kFramePixels * 6);
  std::vector<uint8_t> swapped_out(clip.size());
  ApplyColor(draw, swapped.data(), swapped_out.data(), swapped.size() / 3);
  EXPECT_TRUE(std::equal(out.begin() + kFramePixels * 3, out.begin() + kFramePixels * 6,
                         swapped_out.begin() + kFramePixels * 6));
}

TEST(ColorTest, IdentityAndNeutralFactorsKeepThePixels) {
  std::vector<uint8_t> clip = RandomPixels(1000, 6);
  std::vector<uint8_t> out(clip.size());
  ApplyColor(ColorDraw{}, clip.data(), out.data(), 1000);
  EXPECT_EQ(out, clip);
  ColorDraw neutral;
  neutral.jitter = true;  // Factors 1, hue 0: the fixed-point map is exactly the identity.
  ApplyColor(neutral, clip.data(), out.data(), 1000);
  EXPECT_EQ(out, clip);
  ApplyColor(neutral, clip.data(), clip.data(), 1000);  // In place.
  EXPECT_EQ(out, clip);
}

TEST(ColorTest, SingleOperations) {
  const std::vector<uint8_t> pixels = {100, 150, 200, 10, 20, 250, 128, 128, 128};
  std::vector<uint8_t> out(pixels.size());

  ColorDraw brightness;
  brightness.jitter = true;
  brightness.brightness = 1.5;
  ApplyColor(brightness, pixels.data(), out.data(), 3);
  EXPECT_EQ(out, (std::vector<uint8_t>{150, 225, 255, 15, 30, 255, 192, 192, 192}));

  ColorDraw gray;
  gray.grayscale = true;
  ApplyColor(gray, pixels.data(), out.data(), 3);
  for (size_t p = 0; p < 3; ++p) {
    EXPECT_EQ(out[3 * p], out[3 * p + 1]);
    EXPECT_EQ(out[3 * p], out[3 * p + 2]);
  }
  EXPECT_EQ(out[0], static_cast<uint8_t>(std::lround(0.299 * 100 + 0.587 * 150 + 0.114 * 200)));

  // Contrast 0 makes every pixel the clip's mean luma.
  ColorDraw flat;
  flat.jitter = true;
  flat.contrast = 0.0;
  ApplyColor(flat, pixels.data(), out.data(), 3);
  for (uint8_t v : out) EXPECT_EQ(v, out[0]);

  // Hue and saturation leave grey alone.
  ColorDraw hue;
  hue.jitter = true;
  hue.hue = 0.25;
  hue.saturation = 1.4;
  ApplyColor(hue, pixels.data(), out.data(), 3);
  for (size_t c = 6; c < 9; ++c) EXPECT_NEAR(out[c], 128, 1);
  EXPECT_NE(std::vector<uint8_t>(out.begin(), out.begin() + 3),
            std::vector<uint8_t>(pixels.begin(), pixels.begin() + 3));
}

// The blocked, vectorised kernel (16-bit lanes for small coefficients, 32-bit otherwise) gives
// exactly the per-pixel formula, for any length (partial last block).
TEST(ColorTest, KernelMatchesThePerPixelFormula) {
  ColorDraw draw;
  draw.jitter = true;
  draw.brightness = 1.3;
  draw.contrast = 0.7;
  draw.saturation = 1.4;
  draw.hue = 0.07;
  ColorTransform wide;  // Coefficients beyond 16 bits (32-bit lanes).
  wide.identity = false;
  const int32_t big[3][3] = {{40000, -5000, 100}, {-35000, 9000, 30000}, {700, 800, -33000}};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) wide.m[i][j] = big[i][j];
    wide.bias[i] = -1000000 * (i - 1);
  }
  for (const ColorTransform& t : {MakeColorTransform(draw, {90.0, 120.0, 60.0}), wide}) {
    const size_t pixels = 1000 + 37;
    std::vector<uint8_t> in = RandomPixels(pixels, 9), out(in.size());
    ApplyColorTransform(t, in.data(), out.data(), pixels);
    int distinct = 0;
    for (size_t p = 0; p < pixels; ++p) {
      for (int c = 0; c < 3; ++c) {
        const int32_t v = (t.m[c][0] * in[3 * p] + t.m[c][1] * in[3 * p + 1] +
                           t.m[c][2] * in[3 * p + 2] + t.bias[c]) >> ColorTransform::kColorShift;
        ASSERT_EQ(out[3 * p + c], std::clamp(v, 0, 255)) << "pixel " << p << " channel " << c;
        distinct += out[3 * p + c] != 0 && out[3 * p + c] != 255;
      }
    }
    EXPECT_GT(distinct, 100);  // Not all clamped.
  }
}

// The ranges of the fields are checked with the spec (services/common/work_limits.h).
TEST(ParamsTest, FromSpecAndToSpecRoundTrip) {
  tecl::v1::AugmentSpec spec;
  spec.set_flip_prob(0.25);
  spec.set_crop_area_min(0.3);
  EXPECT_DOUBLE_EQ(AugmentParams::FromSpec(spec).flip_prob, 0.25);
  EXPECT_DOUBLE_EQ(AugmentParams::FromSpec(spec).crop_area_min, 0.3);
  const tecl::v1::AugmentSpec defaults = AugmentParams().ToSpec();
  EXPECT_DOUBLE_EQ(defaults.crop_area_min(), 0.2);
  EXPECT_DOUBLE_EQ(defaults.hue(), 0.1);
  EXPECT_DOUBLE_EQ(AugmentParams::FromSpec(defaults).aspect_max, AugmentParams().aspect_max);
  EXPECT_DOUBLE_EQ(AugmentParams::FromSpec(defaults).grayscale_prob, 0.2);
}

}  // namespace
}  // namespace tecl::dataloader
