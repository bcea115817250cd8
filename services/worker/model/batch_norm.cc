#include "services/worker/model/batch_norm.h"

#include <torch/torch.h>

#include <sstream>
#include <stdexcept>
#include <string>

namespace tecl::worker::core {
namespace {

constexpr double kMomentum = 0.1;  // BatchNorm's defaults.
constexpr double kEps = 1e-5;

}  // namespace

SyncableBatchNormImpl::SyncableBatchNormImpl(int64_t num_features, int spatial_dims)
    : num_features_(num_features), spatial_dims_(spatial_dims) {
  if (num_features < 1 || (spatial_dims != 1 && spatial_dims != 3)) {
    throw std::invalid_argument("SyncableBatchNorm: " + std::to_string(num_features) +
                                " features, " + std::to_string(spatial_dims) +
                                " spatial dims; needs >= 1 features and 1 or 3 dims");
  }
  reset();
}

void SyncableBatchNormImpl::reset() {
  weight = register_parameter("weight", torch::ones({num_features_}));
  bias = register_parameter("bias", torch::zeros({num_features_}));
  running_mean = register_buffer("running_mean", torch::zeros({num_features_}));
  running_var = register_buffer("running_var", torch::ones({num_features_}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
}

torch::Tensor SyncableBatchNormImpl::forward(const torch::Tensor& x) {
  const bool dims_ok = spatial_dims_ == 1 ? (x.dim() == 2 || x.dim() == 3) : x.dim() == 5;
  if (!dims_ok || x.size(1) != num_features_) {
    std::ostringstream message;
    message << "BatchNorm" << spatial_dims_ << "d(" << num_features_ << "): input of shape "
            << x.sizes() << " does not fit; expected "
            << (spatial_dims_ == 1 ? "(N, C) or (N, C, L)" : "(N, C, T, H, W)") << " with C = "
            << num_features_;
    throw std::invalid_argument(message.str());
  }
  if (!is_training()) {
    return torch::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false,
                             kMomentum, kEps, /*cudnn_enabled=*/true);
  }
  {
    torch::NoGradGuard no_grad;
    num_batches_tracked += 1;
  }
  if (sync_ == nullptr) {
    return torch::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/true,
                             kMomentum, kEps, /*cudnn_enabled=*/true);
  }
  return (*sync_)(x, weight, bias, running_mean, running_var, kMomentum, kEps);
}

void SyncableBatchNormImpl::pretty_print(std::ostream& stream) const {
  stream << "BatchNorm" << spatial_dims_ << "d(" << num_features_ << ", eps=" << kEps
         << ", momentum=" << kMomentum << (sync_ != nullptr ? ", synced" : "") << ")";
}

int SetBatchNormSync(torch::nn::Module& module, std::shared_ptr<const BatchNormSync> sync) {
  int count = 0;
  for (const auto& child : module.modules(/*include_self=*/true)) {
    if (auto* norm = dynamic_cast<SyncableNorm*>(child.get())) {
      norm->set_sync(sync);
      ++count;
    }
  }
  return count;
}

}  // namespace tecl::worker::core
