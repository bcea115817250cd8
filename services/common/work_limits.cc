#include "services/common/work_limits.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "services/common/checked_math.h"

namespace tecl::work_limits {
namespace {

class Checker {
 public:
  template <typename T>
  void Range(absl::string_view field, T value, T lo, T hi, absl::string_view hint = "") {
    if (value >= lo && value <= hi) return;  // Also false for NaN.
    Add(field, absl::StrCat(value, " is out of range; use a value in [", lo, ", ", hi, "]",
                            hint.empty() ? "" : absl::StrCat(" (", hint, ")")));
  }

  void Path(absl::string_view field, const std::string& value) {
    if (value.size() <= kMaxPathBytes) return;
    Add(field, absl::StrCat("a path of ", value.size(), " bytes is longer than ", kMaxPathBytes,
                            "; shorten it"));
  }

  void Add(absl::string_view field, std::string message) {
    problems_.push_back({std::string(field), std::move(message)});
  }

  std::vector<Problem> Take() { return std::move(problems_); }

 private:
  std::vector<Problem> problems_;
};

void CheckDatasetFields(Checker& c, const tecl::v1::DatasetSpec& d) {
  c.Path("dataset.root", d.root());
  c.Path("dataset.manifest", d.manifest());
  c.Path("dataset.class_index", d.class_index());
  c.Path("dataset.train_list", d.train_list());
  c.Path("dataset.test_list", d.test_list());
  c.Range("dataset.fps", d.fps(), 0.0, kMaxFps, "0 keeps the native frame rate");
  if (d.short_side() != 0) {
    c.Range("dataset.short_side", d.short_side(), kMinShortSide, kMaxShortSide, "0 = auto");
  }
}

// Returns whether the clip geometry is valid (so sizes derived from it mean something).
bool CheckSampling(Checker& c, const tecl::v1::SamplingSpec& s) {
  bool ok = true;
  auto range = [&](absl::string_view field, int value, int lo, int hi) {
    if (value < lo || value > hi) ok = false;
    c.Range(field, value, lo, hi);
  };
  range("sampling.clip_length", s.clip_length(), kMinClipLength, kMaxClipLength);
  range("sampling.crop_size", s.crop_size(), kMinCropSize, kMaxCropSize);
  range("sampling.groups_per_batch", s.groups_per_batch(), 1, kMaxGroupsPerBatch);
  const auto& speeds = s.speeds();
  if (speeds.empty()) {
    c.Add("sampling.speeds", "empty; give ascending playback speeds, like [1, 2, 4, 8]");
    return false;
  }
  if (speeds.size() > kMaxSpeeds) {
    c.Add("sampling.speeds", absl::StrCat(speeds.size(), " speeds; use at most ", kMaxSpeeds));
    ok = false;
  }
  for (int i = 0; i < speeds.size(); ++i) {
    if (speeds[i] < 1) {
      c.Add(absl::StrCat("sampling.speeds[", i, "]"),
            absl::StrCat(speeds[i], " must be at least 1"));
      ok = false;
    }
  }
  for (int i = 1; i < speeds.size(); ++i) {
    if (speeds[i] <= speeds[i - 1]) {
      c.Add("sampling.speeds", absl::StrCat("[", absl::StrJoin(speeds, ", "),
                                            "] must be strictly ascending, like [1, 2, 4, 8]"));
      ok = false;
      break;
    }
  }
  if (s.clip_length() >= kMinClipLength) {
    const int max_speed = *std::max_element(speeds.begin(), speeds.end());
    const int64_t span = ClipSpanFrames(s.clip_length(), max_speed);
    if (max_speed >= 1 && span > kMaxClipSpanFrames) {
      c.Add("sampling",
            absl::StrCat("clip_length ", s.clip_length(), " at speed ", max_speed, " spans ",
                         span == std::numeric_limits<int64_t>::max() ? std::string("too many")
                                                                     : absl::StrCat(span),
                         " source frames ((clip_length - 1) x speed + 1), more than ",
                         kMaxClipSpanFrames, "; use shorter clips or smaller speeds"));
      ok = false;
    }
  }
  return ok;
}

void CheckAugment(Checker& c, const tecl::v1::AugmentSpec& a) {
  c.Range("augment.crop_area_min", a.crop_area_min(), 1e-3, 1.0);
  c.Range("augment.crop_area_max", a.crop_area_max(), 1e-3, 1.0);
  if (a.crop_area_max() < a.crop_area_min()) {
    c.Add("augment.crop_area_max", absl::StrCat(a.crop_area_max(), " is below crop_area_min ",
                                                a.crop_area_min(), "; swap them"));
  }
  c.Range("augment.aspect_min", a.aspect_min(), 0.1, 10.0);
  c.Range("augment.aspect_max", a.aspect_max(), 0.1, 10.0);
  if (a.aspect_max() < a.aspect_min()) {
    c.Add("augment.aspect_max",
          absl::StrCat(a.aspect_max(), " is below aspect_min ", a.aspect_min(), "; swap them"));
  }
  c.Range("augment.flip_prob", a.flip_prob(), 0.0, 1.0);
  c.Range("augment.jitter_prob", a.jitter_prob(), 0.0, 1.0);
  c.Range("augment.grayscale_prob", a.grayscale_prob(), 0.0, 1.0);
  c.Range("augment.brightness", a.brightness(), 0.0, 1.0);
  c.Range("augment.contrast", a.contrast(), 0.0, 1.0);
  c.Range("augment.saturation", a.saturation(), 0.0, 1.0);
  c.Range("augment.hue", a.hue(), 0.0, 0.5);
}

std::string BytesOrOverflow(const std::optional<int64_t>& bytes) {
  return bytes ? absl::StrCat(*bytes, " bytes") : std::string("more than 2^63 bytes");
}

}  // namespace

int64_t ClipSpanFrames(int64_t clip_length, int64_t speed) {
  std::optional<int64_t> span = CheckedMul<int64_t>(clip_length - 1, speed);
  if (span) span = CheckedAdd<int64_t>(*span, 1);
  return span.value_or(std::numeric_limits<int64_t>::max());
}

std::optional<int64_t> TrainBatchBytes(const tecl::v1::SamplingSpec& sampling, bool same_frames) {
  return CheckedProduct<int64_t>({2, sampling.groups_per_batch(), same_frames ? 3 : 2,
                                  sampling.clip_length(), sampling.crop_size(),
                                  sampling.crop_size(), 3});
}

std::optional<int64_t> EvalBatchBytes(const tecl::v1::SamplingSpec& sampling, int clips_per_video,
                                      int videos_per_batch) {
  return CheckedProduct<int64_t>({videos_per_batch, clips_per_video, sampling.clip_length(),
                                  sampling.crop_size(), sampling.crop_size(), 3});
}

std::vector<Problem> CheckDataset(const tecl::v1::DatasetSpec& dataset) {
  Checker c;
  CheckDatasetFields(c, dataset);
  return c.Take();
}

std::vector<Problem> CheckStreamWork(const tecl::v1::JobSpec& spec, tecl::v1::StreamMode mode,
                                     int eval_videos_per_batch) {
  Checker c;
  CheckDatasetFields(c, spec.dataset());
  const bool geometry_ok = CheckSampling(c, spec.sampling());
  c.Range("resources.prefetch_batches", spec.resources().prefetch_batches(), 1,
          kMaxPrefetchBatches);
  if (mode == tecl::v1::STREAM_MODE_EVAL) {
    const int clips = spec.eval().clips_per_video();
    c.Range("eval.clips_per_video", clips, 1, kMaxEvalClipsPerVideo);
    const bool counts_ok = clips >= 1 && clips <= kMaxEvalClipsPerVideo &&
                           eval_videos_per_batch >= 1 &&
                           eval_videos_per_batch <= kMaxEvalVideosPerBatch;
    if (geometry_ok && counts_ok) {
      const std::optional<int64_t> bytes =
          EvalBatchBytes(spec.sampling(), clips, eval_videos_per_batch);
      if (!bytes || *bytes > kMaxBatchBytes) {
        c.Add("eval.clips_per_video",
              absl::StrCat("a message of ", eval_videos_per_batch, " videos x ", clips,
                           " clips is ", BytesOrOverflow(bytes), ", more than ", kMaxBatchBytes,
                           "; use fewer clips per video, shorter clips or a smaller crop_size"));
      }
    }
    return c.Take();
  }

  const tecl::v1::InstancePositive positive = spec.method().instance_positive();
  if (positive != tecl::v1::INSTANCE_POSITIVE_OTHER_CLIP &&
      positive != tecl::v1::INSTANCE_POSITIVE_SAME_FRAMES) {
    c.Add("method.instance_positive",
          positive == tecl::v1::INSTANCE_POSITIVE_UNSPECIFIED
              ? std::string("missing; set other_clip or same_frames")
              : absl::StrCat("unknown value ", positive, "; use other_clip or same_frames"));
  }
  CheckAugment(c, spec.augment());
  c.Range<int64_t>("schedule.total_steps", spec.schedule().total_steps(), 1, kMaxSteps);
  if (geometry_ok) {
    const bool same_frames = positive == tecl::v1::INSTANCE_POSITIVE_SAME_FRAMES;
    const std::optional<int64_t> bytes = TrainBatchBytes(spec.sampling(), same_frames);
    if (!bytes || *bytes > kMaxBatchBytes) {
      c.Add("sampling.groups_per_batch",
            absl::StrCat("a batch of ", 2 * spec.sampling().groups_per_batch(), " videos x ",
                         same_frames ? 3 : 2, " clips is ", BytesOrOverflow(bytes), ", more than ",
                         kMaxBatchBytes,
                         "; use fewer groups per batch, shorter clips or a smaller crop_size"));
    }
  }
  return c.Take();
}

}  // namespace tecl::work_limits
