#include "services/dataloader/pipeline/fake_clip_source.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tecl::dataloader {

void FakeClipSource::Add(const std::string& path, FakeVideo video) {
  absl::MutexLock lock(&mu_);
  videos_[path] = std::move(video);
}

absl::StatusOr<video::VideoInfo> FakeClipSource::Probe(const std::string& path,
                                                       const video::DecodeOptions& options) {
  absl::MutexLock lock(&mu_);
  ++probe_calls_;
  auto it = videos_.find(path);
  if (it == videos_.end()) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  if (!it->second.probe_error.ok()) return it->second.probe_error;
  video::VideoInfo info;
  info.width = it->second.width;
  info.height = it->second.height;
  info.num_frames = it->second.frames;
  info.fps = 25;
  info.duration_s = it->second.frames / 25.0;
  info.codec = "fake";
  return info;
}

absl::Status FakeClipSource::Decode(const std::string& path,
                                    absl::Span<const video::ClipRequest> clips,
                                    const video::DecodeOptions& options,
                                    std::vector<video::ClipFrames>* out,
                                    video::DecodeStats* stats) {
  FakeVideo fake;
  {
    absl::MutexLock lock(&mu_);
    calls_.push_back({path, std::vector<video::ClipRequest>(clips.begin(), clips.end())});
    auto it = videos_.find(path);
    if (it == videos_.end()) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    fake = it->second;
  }
  if (!fake.probe_error.ok()) return fake.probe_error;
  if (!fake.decode_error.ok()) return fake.decode_error;
  out->resize(clips.size());
  std::set<int64_t> used;
  for (size_t c = 0; c < clips.size(); ++c) {
    const video::ClipRequest& request = clips[c];
    video::ClipFrames& frames = (*out)[c];
    frames.frames = static_cast<int>(request.frames.size());
    frames.height = request.out_height;
    frames.width = request.out_width;
    const size_t frame_bytes = static_cast<size_t>(request.out_width) * request.out_height * 3;
    frames.data.assign(frame_bytes * request.frames.size(), 0);
    for (size_t f = 0; f < request.frames.size(); ++f) {
      const int64_t index = request.frames[f];
      if (index < 0 || index >= fake.frames) {
        return absl::OutOfRangeError(
            absl::StrCat(path, ": frame ", index, " is past the end (", fake.frames, " frames)"));
      }
      used.insert(index);
      uint8_t* pixel = frames.data.data() + f * frame_bytes;
      for (size_t p = 0; p < frame_bytes; p += 3) {
        pixel[p] = static_cast<uint8_t>(index % 256);
        pixel[p + 1] = static_cast<uint8_t>(index / 256 % 256);
        pixel[p + 2] = fake.tag;
      }
    }
  }
  if (stats != nullptr) {
    stats->frames_used = static_cast<int64_t>(used.size());
    stats->frames_decoded = used.empty() ? 0 : *used.rbegin() - *used.begin() + 1;
    stats->seeks = used.empty() ? 0 : 1;
  }
  return absl::OkStatus();
}

std::vector<FakeClipSource::DecodeCall> FakeClipSource::decode_calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int64_t FakeClipSource::probe_calls() const {
  absl::MutexLock lock(&mu_);
  return probe_calls_;
}

}  // namespace tecl::dataloader
