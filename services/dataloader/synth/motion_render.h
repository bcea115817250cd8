// Renders the videos of the synthetic motion data set: six classes told apart only by how things
// move, each with an arrow of time (played backwards it is physically implausible), with motion
// in every stretch of every video (no settled, motionless tail).
//
//   bounce      a ball falls under gravity and bounces, losing energy at each bounce, while
//               drifting sideways (backwards: it gains energy)
//   draw        a pen moves along a smooth curve, leaving a growing trail (backwards: the trail
//               is eaten up)
//   explode     pieces fly apart from a point and slow down under drag, spinning (backwards:
//               they converge, accelerating)
//   oscillate   an object on a spring oscillates with decaying amplitude (backwards: growing)
//   slide_stop  an object slides and spins, decelerating uniformly towards a stop it would reach
//               just after the last frame (backwards: it accelerates from near rest)
//   spread      an ink blot spreads with an irregular edge, fading as it grows (backwards: it
//               contracts and darkens)
//
// Appearance is drawn at random per video (background colour and texture, object colours,
// shapes, sizes, positions, directions) so only motion identifies the class. Objects are large
// (radius 7-16 % of the frame side; the small ones come in groups or leave trails) so a random resized crop of 20 % of the area still
// sees them. Dynamics are defined over the video's length (progress 0..1), so any frame count
// shows the whole motion. Rendering is a pure function of (class, seed, size, frames).
//
// Thread-safe (no shared state).
#ifndef TECL_SERVICES_DATALOADER_SYNTH_MOTION_RENDER_H_
#define TECL_SERVICES_DATALOADER_SYNTH_MOTION_RENDER_H_

#include <cstdint>
#include <string>
#include <vector>

namespace tecl::synth {

// The class names, in label order (sorted by name, as class-folder data sets order them).
const std::vector<std::string>& MotionClassNames();

// A small deterministic random source (SplitMix64): the same seed gives the same draws on every
// platform, unlike the standard distributions.
class SynthRng {
 public:
  explicit SynthRng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  double Uniform(double lo = 0, double hi = 1);  // [lo, hi)
  int UniformInt(int lo, int hi);               // [lo, hi]
  bool Bernoulli(double p) { return Uniform() < p; }

 private:
  uint64_t state_;
};

// Mixes values into one seed (for per-video seeds derived from the data set seed).
uint64_t MixSeed(uint64_t a, uint64_t b, uint64_t c = 0);

// RGB24 frames (height x width x 3 each) of one video of class `label` (index into
// MotionClassNames()). width, height >= 8; frames >= 1.
std::vector<std::vector<uint8_t>> RenderMotionVideo(int label, uint64_t seed, int width, int height,
                                                    int frames);

}  // namespace tecl::synth

#endif  // TECL_SERVICES_DATALOADER_SYNTH_MOTION_RENDER_H_
