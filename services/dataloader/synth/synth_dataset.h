// The synthetic motion data set writer: labelled videos whose class is defined only by motion
// (motion_render.h), in the class-folder layout the dataloader reads:
//
//   <out>/<class>/<class>_0000.mp4 ...   one folder per class
//   <out>/classes.txt                    class names, one per line, label order (= name order)
//   <out>/classInd.txt                   the same as UCF101-style "<1-based index> <name>" lines
//   <out>/trainlist.txt, testlist.txt    "<class>/<file>" paths relative to <out>, one per line
//
// Deterministic: the same options (seed included) give byte-identical files, whatever `jobs` is.
// Each video goes to a temporary name and is renamed when complete; the list files are written
// last, so an interrupted run leaves no list naming a missing or partial video. Existing files of
// the same names are replaced; nothing else in <out> is touched.
//
// Thread-safe (no shared state); WriteSynthDataset blocks while it writes, using `jobs` threads.
#ifndef TECL_SERVICES_DATALOADER_SYNTH_SYNTH_DATASET_H_
#define TECL_SERVICES_DATALOADER_SYNTH_SYNTH_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tecl::synth {

struct SynthOptions {
  std::string out;               // Root folder; created if missing.
  int classes = 6;               // The first `classes` motion classes (1..6).
  int videos_per_class = 40;
  int frames = 48;               // Per video.
  int width = 64;
  int height = 64;
  double fps = 24;
  uint64_t seed = 1;
  double test_fraction = 0.25;   // Of each class, rounded; in [0, 1).
  std::string codec = "libx264";  // Any FFmpeg video encoder (see video_encoder.h).
  int gop = 16;                  // Keyframe interval, frames.
  int quality = 20;              // CRF (libx264, libvpx-vp9) or qscale (mpeg4, mjpeg).
  int jobs = 0;                  // Writer threads; 0 = one per core.
};

// INVALID_ARGUMENT naming the first bad field and its allowed range.
absl::Status ValidateSynthOptions(const SynthOptions& options);

struct SynthSummary {
  std::vector<std::string> classes;
  int64_t videos = 0;
  int64_t train = 0;
  int64_t test = 0;
  double seconds = 0;
};

// Writes the data set. Errors: INVALID_ARGUMENT for bad options, the encoder's or the file
// system's status (with the path) otherwise.
absl::StatusOr<SynthSummary> WriteSynthDataset(const SynthOptions& options);

// The file name (relative to the root) of video `index` of class `label`.
std::string SynthVideoPath(const SynthOptions& options, int label, int index);

}  // namespace tecl::synth

#endif  // TECL_SERVICES_DATALOADER_SYNTH_SYNTH_DATASET_H_
