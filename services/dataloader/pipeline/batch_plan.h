// Batch plans: which video fills each slot of a batch, and every clip's frames and spatial draw.
//
// TrainSampler (one per stream) turns a cursor into plans. Slot i of the batch at (epoch, step) is
// primarily the video at position rank * shard + step * 2G + i of the epoch permutation of the
// split (sampler.h). When that video is unusable (unreadable, or shorter than one clip at the
// smallest speed) the slot takes the next candidate of a fixed fallback order: positions
// i + k * 2G further on in the same permutation (the same slot of the following batches), then
// every position in turn; the second video of a group also skips the first. Because the candidate
// order and every draw (keyed by seed, epoch, step, rank, world size, slot, clip role and purpose)
// are pure functions of the cursor, and a video's usability is a property of its file, the plan
// of a cursor does not depend on what the process did before, on thread timing or on which loader
// builds it.
//
// Batch layout: video v of the batch (0 .. 2G-1) is slot v; group g holds videos 2g and 2g+1;
// the clips of video v are v * C .. v * C + C - 1 with C = 2 (A, B) or 3 (A, B, SAME_FRAMES).
//
// EvalSampler: batch b holds manifest videos b*V .. b*V+V-1 (both splits, manifest order), each
// with n clips whose starts are uniformly spaced over the video (centre square crop, no flip, no
// colour change). A video shorter than one clip repeats its last frame.
//
// Thread-safe (the permutation cache is locked).
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_BATCH_PLAN_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_BATCH_PLAN_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/dataloader/augment/augment.h"
#include "services/dataloader/manifest/manifest.h"
#include "services/dataloader/pipeline/stream_config.h"
#include "services/dataloader/sampling/sampler.h"
#include "services/dataloader/video/video_reader.h"
#include "tecl/v1/dataloader.pb.h"

namespace tecl::dataloader {

struct ClipPlan {
  tecl::v1::ClipRole role = tecl::v1::CLIP_ROLE_UNSPECIFIED;
  int speed_index = 0;
  bool reversed = false;
  int64_t start_frame = 0;     // First source frame in forward order.
  video::ClipRequest request;  // Frames in output order, crop, size, flip.
  ColorDraw color;
};

struct VideoPlan {
  int slot = 0;                 // Video index within the batch.
  int64_t manifest_index = -1;
  std::vector<ClipPlan> clips;  // A, B[, SAME_FRAMES]; EVAL: n clips.
};

struct GroupPlan {
  TemporalPair pair;
  tecl::v1::Relation relation = tecl::v1::RELATION_UNSPECIFIED;  // From the spans.
  std::array<VideoPlan, 2> videos;
};

// A video chosen for a slot, with what its probe said.
struct VideoChoice {
  int64_t manifest_index = -1;
  video::VideoInfo info;
};

class TrainSampler {
 public:
  // FAILED_PRECONDITION when the split cannot fill one batch per rank; INVALID_ARGUMENT for a bad
  // dataset.split.
  static absl::StatusOr<std::shared_ptr<const TrainSampler>> Create(
      std::shared_ptr<const Manifest> manifest, const std::string& split, TrainSettings settings);

  const Manifest& manifest() const { return *manifest_; }
  const TrainSettings& settings() const { return settings_; }
  const EpochSchedule& schedule() const { return schedule_; }
  int64_t split_size() const { return static_cast<int64_t>(split_.size()); }

  // The k-th candidate (a manifest index) for `slot` of the batch at `position` (k = 0 is the
  // primary video); -1 once every video of the split has been offered.
  int64_t Candidate(StepPosition position, int slot, int64_t k) const;

  // Whether a video with `info` can host a pair of clips.
  bool LongEnough(const video::VideoInfo& info) const;
  int64_t min_frames() const { return MinFramesForPair(settings_.temporal); }

  // The plan of group `group` whose slots hold `first` (slot 2g) and `second` (slot 2g+1); both
  // must be LongEnough (OUT_OF_RANGE otherwise).
  absl::StatusOr<GroupPlan> PlanGroup(StepPosition position, int group, const VideoChoice& first,
                                      const VideoChoice& second) const;

  // True the first time a too-short video is reported for this stream (to log it once).
  bool NoteTooShort(int64_t manifest_index) const;

  // The speed indices a group whose shorter video has `frames` frames cannot draw (a clip at that
  // speed spans more than `frames`), ascending.
  std::vector<int> UnavailableSpeeds(int64_t frames) const;
  // True the first time speed index `speed_index` is found unavailable for this stream.
  bool NoteSpeedUnavailable(int speed_index) const;

 private:
  TrainSampler(std::shared_ptr<const Manifest> manifest, std::vector<int64_t> split,
               TrainSettings settings, EpochSchedule schedule);
  std::shared_ptr<const std::vector<int64_t>> Permutation(int64_t epoch) const;
  uint64_t Key(StepPosition position, uint64_t a, uint64_t b, Purpose purpose) const;

  const std::shared_ptr<const Manifest> manifest_;
  const std::vector<int64_t> split_;  // Manifest indices of the split.
  const TrainSettings settings_;
  const EpochSchedule schedule_;

  mutable absl::Mutex mu_;
  mutable std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> permutations_
      ABSL_GUARDED_BY(mu_);
  mutable absl::flat_hash_set<int64_t> too_short_ ABSL_GUARDED_BY(mu_);
  mutable absl::flat_hash_set<int> speed_unavailable_ ABSL_GUARDED_BY(mu_);
};

class EvalSampler {
 public:
  EvalSampler(std::shared_ptr<const Manifest> manifest, EvalSettings settings);

  const Manifest& manifest() const { return *manifest_; }
  const EvalSettings& settings() const { return settings_; }
  int64_t num_batches() const;
  // Manifest indices of batch `batch`.
  std::vector<int64_t> VideosOf(int64_t batch) const;
  // The n clips of a video with `info` (slot = position in the batch).
  VideoPlan PlanVideo(int slot, int64_t manifest_index, const video::VideoInfo& info) const;

 private:
  const std::shared_ptr<const Manifest> manifest_;
  const EvalSettings settings_;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_BATCH_PLAN_H_
