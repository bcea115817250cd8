#include "services/worker/train/synthetic_batches.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

// SplitMix64: a small deterministic generator, independent of LibTorch's global generators.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(Next() >> 11) * 0x1.0p-53;
  }
  // Uniform integer in [lo, hi].
  int64_t Between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }

 private:
  uint64_t state_;
};

uint64_t Mix(uint64_t a, uint64_t b) { return Rng(a * 0x100000001b3ULL ^ b).Next(); }

struct Video {
  uint8_t background[3];
  uint8_t object[3];
  uint64_t texture_seed;
  double x0, y0, vx, vy;
};

Video DrawVideo(Rng& rng) {
  Video video;
  for (int c = 0; c < 3; ++c) {
    video.background[c] = static_cast<uint8_t>(rng.Between(30, 225));
    // The object differs from the background by at least 60 in every channel.
    const int offset = static_cast<int>(rng.Between(60, 120));
    const int up = video.background[c] + offset, down = video.background[c] - offset;
    video.object[c] = static_cast<uint8_t>(up <= 255 && (down < 0 || rng.Next() % 2) ? up : down);
  }
  video.texture_seed = rng.Next();
  video.x0 = rng.Uniform(0, 64);
  video.y0 = rng.Uniform(0, 64);
  video.vx = rng.Uniform(1.0, 1.5);
  video.vy = rng.Uniform(-0.25, 0.25);
  return video;
}

struct SpatialDraw {
  int64_t shift_x, shift_y;
  int brightness;
};

// Renders source frame `frame` of `video` into out (S x S x 3).
void RenderFrame(const Video& video, int64_t frame, int64_t video_frames, int64_t s,
                 const SpatialDraw& draw, uint8_t* out) {
  const double square = 5.0 + 12.0 * static_cast<double>(frame) / static_cast<double>(video_frames);
  const int64_t side = static_cast<int64_t>(std::lround(square));
  const auto wrap = [s](double v) {
    const int64_t i = static_cast<int64_t>(std::floor(v));
    return ((i % s) + s) % s;
  };
  const int64_t left = wrap(video.x0 * s / 64.0 + video.vx * frame + draw.shift_x);
  const int64_t top = wrap(video.y0 * s / 64.0 + video.vy * frame + draw.shift_y);
  for (int64_t y = 0; y < s; ++y) {
    const bool in_rows = ((y - top) % s + s) % s < side;
    for (int64_t x = 0; x < s; ++x) {
      const bool inside = in_rows && ((x - left) % s + s) % s < side;
      // Static texture in background coordinates (shifted with the spatial draw).
      const uint64_t noise = Mix(video.texture_seed, static_cast<uint64_t>(
                                     (((y - draw.shift_y) % s + s) % s) * s +
                                     (((x - draw.shift_x) % s + s) % s)));
      for (int c = 0; c < 3; ++c) {
        int value = inside ? video.object[c]
                           : video.background[c] + static_cast<int>((noise >> (8 * c)) % 41) - 20;
        value += draw.brightness;
        out[(y * s + x) * 3 + c] = static_cast<uint8_t>(std::clamp(value, 0, 255));
      }
    }
  }
}

}  // namespace

Batch MakeSyntheticMotionBatch(const SyntheticMotionOptions& options, uint64_t seed) {
  const int64_t g_count = options.groups, l = options.clip_length, s = options.size;
  const int64_t num_speeds = static_cast<int64_t>(options.speeds.size());
  const bool same_frames = options.instance_positive == InstancePositive::kSameFrames;
  const int64_t per_video = same_frames ? 3 : 2;
  constexpr int64_t kMaxGap = 16;
  const int64_t max_span = (l - 1) * (num_speeds ? *std::max_element(options.speeds.begin(), options.speeds.end()) : 1) + 1;
  if (g_count < 1 || l < 1 || s < 8 || num_speeds < 1 || options.video_frames < 2 * max_span + kMaxGap) {
    std::ostringstream message;
    message << "synthetic batch: need groups >= 1, clip_length >= 1, size >= 8, speeds, and "
               "video_frames >= "
            << 2 * max_span + kMaxGap << " for two clips of the largest speed";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
  const int64_t videos = 2 * g_count, n = videos * per_video;
  Batch batch;
  batch.clips = torch::empty({n, l, s, s, 3}, torch::kByte);
  std::vector<int64_t> video_label(n), group(n), role(n), speed(n), reversed(n), relation(g_count);
  uint8_t* pixels = batch.clips.data_ptr<uint8_t>();
  Rng rng(seed);
  for (int64_t g = 0; g < g_count; ++g) {
    const int64_t speed_a = rng.Between(0, num_speeds - 1), speed_b = rng.Between(0, num_speeds - 1);
    const int64_t reversed_a = rng.Between(0, 1), reversed_b = rng.Between(0, 1);
    const auto rel = static_cast<Relation>(rng.Between(1, 3));
    const int64_t stride_a = options.speeds[speed_a], stride_b = options.speeds[speed_b];
    const int64_t len_a = (l - 1) * stride_a + 1, len_b = (l - 1) * stride_b + 1;
    int64_t delta = 0;  // t_B - t_A.
    switch (rel) {
      case Relation::kBefore: delta = rng.Between(len_a, len_a + kMaxGap); break;
      case Relation::kAfter: delta = -rng.Between(len_b, len_b + kMaxGap); break;
      case Relation::kOverlap: delta = rng.Between(-(len_b - 1), len_a - 1); break;
    }
    relation[g] = static_cast<int64_t>(rel);
    for (int64_t v = 2 * g; v < 2 * g + 2; ++v) {
      Rng video_rng(Mix(seed, static_cast<uint64_t>(v) + 1));
      const Video video = DrawVideo(video_rng);
      const int64_t lo = std::max<int64_t>(0, -delta);
      const int64_t hi = std::min(options.video_frames - len_a, options.video_frames - len_b - delta);
      const int64_t t_a = video_rng.Between(lo, hi);
      struct Clip {
        ClipRole role;
        int64_t start, stride, speed_index, reversed;
      };
      std::vector<Clip> clips = {{ClipRole::kA, t_a, stride_a, speed_a, reversed_a},
                                 {ClipRole::kB, t_a + delta, stride_b, speed_b, reversed_b}};
      if (same_frames) clips.push_back({ClipRole::kSameFrames, t_a, stride_a, speed_a, reversed_a});
      for (int64_t c = 0; c < per_video; ++c) {
        const Clip& clip = clips[static_cast<size_t>(c)];
        const int64_t row = v * per_video + c;
        const SpatialDraw draw{video_rng.Between(0, s - 1), video_rng.Between(0, s - 1),
                               static_cast<int>(video_rng.Between(-20, 20))};
        for (int64_t i = 0; i < l; ++i) {
          const int64_t k = clip.reversed ? l - 1 - i : i;
          RenderFrame(video, clip.start + k * clip.stride, options.video_frames, s, draw,
                      pixels + ((row * l + i) * s * s * 3));
        }
        video_label[row] = v;
        group[row] = g;
        role[row] = static_cast<int64_t>(clip.role);
        speed[row] = clip.speed_index;
        reversed[row] = clip.reversed;
      }
    }
  }
  batch.video = torch::tensor(video_label, torch::kLong);
  batch.group = torch::tensor(group, torch::kLong);
  batch.role = torch::tensor(role, torch::kLong);
  batch.speed_index = torch::tensor(speed, torch::kLong);
  batch.reversed = torch::tensor(reversed, torch::kLong);
  batch.relation = torch::tensor(relation, torch::kLong);
  return batch;
}

}  // namespace tecl::worker::core
