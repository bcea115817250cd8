// BatchNorm layers whose training-mode normalisation can be handed to a synchroniser, so that a
// data-parallel job normalises with the statistics of every rank's batch (SyncBN,
// docs/global-batch.md) while the model library knows nothing of communicators.
//
// SyncableBatchNorm is BatchNorm (the parameters and buffers of torch::nn::BatchNorm1d / 3d under
// the same names: weight, bias, running_mean, running_var, num_batches_tracked, so checkpoints and
// exports are unchanged; momentum 0.1, eps 1e-5, affine, tracking running statistics) whose
// forward, in training mode and while a BatchNormSync is set, counts the batch in
// num_batches_tracked and returns sync(x, weight, bias, running_mean, running_var, momentum, eps)
// instead of batch_norm over the local batch. In evaluation mode, or without a sync, it is plain
// BatchNorm. SyncableBatchNorm1d takes (N, C) or (N, C, L), SyncableBatchNorm3d (N, C, T, H, W).
//
// SetBatchNormSync(module, sync) sets (or, with nullptr, clears) the sync of every syncable layer
// under `module`. The sync must stay valid while it is set and while an autograd graph built with
// it is alive (the trainer builds and frees the graph within one step).
//
// Thread-safety: as LibTorch modules (one thread at a time).
#ifndef TECL_SERVICES_WORKER_MODEL_BATCH_NORM_H_
#define TECL_SERVICES_WORKER_MODEL_BATCH_NORM_H_

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <memory>
#include <ostream>

namespace tecl::worker::core {

// Training-mode BatchNorm of x (N, C, *) over a batch wider than this process's: returns y and
// updates running_mean / running_var in place (when defined) with the given momentum.
using BatchNormSync = std::function<torch::Tensor(
    const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
    torch::Tensor running_mean, torch::Tensor running_var, double momentum, double eps)>;

// The part of a syncable layer that SetBatchNormSync sees.
class SyncableNorm {
 public:
  virtual ~SyncableNorm() = default;
  void set_sync(std::shared_ptr<const BatchNormSync> sync) { sync_ = std::move(sync); }
  bool synced() const { return sync_ != nullptr; }

 protected:
  std::shared_ptr<const BatchNormSync> sync_;
};

class SyncableBatchNormImpl : public torch::nn::Cloneable<SyncableBatchNormImpl>,
                              public SyncableNorm {
 public:
  // `spatial_dims`: 1 for BatchNorm1d, 3 for BatchNorm3d. Throws std::invalid_argument for
  // num_features < 1 or another spatial_dims.
  SyncableBatchNormImpl(int64_t num_features, int spatial_dims);

  torch::Tensor forward(const torch::Tensor& x);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  int64_t num_features() const { return num_features_; }

  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  int64_t num_features_;
  int spatial_dims_;
};
TORCH_MODULE(SyncableBatchNorm);

inline SyncableBatchNorm SyncableBatchNorm1d(int64_t num_features) {
  return SyncableBatchNorm(num_features, 1);
}
inline SyncableBatchNorm SyncableBatchNorm3d(int64_t num_features) {
  return SyncableBatchNorm(num_features, 3);
}

// Sets `sync` on every SyncableNorm in `module` (itself included); nullptr clears. Returns how
// many layers it set.
int SetBatchNormSync(torch::nn::Module& module, std::shared_ptr<const BatchNormSync> sync);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_MODEL_BATCH_NORM_H_
