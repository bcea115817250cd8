// Exactness of the global contrastive terms: W ranks (threads on a FakeWorld, gathering through
// Communicator::AllGather), each with its own rows from a shared linear layer, give after the
// reducer's average the gradient and the loss that one process computes on the concatenated
// batch, for the equivariance and the instance loss.
#include "services/worker/loss/global_batch.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <thread>
#include <vector>

#include "services/worker/dist/fake_communicator.h"
#include "services/worker/loss/losses.h"

namespace tecl::worker::core {
namespace {

using namespace std::chrono_literals;

constexpr int kRows = 4;   // Clips per rank: videos 0 and 1, clips A and B each.
constexpr int kIn = 6;
constexpr int kOut = 5;

GlobalBatch OnWorld(dist::Communicator& communicator) {
  GlobalBatch global;
  global.rank = communicator.rank();
  global.world_size = communicator.world_size();
  global.gather = [&communicator](const torch::Tensor& rows) {
    return dist::AllGatherRows(communicator, rows);
  };
  return global;
}

// Rank r's inputs and equivariance labels (every label occurs twice on each rank).
// Deterministic without the global generator (the ranks run in threads at once).
torch::Tensor Inputs(int rank) {
  return torch::sin(torch::arange(kRows * kIn, torch::kFloat).reshape({kRows, kIn}) *
                        (0.37f * static_cast<float>(rank + 1)) +
                    static_cast<float>(rank));
}
torch::Tensor EquiLabels(int rank) {
  return rank % 2 == 0 ? torch::tensor({0, 0, 1, 1}, torch::kLong)
                       : torch::tensor({1, 2, 2, 1}, torch::kLong);
}

// One process on the concatenated batch: the loss and the layer's weight gradient.
struct Result {
  double loss = 0;
  torch::Tensor grad;
};

using LossFn = std::function<torch::Tensor(const torch::Tensor& rows, int rank,
                                           const GlobalBatch* global)>;

Result Reference(const torch::nn::Linear& layer, int world_size, const LossFn& loss) {
  torch::nn::Linear copy(kIn, kOut);
  torch::NoGradGuard no_grad;
  copy->weight.copy_(layer->weight);
  copy->bias.copy_(layer->bias);
  std::vector<torch::Tensor> inputs;
  for (int r = 0; r < world_size; ++r) inputs.push_back(Inputs(r));
  torch::GradMode::set_enabled(true);
  const torch::Tensor value = loss(copy->forward(torch::cat(inputs, 0)), -1, nullptr);
  value.backward();
  return {value.item<double>(), copy->weight.grad().clone()};
}

// W ranks in threads; the reducer's average of their weight gradients, and each rank's loss.
std::pair<torch::Tensor, std::vector<double>> Ranks(const torch::nn::Linear& layer,
                                                    int world_size, const LossFn& loss) {
  auto world = dist::FakeWorld::Create(world_size, 10s);
  std::vector<torch::Tensor> grads(world_size);
  std::vector<double> losses(world_size);
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      auto communicator = world->ForRank(r);
      const GlobalBatch global = OnWorld(*communicator);
      torch::nn::Linear copy(kIn, kOut);
      {
        torch::NoGradGuard no_grad;
        copy->weight.copy_(layer->weight);
        copy->bias.copy_(layer->bias);
      }
      const torch::Tensor value = loss(copy->forward(Inputs(r)), r, &global);
      ScaleForAverage(value, global).backward();
      losses[r] = value.item<double>();
      grads[r] = copy->weight.grad().clone();
    });
  }
  for (auto& t : threads) t.join();
  return {torch::stack(grads).mean(0), losses};
}

class GlobalBatchTest : public ::testing::TestWithParam<int> {};

TEST_P(GlobalBatchTest, EquivarianceOverRanksIsTheOneProcessLoss) {
  const int world_size = GetParam();
  torch::manual_seed(7);
  torch::nn::Linear layer(kIn, kOut);
  const LossFn loss = [](const torch::Tensor& z, int rank, const GlobalBatch* global) {
    if (global == nullptr) {
      std::vector<torch::Tensor> labels;
      for (int r = 0; r < z.size(0) / kRows; ++r) labels.push_back(EquiLabels(r));
      return EquivarianceLoss(z, torch::cat(labels), 0.1).mean();
    }
    return GlobalEquivarianceLoss(z, EquiLabels(rank), 0.1, *global).mean();
  };
  const Result reference = Reference(layer, world_size, loss);
  const auto [grad, losses] = Ranks(layer, world_size, loss);
  for (double value : losses) EXPECT_NEAR(value, reference.loss, 1e-5);
  EXPECT_TRUE(torch::allclose(grad, reference.grad, 1e-4, 1e-6))
      << (grad - reference.grad).abs().max();
  if (world_size == 1) return;
  // Not the per-rank loss: a rank alone sees other negatives.
  const torch::Tensor alone =
      EquivarianceLoss(layer->forward(Inputs(0)), EquiLabels(0), 0.1).mean();
  EXPECT_GT(std::abs(alone.item<double>() - reference.loss), 1e-3);
}

TEST_P(GlobalBatchTest, InstanceOverRanksIsTheOneProcessLoss) {
  const int world_size = GetParam();
  torch::manual_seed(8);
  torch::nn::Linear layer(kIn, kOut);
  // Rows of a rank: video 0 clip A, clip B, video 1 clip A, clip B.
  const torch::Tensor anchor = torch::tensor({0, 1, 2, 3}, torch::kLong);
  const torch::Tensor positive = torch::tensor({1, 0, 3, 2}, torch::kLong);
  const torch::Tensor video = torch::tensor({0, 0, 1, 1}, torch::kLong);
  const LossFn loss = [&](const torch::Tensor& g, int, const GlobalBatch* global) {
    if (global == nullptr) {
      const int64_t ranks = g.size(0) / kRows;
      std::vector<torch::Tensor> a, p, v;
      for (int64_t r = 0; r < ranks; ++r) {
        a.push_back(anchor + r * kRows);
        p.push_back(positive + r * kRows);
        v.push_back(video + r * 2);
      }
      return InstanceLoss(g, torch::cat(a), torch::cat(p), torch::cat(v), 0.2).mean();
    }
    return GlobalInstanceLoss(g, anchor, positive, video, 2, 0.2, *global).mean();
  };
  const Result reference = Reference(layer, world_size, loss);
  const auto [grad, losses] = Ranks(layer, world_size, loss);
  for (double value : losses) EXPECT_NEAR(value, reference.loss, 1e-5);
  EXPECT_TRUE(torch::allclose(grad, reference.grad, 1e-4, 1e-6))
      << (grad - reference.grad).abs().max();
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, GlobalBatchTest, ::testing::Values(1, 2, 3));

TEST(GlobalBatchChecksTest, RefusesAGlobalBatchWithoutAGather) {
  GlobalBatch global;
  global.world_size = 2;
  EXPECT_THROW(GatherLive(torch::ones({2, 3}), global), std::exception);
}

}  // namespace
}  // namespace tecl::worker::core
