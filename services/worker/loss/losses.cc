#include "services/worker/loss/losses.h"

#include <torch/torch.h>

#include <limits>
#include <sstream>

#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

namespace F = torch::nn::functional;

[[noreturn]] void Fail(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

torch::Tensor Normalize(const torch::Tensor& x) {
  return F::normalize(x, F::NormalizeFuncOptions().dim(1));
}

constexpr double kNegativeInfinity = -std::numeric_limits<double>::infinity();

}  // namespace

torch::Tensor EquivarianceLoss(const torch::Tensor& z, const torch::Tensor& labels,
                               double temperature, bool stop_gradient) {
  if (z.dim() != 2 || labels.dim() != 1 || labels.size(0) != z.size(0)) {
    std::ostringstream message;
    message << "equivariance loss: z must be (M, P) and labels (M), got " << z.sizes() << " and "
            << labels.sizes();
    Fail(message.str());
  }
  if (temperature <= 0) Fail("method.equivariance_temperature must be > 0");
  const int64_t m = z.size(0);
  const torch::Tensor anchors = Normalize(z);
  const torch::Tensor targets = stop_gradient ? anchors.detach() : anchors;
  const torch::Tensor logits = anchors.mm(targets.t()).div(temperature);  // (M, M)
  const torch::Tensor same = labels.unsqueeze(1).eq(labels.unsqueeze(0));
  const torch::Tensor self = torch::eye(m, same.options());
  const torch::Tensor positive = same.logical_and(self.logical_not());
  const torch::Tensor positive_count = positive.sum(1);
  // Checked where it costs no device synchronisation (IndexBatch guarantees it for batches).
  if (labels.is_cpu() && positive_count.eq(0).any().item<bool>()) {
    Fail("equivariance loss: an anchor has no positive (every transformation label must occur at "
         "least twice; both videos of a group share theirs)");
  }
  // log(e_p / (e_p + sum_n e_n)) = s_p - logaddexp(s_p, logsumexp_n s_n); an anchor without
  // negatives has logsumexp = -inf and a log-probability of 0.
  const torch::Tensor negative_lse =
      logits.masked_fill(same, kNegativeInfinity).logsumexp(1, /*keepdim=*/true);
  const torch::Tensor log_prob = logits - torch::logaddexp(logits, negative_lse);
  return -(log_prob.masked_fill(positive.logical_not(), 0).sum(1) / positive_count);
}

torch::Tensor InstanceLoss(const torch::Tensor& g, const torch::Tensor& anchor,
                           const torch::Tensor& positive, const torch::Tensor& video,
                           double temperature) {
  if (g.dim() != 2 || anchor.dim() != 1 || positive.dim() != 1 || video.dim() != 1 ||
      positive.size(0) != anchor.size(0) || video.size(0) != g.size(0)) {
    std::ostringstream message;
    message << "instance loss: g must be (N, E), anchor and positive (A), video (N), got "
            << g.sizes() << ", " << anchor.sizes() << ", " << positive.sizes() << " and "
            << video.sizes();
    Fail(message.str());
  }
  if (temperature <= 0) Fail("method.instance_temperature must be > 0");
  const int64_t n = g.size(0);
  // Checked where it costs no device synchronisation (IndexBatch guarantees it for batches).
  if (anchor.is_cpu() && positive.is_cpu() && anchor.numel() > 0 &&
      (anchor.min().item<int64_t>() < 0 || anchor.max().item<int64_t>() >= n ||
       positive.min().item<int64_t>() < 0 || positive.max().item<int64_t>() >= n ||
       positive.eq(anchor).any().item<bool>() ||
       video.index_select(0, anchor).ne(video.index_select(0, positive)).any().item<bool>())) {
    Fail("instance loss: an anchor or positive row is out of range, a positive is its anchor, or "
         "a positive belongs to another video");
  }
  const torch::Tensor q = Normalize(g);
  const torch::Tensor logits = q.index_select(0, anchor).mm(q.t()).div(temperature);  // (A, N)
  // Candidates: the positive and every clip of another video.
  const torch::Tensor other_video =
      video.index_select(0, anchor).unsqueeze(1).ne(video.unsqueeze(0));
  const torch::Tensor is_positive =
      torch::arange(n, positive.options()).unsqueeze(0).eq(positive.unsqueeze(1));
  const torch::Tensor candidate = other_video.logical_or(is_positive);
  const torch::Tensor lse =
      logits.masked_fill(candidate.logical_not(), kNegativeInfinity).logsumexp(1);
  return lse - logits.gather(1, positive.unsqueeze(1)).squeeze(1);
}

}  // namespace tecl::worker::core
