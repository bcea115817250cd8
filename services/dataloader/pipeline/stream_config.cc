#include "services/dataloader/pipeline/stream_config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/status_macros.h"

namespace tecl::dataloader {
namespace {

template <typename T>
absl::Status CheckRange(const char* field, T value, T lo, T hi, absl::string_view hint = "") {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", value, " is outside [", lo, ", ", hi,
                                                 "]", hint.empty() ? "" : "; ", hint));
}

}  // namespace

absl::StatusOr<StreamConfig> StreamConfigFromRequest(const tecl::v1::StreamBatchesRequest& request,
                                                     const StreamLimits& limits) {
  StreamConfig config;
  config.job_id = request.job_id();
  const tecl::v1::JobSpec& spec = request.spec();

  // Cursor.
  if (request.world_size() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size: ", request.world_size(), " must be at least 1"));
  }
  if (request.rank() < 0 || request.rank() >= request.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("rank: ", request.rank(),
                                                   " is not in [0, world_size ",
                                                   request.world_size(), ")"));
  }
  if (request.start_step() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("start_step: ", request.start_step(), " is negative"));
  }
  if (request.step_stride() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("step_stride: ", request.step_stride(), " is negative; use 0 or 1 for every step"));
  }
  if (request.max_steps() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_steps: ", request.max_steps(), " is negative; 0 = until the end"));
  }
  if (spec.schedule().total_steps() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.schedule.total_steps: ", spec.schedule().total_steps(), " is negative"));
  }
  TECL_RETURN_IF_ERROR(CheckRange("eval_videos_per_batch", request.eval_videos_per_batch(), 0, 1024,
                            "0 = 8"));
  switch (request.mode()) {
    case tecl::v1::STREAM_MODE_UNSPECIFIED:
    case tecl::v1::STREAM_MODE_TRAIN:
      config.mode = tecl::v1::STREAM_MODE_TRAIN;
      break;
    case tecl::v1::STREAM_MODE_EVAL:
      config.mode = tecl::v1::STREAM_MODE_EVAL;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("mode: unknown value ", request.mode(), "; use TRAIN or EVAL"));
  }
  config.start_step = request.start_step();
  config.stride = std::max<int64_t>(1, request.step_stride());
  config.max_steps = request.max_steps();
  config.total_steps = spec.schedule().total_steps();
  TECL_RETURN_IF_ERROR(CheckRange("spec.resources.prefetch_batches", spec.resources().prefetch_batches(),
                            0, limits.max_prefetch, "0 = 2"));
  config.prefetch = spec.resources().prefetch_batches() == 0 ? 2 : spec.resources().prefetch_batches();

  // Data set (paths are checked when the manifest is read).
  config.dataset = spec.dataset();
  TECL_RETURN_IF_ERROR(CheckRange("spec.dataset.fps", spec.dataset().fps(), 0.0, 240.0,
                            "0 keeps the native frame rate"));
  config.decode.fps = spec.dataset().fps();

  // Sampling.
  const tecl::v1::SamplingSpec& s = spec.sampling();
  TECL_RETURN_IF_ERROR(CheckRange("spec.sampling.clip_length", s.clip_length(), 1, 256));
  TECL_RETURN_IF_ERROR(CheckRange("spec.sampling.crop_size", s.crop_size(), 16, 1024));
  TECL_RETURN_IF_ERROR(CheckRange("spec.sampling.groups_per_batch", s.groups_per_batch(), 1, 4096));
  if (s.speeds().empty()) {
    return absl::InvalidArgumentError("spec.sampling.speeds: empty; give ascending strides, e.g. [1, 2, 4, 8]");
  }
  if (s.speeds_size() > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.sampling.speeds: ", s.speeds_size(), " speeds; use at most 16"));
  }
  for (int i = 0; i < s.speeds_size(); ++i) {
    if (s.speeds(i) < 1 || (i > 0 && s.speeds(i) <= s.speeds(i - 1))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.sampling.speeds: [", absl::StrJoin(s.speeds(), ", "),
          "] must be positive and strictly ascending, e.g. [1, 2, 4, 8]"));
    }
  }
  const int64_t span = SpanLength(s.clip_length(), s.speeds(s.speeds_size() - 1));
  if (span > limits.max_clip_span_frames) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.sampling: clip_length ", s.clip_length(), " at speed ", s.speeds(s.speeds_size() - 1),
        " spans ", span, " source frames, more than ", limits.max_clip_span_frames,
        "; use shorter clips or smaller speeds"));
  }
  TrainSettings& train = config.train;
  train.seed = spec.seed();
  train.temporal.clip_length = s.clip_length();
  train.temporal.speeds.assign(s.speeds().begin(), s.speeds().end());
  train.crop_size = s.crop_size();
  train.groups_per_batch = s.groups_per_batch();
  switch (spec.method().instance_positive()) {
    case tecl::v1::INSTANCE_POSITIVE_UNSPECIFIED:
    case tecl::v1::INSTANCE_POSITIVE_OTHER_CLIP:
      train.same_frames = false;
      break;
    case tecl::v1::INSTANCE_POSITIVE_SAME_FRAMES:
      train.same_frames = true;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.method.instance_positive: unknown value ", spec.method().instance_positive(),
                       "; use other_clip or same_frames"));
  }
  train.rank = request.rank();
  train.world_size = request.world_size();
  if (spec.has_augment()) {
    train.augment = AugmentParams::FromSpec(spec.augment());
    absl::Status status = train.augment.Validate();
    if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("spec.", status.message()));
  }

  // Evaluation.
  EvalSettings& eval = config.eval;
  eval.clip_length = s.clip_length();
  eval.speed = s.speeds(0);
  eval.crop_size = s.crop_size();
  TECL_RETURN_IF_ERROR(CheckRange("spec.eval.clips_per_video", spec.eval().clips_per_video(), 0, 100,
                            "0 = 10"));
  eval.clips_per_video = spec.eval().clips_per_video() == 0 ? 10 : spec.eval().clips_per_video();
  eval.videos_per_batch = request.eval_videos_per_batch() == 0 ? 8 : request.eval_videos_per_batch();

  // Message size.
  const int64_t clip_bytes = int64_t{s.clip_length()} * s.crop_size() * s.crop_size() * 3;
  const int64_t clips = config.mode == tecl::v1::STREAM_MODE_TRAIN
                            ? train.clips_per_batch()
                            : int64_t{eval.clips_per_video} * eval.videos_per_batch;
  if (clips * clip_bytes > limits.max_batch_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        config.mode == tecl::v1::STREAM_MODE_TRAIN ? "spec.sampling.groups_per_batch"
                                                   : "eval_videos_per_batch",
        ": a batch of ", clips, " clips of ", clip_bytes, " bytes exceeds ",
        limits.max_batch_bytes, " bytes; use fewer groups (or eval videos) per batch"));
  }
  return config;
}

}  // namespace tecl::dataloader
