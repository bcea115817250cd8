#include "services/worker/dist/parameter_sync.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "services/worker/dist/fake_communicator.h"

namespace tecl::worker::dist {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

struct BnNet : torch::nn::Module {
  BnNet() {
    fc = register_module("fc", torch::nn::Linear(3, 4));
    bn = register_module("bn", torch::nn::BatchNorm1d(4));
    embed = register_module("embed", torch::nn::Linear(torch::nn::LinearOptions(4, 2)));
    embed->to(torch::kDouble);
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Linear embed{nullptr};
};

// Runs `fn(rank)` for every rank of `world` in its own thread.
template <typename Fn>
void RunRanks(const std::shared_ptr<FakeWorld>& world, Fn fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < world->world_size(); ++r) threads.emplace_back([&, r] { fn(r); });
  for (auto& t : threads) t.join();
}

TEST(ParameterSyncTest, ModuleStateListsParametersThenBuffers) {
  BnNet net;
  auto state = ModuleState(net);
  // fc (2), bn weight/bias (2), embed (2); buffers: running_mean, running_var, num_batches_tracked.
  ASSERT_EQ(state.size(), 9u);
  EXPECT_EQ(state.back().scalar_type(), torch::kLong);
}

TEST(ParameterSyncTest, BroadcastMakesEveryRankHoldTheRootsStateOfEveryDtype) {
  auto world = FakeWorld::Create(3, 5s);
  std::vector<std::shared_ptr<BnNet>> nets;
  for (int r = 0; r < 3; ++r) {
    torch::manual_seed(r + 1);  // different initialisations
    nets.push_back(std::make_shared<BnNet>());
    torch::NoGradGuard no_grad;
    nets.back()->bn->running_mean.fill_(r);
    nets.back()->bn->num_batches_tracked.fill_(10 * r);
  }
  EXPECT_NE(StateChecksum(ModuleState(*nets[0])), StateChecksum(ModuleState(*nets[1])));

  RunRanks(world, [&](int r) {
    auto comm = world->ForRank(r);
    BroadcastFromRoot(ModuleState(*nets[r]), *comm, /*root=*/1);
    VerifyStateAgrees(ModuleState(*nets[r]), *comm);
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(StateChecksum(ModuleState(*nets[r])), StateChecksum(ModuleState(*nets[1])));
    EXPECT_EQ(nets[r]->bn->num_batches_tracked.item<int64_t>(), 10);
    EXPECT_TRUE(nets[r]->fc->weight.requires_grad());
  }
  // One flat broadcast per dtype: float, double, long.
  EXPECT_EQ(world->Log(0).size(), 3u + 2u);  // + VerifyStateAgrees' broadcast and all-reduce
}

TEST(ParameterSyncTest, ChecksumSeesBytesShapeAndDtype) {
  torch::Tensor a = torch::arange(6, torch::kFloat);
  const uint64_t base = StateChecksum({a});
  EXPECT_EQ(base, StateChecksum({a.clone()}));
  EXPECT_NE(base, StateChecksum({a.view({2, 3})}));
  EXPECT_NE(base, StateChecksum({a.to(torch::kDouble)}));
  torch::Tensor b = a.clone();
  b[5] = std::nextafter(5.0f, 6.0f);
  EXPECT_NE(base, StateChecksum({b}));
}

TEST(ParameterSyncTest, VerifyStateAgreesThrowsOnEveryRankWhenOneDiffers) {
  auto world = FakeWorld::Create(2, 5s);
  std::vector<torch::Tensor> state = {torch::ones({4}), torch::ones({4})};
  state[1][2] = 2.0f;
  std::vector<std::string> errors(2);
  RunRanks(world, [&](int r) {
    try {
      VerifyStateAgrees({state[r]}, *world->ForRank(r));
    } catch (const StateMismatchError& e) {
      errors[r] = e.what();
    }
  });
  EXPECT_THAT(errors[0], HasSubstr("1 of 2 ranks disagree with rank 0; this rank (0) agrees"));
  EXPECT_THAT(errors[1], HasSubstr("this rank (1) differs"));
}

}  // namespace
}  // namespace tecl::worker::dist
