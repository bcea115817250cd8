// Backbones (torchvision layouts, parameter counts, output shapes), heads and clip normalisation.
#include "services/worker/model/model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "services/worker/model/backbone.h"
#include "services/worker/model/batch_norm.h"
#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

using ::testing::HasSubstr;

ModelOptions SmallOptions() {
  ModelOptions options;
  options.backbone = "tiny3d";
  options.head_hidden = 16;
  options.psi_hidden = 12;
  options.psi_dim = 8;
  options.projection_hidden = 10;
  options.projection_dim = 6;
  options.num_speeds = 4;
  return options;
}

int64_t CountParameters(const torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.parameters()) count += p.numel();
  return count;
}

std::map<std::string, std::vector<int64_t>> Shapes(const torch::nn::Module& module) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : module.named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  return shapes;
}

// torchvision's published parameter counts (R3D_18_Weights / R2Plus1D_18_Weights "num_params":
// 33,371,472 and 31,505,325) minus the 512 x 400 + 400 classifier the backbone leaves out.
TEST(BackboneTest, R3d18MatchesTorchvisionLayout) {
  auto backbone = MakeBackbone("r3d_18");
  EXPECT_EQ(backbone->feature_dim(), 512);
  EXPECT_EQ(CountParameters(*backbone), 33371472 - 205200);
  const auto shapes = Shapes(*backbone);
  EXPECT_EQ(shapes.at("stem.0.weight"), (std::vector<int64_t>{64, 3, 3, 7, 7}));
  EXPECT_EQ(shapes.at("layer1.0.conv1.0.weight"), (std::vector<int64_t>{64, 64, 3, 3, 3}));
  EXPECT_EQ(shapes.at("layer2.0.downsample.0.weight"), (std::vector<int64_t>{128, 64, 1, 1, 1}));
  EXPECT_EQ(shapes.at("layer4.1.conv2.1.weight"), (std::vector<int64_t>{512}));
  EXPECT_EQ(shapes.count("layer1.0.downsample.0.weight"), 0u);
}

TEST(BackboneTest, R2plus1d18MatchesTorchvisionLayout) {
  auto backbone = MakeBackbone("r2plus1d_18");
  EXPECT_EQ(backbone->feature_dim(), 512);
  EXPECT_EQ(CountParameters(*backbone), 31505325 - 205200);
  const auto shapes = Shapes(*backbone);
  EXPECT_EQ(shapes.at("stem.0.weight"), (std::vector<int64_t>{45, 3, 1, 7, 7}));
  EXPECT_EQ(shapes.at("stem.3.weight"), (std::vector<int64_t>{64, 45, 3, 1, 1}));
  // midplanes = 64*64*27 / (64*9 + 3*64) = 144 in layer1; 64*128*27 / (64*9 + 3*128) = 230 in the
  // first block of layer2 (its conv2 keeps the block's midplanes).
  EXPECT_EQ(shapes.at("layer1.0.conv1.0.0.weight"), (std::vector<int64_t>{144, 64, 1, 3, 3}));
  EXPECT_EQ(shapes.at("layer1.0.conv1.0.3.weight"), (std::vector<int64_t>{64, 144, 3, 1, 1}));
  EXPECT_EQ(shapes.at("layer2.0.conv1.0.0.weight"), (std::vector<int64_t>{230, 64, 1, 3, 3}));
  EXPECT_EQ(shapes.at("layer2.0.conv2.0.0.weight"), (std::vector<int64_t>{230, 128, 1, 3, 3}));
  EXPECT_EQ(shapes.at("layer2.0.conv1.0.1.weight"), (std::vector<int64_t>{230}));
}

TEST(BackboneTest, Tiny3dIsFourConvBlocks) {
  auto backbone = MakeBackbone("tiny3d");
  EXPECT_EQ(backbone->feature_dim(), 256);
  const auto shapes = Shapes(*backbone);
  EXPECT_EQ(shapes.at("features.0.weight"), (std::vector<int64_t>{32, 3, 3, 3, 3}));
  EXPECT_EQ(shapes.at("features.9.weight"), (std::vector<int64_t>{256, 128, 3, 3, 3}));
  EXPECT_EQ(shapes.size(), 12u);  // 4 x (conv weight, BN weight, BN bias).
}

TEST(BackboneTest, ForwardShapes) {
  torch::manual_seed(0);
  for (const std::string name : {"r2plus1d_18", "r3d_18"}) {
    auto backbone = MakeBackbone(name);
    const torch::Tensor h = backbone->forward(torch::randn({2, 3, 4, 32, 32}));
    EXPECT_EQ(h.sizes(), (std::vector<int64_t>{2, 512})) << name;
  }
  auto tiny = MakeBackbone("tiny3d");
  const torch::Tensor h = tiny->forward(torch::randn({3, 3, 8, 64, 64}));
  EXPECT_EQ(h.sizes(), (std::vector<int64_t>{3, 256}));
  // Global max pooling of ReLU outputs: features are >= 0.
  EXPECT_GE(h.min().item<float>(), 0.0f);
}

TEST(BackboneTest, Tiny3dPoolsByMaximum) {
  auto tiny = MakeBackbone("tiny3d");
  tiny->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 3, 8, 64, 64});
  torch::Tensor maps = x;
  for (const auto& child : tiny->children()) {
    for (const auto& layer : child->children()) {
      if (auto* conv = layer->as<torch::nn::Conv3d>()) maps = conv->forward(maps);
      if (auto* norm = layer->as<SyncableBatchNorm>()) maps = norm->forward(maps);
      if (layer->as<torch::nn::ReLU>()) maps = torch::relu(maps);
    }
  }
  EXPECT_TRUE(torch::allclose(tiny->forward(x), std::get<0>(maps.flatten(2).max(2))));
}

// Without a sync, SyncableBatchNorm is torch's BatchNorm: same names, outputs and running
// statistics in training and evaluation, for 1d and 3d inputs.
TEST(SyncableBatchNormTest, WithoutASyncItIsBatchNorm) {
  torch::manual_seed(3);
  SyncableBatchNorm ours = SyncableBatchNorm3d(4);
  torch::nn::BatchNorm3d theirs(4);
  std::vector<std::string> our_names, their_names;
  for (const auto& item : ours->named_parameters()) our_names.push_back(item.key());
  for (const auto& item : ours->named_buffers()) our_names.push_back(item.key());
  for (const auto& item : theirs->named_parameters()) their_names.push_back(item.key());
  for (const auto& item : theirs->named_buffers()) their_names.push_back(item.key());
  EXPECT_EQ(our_names, their_names);
  {
    torch::NoGradGuard no_grad;
    ours->weight.uniform_(0.5, 1.5);
    ours->bias.uniform_(-1, 1);
    theirs->weight.copy_(ours->weight);
    theirs->bias.copy_(ours->bias);
  }
  for (int i = 0; i < 3; ++i) {
    const torch::Tensor x = torch::randn({3, 4, 2, 3, 3}) * 2 + 1;
    EXPECT_TRUE(torch::allclose(ours->forward(x), theirs->forward(x), 1e-5, 1e-6));
  }
  EXPECT_TRUE(torch::allclose(ours->running_mean, theirs->running_mean));
  EXPECT_TRUE(torch::allclose(ours->running_var, theirs->running_var));
  EXPECT_EQ(ours->num_batches_tracked.item<int64_t>(), 3);
  ours->eval();
  theirs->eval();
  const torch::Tensor x = torch::randn({2, 4, 2, 3, 3});
  EXPECT_TRUE(torch::allclose(ours->forward(x), theirs->forward(x), 1e-5, 1e-6));

  SyncableBatchNorm ours1d = SyncableBatchNorm1d(5);
  torch::nn::BatchNorm1d theirs1d(5);
  const torch::Tensor rows = torch::randn({6, 5});
  EXPECT_TRUE(torch::allclose(ours1d->forward(rows), theirs1d->forward(rows), 1e-5, 1e-6));
  EXPECT_THROW(ours1d->forward(torch::randn({6, 4})), std::invalid_argument);
  EXPECT_THROW(ours->forward(torch::randn({6, 4})), std::invalid_argument);
}

// With a sync set, every BatchNorm layer of the model hands training-mode normalisation to it (and
// counts the batch); evaluation mode and a cleared sync use the local path.
TEST(SyncableBatchNormTest, TheModelsLayersHandTrainingToTheSync) {
  TeclModel model(SmallOptions(), HeadSet{});
  int calls = 0;
  auto sync = std::make_shared<const BatchNormSync>(
      [&calls](const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
               torch::Tensor running_mean, torch::Tensor running_var, double momentum,
               double eps) {
        ++calls;
        EXPECT_DOUBLE_EQ(momentum, 0.1);
        EXPECT_DOUBLE_EQ(eps, 1e-5);
        return torch::batch_norm(x, weight, bias, running_mean, running_var, true, momentum, eps,
                                 false);
      });
  // 4 in tiny3d, one in each of the five heads.
  EXPECT_EQ(SetBatchNormSync(*model, sync), 9);
  model->train();
  const torch::Tensor features = model->forward(torch::randn({4, 3, 4, 32, 32}));
  EXPECT_EQ(calls, 4);
  model->psi()->forward(torch::randn({4, 2 * model->feature_dim()}));
  EXPECT_EQ(calls, 5);
  model->eval();
  model->forward(torch::randn({2, 3, 4, 32, 32}));
  EXPECT_EQ(calls, 5);
  model->train();
  EXPECT_EQ(SetBatchNormSync(*model, nullptr), 9);
  model->forward(torch::randn({2, 3, 4, 32, 32}));
  EXPECT_EQ(calls, 5);
}

TEST(BackboneTest, UnknownNameNamesTheChoices) {
  try {
    MakeBackbone("r50");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_STREQ(e.what(), "model.backbone: \"r50\" is not one of r2plus1d_18, r3d_18, tiny3d");
  }
}


TEST(TeclModelTest, HeadsHaveTheConfiguredShapes) {
  TeclModel model(SmallOptions(), HeadSet{});
  const auto shapes = Shapes(*model);
  EXPECT_EQ(shapes.at("psi.0.weight"), (std::vector<int64_t>{12, 512}));
  EXPECT_EQ(shapes.at("psi.1.weight"), (std::vector<int64_t>{12}));  // BatchNorm1d.
  EXPECT_EQ(shapes.at("psi.3.weight"), (std::vector<int64_t>{8, 12}));
  EXPECT_EQ(shapes.at("speed.3.weight"), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(shapes.at("direction.3.weight"), (std::vector<int64_t>{2, 16}));
  EXPECT_EQ(shapes.at("order.0.weight"), (std::vector<int64_t>{16, 512}));
  EXPECT_EQ(shapes.at("order.3.weight"), (std::vector<int64_t>{3, 16}));
  EXPECT_EQ(shapes.at("projection.0.weight"), (std::vector<int64_t>{10, 256}));
  EXPECT_EQ(shapes.at("projection.3.weight"), (std::vector<int64_t>{6, 10}));
  EXPECT_EQ(shapes.count("psi.0.bias"), 0u);  // BatchNorm follows: no bias.
  // Registration order: backbone first, then the heads.
  const auto names = model->named_parameters().keys();
  EXPECT_EQ(names.front(), "backbone.features.0.weight");
  EXPECT_EQ(names.back(), "projection.3.bias");
}

TEST(TeclModelTest, AbsentHeadsHaveNoParameters) {
  HeadSet heads;
  heads.psi = false;
  heads.order = false;
  TeclModel model(SmallOptions(), heads);
  EXPECT_FALSE(model->psi());
  EXPECT_FALSE(model->order());
  EXPECT_TRUE(model->speed());
  for (const auto& item : model->named_parameters()) {
    EXPECT_NE(item.key().rfind("psi.", 0), 0u) << item.key();
    EXPECT_NE(item.key().rfind("order.", 0), 0u) << item.key();
  }
  EXPECT_EQ(heads.ToString(), "speed,direction,projection");
}

TEST(TeclModelTest, InvalidOptionsNameTheField) {
  ModelOptions options = SmallOptions();
  options.psi_dim = 0;
  try {
    TeclModel model(options, HeadSet{});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("model.psi_dim: 0 must be >= 1"));
  }
}

TEST(NormalizeClipsTest, ScalesPermutesAndNormalises) {
  // Clip (N=1, T=2, H=1, W=2, C=3) with distinct values.
  torch::Tensor clips = torch::zeros({1, 2, 1, 2, 3}, torch::kByte);
  auto a = clips.accessor<uint8_t, 5>();
  for (int t = 0; t < 2; ++t)
    for (int w = 0; w < 2; ++w)
      for (int c = 0; c < 3; ++c) a[0][t][0][w][c] = static_cast<uint8_t>(10 * t + 50 * w + 70 * c);
  const torch::Tensor x = NormalizeClips(clips, torch::kCPU);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{1, 3, 2, 1, 2}));
  EXPECT_EQ(x.scalar_type(), torch::kFloat);
  EXPECT_TRUE(x.is_contiguous());
  const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
  for (int t = 0; t < 2; ++t)
    for (int w = 0; w < 2; ++w)
      for (int c = 0; c < 3; ++c) {
        const double expected = ((10 * t + 50 * w + 70 * c) / 255.0 - mean[c]) / std[c];
        EXPECT_NEAR(x[0][c][t][0][w].item<double>(), expected, 1e-5);
      }
}

TEST(NormalizeClipsTest, RejectsFloatClips) {
  try {
    NormalizeClips(torch::zeros({1, 2, 4, 4, 3}), torch::kCPU);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("clips must be uint8 (N, T, H, W, 3), got Float"));
  }
}

}  // namespace
}  // namespace tecl::worker::core
