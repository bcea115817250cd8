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
  int64_t start_step = 0;
  int64_t stride = 1;
  int64_t max_steps = 0;     // 0 = until total_steps (TRAIN) or the last video (EVAL).
  int64_t total_steps = 0;   // spec.schedule.total_steps; 0 = unbounded.
  int prefetch = 2;          // spec.resources.prefetch_batches (0 = 2).
};

struct StreamLimits {
  int64_t max_batch_bytes = int64_t{240} << 20;  // Below the 256 MiB gRPC message limit.
  int max_prefetch = 64;
  int max_clip_span_frames = 4096;
};

// Validates `request` and returns its settings. INVALID_ARGUMENT naming the field
// ("rank: 2 is not below world_size 2", "spec.sampling.speeds: ..."). Defaults for zero values:
// mode UNSPECIFIED = TRAIN, step_stride 0 = 1, prefetch_batches 0 = 2, instance_positive
// UNSPECIFIED = OTHER_CLIP, eval.clips_per_video 0 = 10, eval_videos_per_batch 0 = 8, and an
// absent spec.augment = the METHOD.md defaults.
absl::StatusOr<StreamConfig> StreamConfigFromRequest(const tecl::v1::StreamBatchesRequest& request,
                                                     const StreamLimits& limits = {});

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_STREAM_CONFIG_H_
