#include "services/worker/model/model.h"

#include <torch/torch.h>

#include <sstream>
#include <vector>

#include "services/worker/model/batch_norm.h"
#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

void CheckPositive(int64_t value, const char* field) {
  if (value < 1) {
    std::ostringstream message;
    message << "model." << field << ": " << value << " must be >= 1";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
}

}  // namespace

void ModelOptions::Validate() const {
  BackboneFeatureDim(backbone);  // Throws for an unknown name.
  CheckPositive(head_hidden, "head_hidden");
  CheckPositive(psi_hidden, "psi_hidden");
  CheckPositive(psi_dim, "psi_dim");
  CheckPositive(projection_hidden, "projection_hidden");
  CheckPositive(projection_dim, "projection_dim");
  if (num_speeds < 1) {
    std::ostringstream message;
    message << "sampling.speeds: " << num_speeds << " speeds; at least one is needed";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
}

bool HeadSet::operator==(const HeadSet& other) const {
  return psi == other.psi && speed == other.speed && direction == other.direction &&
         order == other.order && projection == other.projection;
}

std::string HeadSet::ToString() const {
  std::string out;
  const auto add = [&out](bool present, const char* name) {
    if (!present) return;
    if (!out.empty()) out += ",";
    out += name;
  };
  add(psi, "psi");
  add(speed, "speed");
  add(direction, "direction");
  add(order, "order");
  add(projection, "projection");
  return out.empty() ? "none" : out;
}

torch::nn::Sequential MakeMlpHead(int64_t in, int64_t hidden, int64_t out) {
  namespace nn = torch::nn;
  return nn::Sequential(nn::Linear(nn::LinearOptions(in, hidden).bias(false)),
                        SyncableBatchNorm1d(hidden), nn::ReLU(nn::ReLUOptions().inplace(true)),
                        nn::Linear(hidden, out));
}

TeclModelImpl::TeclModelImpl(const ModelOptions& options, const HeadSet& heads)
    : options_(options), heads_(heads) {
  options_.Validate();
  backbone_ = register_module("backbone", MakeBackbone(options_.backbone));
  const int64_t d = backbone_->feature_dim();
  if (heads_.psi) {
    psi_ = register_module("psi", MakeMlpHead(2 * d, options_.psi_hidden, options_.psi_dim));
  }
  if (heads_.speed) {
    speed_ = register_module("speed", MakeMlpHead(d, options_.head_hidden, options_.num_speeds));
  }
  if (heads_.direction) {
    direction_ = register_module("direction", MakeMlpHead(d, options_.head_hidden, 2));
  }
  if (heads_.order) {
    order_ = register_module("order", MakeMlpHead(2 * d, options_.head_hidden, 3));
  }
  if (heads_.projection) {
    projection_ = register_module(
        "projection", MakeMlpHead(d, options_.projection_hidden, options_.projection_dim));
  }
}

torch::Tensor NormalizeClips(const torch::Tensor& clips, const c10::Device& device,
                             at::MemoryFormat memory_format) {
  if (!clips.defined() || clips.scalar_type() != torch::kByte || clips.dim() != 5 ||
      clips.size(4) != 3) {
    std::ostringstream message;
    message << "clips must be uint8 (N, T, H, W, 3)";
    if (clips.defined()) message << ", got " << clips.scalar_type() << " " << clips.sizes();
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
  // (x / 255 - mean) / std = x * scale - shift, per channel.
  constexpr double kMean[3] = {0.485, 0.456, 0.406};
  constexpr double kStd[3] = {0.229, 0.224, 0.225};
  std::vector<float> scale(3), shift(3);
  for (int c = 0; c < 3; ++c) {
    scale[c] = static_cast<float>(1.0 / (255.0 * kStd[c]));
    shift[c] = static_cast<float>(kMean[c] / kStd[c]);
  }
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const torch::Tensor scale_t = torch::tensor(scale).view({1, 3, 1, 1, 1}).to(options);
  const torch::Tensor shift_t = torch::tensor(shift).view({1, 3, 1, 1, 1}).to(options);
  // (N, T, H, W, C) permuted to (N, C, T, H, W) is already channels-last: that layout costs no copy.
  torch::Tensor x =
      clips.to(device, /*non_blocking=*/true).permute({0, 4, 1, 2, 3}).contiguous(memory_format);
  return x.to(torch::kFloat).mul_(scale_t).sub_(shift_t);
}

torch::Tensor TeclModelImpl::forward(const torch::Tensor& clips) { return backbone_->forward(clips); }

}  // namespace tecl::worker::core
