#include "services/dataloader/synth/motion_render.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace tecl::synth {
namespace {

constexpr double kPi = 3.14159265358979323846;

struct Color {
  double r = 0, g = 0, b = 0;
};

double Luma(const Color& c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; }

Color Hsv(double h, double s, double v) {
  h = std::fmod(h, 1.0) * 6;
  const int i = static_cast<int>(h) % 6;
  const double f = h - std::floor(h);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  switch (i) {
    case 0: return {v, t, p};
    case 1: return {q, v, p};
    case 2: return {p, v, t};
    case 3: return {p, q, v};
    case 4: return {t, p, v};
    default: return {v, p, q};
  }
}

// A colour whose brightness differs from `background` by at least 0.3, so the object stands out.
Color ContrastingColor(SynthRng& rng, double background_luma) {
  Color c;
  for (int attempt = 0; attempt < 32; ++attempt) {
    c = Hsv(rng.Uniform(), rng.Uniform(0.3, 1.0), rng.Uniform(0.15, 1.0));
    if (std::abs(Luma(c) - background_luma) >= 0.3) return c;
  }
  return background_luma > 0.5 ? Color{0.05, 0.05, 0.05} : Color{0.95, 0.95, 0.95};
}

enum class Shape { kCircle, kSquare, kRing, kDiamond };

Shape RandomShape(SynthRng& rng) { return static_cast<Shape>(rng.UniformInt(0, 3)); }

// Float RGB canvas in pixel coordinates; `unit` converts normalised sizes (fractions of the
// shorter side) to pixels.
class Canvas {
 public:
  Canvas(int width, int height)
      : width_(width), height_(height), unit_(std::min(width, height)),
        pixels_(static_cast<size_t>(width) * height * 3) {}

  int width() const { return width_; }
  int height() const { return height_; }
  double unit() const { return unit_; }
  // Aspect-aware extent of the frame in normalised units (the shorter side is 1).
  double extent_x() const { return width_ / unit_; }
  double extent_y() const { return height_ / unit_; }
  std::vector<double>& pixels() { return pixels_; }

  // Blends `color` with per-pixel coverage from `signed_distance` (pixels; < 0 inside) over the
  // box around (cx, cy) of half-size `reach` (all in normalised units).
  template <typename SignedDistance>
  void Fill(double cx, double cy, double reach, const Color& color, double alpha,
            SignedDistance signed_distance, double softness_px = 1.0) {
    const double px = cx * unit_, py = cy * unit_, rp = reach * unit_ + softness_px + 1;
    const int x0 = std::max(0, static_cast<int>(std::floor(px - rp)));
    const int x1 = std::min(width_ - 1, static_cast<int>(std::ceil(px + rp)));
    const int y0 = std::max(0, static_cast<int>(std::floor(py - rp)));
    const int y1 = std::min(height_ - 1, static_cast<int>(std::ceil(py + rp)));
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) {
        const double dx = x + 0.5 - px, dy = y + 0.5 - py;
        const double sd = signed_distance(dx, dy);
        const double coverage = std::clamp(0.5 - sd / softness_px, 0.0, 1.0) * alpha;
        if (coverage <= 0) continue;
        double* p = &pixels_[(static_cast<size_t>(y) * width_ + x) * 3];
        p[0] += (color.r - p[0]) * coverage;
        p[1] += (color.g - p[1]) * coverage;
        p[2] += (color.b - p[2]) * coverage;
      }
    }
  }

  void DrawShape(Shape shape, double cx, double cy, double radius, double angle,
                 const Color& color, double alpha = 1.0) {
    const double r = radius * unit_;
    const double c = std::cos(angle), s = std::sin(angle);
    Fill(cx, cy, radius * 1.5, color, alpha, [&](double dx, double dy) {
      const double lx = c * dx + s * dy, ly = -s * dx + c * dy;
      switch (shape) {
        case Shape::kCircle:
          return std::hypot(dx, dy) - r;
        case Shape::kRing:
          return std::abs(std::hypot(dx, dy) - 0.72 * r) - 0.28 * r;
        case Shape::kDiamond:
          return (std::abs(lx) + std::abs(ly)) * 0.7071 - 0.8 * r;
        case Shape::kSquare:
        default: {
          const double qx = std::abs(lx) - 0.82 * r, qy = std::abs(ly) - 0.82 * r;
          const double outside = std::hypot(std::max(qx, 0.0), std::max(qy, 0.0));
          return outside + std::min(std::max(qx, qy), 0.0);
        }
      }
    });
  }

  void DrawSegment(double ax, double ay, double bx, double by, double half_width,
                   const Color& color) {
    const double hw = half_width * unit_;
    const double cx = (ax + bx) / 2, cy = (ay + by) / 2;
    const double reach = std::hypot(bx - ax, by - ay) / 2 + half_width;
    const double vx = (bx - ax) * unit_, vy = (by - ay) * unit_;
    const double len2 = std::max(vx * vx + vy * vy, 1e-9);
    Fill(cx, cy, reach, color, 1.0, [&](double dx, double dy) {
      // Relative to the segment start.
      const double wx = dx + vx / 2, wy = dy + vy / 2;
      const double t = std::clamp((wx * vx + wy * vy) / len2, 0.0, 1.0);
      return std::hypot(wx - t * vx, wy - t * vy) - hw;
    });
  }

  std::vector<uint8_t> ToRgb24() const {
    std::vector<uint8_t> out(pixels_.size());
    for (size_t i = 0; i < pixels_.size(); ++i) {
      out[i] = static_cast<uint8_t>(std::lround(std::clamp(pixels_[i], 0.0, 1.0) * 255));
    }
    return out;
  }

 private:
  int width_;
  int height_;
  double unit_;
  std::vector<double> pixels_;
};

// A static textured background (soft stripes, checks, a radial gradient or smooth noise).
struct Background {
  std::vector<double> pixels;
  double luma = 0;
};

Background MakeBackground(SynthRng& rng, int width, int height) {
  const Color base = Hsv(rng.Uniform(), rng.Uniform(0.0, 0.8), rng.Uniform(0.15, 0.9));
  const Color other = Hsv(rng.Uniform(), rng.Uniform(0.0, 0.8), rng.Uniform(0.15, 0.9));
  const double contrast = rng.Uniform(0.08, 0.3);
  const int pattern = rng.UniformInt(0, 3);
  const double freq = rng.Uniform(1.0, 4.0), angle = rng.Uniform(0, kPi);
  std::array<double, 9> waves;
  for (double& w : waves) w = rng.Uniform(0, 2 * kPi);
  const double cx = rng.Uniform(0.2, 0.8), cy = rng.Uniform(0.2, 0.8);
  Background bg;
  bg.pixels.resize(static_cast<size_t>(width) * height * 3);
  double luma_sum = 0;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double u = (x + 0.5) / width, v = (y + 0.5) / height;
      double t = 0;  // Mix towards `other`, 0..1.
      switch (pattern) {
        case 0:
          t = 0.5 + 0.5 * std::sin(2 * kPi * freq * (u * std::cos(angle) + v * std::sin(angle)));
          break;
        case 1:
          t = 0.5 + 0.5 * std::sin(2 * kPi * freq * u) * std::sin(2 * kPi * freq * v);
          break;
        case 2:
          t = std::clamp(std::hypot(u - cx, v - cy) * 1.4, 0.0, 1.0);
          break;
        default:
          t = 0.5 + (std::sin(3 * u + waves[0]) * std::sin(4 * v + waves[1]) +
                     std::sin(5 * (u + v) + waves[2]) + std::sin(7 * u - 3 * v + waves[3])) /
                        6;
          break;
      }
      const double m = std::clamp(t, 0.0, 1.0) * contrast * 3;
      const double mix = std::min(m, 1.0);
      double* p = &bg.pixels[(static_cast<size_t>(y) * width + x) * 3];
      p[0] = base.r + (other.r - base.r) * mix;
      p[1] = base.g + (other.g - base.g) * mix;
      p[2] = base.b + (other.b - base.b) * mix;
      luma_sum += 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    }
  }
  bg.luma = luma_sum / (static_cast<double>(width) * height);
  return bg;
}

// Progress of frame i in [0, 1].
double Progress(int i, int frames) { return frames > 1 ? static_cast<double>(i) / (frames - 1) : 0; }

using Frames = std::vector<std::vector<uint8_t>>;

Frames RenderBounce(SynthRng& rng, const Background& bg, int width, int height, int frames) {
  Canvas canvas(width, height);
  const double ex = canvas.extent_x(), ey = canvas.extent_y();
  const double r = rng.Uniform(0.11, 0.16);
  const Color color = ContrastingColor(rng, bg.luma);
  const Shape shape = RandomShape(rng);
  const double floor_y = ey - r;
  double x = rng.Uniform(r, ex - r);
  double y = rng.Uniform(r, 0.35 * ey);
  double vx = rng.Uniform(0.35, 0.9) * (rng.Bernoulli(0.5) ? 1 : -1);
  double vy = 0;
  const double fall = rng.Uniform(0.2, 0.3);  // Progress the first fall takes.
  const double g = 2 * (floor_y - y) / (fall * fall);
  const double restitution = rng.Uniform(0.75, 0.85);
  double angle = rng.Uniform(0, 2 * kPi);
  Frames out;
  const int substeps = 40;
  const double dt = frames > 1 ? 1.0 / (frames - 1) / substeps : 0;
  for (int i = 0; i < frames; ++i) {
    if (i > 0) {
      for (int s = 0; s < substeps; ++s) {
        vy += g * dt;
        x += vx * dt;
        y += vy * dt;
        angle += vx * dt / r;  // Rolls as it drifts.
        if (y > floor_y) {
          y = floor_y - (y - floor_y) * restitution;
          vy = -vy * restitution;
        }
        if (x < r || x > ex - r) {
          vx = -vx;
          x = std::clamp(x, r, ex - r);
        }
      }
    }
    canvas.pixels() = bg.pixels;
    canvas.DrawShape(shape, x, y, r, angle, color);
    out.push_back(canvas.ToRgb24());
  }
  return out;
}

Frames RenderDraw(SynthRng& rng, const Background& bg, int width, int height, int frames) {
  Canvas canvas(width, height);
  const double ex = canvas.extent_x(), ey = canvas.extent_y();
  // A Catmull-Rom curve through random points spread over the frame.
  const int points = 5;
  std::vector<std::array<double, 2>> p(points);
  for (auto& q : p) q = {rng.Uniform(0.15, 0.85) * ex, rng.Uniform(0.15, 0.85) * ey};
  std::vector<std::array<double, 2>> path;
  for (int seg = 0; seg + 1 < points; ++seg) {
    const auto& p0 = p[std::max(seg - 1, 0)];
    const auto& p1 = p[seg];
    const auto& p2 = p[seg + 1];
    const auto& p3 = p[std::min(seg + 2, points - 1)];
    for (int k = 0; k < 100; ++k) {
      const double t = k / 100.0, t2 = t * t, t3 = t2 * t;
      std::array<double, 2> q;
      for (int d = 0; d < 2; ++d) {
        q[d] = 0.5 * (2 * p1[d] + (-p0[d] + p2[d]) * t + (2 * p0[d] - 5 * p1[d] + 4 * p2[d] - p3[d]) * t2 +
                      (-p0[d] + 3 * p1[d] - 3 * p2[d] + p3[d]) * t3);
      }
      path.push_back(q);
    }
  }
  path.push_back(p.back());
  std::vector<double> length(path.size(), 0);
  for (size_t k = 1; k < path.size(); ++k) {
    length[k] = length[k - 1] + std::hypot(path[k][0] - path[k - 1][0], path[k][1] - path[k - 1][1]);
  }
  auto at = [&](double s) {  // Point at arc length s.
    const size_t k = std::min<size_t>(
        std::lower_bound(length.begin(), length.end(), s) - length.begin(), path.size() - 1);
    if (k == 0) return path[0];
    const double f = (s - length[k - 1]) / std::max(length[k] - length[k - 1], 1e-9);
    return std::array<double, 2>{path[k - 1][0] + f * (path[k][0] - path[k - 1][0]),
                                 path[k - 1][1] + f * (path[k][1] - path[k - 1][1])};
  };
  const double half_width = rng.Uniform(0.025, 0.045);
  const double pen = rng.Uniform(0.08, 0.11);
  const Color trail = ContrastingColor(rng, bg.luma);
  Color head = ContrastingColor(rng, bg.luma);
  if (std::abs(Luma(head) - Luma(trail)) < 0.15) head = Color{1 - trail.r, 1 - trail.g, 1 - trail.b};
  const Shape head_shape = RandomShape(rng);
  const double total = length.back();
  const double start = rng.Uniform(0.0, 0.05);  // Some trail already at the first frame.
  Frames out;
  for (int i = 0; i < frames; ++i) {
    const double s = total * (start + (1 - start) * Progress(i, frames));
    canvas.pixels() = bg.pixels;
    const double step = std::max(half_width * 0.5, 1e-3);
    std::array<double, 2> previous = at(0);
    for (double t = step; t <= s + 1e-9; t += step) {
      const std::array<double, 2> q = at(t);
      canvas.DrawSegment(previous[0], previous[1], q[0], q[1], half_width, trail);
      previous = q;
    }
    const std::array<double, 2> tip = at(s);
    canvas.DrawSegment(previous[0], previous[1], tip[0], tip[1], half_width, trail);
    canvas.DrawShape(head_shape, tip[0], tip[1], pen, s * 4, head);
    out.push_back(canvas.ToRgb24());
  }
  return out;
}

Frames RenderExplode(SynthRng& rng, const Background& bg, int width, int height, int frames) {
  Canvas canvas(width, height);
  const double ex = canvas.extent_x(), ey = canvas.extent_y();
  const double cx = rng.Uniform(0.38, 0.62) * ex, cy = rng.Uniform(0.38, 0.62) * ey;
  const int pieces = rng.UniformInt(5, 8);
  const Color base = ContrastingColor(rng, bg.luma);
  const double tau = rng.Uniform(1.0, 1.6);  // Drag time constant, in progress units.
  const double t0 = 0.04;                    // Already flying apart at the first frame.
  struct Piece {
    double dx, dy, speed, size, spin, angle;
    Shape shape;
    Color color;
  };
  std::vector<Piece> all;
  const double offset = rng.Uniform(0, 2 * kPi);
  for (int k = 0; k < pieces; ++k) {
    Piece piece;
    const double a = offset + 2 * kPi * (k + rng.Uniform(-0.25, 0.25)) / pieces;
    piece.dx = std::cos(a);
    piece.dy = std::sin(a);
    // Final distance from the centre: 0.3-0.45 of the frame.
    const double reach = rng.Uniform(0.3, 0.45);
    piece.speed = reach / (tau * (1 - std::exp(-(1 + t0) / tau)));
    piece.size = rng.Uniform(0.07, 0.1);
    piece.spin = rng.Uniform(3, 8) * (rng.Bernoulli(0.5) ? 1 : -1);
    piece.angle = rng.Uniform(0, 2 * kPi);
    piece.shape = rng.Bernoulli(0.5) ? Shape::kSquare : (rng.Bernoulli(0.5) ? Shape::kDiamond : Shape::kCircle);
    piece.color = Color{std::clamp(base.r + rng.Uniform(-0.1, 0.1), 0.0, 1.0),
                        std::clamp(base.g + rng.Uniform(-0.1, 0.1), 0.0, 1.0),
                        std::clamp(base.b + rng.Uniform(-0.1, 0.1), 0.0, 1.0)};
    all.push_back(piece);
  }
  Frames out;
  for (int i = 0; i < frames; ++i) {
    const double travelled = tau * (1 - std::exp(-(Progress(i, frames) + t0) / tau));
    canvas.pixels() = bg.pixels;
    for (const Piece& piece : all) {
      const double d = piece.speed * travelled;
      canvas.DrawShape(piece.shape, cx + piece.dx * d, cy + piece.dy * d, piece.size,
                       piece.angle + piece.spin * travelled, piece.color);
    }
    out.push_back(canvas.ToRgb24());
  }
  return out;
}

Frames RenderOscillate(SynthRng& rng, const Background& bg, int width, int height, int frames) {
  Canvas canvas(width, height);
  const double ex = canvas.extent_x(), ey = canvas.extent_y();
  const double r = rng.Uniform(0.10, 0.14);
  const double amplitude = rng.Uniform(0.2, 0.3);
  const double margin = amplitude + r * 0.5;
  const double ax = rng.Uniform(std::min(margin, ex / 2), std::max(ex - margin, ex / 2));
  const double ay = rng.Uniform(std::min(margin, ey / 2), std::max(ey - margin, ey / 2));
  const double direction = rng.Uniform(0, kPi);
  const double cycles = rng.Uniform(2.0, 3.5);
  const double phase = rng.Uniform(0, 2 * kPi);
  const double tau = rng.Uniform(0.9, 1.4);  // Amplitude at the end: 33-49 % of the start.
  const Color color = ContrastingColor(rng, bg.luma);
  const Color spring{color.r * 0.6, color.g * 0.6, color.b * 0.6};
  const Shape shape = RandomShape(rng);
  Frames out;
  for (int i = 0; i < frames; ++i) {
    const double u = Progress(i, frames);
    const double offset = amplitude * std::exp(-u / tau) * std::cos(2 * kPi * cycles * u + phase);
    const double x = ax + std::cos(direction) * offset, y = ay + std::sin(direction) * offset;
    canvas.pixels() = bg.pixels;
    canvas.DrawShape(Shape::kSquare, ax, ay, 0.03, direction, spring);
    canvas.DrawSegment(ax, ay, x, y, 0.012, spring);
    canvas.DrawShape(shape, x, y, r, direction, color);
    out.push_back(canvas.ToRgb24());
  }
  return out;
}

Frames RenderSlideStop(SynthRng& rng, const Background& bg, int width, int height, int frames) {
  Canvas canvas(width, height);
  const double ex = canvas.extent_x(), ey = canvas.extent_y();
  const double r = rng.Uniform(0.12, 0.16);
  double x0 = 0, y0 = 0, dx = 1, dy = 0, distance = 0;
  for (int attempt = 0; attempt < 64; ++attempt) {
    x0 = rng.Uniform(r, ex - r);
    y0 = rng.Uniform(r, ey - r);
    const double a = rng.Uniform(0, 2 * kPi);
    dx = std::cos(a);
    dy = std::sin(a);
    // Longest travel that keeps the object inside the frame.
    double reach = 1e9;
    if (dx > 1e-6) reach = std::min(reach, (ex - r - x0) / dx);
    if (dx < -1e-6) reach = std::min(reach, (r - x0) / dx);
    if (dy > 1e-6) reach = std::min(reach, (ey - r - y0) / dy);
    if (dy < -1e-6) reach = std::min(reach, (r - y0) / dy);
    distance = std::min(reach, rng.Uniform(0.45, 0.7));
    if (distance >= 0.4) break;
  }
  // Would stop a little after the last frame: still moving at 25-35 % of the initial speed.
  const double stop = rng.Uniform(1.3, 1.5);
  const double turn = rng.Uniform(2.0, 5.0) * (rng.Bernoulli(0.5) ? 1 : -1);
  const Color color = ContrastingColor(rng, bg.luma);
  const Shape shape = rng.Bernoulli(0.5) ? Shape::kSquare : (rng.Bernoulli(0.5) ? Shape::kDiamond : Shape::kRing);
  const double full = 1 - (1 - 1 / stop) * (1 - 1 / stop);
  Frames out;
  for (int i = 0; i < frames; ++i) {
    const double u = Progress(i, frames) / stop;
    const double s = (1 - (1 - u) * (1 - u)) / full;  // Uniform deceleration, s(1) = 1.
    canvas.pixels() = bg.pixels;
    canvas.DrawShape(shape, x0 + dx * distance * s, y0 + dy * distance * s, r, turn * s, color);
    out.push_back(canvas.ToRgb24());
  }
  return out;
}

Frames RenderSpread(SynthRng& rng, const Background& bg, int width, int height, int frames) {
  Canvas canvas(width, height);
  const double ex = canvas.extent_x(), ey = canvas.extent_y();
  const double cx = rng.Uniform(0.3, 0.7) * ex, cy = rng.Uniform(0.3, 0.7) * ey;
  const double r0 = rng.Uniform(0.06, 0.1), r1 = rng.Uniform(0.38, 0.5);
  const Color ink = ContrastingColor(rng, bg.luma);
  const double alpha0 = rng.Uniform(0.85, 1.0);
  std::array<double, 4> amp, phase;
  for (int k = 0; k < 4; ++k) {
    amp[k] = rng.Uniform(0.02, 0.07);
    phase[k] = rng.Uniform(0, 2 * kPi);
  }
  const double unit = canvas.unit();
  Frames out;
  for (int i = 0; i < frames; ++i) {
    const double u = Progress(i, frames);
    const double radius = r0 + (r1 - r0) * std::pow((u + 0.02) / 1.02, 0.75);
    const double alpha = std::max(0.35, alpha0 * std::pow(r0 / radius, 0.5));
    const double wobble = 0.5 + u;
    const double softness = 1.0 + u;
    canvas.pixels() = bg.pixels;
    canvas.Fill(cx, cy, radius * 1.4, ink, alpha, [&](double dx, double dy) {
      const double theta = std::atan2(dy, dx);
      double edge = 1;
      for (int k = 0; k < 4; ++k) edge += wobble * amp[k] * std::sin((k + 3) * theta + phase[k]);
      return std::hypot(dx, dy) - radius * unit * edge;
    }, softness);
    out.push_back(canvas.ToRgb24());
  }
  return out;
}

}  // namespace

const std::vector<std::string>& MotionClassNames() {
  static const std::vector<std::string>* names = new std::vector<std::string>{
      "bounce", "draw", "explode", "oscillate", "slide_stop", "spread"};
  return *names;
}

uint64_t SynthRng::Next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SynthRng::Uniform(double lo, double hi) {
  return lo + (hi - lo) * (static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0));
}

int SynthRng::UniformInt(int lo, int hi) {
  return lo + static_cast<int>(Next() % static_cast<uint64_t>(hi - lo + 1));
}

uint64_t MixSeed(uint64_t a, uint64_t b, uint64_t c) {
  SynthRng rng(a ^ (b * 0x9E3779B97F4A7C15ull) ^ (c * 0xC2B2AE3D27D4EB4Full));
  rng.Next();
  return rng.Next();
}

std::vector<std::vector<uint8_t>> RenderMotionVideo(int label, uint64_t seed, int width, int height,
                                                    int frames) {
  SynthRng rng(seed);
  const Background bg = MakeBackground(rng, width, height);
  switch (label) {
    case 0: return RenderBounce(rng, bg, width, height, frames);
    case 1: return RenderDraw(rng, bg, width, height, frames);
    case 2: return RenderExplode(rng, bg, width, height, frames);
    case 3: return RenderOscillate(rng, bg, width, height, frames);
    case 4: return RenderSlideStop(rng, bg, width, height, frames);
    default: return RenderSpread(rng, bg, width, height, frames);
  }
}

}  // namespace tecl::synth
