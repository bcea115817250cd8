// SyncBatchNormTrain: W ranks (threads on a FakeWorld) each normalising their own slice equal
// torch::batch_norm in training mode on the concatenated batch: outputs, running statistics,
// input gradients (each rank's is W x its share of the mean loss's) and, after the reducer's
// average, weight and bias gradients.
#include "services/worker/dist/sync_batch_norm.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>
#include <vector>

#include "services/worker/dist/fake_communicator.h"

namespace tecl::worker::dist {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kChannels = 3;

torch::Tensor Input(int rank) {
  return torch::cos(torch::arange(4 * kChannels * 5, torch::kFloat).reshape({4, kChannels, 5}) *
                        (0.23f * static_cast<float>(rank + 1))) *
             (1.0f + static_cast<float>(rank)) +
         static_cast<float>(rank);
}
// The loss of rank r: a weighted mean of its outputs (weights differ per rank and element).
torch::Tensor Loss(const torch::Tensor& y, int rank) {
  return (y * torch::sin(torch::arange(y.numel(), torch::kFloat).reshape(y.sizes()) + rank))
      .mean();
}

class SyncBatchNormTest : public ::testing::TestWithParam<int> {};

TEST_P(SyncBatchNormTest, RanksEqualOneProcessOnTheConcatenatedBatch) {
  const int world = GetParam();
  const torch::Tensor weight0 = torch::tensor({1.5f, 0.5f, -1.0f});
  const torch::Tensor bias0 = torch::tensor({0.1f, -0.2f, 0.3f});

  // One process: torch::batch_norm on every rank's rows, the mean of the ranks' losses.
  std::vector<torch::Tensor> inputs;
  for (int r = 0; r < world; ++r) inputs.push_back(Input(r));
  torch::Tensor x = torch::cat(inputs, 0).requires_grad_(true);
  torch::Tensor weight = weight0.clone().requires_grad_(true);
  torch::Tensor bias = bias0.clone().requires_grad_(true);
  torch::Tensor running_mean = torch::zeros({kChannels});
  torch::Tensor running_var = torch::ones({kChannels});
  torch::Tensor y = torch::batch_norm(x, weight, bias, running_mean, running_var,
                                      /*training=*/true, 0.1, 1e-5, /*cudnn_enabled=*/false);
  torch::Tensor total = torch::zeros({});
  for (int r = 0; r < world; ++r) total = total + Loss(y.narrow(0, 4 * r, 4), r);
  (total / world).backward();

  auto group = FakeWorld::Create(world, 10s);
  std::vector<torch::Tensor> outputs(world), x_grads(world), w_grads(world), b_grads(world),
      means(world), vars(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto communicator = group->ForRank(r);
      torch::Tensor xr = Input(r).requires_grad_(true);
      torch::Tensor wr = weight0.clone().requires_grad_(true);
      torch::Tensor br = bias0.clone().requires_grad_(true);
      means[r] = torch::zeros({kChannels});
      vars[r] = torch::ones({kChannels});
      torch::Tensor yr =
          SyncBatchNormTrain(xr, wr, br, means[r], vars[r], 0.1, 1e-5, *communicator);
      Loss(yr, r).backward();
      outputs[r] = yr.detach();
      x_grads[r] = xr.grad();
      w_grads[r] = wr.grad();
      b_grads[r] = br.grad();
    });
  }
  for (auto& t : threads) t.join();

  for (int r = 0; r < world; ++r) {
    EXPECT_TRUE(torch::allclose(outputs[r], y.detach().narrow(0, 4 * r, 4), 1e-4, 1e-5)) << r;
    EXPECT_TRUE(torch::allclose(x_grads[r] / world, x.grad().narrow(0, 4 * r, 4), 1e-4, 1e-6))
        << r << " max diff "
        << (x_grads[r] / world - x.grad().narrow(0, 4 * r, 4)).abs().max().item<float>();
    EXPECT_TRUE(torch::allclose(means[r], running_mean, 1e-5, 1e-6)) << means[r];
    EXPECT_TRUE(torch::allclose(vars[r], running_var, 1e-4, 1e-6)) << vars[r];
  }
  EXPECT_TRUE(torch::allclose(torch::stack(w_grads).mean(0), weight.grad(), 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(torch::stack(b_grads).mean(0), bias.grad(), 1e-4, 1e-6));
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, SyncBatchNormTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace tecl::worker::dist
