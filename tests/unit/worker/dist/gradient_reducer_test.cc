#include "services/worker/dist/gradient_reducer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "services/worker/dist/fake_communicator.h"

namespace tecl::worker::dist {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// An encoder applied to two clips and a pair head applied to [h_a, h_b] AND [h_b, h_a] (as the
// transformation head psi is), plus a per-clip head and a head that only some steps use.
struct PairNet : torch::nn::Module {
  PairNet() {
    encoder = register_module("encoder", torch::nn::Linear(4, 6));
    psi = register_module("psi", torch::nn::Linear(12, 3));
    speed = register_module("speed", torch::nn::Linear(6, 2));
    optional = register_module("optional", torch::nn::Linear(6, 1));
  }
  torch::Tensor Loss(const torch::Tensor& a, const torch::Tensor& b, bool use_optional) {
    torch::Tensor ha = torch::relu(encoder(a));
    torch::Tensor hb = torch::relu(encoder(b));
    torch::Tensor zab = psi(torch::cat({ha, hb}, 1));
    torch::Tensor zba = psi(torch::cat({hb, ha}, 1));
    torch::Tensor loss = zab.pow(2).mean() + (zba * 0.5).pow(2).mean() + speed(ha).sum() * 0.1;
    if (use_optional) loss = loss + optional(hb).mean();
    return loss;
  }
  torch::nn::Linear encoder{nullptr}, psi{nullptr}, speed{nullptr}, optional{nullptr};
};

std::vector<NamedParameter> Named(torch::nn::Module& module) {
  std::vector<NamedParameter> out;
  for (const auto& item : module.named_parameters()) out.push_back({item.key(), item.value()});
  return out;
}

// Copies `from`'s parameters into `to` (identical replicas, as after the initial broadcast).
void CopyParameters(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto src = from.parameters();
  auto dst = to.parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
}

struct Inputs {
  torch::Tensor a, b;
};
Inputs MakeInputs(int seed) {
  torch::manual_seed(seed);
  return {torch::randn({5, 4}), torch::randn({5, 4})};
}

// The gradients of each parameter of `model` for `inputs` without any reducer.
std::vector<torch::Tensor> PlainGradients(PairNet& model, const Inputs& inputs, bool use_optional) {
  model.zero_grad();
  model.Loss(inputs.a, inputs.b, use_optional).backward();
  std::vector<torch::Tensor> grads;
  for (auto& p : model.parameters()) {
    grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  }
  model.zero_grad();
  return grads;
}

class GradientReducerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(7);
    for (int r = 0; r < 2; ++r) models_.push_back(std::make_shared<PairNet>());
    CopyParameters(*models_[0], *models_[1]);
    reference_ = std::make_shared<PairNet>();
    CopyParameters(*models_[0], *reference_);
  }

  std::vector<std::unique_ptr<GradientReducer>> MakeReducers(std::shared_ptr<FakeWorld> world,
                                                             ReducerOptions options) {
    std::vector<std::unique_ptr<GradientReducer>> reducers;
    for (int r = 0; r < world->world_size(); ++r) {
      reducers.push_back(
          std::make_unique<GradientReducer>(Named(*models_[r]), world->ForRank(r), options));
    }
    return reducers;
  }

  std::vector<std::shared_ptr<PairNet>> models_;
  std::shared_ptr<PairNet> reference_;
};

TEST_F(GradientReducerTest, HooksFireOncePerParameterIncludingOneUsedTwice) {
  auto world = FakeWorld::Create(1, 2s);
  GradientReducer reducer(Named(*models_[0]), world->ForRank(0));
  const Inputs inputs = MakeInputs(1);
  const auto expected = PlainGradients(*reference_, inputs, /*use_optional=*/true);

  for (int step = 0; step < 3; ++step) {
    models_[0]->zero_grad();
    models_[0]->Loss(inputs.a, inputs.b, true).backward();
    StepTimings t = reducer.Finalize();
    EXPECT_EQ(t.hooks_fired, 8);  // 4 layers x (weight, bias); psi's fire once despite two uses
    auto params = models_[0]->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      // psi's gradient is the sum over both uses, as without the reducer.
      EXPECT_TRUE(torch::allclose(params[i].grad(), expected[i], 1e-6, 1e-7)) << "param " << i;
    }
  }
}

TEST_F(GradientReducerTest, AveragedGradientsEqualTheManualAverage) {
  auto world = FakeWorld::Create(2, 2s);
  ReducerOptions options;
  options.bucket_size_mb = 64.0 / (1024 * 1024);  // 64-byte buckets: several per step
  auto reducers = MakeReducers(world, options);
  ASSERT_EQ(reducers[0]->buckets().size(), 3u);

  for (int step = 0; step < 3; ++step) {
    const Inputs in0 = MakeInputs(100 + step);
    const Inputs in1 = MakeInputs(200 + step);
    const auto g0 = PlainGradients(*reference_, in0, true);
    const auto g1 = PlainGradients(*reference_, in1, true);
    // Both ranks run backward on this thread: launching never blocks, the fake completes each
    // bucket when the second rank joins.
    for (int r = 0; r < 2; ++r) {
      models_[r]->zero_grad();
      const Inputs& in = r == 0 ? in0 : in1;
      models_[r]->Loss(in.a, in.b, true).backward();
    }
    for (int r = 0; r < 2; ++r) {
      StepTimings t = reducers[r]->Finalize();
      EXPECT_EQ(t.buckets, static_cast<int>(reducers[r]->buckets().size()));
      EXPECT_EQ(t.hooks_fired, 8);
      auto params = models_[r]->parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        torch::Tensor manual = (g0[i] + g1[i]) / 2;
        EXPECT_TRUE(torch::allclose(params[i].grad(), manual, 1e-6, 1e-7))
            << "rank " << r << " param " << i << " step " << step;
      }
    }
    // Both ranks hold bitwise identical gradients.
    auto p0 = models_[0]->parameters();
    auto p1 = models_[1]->parameters();
    for (size_t i = 0; i < p0.size(); ++i) EXPECT_TRUE(torch::equal(p0[i].grad(), p1[i].grad()));
  }
}

TEST_F(GradientReducerTest, BucketsLaunchInBucketOrderDuringBackward) {
  auto world = FakeWorld::Create(2, 2s);
  ReducerOptions options;
  options.bucket_size_mb = 64.0 / (1024 * 1024);
  auto reducers = MakeReducers(world, options);
  const Inputs in = MakeInputs(3);
  for (int r = 0; r < 2; ++r) models_[r]->Loss(in.a, in.b, true).backward();
  const auto log_before_finalize = world->Log(0);
  StepTimings t0 = reducers[0]->Finalize();
  reducers[1]->Finalize();

  const auto& buckets = reducers[0]->buckets();
  std::vector<std::string> expected;
  for (const BucketSpec& b : buckets) {
    expected.push_back("all-reduce Float[" + std::to_string(b.numel) + "]");
  }
  EXPECT_EQ(world->Log(0), expected);
  EXPECT_EQ(world->Log(1), expected);
  // Overlap: the hooks launched every bucket before backward returned.
  EXPECT_EQ(log_before_finalize.size(), buckets.size());
  EXPECT_EQ(t0.buckets_launched_in_backward, static_cast<int>(buckets.size()));
}

TEST_F(GradientReducerTest, WithoutOverlapEveryBucketLaunchesInFinalize) {
  auto world = FakeWorld::Create(2, 2s);
  ReducerOptions options;
  options.bucket_size_mb = 64.0 / (1024 * 1024);
  options.overlap_with_backward = false;
  auto reducers = MakeReducers(world, options);
  const Inputs in = MakeInputs(3);
  for (int r = 0; r < 2; ++r) models_[r]->Loss(in.a, in.b, true).backward();
  EXPECT_TRUE(world->Log(0).empty());
  std::thread other([&] { reducers[1]->Finalize(); });
  StepTimings t = reducers[0]->Finalize();
  other.join();
  EXPECT_EQ(t.buckets_launched_in_backward, 0);
  EXPECT_EQ(world->Log(0).size(), reducers[0]->buckets().size());
  const auto g = PlainGradients(*reference_, in, true);
  auto params = models_[0]->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::allclose(params[i].grad(), g[i], 1e-6, 1e-7));
  }
}

TEST_F(GradientReducerTest, RanksWhoseGradientsArriveInDifferentOrdersStillMatchCollectives) {
  // Rank 1 builds its graph in another order, so its hooks fire in another order; buckets still
  // launch in bucket order on both ranks.
  auto world = FakeWorld::Create(2, 2s);
  ReducerOptions options;
  options.bucket_size_mb = 16.0 / (1024 * 1024);
  auto reducers = MakeReducers(world, options);
  const Inputs in = MakeInputs(4);
  models_[0]->Loss(in.a, in.b, true).backward();
  {
    PairNet& m = *models_[1];
    torch::Tensor hb = torch::relu(m.encoder(in.b));
    torch::Tensor ha = torch::relu(m.encoder(in.a));
    torch::Tensor extra = m.optional(hb).mean();
    torch::Tensor speed = m.speed(ha).sum() * 0.1;
    torch::Tensor zba = m.psi(torch::cat({hb, ha}, 1));
    torch::Tensor zab = m.psi(torch::cat({ha, hb}, 1));
    (extra + speed + (zba * 0.5).pow(2).mean() + zab.pow(2).mean()).backward();
  }
  reducers[0]->Finalize();
  reducers[1]->Finalize();
  EXPECT_EQ(world->Log(0), world->Log(1));
  auto p0 = models_[0]->parameters();
  auto p1 = models_[1]->parameters();
  for (size_t i = 0; i < p0.size(); ++i) {
    EXPECT_TRUE(torch::allclose(p0[i].grad(), p1[i].grad(), 1e-6, 1e-7));
  }
}

TEST_F(GradientReducerTest, UnusedParametersAreAnErrorNamingThemByDefault) {
  auto world = FakeWorld::Create(1, 2s);
  GradientReducer reducer(Named(*models_[0]), world->ForRank(0));
  const Inputs in = MakeInputs(5);
  models_[0]->Loss(in.a, in.b, /*use_optional=*/false).backward();
  try {
    reducer.Finalize();
    FAIL() << "expected UnusedParametersError";
  } catch (const UnusedParametersError& e) {
    EXPECT_THAT(e.what(), HasSubstr("2 of 8 parameters got no gradient"));
    EXPECT_THAT(e.what(), HasSubstr("optional.weight"));
    EXPECT_THAT(e.what(), HasSubstr("optional.bias"));
    EXPECT_THAT(e.what(), HasSubstr("kTreatAsZero"));
  }
  // The step was discarded; the next complete step works.
  models_[0]->zero_grad();
  models_[0]->Loss(in.a, in.b, true).backward();
  EXPECT_EQ(reducer.Finalize().hooks_fired, 8);
}

TEST_F(GradientReducerTest, UnusedParametersCanCountAsZero) {
  auto world = FakeWorld::Create(2, 2s);
  ReducerOptions options;
  options.unused_parameters = UnusedParameters::kTreatAsZero;
  auto reducers = MakeReducers(world, options);
  const Inputs in = MakeInputs(6);
  models_[0]->Loss(in.a, in.b, /*use_optional=*/true).backward();
  models_[1]->Loss(in.a, in.b, /*use_optional=*/false).backward();
  std::thread other([&] { reducers[1]->Finalize(); });
  reducers[0]->Finalize();
  other.join();
  const auto g = PlainGradients(*reference_, in, true);
  for (int r = 0; r < 2; ++r) {
    // optional.weight / optional.bias: rank 0's gradient averaged with rank 1's zero.
    EXPECT_TRUE(torch::allclose(models_[r]->optional->weight.grad(), g[6] / 2, 1e-6, 1e-7))
        << "rank " << r;
    EXPECT_TRUE(torch::allclose(models_[r]->optional->bias.grad(), g[7] / 2, 1e-6, 1e-7));
    EXPECT_TRUE(torch::allclose(models_[r]->psi->weight.grad(), g[2], 1e-6, 1e-7));
  }
}

TEST_F(GradientReducerTest, AGradientReadyTwiceInOneStepIsRejected) {
  auto world = FakeWorld::Create(1, 2s);
  GradientReducer reducer(Named(*models_[0]), world->ForRank(0));
  const Inputs in = MakeInputs(8);
  models_[0]->Loss(in.a, in.b, true).backward();
  try {
    models_[0]->Loss(in.a, in.b, true).backward();
    FAIL() << "expected the second backward to throw";
  } catch (const std::exception& e) {
    EXPECT_THAT(e.what(), HasSubstr("became ready twice in one step"));
  }
}

TEST_F(GradientReducerTest, AHungPeerTimesOutAndBreaksTheReducer) {
  auto world = FakeWorld::Create(2, 300ms);
  auto reducers = MakeReducers(world, {});
  const Inputs in = MakeInputs(9);
  models_[0]->Loss(in.a, in.b, true).backward();  // rank 1 never runs its backward
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(reducers[0]->Finalize(), CollectiveTimeoutError);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 5s);
  models_[0]->zero_grad();
  models_[0]->Loss(in.a, in.b, true).backward();
  try {
    reducers[0]->Finalize();
    FAIL() << "expected CollectiveError";
  } catch (const CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("already failed"));
  }
}

TEST_F(GradientReducerTest, ADeadPeerSurfacesAsCollectiveError) {
  auto world = FakeWorld::Create(2, 10s);
  auto reducers = MakeReducers(world, {});
  const Inputs in = MakeInputs(10);
  models_[0]->Loss(in.a, in.b, true).backward();
  world->Kill(1);
  const auto start = std::chrono::steady_clock::now();
  try {
    reducers[0]->Finalize();
    FAIL() << "expected CollectiveError";
  } catch (const CollectiveTimeoutError&) {
    FAIL() << "a dead peer must not need the timeout";
  } catch (const CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("rank 1 is gone"));
    EXPECT_THAT(e.what(), HasSubstr("rank 0 of 2"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(GradientReducerTest, RanksInThreadsTrainInLockstep) {
  auto world = FakeWorld::Create(2, 10s);
  ReducerOptions options;
  options.bucket_size_mb = 100.0 / (1024 * 1024);
  auto reducers = MakeReducers(world, options);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      torch::optim::SGD sgd(models_[r]->parameters(), torch::optim::SGDOptions(0.1));
      for (int step = 0; step < 5; ++step) {
        const Inputs in = MakeInputs(1000 * r + step);
        sgd.zero_grad();
        models_[r]->Loss(in.a, in.b, true).backward();
        reducers[r]->Finalize();
        sgd.step();
      }
    });
  }
  for (auto& t : threads) t.join();
  auto p0 = models_[0]->parameters();
  auto p1 = models_[1]->parameters();
  for (size_t i = 0; i < p0.size(); ++i) EXPECT_TRUE(torch::equal(p0[i], p1[i]));
}

TEST(GradientReducerConstructionTest, RejectsBadParameterLists) {
  auto world = FakeWorld::Create(1, 1s);
  torch::Tensor shared = torch::zeros({3}, torch::requires_grad());
  try {
    GradientReducer({{"a", shared}, {"b", shared}}, world->ForRank(0));
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("\"b\" is registered twice"));
  }
  torch::Tensor non_leaf = shared * 2;
  try {
    GradientReducer({{"x", non_leaf}}, world->ForRank(0));
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("\"x\" is not a leaf"));
  }
  try {
    GradientReducer({{"frozen", torch::zeros({2})}}, world->ForRank(0));
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("no parameter requires grad"));
  }
}

TEST(StepTimingsTest, HiddenShareIsTheUnexposedPartOfTheAllReduce) {
  StepTimings t;
  t.allreduce_seconds = 2.0;
  t.exposed_seconds = 0.5;
  EXPECT_DOUBLE_EQ(t.HiddenShare(), 0.75);
  t.exposed_seconds = 3.0;
  EXPECT_DOUBLE_EQ(t.HiddenShare(), 0.0);
  t.allreduce_seconds = 0;
  EXPECT_DOUBLE_EQ(t.HiddenShare(), 0.0);
}

}  // namespace
}  // namespace tecl::worker::dist
