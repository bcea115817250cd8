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

// (N, C, *) -> (C, N * rest) sums per channel.
torch::Tensor ChannelSum(const torch::Tensor& t) {
  return t.transpose(0, 1).reshape({t.size(1), -1}).sum(1);
}

// A (C) tensor shaped to broadcast against (N, C, *).
torch::Tensor PerChannel(const torch::Tensor& c, int64_t dim) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[1] = c.size(0);
  return c.reshape(shape);
}

class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               torch::Tensor running_mean, torch::Tensor running_var,
                               double momentum, double eps, int64_t communicator_address) {
    Communicator* communicator = reinterpret_cast<Communicator*>(communicator_address);
    const int64_t channels = x.size(1);
    const int64_t local_count = x.numel() / channels;
    const torch::Tensor xf = x.to(torch::kFloat);
    torch::Tensor stats =
        torch::cat({ChannelSum(xf), ChannelSum(xf * xf),
                    torch::full({1}, static_cast<double>(local_count), xf.options())});
    stats = AllReduceSum(stats, *communicator);
    const double count = stats[2 * channels].item<double>();
    const torch::Tensor mean = stats.narrow(0, 0, channels) / count;
    const torch::Tensor var = (stats.narrow(0, channels, channels) / count - mean * mean).clamp_min(0);
    const torch::Tensor invstd = (var + eps).rsqrt();
    if (running_mean.defined() && running_var.defined()) {
      torch::NoGradGuard no_grad;
      const double unbiased = count > 1 ? count / (count - 1) : 1.0;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype()) * momentum);
      running_var.mul_(1 - momentum).add_((var * unbiased).to(running_var.dtype()) * momentum);
    }
    const int64_t dim = x.dim();
    torch::Tensor x_hat = (xf - PerChannel(mean, dim)) * PerChannel(invstd, dim);
    torch::Tensor y = x_hat;
    if (weight.defined()) y = y * PerChannel(weight.to(torch::kFloat), dim);
    if (bias.defined()) y = y + PerChannel(bias.to(torch::kFloat), dim);
    ctx->save_for_backward({x_hat, invstd, weight});
    ctx->saved_data["count"] = count;
    ctx->saved_data["has_bias"] = bias.defined();
    ctx->saved_data["communicator"] = communicator_address;
    return y.to(x.scalar_type());
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x_hat = saved[0];
    const torch::Tensor& invstd = saved[1];
    const torch::Tensor& weight = saved[2];
    const double count = ctx->saved_data["count"].toDouble();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    Communicator* communicator =
        reinterpret_cast<Communicator*>(ctx->saved_data["communicator"].toInt());
    const torch::Tensor dy = grad_outputs[0].to(torch::kFloat);
    const int64_t channels = x_hat.size(1);
    const int64_t dim = x_hat.dim();
    const torch::Tensor sum_dy = ChannelSum(dy);
    const torch::Tensor sum_dy_xhat = ChannelSum(dy * x_hat);
    const torch::Tensor global = AllReduceSum(torch::cat({sum_dy, sum_dy_xhat}), *communicator);
    const torch::Tensor g_sum_dy = global.narrow(0, 0, channels);
    const torch::Tensor g_sum_dy_xhat = global.narrow(0, channels, channels);
    torch::Tensor scale = invstd;
    if (weight.defined()) scale = scale * weight.to(torch::kFloat);
    const torch::Tensor dx =
        PerChannel(scale, dim) * (dy - PerChannel(g_sum_dy / count, dim) -
                                  x_hat * PerChannel(g_sum_dy_xhat / count, dim));
    torch::Tensor d_weight, d_bias;
    if (weight.defined()) d_weight = sum_dy_xhat.to(weight.scalar_type());
    if (has_bias) d_bias = sum_dy.to(weight.defined() ? weight.scalar_type() : dy.scalar_type());
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
