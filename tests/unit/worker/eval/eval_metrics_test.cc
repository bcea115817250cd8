#include "services/worker/eval/eval_metrics.h"

#include <torch/torch.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::worker::eval {
namespace {

using ::testing::ElementsAre;
using ::testing::DoubleNear;

// Gallery and queries in 2-D with rankings worked out by hand (cosine similarity):
//   gallery g0=(1,0):A  g1=(0.9,0.1):B  g2=(0,1):C  g3=(-1,0):A
//   q0=(1,0.01):A   ranks g0 g1 g2 g3           -> first hit at rank 1
//   q1=(0.8,0.2):C  cos g1=.991 g0=.970 g2=.243 -> first hit at rank 3
//   q2=(0,-1):A     cos g0=0 g3=0 g1=-.11 g2=-1 -> rank 1 (both tied rows are A)
TEST(RetrievalRecallTest, MatchesHandWorkedRankings) {
  const auto gallery = torch::tensor({{1.0, 0.0}, {0.9, 0.1}, {0.0, 1.0}, {-1.0, 0.0}});
  const auto gallery_labels = torch::tensor({0, 1, 2, 0}, torch::kLong);
  const auto queries = torch::tensor({{1.0, 0.01}, {0.8, 0.2}, {0.0, -1.0}});
  const auto query_labels = torch::tensor({0, 2, 0}, torch::kLong);
  const auto recall = RetrievalRecall(queries, query_labels, gallery, gallery_labels, {1, 2, 3, 10});
  EXPECT_THAT(recall, ElementsAre(DoubleNear(2.0 / 3, 1e-9), DoubleNear(2.0 / 3, 1e-9),
                                  DoubleNear(1.0, 1e-9), DoubleNear(1.0, 1e-9)));
  // Cosine: scaling rows changes nothing.
  const auto scaled = RetrievalRecall(queries * torch::tensor({{3.0}, {0.5}, {7.0}}), query_labels,
                                      gallery * 4.0, gallery_labels, {1, 3});
  EXPECT_THAT(scaled, ElementsAre(DoubleNear(2.0 / 3, 1e-9), DoubleNear(1.0, 1e-9)));
}

TEST(RetrievalRecallTest, ClustersOfRandomPointsAreRetrievedPerfectly) {
  torch::manual_seed(3);
  const int classes = 5;
  const auto centres = torch::randn({classes, 16}) * 10;
  const auto labels = torch::arange(classes).repeat_interleave(20);
  const auto gallery = centres.index_select(0, labels) + torch::randn({classes * 20, 16}) * 0.1;
  const auto queries = centres.index_select(0, labels) + torch::randn({classes * 20, 16}) * 0.1;
  EXPECT_THAT(RetrievalRecall(queries, labels, gallery, labels, {1, 5}),
              ElementsAre(DoubleNear(1.0, 1e-9), DoubleNear(1.0, 1e-9)));
}

TEST(RetrievalRecallTest, RefusesBadInput) {
  const auto f = torch::ones({3, 4});
  const auto l = torch::zeros({3}, torch::kLong);
  EXPECT_THROW(RetrievalRecall(f, l, torch::ones({3, 5}), l, {1}), std::invalid_argument);
  EXPECT_THROW(RetrievalRecall(f, torch::zeros({2}, torch::kLong), f, l, {1}), std::invalid_argument);
  EXPECT_THROW(RetrievalRecall(f, l, f, l, {0}), std::invalid_argument);
}

TEST(LinearProbeTest, SeparableClustersAreClassifiedAndShuffledLabelsAreNot) {
  torch::manual_seed(1);
  const int classes = 4;
  const auto centres = torch::randn({classes, 8}) * 4;
  const auto train_labels = torch::arange(classes).repeat_interleave(50);
  const auto test_labels = torch::arange(classes).repeat_interleave(25);
  const auto train = centres.index_select(0, train_labels) + torch::randn({200, 8}) * 0.3;
  const auto test = centres.index_select(0, test_labels) + torch::randn({100, 8}) * 0.3;
  LinearProbeOptions options;
  const LinearProbeResult separable = LinearProbe(train, train_labels, test, test_labels, classes, options);
  EXPECT_GE(separable.test_top1, 0.98);
  EXPECT_GE(separable.train_top1, 0.98);
  EXPECT_TRUE(separable.converged);
  EXPECT_LT(separable.iterations, options.max_iterations);

  // Features carry no information about these labels: test accuracy stays near chance (0.25).
  const auto noise_train = torch::randn({200, 8});
  const auto noise_test = torch::randn({100, 8});
  const LinearProbeResult chance =
      LinearProbe(noise_train, train_labels, noise_test, test_labels, classes, options);
  EXPECT_LT(chance.test_top1, 0.5);
}

// The probe optimises to convergence from zero weights: the result depends on the features only
// (the same twice, whatever the global generator), and stopping early leaves a higher training
// loss and is reported as unconverged.
TEST(LinearProbeTest, RunsToConvergenceAndIsDeterministic) {
  torch::manual_seed(2);
  const int classes = 3;
  const auto train_labels = torch::arange(classes).repeat_interleave(40);
  const auto test_labels = torch::arange(classes).repeat_interleave(20);
  // Overlapping classes: the optimum is finite and not reached in a few steps.
  const auto centres = torch::randn({classes, 16});
  const auto train = centres.index_select(0, train_labels) + torch::randn({120, 16}) * 1.5;
  const auto test = centres.index_select(0, test_labels) + torch::randn({60, 16}) * 1.5;
  LinearProbeOptions options;
  options.weight_decay = 1e-2;
  const LinearProbeResult full = LinearProbe(train, train_labels, test, test_labels, classes, options);
  EXPECT_TRUE(full.converged);
  EXPECT_GT(full.iterations, 2);
  torch::manual_seed(99);
  const LinearProbeResult again = LinearProbe(train, train_labels, test, test_labels, classes, options);
  EXPECT_EQ(again.iterations, full.iterations);
  EXPECT_DOUBLE_EQ(again.test_top1, full.test_top1);
  EXPECT_DOUBLE_EQ(again.train_loss, full.train_loss);

  options.max_iterations = 2;
  const LinearProbeResult early = LinearProbe(train, train_labels, test, test_labels, classes, options);
  EXPECT_FALSE(early.converged);
  EXPECT_EQ(early.iterations, 2);
  EXPECT_GT(early.train_loss, full.train_loss + 1e-4);
}

TEST(LinearProbeTest, RefusesLabelsOutOfRange) {
  const auto f = torch::randn({4, 2});
  EXPECT_THROW(LinearProbe(f, torch::tensor({0, 1, 2, 3}, torch::kLong), f,
                           torch::tensor({0, 1, 0, 1}, torch::kLong), 3, {}),
               std::invalid_argument);
}

}  // namespace
}  // namespace tecl::worker::eval
