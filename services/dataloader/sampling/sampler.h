// Sampling of METHOD.md "Batch construction": which videos a batch holds (epoch permutation,
// sharding across ranks, global step -> epoch) and the temporal transformation pair a group of two
// videos shares.
//
// Epochs and shards. The split's N videos are permuted per epoch by (seed, epoch). Each of the W
// ranks takes a contiguous, disjoint block of shard = floor(N / W) positions of that permutation;
// a batch takes 2G consecutive positions of its rank's block, so steps_per_epoch =
// floor(shard / 2G) (the remainder of an epoch is left out; the next permutation mixes it back in).
// Global step k is (epoch k / steps_per_epoch, step k % steps_per_epoch).
//
// Temporal pairs. A clip of L frames at speed s spans len(s) = (L-1)s + 1 source frames. For a
// group whose shorter video has n frames, the relation r of clip A to clip B is drawn uniformly
// among the relations possible at n (BEFORE and AFTER need len(s_A) + len(s_B) <= n; OVERLAP needs
// both spans <= n), then the speed pair uniformly among the pairs that realise r within n, the two
// directions uniformly, and the offset delta = t_B - t_A uniformly in the range that realises r:
//   BEFORE   delta in [len_A, n - len_B]
//   AFTER    delta in [len_A - n, -len_B]
//   OVERLAP  delta in [max(1 - len_B, len_A - n), min(len_A - 1, n - len_B)]
// Each video then draws its own t_A uniformly among the starts where both clips fit
// (StartRangeForA), so every video of the group gets the same relative transformation at its own
// absolute position. A video shorter than len(min speed) cannot host any pair.
//
// Pure functions: thread-safe.
#ifndef TECL_SERVICES_DATALOADER_SAMPLING_SAMPLER_H_
#define TECL_SERVICES_DATALOADER_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "services/dataloader/sampling/rng.h"
#include "tecl/v1/dataloader.pb.h"

namespace tecl::dataloader {

struct TemporalConfig {
  int clip_length = 16;          // L.
  std::vector<int> speeds = {1, 2, 4, 8};  // Ascending strides.
};

// Source frames a clip of `clip_length` frames at `speed` spans: (L-1)*speed + 1.
int64_t SpanLength(int clip_length, int speed);

// Fewest frames a video needs to host any pair: SpanLength(L, smallest speed).
int64_t MinFramesForPair(const TemporalConfig& config);

// Relation of clip A (span [start_a, start_a + len_a - 1]) to clip B.
tecl::v1::Relation RelationOfSpans(int64_t start_a, int64_t len_a, int64_t start_b, int64_t len_b);

struct TemporalPair {
  int speed_index_a = 0;  // Index into TemporalConfig::speeds.
  int speed_index_b = 0;
  bool reversed_a = false;
  bool reversed_b = false;
  int64_t delta = 0;  // t_B - t_A.
  tecl::v1::Relation relation = tecl::v1::RELATION_UNSPECIFIED;
};

// Draws the pair for a group whose shorter video has `frames` frames. OUT_OF_RANGE when
// frames < MinFramesForPair(config).
absl::StatusOr<TemporalPair> DrawTemporalPair(const TemporalConfig& config, int64_t frames,
                                              Rng& rng);

struct StartRange {
  int64_t lo = 0;
  int64_t hi = -1;  // Inclusive; empty when hi < lo.
  bool empty() const { return hi < lo; }
};

// The starts t_A at which both clips of `pair` fit in a video of `frames` frames.
StartRange StartRangeForA(const TemporalConfig& config, const TemporalPair& pair, int64_t frames);

// Source frame indices of a clip in output order: start, start+speed, ..., start+(length-1)*speed,
// reversed when `reversed`.
std::vector<int64_t> ClipFrameIndices(int64_t start, int speed, int length, bool reversed);

// Permutation of 0..n-1 for (seed, epoch): Fisher-Yates driven by Rng(HashKey{seed, epoch, n}).
std::vector<int64_t> EpochPermutation(uint64_t seed, int64_t epoch, int64_t n);

struct StepPosition {
  int64_t epoch = 0;
  int64_t step_in_epoch = 0;
};

class EpochSchedule {
 public:
  // FAILED_PRECONDITION naming the numbers when a rank's shard cannot fill one batch
  // (num_videos / world_size < videos_per_batch). INVALID_ARGUMENT for non-positive sizes.
  static absl::StatusOr<EpochSchedule> Create(int64_t num_videos, int world_size,
                                              int videos_per_batch);

  int64_t num_videos() const { return num_videos_; }
  int64_t shard_size() const { return shard_size_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int videos_per_batch() const { return videos_per_batch_; }

  StepPosition Locate(int64_t global_step) const;
  // Position in the epoch permutation of batch slot `slot` (0 .. videos_per_batch-1).
  int64_t PermutationPosition(int rank, int64_t step_in_epoch, int slot) const;

 private:
  EpochSchedule() = default;
  int64_t num_videos_ = 0;
  int64_t shard_size_ = 0;
  int64_t steps_per_epoch_ = 0;
  int videos_per_batch_ = 0;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_SAMPLING_SAMPLER_H_
