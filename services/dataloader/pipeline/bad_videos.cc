#include "services/dataloader/pipeline/bad_videos.h"

#include "services/dataloader/video/video_reader.h"

namespace tecl::dataloader {

const char* BadVideoReason(const absl::Status& status, bool decoding) {
  if (decoding && video::IsDamagedFramesError(status)) return kReasonDamagedFrames;
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return kReasonNotFound;
    case absl::StatusCode::kDeadlineExceeded:
      return kReasonTimeout;
    default:
      return decoding ? kReasonDecodeError : kReasonUnreadable;
  }
}

const char* BadVideos::Lookup(const std::string& path) const {
  absl::MutexLock lock(&mu_);
  auto it = reasons_.find(path);
  return it == reasons_.end() ? nullptr : it->second;
}

bool BadVideos::Add(const std::string& path, const char* reason) {
  absl::MutexLock lock(&mu_);
  if (!reasons_.emplace(path, reason).second) return false;
  order_.push_back(path);
  while (order_.size() > capacity_) {
    reasons_.erase(order_.front());
    order_.pop_front();
  }
  return true;
}

size_t BadVideos::size() const {
  absl::MutexLock lock(&mu_);
  return reasons_.size();
}

}  // namespace tecl::dataloader
