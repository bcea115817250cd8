// One contract suite for every Communicator: the in-process fake and real Gloo groups over
// 127.0.0.1 (ranks in threads sharing a c10d::HashStore).
#include "services/worker/dist/communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#include <functional>
#include <thread>

#include "services/worker/dist/fake_communicator.h"
#include "services/worker/dist/process_group_factory.h"

namespace tecl::worker::dist {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr auto kTimeout = 1500ms;

struct WorldFactory {
  std::string name;
  std::function<std::vector<std::shared_ptr<Communicator>>(int world_size)> make;
};

std::vector<std::shared_ptr<Communicator>> MakeFake(int world_size) {
  auto world = FakeWorld::Create(world_size, kTimeout);
  std::vector<std::shared_ptr<Communicator>> out;
  for (int r = 0; r < world_size; ++r) out.push_back(world->ForRank(r));
  return out;
}

std::vector<std::shared_ptr<Communicator>> MakeGloo(int world_size) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::shared_ptr<Communicator>> out(world_size);
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      GroupOptions options;
      options.rank = r;
      options.world_size = world_size;
      options.timeout = kTimeout;
      options.gloo_hostname = "127.0.0.1";
      out[r] = CreateCommunicator(store, options);
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

// Runs fn(rank, communicator) for every rank in its own thread.
void RunRanks(const std::vector<std::shared_ptr<Communicator>>& comms,
              const std::function<void(int, Communicator&)>& fn) {
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r) {
    threads.emplace_back([&, r] { fn(static_cast<int>(r), *comms[r]); });
  }
  for (auto& t : threads) t.join();
}

class CommunicatorContractTest : public ::testing::TestWithParam<WorldFactory> {};

TEST_P(CommunicatorContractTest, ReportsRankWorldSizeAndTimeout) {
  auto comms = GetParam().make(2);
  EXPECT_EQ(comms[1]->rank(), 1);
  EXPECT_EQ(comms[1]->world_size(), 2);
  EXPECT_EQ(comms[1]->timeout(), kTimeout);
  EXPECT_EQ(comms[1]->backend_name(), GetParam().name);
}

TEST_P(CommunicatorContractTest, AllReduceAverageAveragesElementwise) {
  auto comms = GetParam().make(2);
  std::vector<torch::Tensor> results(2);
  RunRanks(comms, [&](int r, Communicator& c) {
    torch::Tensor t = torch::tensor({1.0f, 2.0f, 3.0f}) * (r + 1) + r;  // rank 1: {3, 5, 7}
    c.AllReduceAverage(t)->Wait(c.timeout());
    results[r] = t;
  });
  for (const auto& t : results) {
    EXPECT_TRUE(torch::equal(t, torch::tensor({2.0f, 3.5f, 5.0f}))) << t;
  }
}

TEST_P(CommunicatorContractTest, ManyCollectivesInFlightCompleteInOrder) {
  auto comms = GetParam().make(2);
  std::vector<std::vector<torch::Tensor>> results(2);
  RunRanks(comms, [&](int r, Communicator& c) {
    std::vector<std::unique_ptr<CollectiveHandle>> handles;
    for (int k = 0; k < 8; ++k) {
      results[r].push_back(torch::full({100 + k}, static_cast<double>(k + 2 * r),
                                       torch::kDouble));
      handles.push_back(c.AllReduceAverage(results[r].back()));
    }
    for (auto& h : handles) {
      h->Wait(c.timeout());
      EXPECT_TRUE(h->CompletedAt().has_value());
    }
  });
  for (int k = 0; k < 8; ++k) {
    EXPECT_TRUE(torch::equal(results[0][k], torch::full({100 + k}, k + 1.0, torch::kDouble)));
    EXPECT_TRUE(torch::equal(results[1][k], results[0][k]));
  }
}

TEST_P(CommunicatorContractTest, BroadcastCopiesTheRootsTensorOfAnyDtype) {
  auto comms = GetParam().make(3);
  std::vector<torch::Tensor> results(3);
  RunRanks(comms, [&](int r, Communicator& c) {
    torch::Tensor t = torch::full({4}, 10 * r, torch::kLong);
    c.Broadcast(t, /*root=*/2)->Wait(c.timeout());
    results[r] = t;
  });
  for (const auto& t : results) EXPECT_TRUE(torch::equal(t, torch::full({4}, 20, torch::kLong)));
}

// Rank r's rows land at rows [r*n, (r+1)*n) of every rank's output, for float rows of two
// dimensions and int64 labels, interleaved with an all-reduce.
TEST_P(CommunicatorContractTest, AllGatherConcatenatesEveryRanksRowsInRankOrder) {
  auto comms = GetParam().make(3);
  std::vector<torch::Tensor> rows(3), labels(3), reduced(3);
  RunRanks(comms, [&](int r, Communicator& c) {
    const torch::Tensor input = torch::arange(4, torch::kFloat).reshape({2, 2}) + 10 * r;
    const torch::Tensor label = torch::full({2}, r, torch::kLong);
    rows[r] = torch::empty({6, 2});
    labels[r] = torch::empty({6}, torch::kLong);
    reduced[r] = torch::full({1}, static_cast<float>(r));
    auto gather_rows = c.AllGather(input, rows[r]);
    auto reduce = c.AllReduceAverage(reduced[r]);
    auto gather_labels = c.AllGather(label, labels[r]);
    gather_rows->Wait(c.timeout());
    reduce->Wait(c.timeout());
    gather_labels->Wait(c.timeout());
  });
  const torch::Tensor expected_rows = torch::tensor(
      {{0.f, 1.f}, {2.f, 3.f}, {10.f, 11.f}, {12.f, 13.f}, {20.f, 21.f}, {22.f, 23.f}});
  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(torch::equal(rows[r], expected_rows)) << rows[r];
    EXPECT_TRUE(torch::equal(labels[r], torch::tensor({0, 0, 1, 1, 2, 2}, torch::kLong)));
    EXPECT_EQ(reduced[r].item<float>(), 1.0f);
  }
}

TEST_P(CommunicatorContractTest, BarrierReturnsOnceEveryRankArrived) {
  auto comms = GetParam().make(2);
  std::atomic<int> arrived{0};
  std::vector<int> seen(2);
  RunRanks(comms, [&](int r, Communicator& c) {
    ++arrived;
    c.Barrier();
    seen[r] = arrived.load();
  });
  EXPECT_EQ(seen[0], 2);
  EXPECT_EQ(seen[1], 2);
}

TEST_P(CommunicatorContractTest, AnAbsentPeerTimesOutAndBreaksTheCommunicator) {
  auto comms = GetParam().make(2);
  torch::Tensor t = torch::ones({16});
  const auto start = std::chrono::steady_clock::now();
  auto handle = comms[0]->AllReduceAverage(t);  // rank 1 never joins
  EXPECT_THROW(handle->Wait(comms[0]->timeout()), CollectiveTimeoutError);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, kTimeout / 2);
  EXPECT_LT(waited, kTimeout * 4);
  try {
    comms[0]->AllReduceAverage(torch::ones({16}));
    FAIL() << "expected CollectiveError";
  } catch (const CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("already failed"));
    EXPECT_THAT(e.what(), HasSubstr("form a new one"));
  }
}

TEST_P(CommunicatorContractTest, RejectsUnusableTensorsAndRoots) {
  auto comms = GetParam().make(1);
  try {
    comms[0]->AllReduceAverage(torch::ones({3}, torch::kInt));
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("needs a floating point dtype"));
  }
  try {
    comms[0]->AllReduceAverage(torch::ones({3, 3}).t());
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("not contiguous"));
  }
  try {
    comms[0]->AllGather(torch::ones({2, 3}), torch::empty({3, 3}));
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("the output must be Float[2, 3] on cpu (world size 1 x the input's rows)"));
  }
  try {
    comms[0]->AllGather(torch::ones({0, 3}), torch::empty({0, 3}));
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("needs at least one row"));
  }
  try {
    comms[0]->Broadcast(torch::ones({3}), 1);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("root 1 is not a rank of this group (world size 1)"));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CommunicatorContractTest,
                         ::testing::Values(WorldFactory{"fake", MakeFake},
                                           WorldFactory{"gloo", MakeGloo}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace tecl::worker::dist
