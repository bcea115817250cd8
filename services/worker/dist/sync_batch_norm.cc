#include "services/worker/dist/sync_batch_norm.h"

#include <stdexcept>
#include <utility>

namespace tecl::worker::dist {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The element-wise mean over ranks, times the world size: the sum over ranks.
torch::Tensor AllReduceSum(const torch::Tensor& local, Communicator& communicator) {
  torch::Tensor buffer = local.contiguous().clone();
  communicator.AllReduceAverage(buffer)->Wait(communicator.timeout());
  return buffer * static_cast<double>(communicator.world_size());
}

// Every dimension but the channels' (1).
std::vector<int64_t> ReducedDims(const torch::Tensor& x) {
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

// A (C) tensor shaped to broadcast against (N, C, *).
torch::Tensor PerChannel(const torch::Tensor& c, int64_t dim) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[1] = c.size(0);
  return c.reshape(shape);
}

// The heavy passes over the activations are LibTorch's fused kernels: var_mean for the local
// statistics, batch_norm in evaluation mode with the global statistics for the output, and
// native_batch_norm_backward in evaluation mode for dy * w * invstd, sum dy and sum dy * x_hat.
// Only the correction of the input gradient by the global sums is elementwise here.
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               torch::Tensor running_mean, torch::Tensor running_var,
                               double momentum, double eps, int64_t communicator_address) {
    Communicator* communicator = reinterpret_cast<Communicator*>(communicator_address);
    const int64_t channels = x.size(1);
    const double local_count = static_cast<double>(x.numel() / channels);
    const torch::Tensor xf = x.to(torch::kFloat);
    auto [local_var, local_mean] = torch::var_mean(xf, ReducedDims(xf), /*unbiased=*/false);
    torch::Tensor stats = torch::cat({local_mean * local_count,
                                      (local_var + local_mean * local_mean) * local_count,
                                      torch::full({1}, local_count, xf.options())});
    stats = AllReduceSum(stats, *communicator);
    // The global count stays on the device (no host synchronisation per layer on a GPU).
    const torch::Tensor count = stats.narrow(0, 2 * channels, 1);
    const torch::Tensor mean = stats.narrow(0, 0, channels) / count;
    const torch::Tensor var =
        (stats.narrow(0, channels, channels) / count - mean * mean).clamp_min(0);
    if (running_mean.defined() && running_var.defined()) {
      torch::NoGradGuard no_grad;
      // n / (n - 1), or 1 for a single value.
      const torch::Tensor unbiased =
          torch::where(count > 1, count / (count - 1).clamp_min(1), torch::ones_like(count));
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype()) * momentum);
      running_var.mul_(1 - momentum).add_((var * unbiased).to(running_var.dtype()) * momentum);
    }
    // The layer's weight, or ones: native_batch_norm_backward needs one for sum dy * x_hat.
    const torch::Tensor w = weight.defined() ? weight.to(torch::kFloat)
                                             : torch::ones({channels}, xf.options());
    const torch::Tensor b = bias.defined() ? bias.to(torch::kFloat) : torch::Tensor();
    const torch::Tensor y = torch::batch_norm(xf, w, b, mean, var, /*training=*/false,
                                              /*momentum=*/0.0, eps, /*cudnn_enabled=*/true);
    ctx->save_for_backward({xf, w, mean, var, count});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["has_weight"] = weight.defined();
    ctx->saved_data["has_bias"] = bias.defined();
    ctx->saved_data["communicator"] = communicator_address;
    return y.to(x.scalar_type());
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& w = saved[1];
    const torch::Tensor& mean = saved[2];
    const torch::Tensor& var = saved[3];
    const torch::Tensor& count = saved[4];
    const double eps = ctx->saved_data["eps"].toDouble();
    Communicator* communicator =
        reinterpret_cast<Communicator*>(ctx->saved_data["communicator"].toInt());
    const torch::Tensor dy = grad_outputs[0].to(torch::kFloat);
    const int64_t channels = x.size(1);
    const int64_t dim = x.dim();
    // Evaluation-mode backward with the global statistics: dy * w * invstd, sum dy * x_hat and
    // sum dy over this rank's batch.
    auto [dx, sum_dy_xhat, sum_dy] = torch::native_batch_norm_backward(
        dy, x, w, mean, var, /*save_mean=*/{}, /*save_invstd=*/{}, /*train=*/false, eps,
        {true, true, true});
    const torch::Tensor global = AllReduceSum(torch::cat({sum_dy, sum_dy_xhat}), *communicator);
    const torch::Tensor invstd = (var + eps).rsqrt();
    const torch::Tensor scale = w * invstd;
    // dx = w * invstd * (dy - sum dy / N - x_hat * sum dy*x_hat / N), over every rank's sums.
    const torch::Tensor shift = PerChannel(scale * global.narrow(0, 0, channels) / count, dim);
    const torch::Tensor slope =
        PerChannel(scale * invstd * global.narrow(0, channels, channels) / count, dim);
    torch::Tensor correction = x - PerChannel(mean, dim);
    correction.mul_(slope).add_(shift);
    dx.sub_(correction);
    torch::Tensor d_weight, d_bias;
    if (ctx->saved_data["has_weight"].toBool()) d_weight = sum_dy_xhat;
    if (ctx->saved_data["has_bias"].toBool()) d_bias = sum_dy;
    return {dx.to(grad_outputs[0].scalar_type()), d_weight, d_bias, torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor SyncBatchNormTrain(const torch::Tensor& x, const torch::Tensor& weight,
                                 const torch::Tensor& bias, torch::Tensor running_mean,
                                 torch::Tensor running_var, double momentum, double eps,
                                 Communicator& communicator) {
  if (x.dim() < 2 || x.numel() == 0 || !x.is_floating_point()) {
    throw std::invalid_argument("sync batch norm: the input must be (N, C, *) floating point");
  }
  return SyncBatchNormFunction::apply(x, weight, bias, std::move(running_mean),
                                      std::move(running_var), momentum, eps,
                                      reinterpret_cast<int64_t>(&communicator));
}

}  // namespace tecl::worker::dist
