// FakeClipSource: an in-memory ClipSource for logic tests. Each fake video has a frame count, a
// size and optional probe/decode errors. Decoded frames are flat colours that encode their source
// frame index (R = index % 256, G = index / 256 % 256) and the video's tag (B), so tests can read
// back exactly which frames a clip holds. Every decode call is recorded.
//
// Thread-safe.
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_FAKE_CLIP_SOURCE_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_FAKE_CLIP_SOURCE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/dataloader/pipeline/clip_source.h"

namespace tecl::dataloader {

struct FakeVideo {
  int64_t frames = 100;
  int width = 320;
  int height = 240;
  uint8_t tag = 0;
  absl::Status probe_error;   // Returned by Probe (and Decode) when not OK.
  absl::Status decode_error;  // Returned by Decode when not OK.
};

class FakeClipSource final : public ClipSource {
 public:
  struct DecodeCall {
    std::string path;
    std::vector<video::ClipRequest> clips;
  };

  void Add(const std::string& path, FakeVideo video);

  absl::StatusOr<video::VideoInfo> Probe(const std::string& path,
                                         const video::DecodeOptions& options) override;
  absl::Status Decode(const std::string& path, absl::Span<const video::ClipRequest> clips,
                      const video::DecodeOptions& options, std::vector<video::ClipFrames>* out,
                      video::DecodeStats* stats) override;

  // The source frame index a decoded pixel encodes.
  static int64_t FrameOf(const uint8_t* rgb) { return rgb[0] + 256 * int64_t{rgb[1]}; }

  std::vector<DecodeCall> decode_calls() const;
  int64_t probe_calls() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, FakeVideo> videos_ ABSL_GUARDED_BY(mu_);
  std::vector<DecodeCall> calls_ ABSL_GUARDED_BY(mu_);
  int64_t probe_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_FAKE_CLIP_SOURCE_H_
