// Batch: one training step's clips and labels, as the dataloader sends them (tecl.v1.ClipBatch),
// and BatchIndex: the same labels validated and turned into the index and label tensors the
// losses use.
//
// Layout (docs/core.md "Batch"): G groups; group g holds videos 2g and 2g+1; every video has
// clip A and clip B (and, with InstancePositive::kSameFrames, a third clip with clip A's frames
// and its own spatial augmentation). N = 4G clips (6G with same-frames). Both videos of a group
// carry the same temporal transformation pair: equal speeds and directions of A and of B, and the
// group's relation of A to B. Clips may come in any order; the dataloader sends them video by
// video (video v: A, B[, same-frames] at rows v*c .. v*c+c-1).
//
// Thread-safety: plain values; IndexBatch is a pure function. Tensors share storage (at::Tensor
// is a reference).
#ifndef TECL_SERVICES_WORKER_LOSS_BATCH_H_
#define TECL_SERVICES_WORKER_LOSS_BATCH_H_

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>

namespace tecl::worker::core {

// Values equal tecl.v1.ClipRole.
enum class ClipRole : int64_t { kA = 1, kB = 2, kSameFrames = 3 };
// Values equal tecl.v1.Relation (relation of clip A's span to clip B's span).
enum class Relation : int64_t { kBefore = 1, kAfter = 2, kOverlap = 3 };

// The relation of B to A: BEFORE <-> AFTER, OVERLAP stays.
Relation SwappedRelation(Relation relation);

// Mirrors tecl.v1.InstancePositive.
enum class InstancePositive {
  kOtherClip,   // The positive of clip A is clip B of the same video and vice versa.
  kSameFrames,  // The positive of clip A is the same-frames clip and vice versa; B is no anchor.
};

struct Batch {
  torch::Tensor clips;        // uint8 (N, T, H, W, 3), RGB, on any device.
  torch::Tensor video;        // int64 (N): video index within the batch, 0 .. 2G-1 (ClipInfo.video).
  torch::Tensor group;        // int64 (N): group index, = video / 2 (ClipInfo.group).
  torch::Tensor role;         // int64 (N): ClipRole values (ClipInfo.role).
  torch::Tensor speed_index;  // int64 (N): index into SamplingSpec.speeds (ClipInfo.speed_index).
  torch::Tensor reversed;     // int64 (N): 1 = backward playback, 0 = forward (ClipInfo.reversed).
  torch::Tensor relation;     // int64 (G): Relation values (GroupInfo.relation).
};

struct BatchLayoutOptions {
  // Speed classes (SamplingSpec.speeds size); speed_index must be below it.
  int64_t num_speeds = 4;
  // Whether same-frames clips are expected (MethodSpec.instance_positive).
  InstancePositive instance_positive = InstancePositive::kOtherClip;
};

// Validated labels in the form the losses consume. V = 2G videos, N clips. int64 tensors.
struct BatchIndex {
  int64_t num_groups = 0;
  int64_t num_videos = 0;
  int64_t num_clips = 0;
  torch::Tensor clip_a;           // (V): row of video v's clip A.
  torch::Tensor clip_b;           // (V): row of video v's clip B.
  torch::Tensor speed_label;      // (N): speed class of every clip.
  torch::Tensor direction_label;  // (N): 0 forward, 1 backward.
  torch::Tensor video;            // (N): video of every clip.
  // (2V): relative-transformation label of pair row p, where rows 0..V-1 are [h_A, h_B] of video
  // p and rows V..2V-1 are [h_B, h_A] of video p-V. Equal labels <=> equal (s_A, s_B, d_A, d_B, r)
  // of the pair as ordered (the reversed pair has speeds and directions swapped and BEFORE <->
  // AFTER).
  torch::Tensor transformation_label;
  // (2V): order class of the same pair rows: 0 BEFORE, 1 AFTER, 2 OVERLAP (swapped for [h_B, h_A]).
  torch::Tensor order_label;
  // (A): rows of the instance-loss anchors and (A) of their positives: with other_clip every
  // clip A (positive: B) and B (positive: A); with same_frames every clip A (positive: the
  // same-frames clip) and same-frames clip (positive: A). Anchors in row order.
  torch::Tensor instance_anchor;
  torch::Tensor instance_positive;

  // A copy with every tensor on `device`.
  BatchIndex To(const c10::Device& device) const;
};

// Checks the batch's shapes, dtypes and layout and derives its BatchIndex (on the CPU). Label
// tensors may live on any device (they are copied to the CPU to be checked). Throws
// Error(kInvalidArgument) with a message naming the inconsistency (e.g. "batch: video 3 has 2
// clips with role A; every video needs exactly one clip A and one clip B").
BatchIndex IndexBatch(const Batch& batch, const BatchLayoutOptions& options);

// The order class of a relation as the order head predicts it: BEFORE 0, AFTER 1, OVERLAP 2.
int64_t OrderClass(Relation relation);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_LOSS_BATCH_H_
