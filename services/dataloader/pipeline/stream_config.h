// StreamConfig: a validated StreamBatchesRequest, as the settings the samplers and the builder
// use. The request's spec is expected fully resolved (the coordinator fills defaults); a few
// fields that have no meaningful zero take their METHOD.md default when zero (documented below).
//
// Pure functions: thread-safe.
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_STREAM_CONFIG_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_STREAM_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "services/common/work_limits.h"
#include "services/dataloader/augment/augment.h"
#include "services/dataloader/sampling/sampler.h"
#include "services/dataloader/video/video_reader.h"
#include "tecl/v1/dataloader.pb.h"

namespace tecl::dataloader {

struct TrainSettings {
  uint64_t seed = 0;
  TemporalConfig temporal;
  int crop_size = 112;        // S.
  int groups_per_batch = 8;   // G.
  bool same_frames = false;   // INSTANCE_POSITIVE_SAME_FRAMES: a third clip per video.
  AugmentParams augment;
  int rank = 0;
  int world_size = 1;

  int clips_per_video() const { return same_frames ? 3 : 2; }
  int videos_per_batch() const { return 2 * groups_per_batch; }
  int clips_per_batch() const { return videos_per_batch() * clips_per_video(); }
};

struct EvalSettings {
  int clip_length = 16;
  int speed = 1;               // The smallest training speed.
  int crop_size = 112;
  int clips_per_video = 10;    // n uniformly spaced clips.
  int videos_per_batch = 8;
};

struct StreamConfig {
  tecl::v1::StreamMode mode = tecl::v1::STREAM_MODE_TRAIN;
  std::string job_id;
  tecl::v1::DatasetSpec dataset;
  video::DecodeOptions decode;  // fps from dataset.fps; budget from the loader.
  TrainSettings train;
  EvalSettings eval;
  // Steps served: start_step, start_step + stride, ... for num_batches() batches; every value
  // lies in [0, work_limits::kMaxSteps] and start + (n - 1) x stride cannot overflow.
  int64_t start_step = 0;
  int64_t stride = 1;
  int64_t max_steps = 0;     // 0 = until total_steps (TRAIN) or the last video (EVAL).
  // spec.schedule.total_steps; a request with 0 (unbounded) gets work_limits::kMaxSteps.
  int64_t total_steps = work_limits::kMaxSteps;
  int prefetch = 2;          // spec.resources.prefetch_batches (0 = 2).
};

// Validates every field of `request` against work_limits.h (the limits the coordinator checks
// specs against) and returns its settings. INVALID_ARGUMENT naming each bad field, its value and
// the allowed range ("start_step: 9223372036854775807 is out of range; use a value in [0,
// 1000000000]", "spec.sampling.crop_size: ..."). Defaults for zero values: mode UNSPECIFIED =
// TRAIN, step_stride 0 = 1, prefetch_batches 0 = 2, instance_positive UNSPECIFIED = OTHER_CLIP,
// eval.clips_per_video 0 = 10, eval_videos_per_batch 0 = 8, schedule.total_steps 0 = kMaxSteps,
// and an absent spec.augment = the METHOD.md defaults.
absl::StatusOr<StreamConfig> StreamConfigFromRequest(const tecl::v1::StreamBatchesRequest& request);

// Number of batches of a stream starting at `start` with `stride` (>= 1) below `end`
// (exclusive); 0 when start >= end. No overflow for any start, end >= 0.
int64_t StepsBelow(int64_t start, int64_t stride, int64_t end);

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_STREAM_CONFIG_H_
