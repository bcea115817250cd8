#include "services/dataloader/pipeline/batch_plan.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/status_macros.h"

namespace tecl::dataloader {

absl::StatusOr<std::shared_ptr<const TrainSampler>> TrainSampler::Create(
    std::shared_ptr<const Manifest> manifest, const std::string& split, TrainSettings settings) {
  TECL_ASSIGN_OR_RETURN(std::vector<int64_t> indices, manifest->SelectSplit(split));
  absl::StatusOr<EpochSchedule> schedule = EpochSchedule::Create(
      static_cast<int64_t>(indices.size()), settings.world_size, settings.videos_per_batch());
  if (!schedule.ok()) return schedule.status();
  return std::shared_ptr<const TrainSampler>(
      new TrainSampler(std::move(manifest), std::move(indices), std::move(settings), *schedule));
}

TrainSampler::TrainSampler(std::shared_ptr<const Manifest> manifest, std::vector<int64_t> split,
                           TrainSettings settings, EpochSchedule schedule)
    : manifest_(std::move(manifest)),
      split_(std::move(split)),
      settings_(std::move(settings)),
      schedule_(schedule) {}

std::shared_ptr<const std::vector<int64_t>> TrainSampler::Permutation(int64_t epoch) const {
  absl::MutexLock lock(&mu_);
  auto it = permutations_.find(epoch);
  if (it != permutations_.end()) return it->second;
  auto permutation = std::make_shared<const std::vector<int64_t>>(
      EpochPermutation(settings_.seed, epoch, split_size()));
  permutations_[epoch] = permutation;
  // Streams move forward: keep the newest few epochs.
  while (permutations_.size() > 3) permutations_.erase(permutations_.begin());
  return permutation;
}

uint64_t TrainSampler::Key(StepPosition position, uint64_t a, uint64_t b, Purpose purpose) const {
  return HashKey({settings_.seed, static_cast<uint64_t>(position.epoch),
                  static_cast<uint64_t>(position.step_in_epoch), static_cast<uint64_t>(settings_.rank),
                  static_cast<uint64_t>(settings_.world_size), a, b, static_cast<uint64_t>(purpose)});
}

int64_t TrainSampler::Candidate(StepPosition position, int slot, int64_t k) const {
  const int64_t n = split_size();
  const int64_t stride = settings_.videos_per_batch();
  const int64_t primary = schedule_.PermutationPosition(settings_.rank, position.step_in_epoch, slot);
  // Phase 1: the same slot of the following batches; phase 2: every position in turn.
  const int64_t phase1 = (n - 1) / stride;
  int64_t offset;
  if (k <= phase1) {
    offset = k * stride;
  } else if (k - phase1 < n) {
    offset = k - phase1;
  } else {
    return -1;
  }
  const auto permutation = Permutation(position.epoch);
  return split_[static_cast<size_t>((*permutation)[static_cast<size_t>((primary + offset) % n)])];
}

bool TrainSampler::LongEnough(const video::VideoInfo& info) const {
  return info.num_frames >= min_frames() && info.width > 0 && info.height > 0;
}

bool TrainSampler::NoteTooShort(int64_t manifest_index) const {
  absl::MutexLock lock(&mu_);
  return too_short_.insert(manifest_index).second;
}

std::vector<int> TrainSampler::UnavailableSpeeds(int64_t frames) const {
  std::vector<int> out;
  const TemporalConfig& temporal = settings_.temporal;
  for (size_t i = 0; i < temporal.speeds.size(); ++i) {
    if (SpanLength(temporal.clip_length, temporal.speeds[i]) > frames) {
      out.push_back(static_cast<int>(i));
    }
  }
  return out;
}

bool TrainSampler::NoteSpeedUnavailable(int speed_index) const {
  absl::MutexLock lock(&mu_);
  return speed_unavailable_.insert(speed_index).second;
}

absl::StatusOr<GroupPlan> TrainSampler::PlanGroup(StepPosition position, int group,
                                                  const VideoChoice& first,
                                                  const VideoChoice& second) const {
  const TemporalConfig& temporal = settings_.temporal;
  const int64_t shorter = std::min(first.info.num_frames, second.info.num_frames);
  Rng temporal_rng(Key(position, static_cast<uint64_t>(group), 0, Purpose::kTemporal));
  TECL_ASSIGN_OR_RETURN(TemporalPair pair, DrawTemporalPair(temporal, shorter, temporal_rng));
  GroupPlan plan;
  plan.pair = pair;
  const int speed_a = temporal.speeds[static_cast<size_t>(pair.speed_index_a)];
  const int speed_b = temporal.speeds[static_cast<size_t>(pair.speed_index_b)];
  const int64_t len_a = SpanLength(temporal.clip_length, speed_a);
  const int64_t len_b = SpanLength(temporal.clip_length, speed_b);
  const int size = settings_.crop_size;
  const VideoChoice* choices[2] = {&first, &second};
  for (int v = 0; v < 2; ++v) {
    const VideoChoice& choice = *choices[v];
    const int slot = 2 * group + v;
    const StartRange starts = StartRangeForA(temporal, pair, choice.info.num_frames);
    if (starts.empty()) {
      return absl::OutOfRangeError(absl::StrCat("video ", choice.manifest_index, " of ",
                                                choice.info.num_frames, " frames cannot hold the pair"));
    }
    Rng start_rng(Key(position, static_cast<uint64_t>(slot), 0, Purpose::kStart));
    const int64_t t_a = start_rng.Between(starts.lo, starts.hi);
    const int64_t t_b = t_a + pair.delta;
    const tecl::v1::Relation relation = RelationOfSpans(t_a, len_a, t_b, len_b);
    if (v == 0) plan.relation = relation;

    VideoPlan& video = plan.videos[static_cast<size_t>(v)];
    video.slot = slot;
    video.manifest_index = choice.manifest_index;
    struct Role {
      tecl::v1::ClipRole role;
      int speed_index;
      int speed;
      bool reversed;
      int64_t start;
    };
    std::vector<Role> roles = {
        {tecl::v1::CLIP_ROLE_A, pair.speed_index_a, speed_a, pair.reversed_a, t_a},
        {tecl::v1::CLIP_ROLE_B, pair.speed_index_b, speed_b, pair.reversed_b, t_b}};
    if (settings_.same_frames) {
      roles.push_back({tecl::v1::CLIP_ROLE_SAME_FRAMES, pair.speed_index_a, speed_a, pair.reversed_a, t_a});
    }
    for (const Role& role : roles) {
      ClipPlan clip;
      clip.role = role.role;
      clip.speed_index = role.speed_index;
      clip.reversed = role.reversed;
      clip.start_frame = role.start;
      clip.request.frames =
          ClipFrameIndices(role.start, role.speed, temporal.clip_length, role.reversed);
      Rng spatial_rng(Key(position, static_cast<uint64_t>(slot), static_cast<uint64_t>(role.role),
                          Purpose::kSpatial));
      const SpatialDraw draw =
          DrawSpatial(settings_.augment, choice.info.width, choice.info.height, spatial_rng);
      clip.request.crop = draw.crop;
      clip.request.flip = draw.flip;
      clip.request.out_width = size;
      clip.request.out_height = size;
      clip.color = draw.color;
      video.clips.push_back(std::move(clip));
    }
  }
  return plan;
}

EvalSampler::EvalSampler(std::shared_ptr<const Manifest> manifest, EvalSettings settings)
    : manifest_(std::move(manifest)), settings_(settings) {}

int64_t EvalSampler::num_batches() const {
  const int64_t videos = static_cast<int64_t>(manifest_->videos.size());
  return (videos + settings_.videos_per_batch - 1) / settings_.videos_per_batch;
}

std::vector<int64_t> EvalSampler::VideosOf(int64_t batch) const {
  const int64_t videos = static_cast<int64_t>(manifest_->videos.size());
  std::vector<int64_t> indices;
  for (int64_t i = batch * settings_.videos_per_batch;
       i < std::min(videos, (batch + 1) * settings_.videos_per_batch); ++i) {
    indices.push_back(i);
  }
  return indices;
}

VideoPlan EvalSampler::PlanVideo(int slot, int64_t manifest_index,
                                 const video::VideoInfo& info) const {
  VideoPlan plan;
  plan.slot = slot;
  plan.manifest_index = manifest_index;
  const int n = settings_.clips_per_video;
  const int64_t span = SpanLength(settings_.clip_length, settings_.speed);
  const int64_t last_start = std::max<int64_t>(0, info.num_frames - span);
  const video::CropRect crop = CenterSquareCrop(info.width, info.height);
  for (int k = 0; k < n; ++k) {
    ClipPlan clip;
    clip.role = tecl::v1::CLIP_ROLE_EVAL;
    // Uniformly spaced starts, rounded to the nearest frame; one clip sits in the middle.
    clip.start_frame = n == 1 ? last_start / 2 : (2 * k * last_start + (n - 1)) / (2 * (n - 1));
    clip.request.frames =
        ClipFrameIndices(clip.start_frame, settings_.speed, settings_.clip_length, false);
    for (int64_t& frame : clip.request.frames) frame = std::min(frame, info.num_frames - 1);
    clip.request.crop = crop;
    clip.request.out_width = settings_.crop_size;
    clip.request.out_height = settings_.crop_size;
    plan.clips.push_back(std::move(clip));
  }
  return plan;
}

}  // namespace tecl::dataloader
