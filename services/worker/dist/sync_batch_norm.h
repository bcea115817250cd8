// Synchronised BatchNorm (docs/global-batch.md): in training, a BatchNorm layer normalises with
// the mean and variance of its input over every rank's batch, so that N ranks compute what one
// process computes on the concatenated batch.
//
// Forward all-reduces (sum, sum of squares, count) per channel, normalises with the global
// statistics and updates the running statistics with them (the variance unbiased over the global
// count). Backward all-reduces (sum of dy, sum of dy * x_hat) per channel and forms the input
// gradient from the global sums, so each rank's input gradient is its share of the gradient of the
// sum of every rank's loss: after the gradient reducer's average, parameters get the gradient of
// the mean loss, as on one process. Weight and bias gradients are the rank's own sums (averaged by
// the reducer like any parameter's).
//
// Two all-reduces of 2C+1 and 2C floats per layer per step, on the critical path. Collectives are
// issued on the calling threads in graph order, which is the same on every rank.
//
// Thread-safety: as the communicator (one training step at a time).
#ifndef TECL_SERVICES_WORKER_DIST_SYNC_BATCH_NORM_H_
#define TECL_SERVICES_WORKER_DIST_SYNC_BATCH_NORM_H_

#include <torch/torch.h>

#include "services/worker/dist/communicator.h"

namespace tecl::worker::dist {

// y = BatchNorm(x) in training mode over every rank's batch. x: (N, C, *) floating point, N * the
// rest >= 1 on every rank; weight, bias: (C) or undefined; running_mean, running_var: (C) updated
// in place (or undefined). `communicator` must outlive the backward pass. Throws CollectiveError
// like the communicator.
torch::Tensor SyncBatchNormTrain(const torch::Tensor& x, const torch::Tensor& weight,
                                 const torch::Tensor& bias, torch::Tensor running_mean,
                                 torch::Tensor running_var, double momentum, double eps,
                                 Communicator& communicator);

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_SYNC_BATCH_NORM_H_
