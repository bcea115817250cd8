// BadVideos: the process-wide memory of videos that could not be read, with the reason, so a bad
// file is tried once and then skipped by every stream (a corrupt file would fail again anyway, so
// this changes no batch, only the work). Bounded: beyond `capacity` the oldest entries are
// forgotten (and retried when met again).
//
// Thread-safe.
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_BAD_VIDEOS_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_BAD_VIDEOS_H_

#include <cstddef>
#include <deque>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace tecl::dataloader {

// Reasons, the `reason` label of the bad-file metrics.
inline constexpr char kReasonNotFound[] = "not_found";
inline constexpr char kReasonUnreadable[] = "unreadable";  // Not a video, corrupt, truncated.
inline constexpr char kReasonDecodeError[] = "decode_error";
// Frames come out of the decoder damaged, also when decoded from an earlier keyframe.
inline constexpr char kReasonDamagedFrames[] = "damaged_frames";
inline constexpr char kReasonTimeout[] = "timeout";
inline constexpr char kReasonTooShort[] = "too_short";

// The reason for a probe (or decode, when `decoding`) error.
const char* BadVideoReason(const absl::Status& status, bool decoding);

class BadVideos {
 public:
  explicit BadVideos(size_t capacity = 1 << 20) : capacity_(capacity) {}

  // Returns the reason when `path` is known to be bad, nullptr otherwise.
  const char* Lookup(const std::string& path) const;
  // Remembers `path`; returns true when it was not known before.
  bool Add(const std::string& path, const char* reason);
  size_t size() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, const char*> reasons_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_BAD_VIDEOS_H_
