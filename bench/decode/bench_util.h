// Helpers the decoding benchmarks share: random clip requests as the batch pipeline makes them,
// pinning to one CPU, running a shell command, the Kinetics-like test videos.
#ifndef TECL_BENCH_DECODE_BENCH_UTIL_H_
#define TECL_BENCH_DECODE_BENCH_UTIL_H_

#include <cstdint>
#include <random>
#include <string>

#include "services/dataloader/video/video_reader.h"

namespace tecl::bench {

// A clip of `length` frames at a speed in {1, 2, 4, 8} drawn among those whose span fits in
// `frames`, random direction, a random resized crop (area 0.2-1, aspect 3/4-4/3) scaled to
// side x side, random flip.
video::ClipRequest RandomClip(std::mt19937_64& rng, int64_t frames, int length, int side);

// Pins the process to `cpu` (-1: the last CPU it may use); returns that CPU, or -1 when the
// kernel refused.
int PinToOneCpu(int cpu);

// std::system; the command's exit status (-1 when it did not exit).
int Shell(const std::string& command);

// Writes video `index` of a Kinetics-like set to `path` with the ffmpeg CLI unless it exists:
// 340x256, 30 fps, `seconds` long, x264 veryfast CRF 23, GOP 250 without scene cuts, 3 B-frames,
// content cycling through testsrc2, mandelbrot and life by index. False (after printing the
// command) when ffmpeg failed.
bool WriteKineticsLike(const std::string& path, int index, double seconds);

}  // namespace tecl::bench

#endif  // TECL_BENCH_DECODE_BENCH_UTIL_H_
