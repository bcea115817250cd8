// ClipSource: what the batch builder needs of a video decoder: probe a video's size and length,
// and decode clips (frame indices in output order, crop rectangle, output size, flip) of one video.
// FfmpegClipSource is the real one (services/dataloader/video); FakeClipSource an in-memory one for
// logic tests.
//
// Implementations are thread-safe: the builder calls them from every decode thread at once.
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_CLIP_SOURCE_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_CLIP_SOURCE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "services/dataloader/video/video_reader.h"

namespace tecl::dataloader {

class ClipSource {
 public:
  virtual ~ClipSource() = default;

  // Size, frame count and rate. Errors as video::ProbeVideo (NOT_FOUND, DATA_LOSS,
  // INVALID_ARGUMENT, DEADLINE_EXCEEDED). Blocks on file I/O.
  virtual absl::StatusOr<video::VideoInfo> Probe(const std::string& path,
                                                 const video::DecodeOptions& options) = 0;

  // Decodes `clips` of one video into `out` (out[i] for clips[i], uint8 RGB (frames, h, w, 3)).
  // `stats` may be null. Errors as video::DecodeClips. Blocks while decoding.
  virtual absl::Status Decode(const std::string& path, absl::Span<const video::ClipRequest> clips,
                              const video::DecodeOptions& options,
                              std::vector<video::ClipFrames>* out, video::DecodeStats* stats) = 0;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_CLIP_SOURCE_H_
