#include "services/dataloader/pipeline/stream_config.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace tecl::dataloader {
namespace {

namespace limits = ::tecl::work_limits;

// Job ids are short ("job-000001"); the coordinator refuses longer ones.
constexpr size_t kMaxJobIdBytes = 128;

// The request's own fields (the cursor and the stream's shape), each checked before any is used.
class RequestChecker {
 public:
  template <typename T>
  void Range(absl::string_view field, T value, T lo, T hi, absl::string_view hint = "") {
    if (value >= lo && value <= hi) return;
    problems_.push_back(absl::StrCat(field, ": ", value, " is out of range; use a value in [", lo,
                                     ", ", hi, "]",
                                     hint.empty() ? "" : absl::StrCat(" (", hint, ")")));
  }
  void Add(std::string problem) { problems_.push_back(std::move(problem)); }
  bool ok() const { return problems_.empty(); }
  absl::Status ToStatus() const {
    if (problems_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(problems_, "; "));
  }

 private:
  std::vector<std::string> problems_;
};

void CheckCursor(RequestChecker& c, const tecl::v1::StreamBatchesRequest& request) {
  if (request.job_id().size() > kMaxJobIdBytes) {
    c.Add(
        absl::StrCat("job_id: ", request.job_id().size(), " bytes; use at most ", kMaxJobIdBytes));
  }
  c.Range("world_size", request.world_size(), 1, limits::kMaxWorldSize);
  if (request.world_size() >= 1 && (request.rank() < 0 || request.rank() >= request.world_size())) {
    c.Add(absl::StrCat("rank: ", request.rank(), " is not in [0, world_size ", request.world_size(),
                       ")"));
  }
  c.Range<int64_t>("start_step", request.start_step(), 0, limits::kMaxSteps);
  c.Range<int64_t>("step_stride", request.step_stride(), 0, limits::kMaxStepStride,
                   "0 or 1 = every step");
  c.Range<int64_t>("max_steps", request.max_steps(), 0, limits::kMaxSteps, "0 = until the end");
  c.Range<int64_t>("spec.schedule.total_steps", request.spec().schedule().total_steps(), 0,
                   limits::kMaxSteps, "0 = unbounded");
  c.Range("eval_videos_per_batch", request.eval_videos_per_batch(), 0,
          limits::kMaxEvalVideosPerBatch, "0 = 8");
  if (request.mode() != tecl::v1::STREAM_MODE_UNSPECIFIED &&
      request.mode() != tecl::v1::STREAM_MODE_TRAIN &&
      request.mode() != tecl::v1::STREAM_MODE_EVAL) {
    c.Add(absl::StrCat("mode: unknown value ", request.mode(), "; use TRAIN or EVAL"));
  }
}

// The spec with the request's zero values replaced by their defaults, as the coordinator resolves
// a spec before it validates it.
tecl::v1::JobSpec ResolvedSpec(const tecl::v1::JobSpec& spec) {
  tecl::v1::JobSpec resolved = spec;
  if (resolved.resources().prefetch_batches() == 0) {
    resolved.mutable_resources()->set_prefetch_batches(2);
  }
  if (resolved.eval().clips_per_video() == 0) resolved.mutable_eval()->set_clips_per_video(10);
  if (resolved.method().instance_positive() == tecl::v1::INSTANCE_POSITIVE_UNSPECIFIED) {
    resolved.mutable_method()->set_instance_positive(tecl::v1::INSTANCE_POSITIVE_OTHER_CLIP);
  }
  if (resolved.schedule().total_steps() == 0) {
    resolved.mutable_schedule()->set_total_steps(limits::kMaxSteps);
  }
  if (!resolved.has_augment()) *resolved.mutable_augment() = AugmentParams().ToSpec();
  return resolved;
}

}  // namespace

int64_t StepsBelow(int64_t start, int64_t stride, int64_t end) {
  return start >= end ? 0 : (end - start - 1) / stride + 1;
}

absl::StatusOr<StreamConfig> StreamConfigFromRequest(
    const tecl::v1::StreamBatchesRequest& request) {
  RequestChecker checker;
  CheckCursor(checker, request);
  if (!checker.ok()) return checker.ToStatus();

  StreamConfig config;
  config.job_id = request.job_id();
  config.mode = request.mode() == tecl::v1::STREAM_MODE_EVAL ? tecl::v1::STREAM_MODE_EVAL
                                                             : tecl::v1::STREAM_MODE_TRAIN;
  const int videos_per_batch = request.eval_videos_per_batch() == 0
                                   ? limits::kDefaultEvalVideosPerBatch
                                   : request.eval_videos_per_batch();
  const tecl::v1::JobSpec spec = ResolvedSpec(request.spec());
  for (const limits::Problem& problem :
       limits::CheckStreamWork(spec, config.mode, videos_per_batch)) {
    checker.Add(absl::StrCat("spec.", problem.field, ": ", problem.message));
  }
  if (!checker.ok()) return checker.ToStatus();

  // Cursor.
  config.start_step = request.start_step();
  config.stride = std::max<int64_t>(1, request.step_stride());
  config.max_steps = request.max_steps();
  config.total_steps = spec.schedule().total_steps();
  config.prefetch = spec.resources().prefetch_batches();

  // Data set (paths are checked when the manifest is read).
  config.dataset = spec.dataset();
  config.decode.fps = spec.dataset().fps();

  // Sampling.
  const tecl::v1::SamplingSpec& s = spec.sampling();
  TrainSettings& train = config.train;
  train.seed = spec.seed();
  train.temporal.clip_length = s.clip_length();
  train.temporal.speeds.assign(s.speeds().begin(), s.speeds().end());
  train.crop_size = s.crop_size();
  train.groups_per_batch = s.groups_per_batch();
  train.same_frames = spec.method().instance_positive() == tecl::v1::INSTANCE_POSITIVE_SAME_FRAMES;
  train.rank = request.rank();
  train.world_size = request.world_size();
  train.augment = AugmentParams::FromSpec(spec.augment());

  // Evaluation.
  EvalSettings& eval = config.eval;
  eval.clip_length = s.clip_length();
  eval.speed = s.speeds(0);
  eval.crop_size = s.crop_size();
  eval.clips_per_video = spec.eval().clips_per_video();
  eval.videos_per_batch = videos_per_batch;
  return config;
}

}  // namespace tecl::dataloader
