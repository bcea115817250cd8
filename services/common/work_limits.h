// The limits on the work one job may ask of a dataloader (clip sizes, spans, batch bytes, prefetch,
// steps, strides), defined once: the coordinator's spec validation (services/coordinator/spec)
// and the dataloader's request validation (services/dataloader/pipeline/stream_config) both call
// CheckStreamWork, so a spec the coordinator accepts is never refused by a dataloader, and a spec
// past a limit is refused by both with the same message.
//
// Every derived size (a clip's span, a batch's bytes) is computed with overflow-checked
// arithmetic (checked_math.h), so hostile values give a problem, never a wrapped number.
//
// Pure functions and constants: thread-safe. Depends on the messages only (no gRPC, FFmpeg or
// LibTorch).
#ifndef TECL_SERVICES_COMMON_WORK_LIMITS_H_
#define TECL_SERVICES_COMMON_WORK_LIMITS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tecl/v1/dataloader.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::work_limits {

// sampling.clip_length: frames per clip.
inline constexpr int kMinClipLength = 1;
inline constexpr int kMaxClipLength = 256;
// sampling.crop_size: S of the S x S clips.
inline constexpr int kMinCropSize = 16;
inline constexpr int kMaxCropSize = 1024;
// sampling.speeds: how many.
inline constexpr int kMaxSpeeds = 16;
// A clip's span at its largest speed, (clip_length - 1) x speed + 1 source frames: the frames
// decoding has to run through for one clip.
inline constexpr int64_t kMaxClipSpanFrames = 512;
// sampling.groups_per_batch.
inline constexpr int kMaxGroupsPerBatch = 4096;
// One batch message (clips x clip_length x crop_size^2 x 3 bytes), below the 256 MiB gRPC
// message limit of the dataloader's responses and the trainers' channels.
inline constexpr int64_t kMaxBatchBytes = int64_t{240} << 20;
// resources.prefetch_batches.
inline constexpr int kMaxPrefetchBatches = 64;
// eval.clips_per_video.
inline constexpr int kMaxEvalClipsPerVideo = 100;
// StreamBatchesRequest.eval_videos_per_batch (0 = the default).
inline constexpr int kDefaultEvalVideosPerBatch = 8;
inline constexpr int kMaxEvalVideosPerBatch = 1024;
// dataset.fps (0 = native) and dataset.short_side (0 = auto).
inline constexpr double kMaxFps = 240;
inline constexpr int kMinShortSide = 16;
inline constexpr int kMaxShortSide = 4096;
// Each path of dataset (root, manifest, lists).
inline constexpr size_t kMaxPathBytes = 4096;
// schedule.total_steps, and the largest step a stream serves (start_step, max_steps).
inline constexpr int64_t kMaxSteps = 1'000'000'000;
// StreamBatchesRequest.step_stride: a trainer reading from k loaders asks each for every k-th step.
inline constexpr int64_t kMaxStepStride = 1024;
// StreamBatchesRequest.world_size, and the most trainers a coordinator may allow (--max_trainers).
inline constexpr int kMaxWorldSize = 4096;

// One field that is out of bounds: its path inside the JobSpec ("sampling.clip_length") and what
// is wrong with the fix ("0 is out of range; use a value in [1, 256]").
struct Problem {
  std::string field;
  std::string message;
};

// (clip_length - 1) x speed + 1; INT64_MAX when that overflows (any value is out of bounds).
int64_t ClipSpanFrames(int64_t clip_length, int64_t speed);

// Bytes of one TRAIN batch (2 x groups_per_batch videos, 2 clips each, 3 with `same_frames`) and
// of one EVAL message; nullopt when the product overflows.
std::optional<int64_t> TrainBatchBytes(const tecl::v1::SamplingSpec& sampling, bool same_frames);
std::optional<int64_t> EvalBatchBytes(const tecl::v1::SamplingSpec& sampling, int clips_per_video,
                                      int videos_per_batch);

// Problems of a data set's paths (length) and rates (dataset.fps, dataset.short_side): what
// DescribeDataset checks, and part of CheckStreamWork.
std::vector<Problem> CheckDataset(const tecl::v1::DatasetSpec& dataset);

// Every problem of the fields of a fully resolved `spec` that size a dataloader's work for a
// stream of `mode` (TRAIN: sampling, augmentation, instance positive, total steps, batch bytes;
// EVAL: sampling, eval clips, message bytes with `eval_videos_per_batch`, which the caller has
// checked to lie in [1, kMaxEvalVideosPerBatch]; both: dataset paths and rates, prefetch). Empty
// when the spec is within every limit.
std::vector<Problem> CheckStreamWork(const tecl::v1::JobSpec& spec, tecl::v1::StreamMode mode,
                                     int eval_videos_per_batch = kDefaultEvalVideosPerBatch);

}  // namespace tecl::work_limits

#endif  // TECL_SERVICES_COMMON_WORK_LIMITS_H_
