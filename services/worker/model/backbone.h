// Backbones: the video encoder F, clip -> feature h in R^D.
//
//   r2plus1d_18  torchvision's VideoResNet R(2+1)D-18: R2Plus1dStem (conv 1x7x7 to 45 channels,
//                conv 3x1x1 to 64), BasicBlocks with Conv2Plus1D (1x3x3 spatial conv to
//                midplanes = in*out*27 / (in*9 + 3*out), BN, ReLU, 3x1x1 temporal conv),
//                layers [2, 2, 2, 2] of 64/128/256/512 channels, global average pool. D = 512.
//   r3d_18       VideoResNet R3D-18: BasicStem (conv 3x7x7), BasicBlocks with 3x3x3 convolutions
//                (Conv3DSimple), layers [2, 2, 2, 2], global average pool. D = 512.
//   tiny3d       the CPU preset: four conv3d(3x3x3)-BN-ReLU blocks 3->32->64->128->256 (strides
//                1x2x2 then 2x2x2), global MAX pool. D = 256. (On small synthetic moving objects
//                average pooling learned motion about half as fast as max pooling.)
//
// Parameter names follow torchvision ("stem.0.weight", "layer2.0.conv1.0.0.weight",
// "layer2.0.downsample.0.weight", ...), so torchvision state dicts map one to one. Convolutions are
// initialised as torchvision does (Kaiming normal, fan_out, ReLU gain), BatchNorm to (1, 0).
//
// A backbone takes float clips (N, C=3, T, H, W) on its device and returns (N, D).
// Thread-safety: a module is used by one thread at a time (LibTorch modules are not thread-safe).
// Ownership: MakeBackbone returns a shared_ptr (LibTorch's module ownership).
#ifndef TECL_SERVICES_WORKER_MODEL_BACKBONE_H_
#define TECL_SERVICES_WORKER_MODEL_BACKBONE_H_

#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tecl::worker::core {

class Backbone : public torch::nn::Module {
 public:
  // clips: float (N, 3, T, H, W). Returns (N, feature_dim()).
  virtual torch::Tensor forward(const torch::Tensor& clips) = 0;

  const std::string& backbone_name() const { return backbone_name_; }
  int64_t feature_dim() const { return feature_dim_; }

 protected:
  Backbone(std::string backbone_name, int64_t feature_dim);

 private:
  std::string backbone_name_;
  int64_t feature_dim_;
};

// The names MakeBackbone accepts, in the order error messages list them.
const std::vector<std::string>& BackboneNames();

// Feature size D of a backbone. Throws Error(kInvalidArgument) for an unknown name.
int64_t BackboneFeatureDim(const std::string& name);

// Builds a freshly initialised backbone on the CPU (initialisation draws from LibTorch's global
// generator; move it with ->to(device)). Throws Error(kInvalidArgument) naming the accepted
// names for an unknown name.
std::shared_ptr<Backbone> MakeBackbone(const std::string& name);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_MODEL_BACKBONE_H_
