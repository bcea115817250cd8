// tecl-synth: writes the synthetic motion data set (class folders of H.264 MP4 videos whose class
// is defined only by motion, with train/test lists). See services/dataloader/synth/.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/common/flags.h"
#include "services/dataloader/synth/synth_dataset.h"

ABSL_FLAG(std::string, out, "", "Folder to write the data set into (created if missing).");
ABSL_FLAG(int, classes, 6, "Number of motion classes, 1..6.");
ABSL_FLAG(int, videos_per_class, 40, "Videos per class.");
ABSL_FLAG(int, frames, 48, "Frames per video.");
ABSL_FLAG(std::string, size, "64", "Frame size: N (square) or WxH; even sides.");
ABSL_FLAG(double, fps, 24, "Frame rate.");
ABSL_FLAG(uint64_t, seed, 1, "Seed; the same seed writes byte-identical files.");
ABSL_FLAG(double, test_fraction, 0.25, "Fraction of each class in testlist.txt, in [0, 1).");
ABSL_FLAG(std::string, codec, "libx264", "FFmpeg encoder: libx264, mpeg4, mjpeg, ffv1, libvpx-vp9.");
ABSL_FLAG(int, gop, 16, "Keyframe interval in frames.");
ABSL_FLAG(int, quality, 20, "CRF (libx264, libvpx-vp9) or qscale (mpeg4, mjpeg).");
ABSL_FLAG(int, jobs, 0, "Writer threads; 0 = one per core.");

int main(int argc, char** argv) {
  tecl::ParseFlags(argc, argv,
                   "writes a labelled synthetic video data set whose classes differ "
                   "only by motion (bounce, draw, explode, oscillate, slide_stop, spread).\n"
                   "  tecl-synth --out data/synth [--classes 6 --videos_per_class 40 "
                   "--frames 48 --size 64 --fps 24 --seed 1]");
  tecl::synth::SynthOptions options;
  options.out = absl::GetFlag(FLAGS_out);
  options.classes = absl::GetFlag(FLAGS_classes);
  options.videos_per_class = absl::GetFlag(FLAGS_videos_per_class);
  options.frames = absl::GetFlag(FLAGS_frames);
  options.fps = absl::GetFlag(FLAGS_fps);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.test_fraction = absl::GetFlag(FLAGS_test_fraction);
  options.codec = absl::GetFlag(FLAGS_codec);
  options.gop = absl::GetFlag(FLAGS_gop);
  options.quality = absl::GetFlag(FLAGS_quality);
  options.jobs = absl::GetFlag(FLAGS_jobs);
  const std::string size = absl::GetFlag(FLAGS_size);
  const std::vector<std::string> sides = absl::StrSplit(size, 'x');
  if (sides.empty() || sides.size() > 2 || !absl::SimpleAtoi(sides[0], &options.width) ||
      !absl::SimpleAtoi(sides.back(), &options.height)) {
    std::fprintf(stderr, "tecl-synth: --size: \"%s\" is not N or WxH\n", size.c_str());
    return 2;
  }
  const absl::StatusOr<tecl::synth::SynthSummary> summary = tecl::synth::WriteSynthDataset(options);
  if (!summary.ok()) {
    std::fprintf(stderr, "tecl-synth: %s\n", std::string(summary.status().message()).c_str());
    return summary.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::printf("wrote %lld videos (%lld train, %lld test) of %zu classes [%s] to %s in %.1f s\n",
              static_cast<long long>(summary->videos), static_cast<long long>(summary->train),
              static_cast<long long>(summary->test), summary->classes.size(),
              absl::StrJoin(summary->classes, ", ").c_str(), options.out.c_str(), summary->seconds);
  return 0;
}
