// The small model, data and training loop shared by the multi-process distributed tests and their
// trainer helper: a conv + MLP classifier whose loss is a mean over samples (no BatchNorm), so
// W ranks x batch B with averaged gradients equal one process on the W*B batch.
#ifndef TECL_TESTS_INTEGRATION_DIST_DIST_TEST_MODEL_H_
#define TECL_TESTS_INTEGRATION_DIST_DIST_TEST_MODEL_H_

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "services/worker/dist/gradient_reducer.h"

namespace tecl::worker::dist::testing {

struct SmallNet : torch::nn::Module {
  SmallNet();
  // Mean cross-entropy over the batch; the head `pair` is applied to [h, h_flipped] and
  // [h_flipped, h] (a parameter used twice in the graph, as psi is).
  torch::Tensor Loss(const torch::Tensor& x, const torch::Tensor& y);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear embed{nullptr}, pair{nullptr}, classify{nullptr};
};

struct Batch {
  torch::Tensor x, y;
};

// The global batch of `step`: world_size * batch samples, identical in every process.
Batch GlobalBatch(int step, int world_size, int batch);
// Rows [rank * batch, (rank + 1) * batch) of the global batch.
Batch RankBatch(int step, int rank, int world_size, int batch);

std::vector<NamedParameter> NamedParameters(torch::nn::Module& module);

// Trains `steps` AdamW steps on batches from `next_batch(step)`; when `reducer` is given,
// gradients are averaged through it between backward and the optimizer step. `before_step(step)`
// runs first in every step.
void Train(SmallNet& model, int steps, const std::function<Batch(int)>& next_batch,
           GradientReducer* reducer, const std::function<void(int)>& before_step = nullptr);

}  // namespace tecl::worker::dist::testing

#endif  // TECL_TESTS_INTEGRATION_DIST_DIST_TEST_MODEL_H_
