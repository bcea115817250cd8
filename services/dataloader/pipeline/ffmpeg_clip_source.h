// FfmpegClipSource: ClipSource over the FFmpeg decoder of services/dataloader/video, with one
// VideoIndexCache shared by every stream of the process (each video's packet index is read once),
// bounded by a count of videos and by bytes.
//
// Thread-safe; owns its cache.
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_FFMPEG_CLIP_SOURCE_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_FFMPEG_CLIP_SOURCE_H_

#include <cstddef>
#include <string>
#include <vector>

#include "services/dataloader/pipeline/clip_source.h"
#include "services/dataloader/video/video_reader.h"

namespace tecl::dataloader {

class FfmpegClipSource final : public ClipSource {
 public:
  explicit FfmpegClipSource(size_t index_cache_videos = 16384,
                            size_t index_cache_bytes = size_t{512} << 20)
      : cache_(index_cache_videos, index_cache_bytes) {}

  absl::StatusOr<video::VideoInfo> Probe(const std::string& path,
                                         const video::DecodeOptions& options) override {
    return video::ProbeVideo(path, options, &cache_);
  }

  absl::Status Decode(const std::string& path, absl::Span<const video::ClipRequest> clips,
                      const video::DecodeOptions& options, std::vector<video::ClipFrames>* out,
                      video::DecodeStats* stats) override {
    return video::DecodeClips(path, clips, options, &cache_, out, stats);
  }

  video::VideoIndexCache& cache() { return cache_; }

 private:
  video::VideoIndexCache cache_;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_FFMPEG_CLIP_SOURCE_H_
