// The contrastive losses of the method as functions of tensors (formulas in docs/core.md):
//
//   EquivarianceLoss   transformation discrimination over psi outputs z (METHOD.md loss 1)
//   InstanceLoss       instance discrimination NT-Xent over projections g(h) (METHOD.md loss 5)
//
// Both return one loss per anchor (the caller takes the mean) so that tests can look at a single
// anchor's loss and its gradient. Pure functions; thread-safe; inputs on any (one) device.
#ifndef TECL_SERVICES_WORKER_LOSS_LOSSES_H_
#define TECL_SERVICES_WORKER_LOSS_LOSSES_H_

#include <ATen/Tensor.h>

namespace tecl::worker::core {

// z: (M, P) transformation vectors; labels: int64 (M), equal labels = same relative
// transformation. For every anchor i (every row):
//   l_i = -(1/|P(i)|) sum_{p in P(i)} log( e(i,p) / (e(i,p) + sum_{n in N(i)} e(i,n)) )
//   e(i,j) = exp(cos(z_i, sg(z_j)) / temperature)
// with P(i) = {j != i : label_j == label_i}, N(i) = {j : label_j != label_i}. With
// stop_gradient the gradient reaches z only through the anchor side. Returns (M).
// Throws Error(kInvalidArgument) if the shapes disagree, or, for labels on the CPU, if an anchor
// has no positive (on other devices that check would synchronise; such an anchor gives NaN).
torch::Tensor EquivarianceLoss(const torch::Tensor& z, const torch::Tensor& labels,
                               double temperature, bool stop_gradient = true);

// g: (N, E) projections (normalised here: q = g / |g|); anchor, positive: int64 (A), the rows of
// the anchors and of their positives (a clip of the same video); video: int64 (N). For anchor i
// with positive p:
//   l_i = -log( exp(q_i.q_p / t) / sum_{k in C(i)} exp(q_i.q_k / t) )
// where C(i) = {p} and every clip of another video (k with video_k != video_i); other clips of
// the anchor's own video are neither positive nor negative. Both sides carry gradient (SimCLR's
// NT-Xent). Returns (A).
// Throws Error(kInvalidArgument) for inconsistent shapes, or, for indices on the CPU, rows out of
// range, a positive equal to its anchor or of another video.
torch::Tensor InstanceLoss(const torch::Tensor& g, const torch::Tensor& anchor,
                           const torch::Tensor& positive, const torch::Tensor& video,
                           double temperature);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_LOSS_LOSSES_H_
