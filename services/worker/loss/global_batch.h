// The contrastive terms over the global batch of all ranks (docs/global-batch.md).
//
// Each rank gathers every rank's rows (psi outputs, projections) in rank order and computes the
// loss of the whole global batch, with its own block live (autograd history) and the other
// blocks constants. Backward then gives exactly this rank's share of the global gradient,
// dL/dz_r * dz_r/dtheta; the shares sum to the global gradient. The gradient reducer averages
// over ranks, so the caller scales these terms by world_size before backward (ScaleForAverage).
//
// Labels travel with the rows: transformation labels as they are (global keys), instance anchor
// and positive rows shifted by rank * rows, videos by rank * videos, so that a clip's negatives
// are every clip of every other video of every rank.
//
// Pure functions over the gather the caller supplies; thread-safe as the gather is.
#ifndef TECL_SERVICES_WORKER_LOSS_GLOBAL_BATCH_H_
#define TECL_SERVICES_WORKER_LOSS_GLOBAL_BATCH_H_

#include <ATen/Tensor.h>

#include <functional>

namespace tecl::worker::core {

struct GlobalBatch {
  int rank = 0;
  int world_size = 1;
  // Every rank's `rows` (the same shape on every rank) concatenated in rank order, without
  // autograd history. Called in the same order on every rank.
  std::function<torch::Tensor(const torch::Tensor& rows)> gather;
};

// The global rows with this rank's block replaced by `rows` itself (live).
torch::Tensor GatherLive(const torch::Tensor& rows, const GlobalBatch& global);

// EquivarianceLoss (losses.h) over every rank's anchors; returns (world_size * M).
torch::Tensor GlobalEquivarianceLoss(const torch::Tensor& z, const torch::Tensor& labels,
                                     double temperature, const GlobalBatch& global);

// InstanceLoss (losses.h) over every rank's anchors, with every rank's clips as candidates;
// `anchor`, `positive` are rows of `g`, `video` ids in [0, num_videos). Returns (world_size * A).
torch::Tensor GlobalInstanceLoss(const torch::Tensor& g, const torch::Tensor& anchor,
                                 const torch::Tensor& positive, const torch::Tensor& video,
                                 int64_t num_videos, double temperature,
                                 const GlobalBatch& global);

// `term` * world_size: the factor that makes the reducer's average of the ranks' shares their sum.
torch::Tensor ScaleForAverage(const torch::Tensor& term, const GlobalBatch& global);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_LOSS_GLOBAL_BATCH_H_
