// Synthetic motion batches: training batches in the dataloader's layout (loss/batch.h) rendered
// in memory, for tests, benchmarks and smoke runs of the trainer without video files.
//
// Each video is a noisy textured background of a random colour with one square of another colour
// that moves right by vx in [1, 1.5] pixels per source frame (plus a small vertical drift,
// wrapping around the frame) and grows from 5 to 17 pixels over the video: playback speed shows as
// apparent velocity, direction as right/left motion and growth/shrinking, and the relation of two
// clips as their position and size difference. Groups draw speeds, directions and a relation
// (BEFORE / AFTER / OVERLAP equally often) as METHOD.md's sampler does; each video draws its own
// start; clips are real strided (and, when reversed, reversed) frame sequences. Every clip gets its
// own spatial draw: a circular shift and a brightness offset.
//
// Deterministic: the same options and seed give the same bytes. Pure function; thread-safe.
#ifndef TECL_SERVICES_WORKER_TRAIN_SYNTHETIC_BATCHES_H_
#define TECL_SERVICES_WORKER_TRAIN_SYNTHETIC_BATCHES_H_

#include <cstdint>
#include <vector>

#include "services/worker/loss/batch.h"

namespace tecl::worker::core {

struct SyntheticMotionOptions {
  int64_t groups = 2;                        // G: the batch holds 4G clips (6G with same frames).
  int64_t clip_length = 8;                   // L frames per clip.
  int64_t size = 64;                         // S: frames are S x S.
  std::vector<int64_t> speeds = {1, 2, 4, 8};  // Frame strides; the labels index this list.
  int64_t video_frames = 160;                // Source frames per video (must hold a pair).
  InstancePositive instance_positive = InstancePositive::kOtherClip;
};

// Throws Error(kInvalidArgument) when the options cannot produce a batch (e.g. videos too short
// for two clips of the largest speed).
Batch MakeSyntheticMotionBatch(const SyntheticMotionOptions& options, uint64_t seed);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_SYNTHETIC_BATCHES_H_
