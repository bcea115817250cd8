// TranscodeVideo: one video of a data set rewritten for the clip sampler (docs/prepare.md
// "Transcoding"): every frame of the source's video stream, one for one at its own rate (frame k of
// the copy is frame k of the source, so the sampler draws the same frame indices), scaled so the
// short side is `short_side`, encoded H.264 for fast decoding (no B-frames, CAVLC, no deblocking,
// a keyframe exactly every `keyframe_interval` frames and none elsewhere) or all-intra, without
// audio. The output is written under a temporary name beside it, synced, verified (its frame count
// equals the source's, its size is the planned one, no keyframe interval is longer than asked, no
// frame is held back for reordering) and only then renamed into place: a reader never sees a
// half-written or unverified file; a failure removes the temporary file. The index built while
// verifying is then stored beside the output (X.mp4.tecli, stored_index.h), so no loader reads
// the copy's packets to index it.
//
//   TECL_ASSIGN_OR_RETURN(TranscodeResult r, TranscodeVideo(source, output, options));
//
// Errors name the file: the source's as DecodeClips reports them (NOT_FOUND, DATA_LOSS for a
// damaged file, INVALID_ARGUMENT for a refused input), INVALID_ARGUMENT for bad options (naming the
// field), DATA_LOSS when the written copy fails verification, the encoder's or the file system's
// status otherwise.
//
// Thread-compatible: concurrent calls on different outputs are safe; each call uses one thread.
#ifndef TECL_SERVICES_DATALOADER_PREPARE_TRANSCODE_H_
#define TECL_SERVICES_DATALOADER_PREPARE_TRANSCODE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/dataloader/video/video_reader.h"

namespace tecl::prepare {

enum class PreparedCodec { kH264, kIntra };

struct TranscodeOptions {
  // Output short side in pixels (even; 16..4096), the long side keeps the aspect ratio (rounded
  // to even); 0 keeps the source's size (rounded down to even).
  int short_side = 128;
  // Frames between keyframes (1..1000). A clip's decode starts at most one interval before its
  // first frame; 32 (about a second) measured 7.3x raw clips/s on the GPU preset against 5.5x for
  // 121 (the GPU preset's longest span) for 3 % more bytes (docs/benchmarks.md "Prepared data
  // sets").
  int keyframe_interval = 32;
  PreparedCodec codec = PreparedCodec::kH264;
  int crf = 20;             // x264 quality, 0..51 (18..28 is sensible).
  // Frames decoded per DecodeClips call, 1..4096; 0 = as many as fit in 64 MiB of output frames.
  // Each call starts decoding at the keyframe before its first frame, so short chunks of a
  // long-GOP source decode frames twice.
  int chunk_frames = 0;
  video::DecodeOptions decode;  // The source's budget and limits; fps must be 0 (native rate).
  // Asked before each chunk; true ends the transcode with CANCELLED and no file left (a stop
  // order then waits for one chunk, not for the rest of a long video). Empty = never.
  std::function<bool()> cancelled;
};

// INVALID_ARGUMENT naming the first bad field and its allowed range.
absl::Status ValidateTranscodeOptions(const TranscodeOptions& options);

// The output size for a `width` x `height` source: short side `short_side`, both even.
void PreparedSize(int width, int height, int short_side, int* out_width, int* out_height);

struct TranscodeResult {
  int64_t frames = 0;
  int width = 0;
  int height = 0;
  double fps = 0;
  int64_t bytes_in = 0;
  int64_t bytes_out = 0;
  int max_keyframe_interval = 0;  // Measured on the written file.
  bool index_stored = false;      // Its VideoIndex written beside it (stored_index.h).
  double seconds = 0;
};

absl::StatusOr<TranscodeResult> TranscodeVideo(const std::string& source,
                                               const std::string& output,
                                               const TranscodeOptions& options);

}  // namespace tecl::prepare

#endif  // TECL_SERVICES_DATALOADER_PREPARE_TRANSCODE_H_
