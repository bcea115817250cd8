#include "services/worker/model/backbone.h"

#include <torch/torch.h>

#include <sstream>
#include <utility>

#include "services/worker/model/batch_norm.h"
#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

namespace nn = torch::nn;

nn::Conv3d Conv(int64_t in, int64_t out, std::vector<int64_t> kernel, std::vector<int64_t> stride,
                std::vector<int64_t> padding) {
  return nn::Conv3d(nn::Conv3dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

nn::ReLU Relu() { return nn::ReLU(nn::ReLUOptions().inplace(true)); }

// torchvision's Conv2Plus1D: a 1x3x3 spatial convolution to `mid` channels, BN, ReLU, then a
// 3x1x1 temporal convolution. Children are named "0", "1", "3" as in the Python Sequential.
class Conv2Plus1DImpl : public nn::Module {
 public:
  Conv2Plus1DImpl(int64_t in, int64_t out, int64_t mid, int64_t stride)
      : spatial_(Conv(in, mid, {1, 3, 3}, {1, stride, stride}, {0, 1, 1})),
        norm_(SyncableBatchNorm3d(mid)),
        temporal_(Conv(mid, out, {3, 1, 1}, {stride, 1, 1}, {1, 0, 0})) {
    register_module("0", spatial_);
    register_module("1", norm_);
    register_module("3", temporal_);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return temporal_->forward(norm_->forward(spatial_->forward(x)).relu_());
  }

 private:
  nn::Conv3d spatial_;
  SyncableBatchNorm norm_;
  nn::Conv3d temporal_;
};
TORCH_MODULE(Conv2Plus1D);

enum class BlockKind { kConv3DSimple, kConv2Plus1D };

// torchvision's BasicBlock (expansion 1): conv1 = [conv, BN, ReLU], conv2 = [conv, BN], an
// optional 1x1x1 downsample = [conv, BN] on the shortcut, ReLU after the sum.
class BasicBlockImpl : public nn::Module {
 public:
  BasicBlockImpl(BlockKind kind, int64_t in, int64_t planes, int64_t stride) {
    // torchvision's midplanes: the (2+1)D block has about the parameters of a 3x3x3 block.
    const int64_t mid = (in * planes * 3 * 3 * 3) / (in * 3 * 3 + 3 * planes);
    const auto conv = [&](int64_t conv_in, int64_t conv_stride) -> nn::AnyModule {
      if (kind == BlockKind::kConv2Plus1D) {
        return nn::AnyModule(Conv2Plus1D(conv_in, planes, mid, conv_stride));
      }
      return nn::AnyModule(Conv(conv_in, planes, {3, 3, 3}, {conv_stride, conv_stride, conv_stride},
                                {1, 1, 1}));
    };
    conv1_->push_back(conv(in, stride));
    conv1_->push_back(SyncableBatchNorm3d(planes));
    conv1_->push_back(Relu());
    conv2_->push_back(conv(planes, 1));
    conv2_->push_back(SyncableBatchNorm3d(planes));
    register_module("conv1", conv1_);
    register_module("conv2", conv2_);
    if (stride != 1 || in != planes) {
      downsample_ = nn::Sequential(Conv(in, planes, {1, 1, 1}, {stride, stride, stride}, {0, 0, 0}),
                                   SyncableBatchNorm3d(planes));
      register_module("downsample", downsample_);
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = conv2_->forward(conv1_->forward(x));
    out += downsample_ ? downsample_->forward(x) : x;
    return out.relu_();
  }

 private:
  nn::Sequential conv1_;
  nn::Sequential conv2_;
  nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(BasicBlock);

void InitLikeTorchvision(nn::Module& module) {
  for (const auto& child : module.modules(/*include_self=*/false)) {
    if (auto* conv = child->as<nn::Conv3d>()) {
      nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanOut, torch::kReLU);
    } else if (auto* norm = child->as<SyncableBatchNorm>()) {
      nn::init::ones_(norm->weight);
      nn::init::zeros_(norm->bias);
    }
  }
}

// torchvision's VideoResNet without its classifier: stem, layer1..4 ([2, 2, 2, 2] BasicBlocks of
// 64/128/256/512 channels, strides 1/2/2/2), global average pool.
class VideoResNet : public Backbone {
 public:
  VideoResNet(const std::string& name, BlockKind kind) : Backbone(name, 512) {
    if (kind == BlockKind::kConv2Plus1D) {
      stem_ = nn::Sequential(Conv(3, 45, {1, 7, 7}, {1, 2, 2}, {0, 3, 3}),
                             SyncableBatchNorm3d(45), Relu(),
                             Conv(45, 64, {3, 1, 1}, {1, 1, 1}, {1, 0, 0}),
                             SyncableBatchNorm3d(64), Relu());
    } else {
      stem_ = nn::Sequential(Conv(3, 64, {3, 7, 7}, {1, 2, 2}, {1, 3, 3}),
                             SyncableBatchNorm3d(64), Relu());
    }
    register_module("stem", stem_);
    int64_t in = 64;
    const int64_t planes[] = {64, 128, 256, 512};
    for (int i = 0; i < 4; ++i) {
      const int64_t stride = i == 0 ? 1 : 2;
      layers_[i] = nn::Sequential(BasicBlock(kind, in, planes[i], stride),
                                  BasicBlock(kind, planes[i], planes[i], 1));
      register_module("layer" + std::to_string(i + 1), layers_[i]);
      in = planes[i];
    }
    InitLikeTorchvision(*this);
  }

  torch::Tensor forward(const torch::Tensor& clips) override {
    torch::Tensor x = stem_->forward(clips);
    for (auto& layer : layers_) x = layer->forward(x);
    return x.mean({2, 3, 4});
  }

 private:
  nn::Sequential stem_{nullptr};
  nn::Sequential layers_[4] = {nn::Sequential{nullptr}, nn::Sequential{nullptr},
                               nn::Sequential{nullptr}, nn::Sequential{nullptr}};
};

class Tiny3d : public Backbone {
 public:
  Tiny3d() : Backbone("tiny3d", 256) {
    const int64_t channels[] = {3, 32, 64, 128, 256};
    for (int i = 0; i < 4; ++i) {
      const int64_t t_stride = i == 0 ? 1 : 2;
      features_->push_back(Conv(channels[i], channels[i + 1], {3, 3, 3}, {t_stride, 2, 2}, {1, 1, 1}));
      features_->push_back(SyncableBatchNorm3d(channels[i + 1]));
      features_->push_back(Relu());
    }
    register_module("features", features_);
    InitLikeTorchvision(*this);
  }

  torch::Tensor forward(const torch::Tensor& clips) override {
    return features_->forward(clips).amax({2, 3, 4});
  }

 private:
  nn::Sequential features_;
};

}  // namespace

Backbone::Backbone(std::string backbone_name, int64_t feature_dim)
    : nn::Module(backbone_name), backbone_name_(std::move(backbone_name)), feature_dim_(feature_dim) {}

const std::vector<std::string>& BackboneNames() {
  static const std::vector<std::string> names = {"r2plus1d_18", "r3d_18", "tiny3d"};
  return names;
}

namespace {
[[noreturn]] void ThrowUnknown(const std::string& name) {
  std::ostringstream message;
  message << "model.backbone: \"" << name << "\" is not one of ";
  const auto& names = BackboneNames();
  for (size_t i = 0; i < names.size(); ++i) message << (i ? ", " : "") << names[i];
  throw Error(ErrorCode::kInvalidArgument, message.str());
}
}  // namespace

int64_t BackboneFeatureDim(const std::string& name) {
  if (name == "r2plus1d_18" || name == "r3d_18") return 512;
  if (name == "tiny3d") return 256;
  ThrowUnknown(name);
}

std::shared_ptr<Backbone> MakeBackbone(const std::string& name) {
  if (name == "r2plus1d_18") return std::make_shared<VideoResNet>(name, BlockKind::kConv2Plus1D);
  if (name == "r3d_18") return std::make_shared<VideoResNet>(name, BlockKind::kConv3DSimple);
  if (name == "tiny3d") return std::make_shared<Tiny3d>();
  ThrowUnknown(name);
}

}  // namespace tecl::worker::core
