// TeclModel: the backbone F and the method's heads (docs/core.md, METHOD.md "Network").
//
//   psi         [h_A, h_B] (2D) -> psi_hidden -> psi_dim      transformation vector z
//   speed       h (D) -> head_hidden -> num_speeds             playback speed logits
//   direction   h (D) -> head_hidden -> 2                      forward / backward logits
//   order       [h_A, h_B] (2D) -> head_hidden -> 3            BEFORE / AFTER / OVERLAP logits
//   projection  h (D) -> projection_hidden -> projection_dim   instance projection g
//
// Every head is Linear(no bias) -> BatchNorm1d -> ReLU -> Linear. A head is constructed only when
// its HeadSet flag is set (the trainer sets a flag iff the loss weight of its term is > 0), so an
// absent head has no parameters, costs no compute and gets no optimiser state.
//
// Parameter names (stable, registration order): "backbone.<torchvision name>", then "psi.*",
// "speed.*", "direction.*", "order.*", "projection.*" for the heads that exist.
//
// Thread-safety: one thread at a time (LibTorch modules). Ownership: TeclModel is LibTorch's
// shared module holder.
#ifndef TECL_SERVICES_WORKER_MODEL_MODEL_H_
#define TECL_SERVICES_WORKER_MODEL_MODEL_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "services/worker/model/backbone.h"

namespace tecl::worker::core {

// Mirrors tecl.v1.ModelSpec (plus the number of speed classes from SamplingSpec.speeds).
struct ModelOptions {
  // r2plus1d_18 | r3d_18 (D = 512) | tiny3d (D = 256). ModelSpec.backbone.
  std::string backbone = "r2plus1d_18";
  // Hidden width of the speed, direction and order heads. ModelSpec.head_hidden.
  int64_t head_hidden = 512;
  // Hidden width of psi. ModelSpec.psi_hidden.
  int64_t psi_hidden = 512;
  // Size of the transformation vector z. ModelSpec.psi_dim.
  int64_t psi_dim = 128;
  // Hidden width of the instance projection g. ModelSpec.projection_hidden.
  int64_t projection_hidden = 512;
  // Output size of g. ModelSpec.projection_dim.
  int64_t projection_dim = 128;
  // Speed classes: the number of SamplingSpec.speeds.
  int64_t num_speeds = 4;

  // Throws Error(kInvalidArgument) naming the first bad field.
  void Validate() const;
};

// Which heads exist. HeadsFor(LossWeights) in loss/objective.h derives it from the loss weights.
struct HeadSet {
  bool psi = true;
  bool speed = true;
  bool direction = true;
  bool order = true;
  bool projection = true;

  bool operator==(const HeadSet& other) const;
  // "psi,speed,direction,order,projection" (only those present), for messages.
  std::string ToString() const;
};

class TeclModelImpl : public torch::nn::Module {
 public:
  // Builds on the CPU (initialisation draws from LibTorch's global generator). Throws
  // Error(kInvalidArgument) for invalid options.
  TeclModelImpl(const ModelOptions& options, const HeadSet& heads);

  // Backbone features h = F(clips): float (N, 3, T, H, W) -> (N, D).
  torch::Tensor forward(const torch::Tensor& clips);

  const ModelOptions& options() const { return options_; }
  const HeadSet& heads() const { return heads_; }
  int64_t feature_dim() const { return backbone_->feature_dim(); }

  Backbone& backbone() { return *backbone_; }
  const std::shared_ptr<Backbone>& backbone_ptr() const { return backbone_; }
  // The heads; an absent head is an empty holder (`if (model->psi())` is false).
  torch::nn::Sequential& psi() { return psi_; }
  torch::nn::Sequential& speed() { return speed_; }
  torch::nn::Sequential& direction() { return direction_; }
  torch::nn::Sequential& order() { return order_; }
  torch::nn::Sequential& projection() { return projection_; }

 private:
  ModelOptions options_;
  HeadSet heads_;
  std::shared_ptr<Backbone> backbone_;
  torch::nn::Sequential psi_{nullptr};
  torch::nn::Sequential speed_{nullptr};
  torch::nn::Sequential direction_{nullptr};
  torch::nn::Sequential order_{nullptr};
  torch::nn::Sequential projection_{nullptr};
};
TORCH_MODULE(TeclModel);

// Linear(in, hidden, no bias) -> BatchNorm1d(hidden) -> ReLU -> Linear(hidden, out).
torch::nn::Sequential MakeMlpHead(int64_t in, int64_t hidden, int64_t out);

// The backbone's input from the clips as they travel: uint8 (N, T, H, W, 3) RGB on any device ->
// float (N, 3, T, H, W) on `device`, scaled to [0, 1] and normalised with the ImageNet mean
// (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). The uint8 tensor is moved first (4x
// fewer bytes to the GPU). `memory_format` is the result's layout: Contiguous (NCDHW) or
// ChannelsLast3d (NDHWC, the clips' own order). Throws Error(kInvalidArgument) for another dtype or
// shape.
torch::Tensor NormalizeClips(const torch::Tensor& clips, const c10::Device& device,
                             at::MemoryFormat memory_format = at::MemoryFormat::Contiguous);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_MODEL_MODEL_H_
