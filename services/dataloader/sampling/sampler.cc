#include "services/dataloader/sampling/sampler.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tecl::dataloader {
namespace {

using tecl::v1::Relation;

constexpr std::array<Relation, 3> kRelations = {tecl::v1::RELATION_BEFORE, tecl::v1::RELATION_AFTER,
                                                tecl::v1::RELATION_OVERLAP};

// Offsets delta = t_B - t_A realising `relation` when both clips must fit in n frames.
StartRange DeltaRange(Relation relation, int64_t len_a, int64_t len_b, int64_t n) {
  switch (relation) {
    case tecl::v1::RELATION_BEFORE:
      return {len_a, n - len_b};
    case tecl::v1::RELATION_AFTER:
      return {len_a - n, -len_b};
    case tecl::v1::RELATION_OVERLAP:
      if (len_a > n || len_b > n) return {};
      return {std::max(1 - len_b, len_a - n), std::min(len_a - 1, n - len_b)};
    default:
      return {};
  }
}

}  // namespace

int64_t SpanLength(int clip_length, int speed) {
  return static_cast<int64_t>(clip_length - 1) * speed + 1;
}

int64_t MinFramesForPair(const TemporalConfig& config) {
  return SpanLength(config.clip_length, config.speeds.front());
}

Relation RelationOfSpans(int64_t start_a, int64_t len_a, int64_t start_b, int64_t len_b) {
  if (start_a + len_a - 1 < start_b) return tecl::v1::RELATION_BEFORE;
  if (start_a > start_b + len_b - 1) return tecl::v1::RELATION_AFTER;
  return tecl::v1::RELATION_OVERLAP;
}

absl::StatusOr<TemporalPair> DrawTemporalPair(const TemporalConfig& config, int64_t frames,
                                              Rng& rng) {
  const int num_speeds = static_cast<int>(config.speeds.size());
  // Speed pairs realising each relation within `frames`.
  std::array<std::vector<std::pair<int, int>>, 3> pairs;
  for (int a = 0; a < num_speeds; ++a) {
    for (int b = 0; b < num_speeds; ++b) {
      const int64_t len_a = SpanLength(config.clip_length, config.speeds[a]);
      const int64_t len_b = SpanLength(config.clip_length, config.speeds[b]);
      for (size_t r = 0; r < kRelations.size(); ++r) {
        if (!DeltaRange(kRelations[r], len_a, len_b, frames).empty()) pairs[r].emplace_back(a, b);
      }
    }
  }
  std::vector<size_t> possible;
  for (size_t r = 0; r < kRelations.size(); ++r) {
    if (!pairs[r].empty()) possible.push_back(r);
  }
  if (possible.empty()) {
    return absl::OutOfRangeError(absl::StrCat("a video of ", frames,
                                              " frames cannot hold a clip of ", config.clip_length,
                                              " frames (needs ", MinFramesForPair(config), ")"));
  }
  const size_t r = possible[rng.Below(possible.size())];
  const auto [a, b] = pairs[r][rng.Below(pairs[r].size())];
  TemporalPair pair;
  pair.relation = kRelations[r];
  pair.speed_index_a = a;
  pair.speed_index_b = b;
  pair.reversed_a = rng.Bernoulli(0.5);
  pair.reversed_b = rng.Bernoulli(0.5);
  const StartRange deltas =
      DeltaRange(pair.relation, SpanLength(config.clip_length, config.speeds[a]),
                 SpanLength(config.clip_length, config.speeds[b]), frames);
  pair.delta = rng.Between(deltas.lo, deltas.hi);
  return pair;
}

StartRange StartRangeForA(const TemporalConfig& config, const TemporalPair& pair, int64_t frames) {
  const int64_t len_a = SpanLength(config.clip_length, config.speeds[pair.speed_index_a]);
  const int64_t len_b = SpanLength(config.clip_length, config.speeds[pair.speed_index_b]);
  // 0 <= t_A, t_A + len_A <= frames, 0 <= t_A + delta, t_A + delta + len_B <= frames.
  return {std::max<int64_t>(0, -pair.delta), std::min(frames - len_a, frames - len_b - pair.delta)};
}

std::vector<int64_t> ClipFrameIndices(int64_t start, int speed, int length, bool reversed) {
  std::vector<int64_t> frames(static_cast<size_t>(length));
  for (int i = 0; i < length; ++i) {
    frames[static_cast<size_t>(reversed ? length - 1 - i : i)] = start + static_cast<int64_t>(i) * speed;
  }
  return frames;
}

std::vector<int64_t> EpochPermutation(uint64_t seed, int64_t epoch, int64_t n) {
  std::vector<int64_t> permutation(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) permutation[static_cast<size_t>(i)] = i;
  Rng rng(HashKey({seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(n),
                   static_cast<uint64_t>(Purpose::kPermutation)}));
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(i) + 1));
    std::swap(permutation[static_cast<size_t>(i)], permutation[static_cast<size_t>(j)]);
  }
  return permutation;
}

absl::StatusOr<EpochSchedule> EpochSchedule::Create(int64_t num_videos, int world_size,
                                                    int videos_per_batch) {
  if (world_size < 1 || videos_per_batch < 1 || num_videos < 0) {
    return absl::InvalidArgumentError(absl::StrCat("epoch schedule: world_size ", world_size,
                                                   " and videos per batch ", videos_per_batch,
                                                   " must be positive"));
  }
  EpochSchedule schedule;
  schedule.num_videos_ = num_videos;
  schedule.shard_size_ = num_videos / world_size;
  schedule.videos_per_batch_ = videos_per_batch;
  schedule.steps_per_epoch_ = schedule.shard_size_ / videos_per_batch;
  if (schedule.steps_per_epoch_ < 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset: the split has ", num_videos, " videos, so each of the ", world_size,
        " ranks gets ", schedule.shard_size_, ", fewer than the ", videos_per_batch,
        " videos one batch needs (2 x sampling.groups_per_batch); use more videos, fewer "
        "groups per batch or fewer trainers"));
  }
  return schedule;
}

StepPosition EpochSchedule::Locate(int64_t global_step) const {
  return {global_step / steps_per_epoch_, global_step % steps_per_epoch_};
}

int64_t EpochSchedule::PermutationPosition(int rank, int64_t step_in_epoch, int slot) const {
  return static_cast<int64_t>(rank) * shard_size_ + step_in_epoch * videos_per_batch_ + slot;
}

}  // namespace tecl::dataloader
