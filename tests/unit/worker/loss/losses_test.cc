// The losses against hand computations: explicit small tensors and direct loops over the formulas
// of METHOD.md, written independently of the code under test.
#include "services/worker/loss/losses.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <tuple>
#include <vector>

#include "services/worker/loss/batch.h"
#include "services/worker/loss/objective.h"
#include "services/worker/model/error.h"
#include "services/worker/model/model.h"

namespace tecl::worker::core {
namespace {

using ::testing::HasSubstr;
using Rows = std::vector<std::vector<double>>;

torch::Tensor ToTensor(const Rows& rows) {
  std::vector<float> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  return torch::tensor(flat).view({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

Rows ToRows(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kDouble).contiguous();
  Rows rows(c.size(0), std::vector<double>(c.size(1)));
  for (int64_t i = 0; i < c.size(0); ++i)
    for (int64_t j = 0; j < c.size(1); ++j) rows[i][j] = c[i][j].item<double>();
  return rows;
}

double Cos(const std::vector<double>& a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    dot += a[k] * b[k];
    na += a[k] * a[k];
    nb += b[k] * b[k];
  }
  return dot / (std::sqrt(na) * std::sqrt(nb));
}

// METHOD.md loss 1 for anchor i, by the formula.
template <typename Label>
double HandEquivarianceAnchor(const Rows& z, const std::vector<Label>& labels, double t, size_t i) {
  double negatives = 0;
  for (size_t n = 0; n < z.size(); ++n) {
    if (!(labels[n] == labels[i])) negatives += std::exp(Cos(z[i], z[n]) / t);
  }
  double sum = 0;
  int count = 0;
  for (size_t p = 0; p < z.size(); ++p) {
    if (p == i || !(labels[p] == labels[i])) continue;
    const double e = std::exp(Cos(z[i], z[p]) / t);
    sum += std::log(e / (e + negatives));
    ++count;
  }
  return -sum / count;
}

template <typename Label>
double HandEquivariance(const Rows& z, const std::vector<Label>& labels, double t) {
  double total = 0;
  for (size_t i = 0; i < z.size(); ++i) total += HandEquivarianceAnchor(z, labels, t, i);
  return total / static_cast<double>(z.size());
}

// METHOD.md loss 5 for one anchor: candidates are the positive and every clip of another video.
double HandInstanceAnchor(const Rows& g, const std::vector<int>& video, double t, size_t i, size_t p) {
  double denominator = 0;
  for (size_t k = 0; k < g.size(); ++k) {
    if (k == p || video[k] != video[i]) denominator += std::exp(Cos(g[i], g[k]) / t);
  }
  return -std::log(std::exp(Cos(g[i], g[p]) / t) / denominator);
}

TEST(EquivarianceLossTest, ClosedForm) {
  // Two orthogonal pairs, lambda 1: l = -log(e / (e + 2)) for every anchor.
  const torch::Tensor z = ToTensor({{1, 0}, {2, 0}, {0, 1}, {0, 3}});
  const torch::Tensor loss = EquivarianceLoss(z, torch::tensor({0, 0, 1, 1}), 1.0);
  const double expected = std::log(1.0 + 2.0 / std::exp(1.0));
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(loss[i].item<double>(), expected, 1e-6);
}

TEST(EquivarianceLossTest, MatchesHandLoop) {
  const Rows z = {{0.3, -1.2, 0.5}, {0.1, -0.9, 0.8}, {-0.7, 0.2, 0.4},
                  {1.1, 0.6, -0.3}, {0.2, -1.0, 0.1}, {-0.5, 0.4, 0.9}};
  const std::vector<int> labels = {5, 5, 7, 7, 5, 7};  // Anchor 0: positives 1 and 4.
  for (double t : {0.1, 0.5}) {
    const torch::Tensor loss = EquivarianceLoss(ToTensor(z), torch::tensor({5, 5, 7, 7, 5, 7}), t);
    for (size_t i = 0; i < z.size(); ++i) {
      EXPECT_NEAR(loss[i].item<double>(), HandEquivarianceAnchor(z, labels, t, i), 1e-4)
          << "anchor " << i << " t " << t;
    }
    EXPECT_NEAR(loss.mean().item<double>(), HandEquivariance(z, labels, t), 1e-4);
  }
}

TEST(EquivarianceLossTest, NoNegativesGivesZeroAndFiniteGradient) {
  const torch::Tensor z = ToTensor({{1, 2}, {3, -1}, {0.5, 0.5}}).requires_grad_(true);
  const torch::Tensor loss = EquivarianceLoss(z, torch::tensor({4, 4, 4}), 0.1);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(loss[i].item<double>(), 0.0, 1e-6);
  loss.sum().backward();
  EXPECT_TRUE(torch::isfinite(z.grad()).all().item<bool>());
}

TEST(EquivarianceLossTest, AnchorWithoutPositiveIsRejected) {
  try {
    EquivarianceLoss(ToTensor({{1, 0}, {0, 1}, {1, 1}}), torch::tensor({1, 1, 2}), 0.1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("an anchor has no positive"));
  }
}

const Rows kZ = {{0.3, -1.2, 0.5}, {0.1, -0.9, 0.8}, {-0.7, 0.2, 0.4}, {1.1, 0.6, -0.3}};
const std::vector<int> kLabels = {1, 1, 2, 2};

// Gradient w.r.t. z: with stop-gradient, anchor 0's loss reaches only z_0 (the target side gets
// exactly zero), and z_0's gradient equals a central finite difference of the hand formula with
// the targets held fixed.
TEST(EquivarianceLossTest, StopGradientReachesTheAnchorOnly) {
  const double t = 0.2;
  const torch::Tensor z = ToTensor(kZ).to(torch::kDouble).requires_grad_(true);
  EquivarianceLoss(z, torch::tensor({1, 1, 2, 2}), t)[0].backward();
  const Rows grad = ToRows(z.grad());
  for (size_t j = 1; j < 4; ++j) {
    for (double g : grad[j]) EXPECT_EQ(g, 0.0) << "target row " << j;
  }
  const double h = 1e-6;
  for (size_t k = 0; k < 3; ++k) {
    Rows plus = kZ, minus = kZ;
    plus[0][k] += h;
    minus[0][k] -= h;
    // Only the anchor row moves; the targets stay at their values (what sg means).
    const auto anchor_loss = [&](const Rows& rows) {
      Rows mixed = kZ;
      mixed[0] = rows[0];
      double negatives = 0;
      for (size_t n = 0; n < 4; ++n) {
        if (kLabels[n] != kLabels[0]) negatives += std::exp(Cos(mixed[0], kZ[n]) / t);
      }
      const double e = std::exp(Cos(mixed[0], kZ[1]) / t);
      return -std::log(e / (e + negatives));
    };
    const double numeric = (anchor_loss(plus) - anchor_loss(minus)) / (2 * h);
    EXPECT_NEAR(grad[0][k], numeric, 1e-6) << "component " << k;
  }
}

TEST(EquivarianceLossTest, WithoutStopGradientTargetsGetGradient) {
  const torch::Tensor z = ToTensor(kZ).to(torch::kDouble).requires_grad_(true);
  EquivarianceLoss(z, torch::tensor({1, 1, 2, 2}), 0.2, /*stop_gradient=*/false)[0].backward();
  for (int64_t j = 1; j < 4; ++j) EXPECT_GT(z.grad()[j].abs().sum().item<double>(), 1e-6) << j;
}

// The gradient of the mean loss w.r.t. z_j is (1/M) d l_j / d z_j: every vector contributes only
// through its own anchor role.
TEST(EquivarianceLossTest, MeanGradientIsTheSumOfAnchorRoles) {
  const torch::Tensor labels = torch::tensor({1, 1, 2, 2});
  const torch::Tensor z = ToTensor(kZ).to(torch::kDouble).requires_grad_(true);
  EquivarianceLoss(z, labels, 0.2).mean().backward();
  for (int64_t j = 0; j < 4; ++j) {
    const torch::Tensor single = ToTensor(kZ).to(torch::kDouble).requires_grad_(true);
    EquivarianceLoss(single, labels, 0.2)[j].backward();
    EXPECT_TRUE(torch::allclose(z.grad()[j], single.grad()[j] / 4.0, 1e-9, 1e-12)) << j;
  }
}

TEST(InstanceLossTest, OtherClipMatchesHandLoop) {
  // Three videos, two clips each (rows 2v, 2v+1); every clip is an anchor.
  const Rows g = {{0.5, 0.1}, {0.4, 0.3}, {-0.2, 0.9}, {0.1, 1.0}, {-0.8, -0.1}, {0.3, -0.6}};
  const std::vector<int> video = {0, 0, 1, 1, 2, 2};
  const double t = 0.3;
  const torch::Tensor loss =
      InstanceLoss(ToTensor(g), torch::tensor({0, 1, 2, 3, 4, 5}), torch::tensor({1, 0, 3, 2, 5, 4}),
                   torch::tensor({0, 0, 1, 1, 2, 2}), t);
  ASSERT_EQ(loss.size(0), 6);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(loss[i].item<double>(), HandInstanceAnchor(g, video, t, i, i ^ 1), 1e-5) << i;
  }
}

TEST(InstanceLossTest, SameFramesExcludesClipBOfTheAnchorsVideo) {
  // Two videos: rows 3v = A, 3v+1 = B, 3v+2 = same frames. Anchors A and S; B of another video
  // is a negative, B of the anchor's own video is left out.
  const Rows g = {{0.5, 0.1, 0.2}, {0.4, 0.3, -0.1}, {0.6, 0.0, 0.3},
                  {-0.2, 0.9, 0.1}, {0.1, 1.0, 0.5}, {-0.3, 0.8, 0.0}};
  const std::vector<int> video = {0, 0, 0, 1, 1, 1};
  const double t = 0.1;
  const torch::Tensor loss = InstanceLoss(ToTensor(g), torch::tensor({0, 2, 3, 5}),
                                          torch::tensor({2, 0, 5, 3}), torch::tensor({0, 0, 0, 1, 1, 1}), t);
  const std::array<std::pair<size_t, size_t>, 4> pairs = {{{0, 2}, {2, 0}, {3, 5}, {5, 3}}};
  for (size_t k = 0; k < pairs.size(); ++k) {
    EXPECT_NEAR(loss[k].item<double>(), HandInstanceAnchor(g, video, t, pairs[k].first, pairs[k].second), 1e-5);
  }
}

TEST(InstanceLossTest, BothSidesCarryGradient) {
  const torch::Tensor g = ToTensor({{0.5, 0.1}, {0.4, 0.3}, {-0.2, 0.9}, {0.1, 1.0}}).requires_grad_(true);
  InstanceLoss(g, torch::tensor({0}), torch::tensor({1}), torch::tensor({0, 0, 1, 1}), 0.1)[0].backward();
  for (int64_t j = 0; j < 4; ++j) EXPECT_GT(g.grad()[j].abs().sum().item<double>(), 1e-6) << j;
}

TEST(InstanceLossTest, RejectsAPositiveOfAnotherVideo) {
  try {
    InstanceLoss(torch::ones({4, 2}), torch::tensor({0}), torch::tensor({2}), torch::tensor({0, 0, 1, 1}), 0.1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("a positive belongs to another video"));
  }
}

// ------------------------------------------------------------------------------------------------
// The objective: every term from the heads' outputs, with labels written out by hand.

struct Clip {
  int video, role, speed, reversed;  // role 1 = A, 2 = B.
};

// Two groups, clips in a scrambled order. Group 0: s_A=1, s_B=0, A backward, B forward, AFTER.
// Group 1: s_A=2, s_B=2, forward/forward, BEFORE.
const std::vector<Clip> kClips = {{3, 2, 2, 0}, {0, 1, 1, 1}, {2, 1, 2, 0}, {1, 2, 0, 0},
                                  {0, 2, 0, 0}, {3, 1, 2, 0}, {1, 1, 1, 1}, {2, 2, 2, 0}};
const std::vector<int> kRelation = {2, 1};  // AFTER, BEFORE.

Batch ScrambledBatch() {
  Batch b;
  const int64_t n = static_cast<int64_t>(kClips.size());
  b.clips = torch::zeros({n, 2, 4, 4, 3}, torch::kByte);
  std::vector<int64_t> video, group, role, speed, reversed;
  for (const Clip& c : kClips) {
    video.push_back(c.video);
    group.push_back(c.video / 2);
    role.push_back(c.role);
    speed.push_back(c.speed);
    reversed.push_back(c.reversed);
  }
  b.video = torch::tensor(video);
  b.group = torch::tensor(group);
  b.role = torch::tensor(role);
  b.speed_index = torch::tensor(speed);
  b.reversed = torch::tensor(reversed);
  b.relation = torch::tensor(std::vector<int64_t>(kRelation.begin(), kRelation.end()));
  return b;
}

int SwapRelation(int r) { return r == 1 ? 2 : r == 2 ? 1 : 3; }

double HandCrossEntropy(const Rows& logits, const std::vector<int>& labels) {
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    double sum = 0;
    for (double v : logits[i]) sum += std::exp(v);
    total += -(logits[i][labels[i]] - std::log(sum));
  }
  return total / static_cast<double>(logits.size());
}

double HandAccuracy(const Rows& logits, const std::vector<int>& labels) {
  int right = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    size_t best = 0;
    for (size_t k = 1; k < logits[i].size(); ++k) {
      if (logits[i][k] > logits[i][best]) best = k;
    }
    right += static_cast<int>(best) == labels[i];
  }
  return static_cast<double>(right) / static_cast<double>(logits.size());
}

ModelOptions SmallModel() {
  ModelOptions options;
  options.backbone = "tiny3d";
  options.head_hidden = 8;
  options.psi_hidden = 8;
  options.psi_dim = 5;
  options.projection_hidden = 8;
  options.projection_dim = 4;
  options.num_speeds = 3;
  return options;
}

// One row of a head in eval mode (BatchNorm with its running statistics: rows are independent,
// so a head can be applied to each pair on its own).
std::vector<double> Apply(torch::nn::Sequential& head, const torch::Tensor& row) {
  torch::NoGradGuard no_grad;
  return ToRows(head->forward(row.unsqueeze(0)))[0];
}

TEST(ObjectiveTest, EveryTermMatchesHandComputation) {
  torch::manual_seed(3);
  TeclModel model(SmallModel(), HeadSet{});
  model->eval();
  // Non-trivial BatchNorm statistics so that eval mode is not the identity.
  for (auto& buffer : model->named_buffers()) {
    if (buffer.key().find("running_mean") != std::string::npos) buffer.value().uniform_(-0.2, 0.2);
    if (buffer.key().find("running_var") != std::string::npos) buffer.value().uniform_(0.5, 2.0);
  }
  const torch::Tensor h = torch::randn({8, 256});
  LossOptions options;
  options.weights = {0.5, 2.0, 1.0, 1.5, 0.7};
  options.equivariance_temperature = 0.2;
  options.instance_temperature = 0.3;
  const LossTerms terms = ComputeLosses(*model, h, IndexBatch(ScrambledBatch(), {3, InstancePositive::kOtherClip}), options);

  // Rows of clip A / B per video, by scanning the hand-written table.
  std::vector<int> row_a(4), row_b(4);
  for (size_t i = 0; i < kClips.size(); ++i) (kClips[i].role == 1 ? row_a : row_b)[kClips[i].video] = i;
  using Label = std::tuple<int, int, int, int, int>;  // (s_first, s_second, d_first, d_second, r)
  Rows z;
  std::vector<Label> labels;
  Rows order_logits;
  std::vector<int> order_labels;
  for (int reversed_pair = 0; reversed_pair < 2; ++reversed_pair) {
    for (int v = 0; v < 4; ++v) {
      const Clip& a = kClips[row_a[v]];
      const Clip& b = kClips[row_b[v]];
      const int r = kRelation[v / 2];
      const torch::Tensor pair = reversed_pair ? torch::cat({h[row_b[v]], h[row_a[v]]})
                                               : torch::cat({h[row_a[v]], h[row_b[v]]});
      z.push_back(Apply(model->psi(), pair));
      order_logits.push_back(Apply(model->order(), pair));
      if (!reversed_pair) {
        labels.emplace_back(a.speed, b.speed, a.reversed, b.reversed, r);
        order_labels.push_back(r - 1);
      } else {
        labels.emplace_back(b.speed, a.speed, b.reversed, a.reversed, SwapRelation(r));
        order_labels.push_back(SwapRelation(r) - 1);
      }
    }
  }
  const double equivariance = HandEquivariance(z, labels, 0.2);

  Rows speed_logits, direction_logits, g;
  std::vector<int> speed_labels, direction_labels, video;
  for (size_t i = 0; i < kClips.size(); ++i) {
    speed_logits.push_back(Apply(model->speed(), h[i]));
    direction_logits.push_back(Apply(model->direction(), h[i]));
    g.push_back(Apply(model->projection(), h[i]));
    speed_labels.push_back(kClips[i].speed);
    direction_labels.push_back(kClips[i].reversed);
    video.push_back(kClips[i].video);
  }
  double instance = 0;
  for (size_t i = 0; i < kClips.size(); ++i) {
    const int v = kClips[i].video;
    const size_t positive = kClips[i].role == 1 ? row_b[v] : row_a[v];
    instance += HandInstanceAnchor(g, video, 0.3, i, positive);
  }
  instance /= static_cast<double>(kClips.size());
  const double speed = HandCrossEntropy(speed_logits, speed_labels);
  const double direction = HandCrossEntropy(direction_logits, direction_labels);
  const double order = HandCrossEntropy(order_logits, order_labels);

  EXPECT_NEAR(terms.equivariance.item<double>(), equivariance, 1e-4);
  EXPECT_NEAR(terms.speed.item<double>(), speed, 1e-4);
  EXPECT_NEAR(terms.direction.item<double>(), direction, 1e-4);
  EXPECT_NEAR(terms.order.item<double>(), order, 1e-4);
  EXPECT_NEAR(terms.instance.item<double>(), instance, 1e-4);
  EXPECT_NEAR(terms.total.item<double>(),
              0.5 * equivariance + 2.0 * speed + 1.0 * direction + 1.5 * order + 0.7 * instance, 1e-3);
  EXPECT_DOUBLE_EQ(terms.speed_accuracy.item<double>(), HandAccuracy(speed_logits, speed_labels));
  EXPECT_DOUBLE_EQ(terms.direction_accuracy.item<double>(), HandAccuracy(direction_logits, direction_labels));
  EXPECT_DOUBLE_EQ(terms.order_accuracy.item<double>(), HandAccuracy(order_logits, order_labels));

  const LossValues values = ToValues(terms);
  EXPECT_NEAR(values.total, terms.total.item<double>(), 1e-6);
  ASSERT_TRUE(values.order_accuracy.has_value());
  EXPECT_THAT(values.ToString(), HasSubstr("equi="));
}

TEST(ObjectiveTest, ZeroWeightTermsAreNeitherBuiltNorComputed) {
  torch::manual_seed(4);
  LossOptions options;
  options.weights.equivariance = 0;
  options.weights.order = 0;
  const HeadSet heads = HeadsFor(options.weights);
  EXPECT_FALSE(heads.psi);
  EXPECT_FALSE(heads.order);
  EXPECT_TRUE(heads.speed && heads.direction && heads.projection);

  TeclModel model(SmallModel(), heads);
  EXPECT_FALSE(model->psi());
  EXPECT_FALSE(model->order());
  const torch::Tensor h = torch::randn({8, 256}, torch::requires_grad());
  const LossTerms terms =
      ComputeLosses(*model, h, IndexBatch(ScrambledBatch(), {3, InstancePositive::kOtherClip}), options);
  EXPECT_FALSE(terms.equivariance.defined());
  EXPECT_FALSE(terms.order.defined());
  EXPECT_FALSE(terms.order_accuracy.defined());
  EXPECT_NEAR(terms.total.item<double>(),
              (terms.speed + terms.direction + terms.instance).item<double>(), 1e-5);
  const LossValues values = ToValues(terms);
  EXPECT_FALSE(values.equivariance.has_value());
  EXPECT_FALSE(values.order.has_value());
  EXPECT_TRUE(values.speed.has_value());
}

TEST(ObjectiveTest, ZeroWeightLeavesAnExistingHeadUntouched) {
  // Even if a model had the head, a zero weight must not run it: its parameters get no gradient
  // while every other head's do.
  torch::manual_seed(5);
  TeclModel model(SmallModel(), HeadSet{});
  LossOptions options;
  options.weights.equivariance = 0;
  const torch::Tensor h = torch::randn({8, 256}, torch::requires_grad());
  ComputeLosses(*model, h, IndexBatch(ScrambledBatch(), {3, InstancePositive::kOtherClip}), options)
      .total.backward();
  for (const auto& item : model->named_parameters()) {
    if (item.key().rfind("backbone.", 0) == 0) continue;
    if (item.key().rfind("psi.", 0) == 0) {
      EXPECT_FALSE(item.value().grad().defined()) << item.key();
    } else {
      EXPECT_TRUE(item.value().grad().defined()) << item.key();
    }
  }
}

TEST(ObjectiveTest, MissingHeadIsAPreconditionError) {
  HeadSet heads;
  heads.speed = false;
  TeclModel model(SmallModel(), heads);
  try {
    ComputeLosses(*model, torch::randn({8, 256}),
                  IndexBatch(ScrambledBatch(), {3, InstancePositive::kOtherClip}), LossOptions{});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition);
    EXPECT_THAT(e.what(), HasSubstr("the model has no speed head but method.weights.speed is > 0"));
  }
}

TEST(ObjectiveTest, OptionsAreValidated) {
  LossOptions options;
  options.weights = {0, 0, 0, 0, 0};
  try {
    options.Validate();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("method.weights: every weight is 0"));
  }
  options = LossOptions{};
  options.weights.speed = -1;
  EXPECT_THROW(options.Validate(), Error);
  options = LossOptions{};
  options.instance_temperature = 0;
  try {
    options.Validate();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("method.instance_temperature: 0 must be > 0"));
  }
}

}  // namespace
}  // namespace tecl::worker::core
