#include "services/worker/eval/eval_metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace tecl::worker::eval {
namespace {

void CheckFeatures(const at::Tensor& features, const at::Tensor& labels, const char* name) {
  if (!features.defined() || features.dim() != 2 || features.size(0) == 0) {
    std::ostringstream message;
    message << name << " features must be a non-empty (N, D) tensor";
    throw std::invalid_argument(message.str());
  }
  if (!labels.defined() || labels.dim() != 1 || labels.size(0) != features.size(0)) {
    std::ostringstream message;
    message << name << " labels must be (N) with N = " << features.size(0) << " rows";
    throw std::invalid_argument(message.str());
  }
}

}  // namespace

std::vector<double> RetrievalRecall(const at::Tensor& query_features, const at::Tensor& query_labels,
                                    const at::Tensor& gallery_features,
                                    const at::Tensor& gallery_labels, const std::vector<int>& ks) {
  torch::NoGradGuard no_grad;
  CheckFeatures(query_features, query_labels, "query");
  CheckFeatures(gallery_features, gallery_labels, "gallery");
  if (query_features.size(1) != gallery_features.size(1)) {
    throw std::invalid_argument("query and gallery features must have the same dimension");
  }
  for (int k : ks) {
    if (k < 1) throw std::invalid_argument("recall k must be >= 1");
  }
  if (ks.empty()) return {};
  const auto q = torch::nn::functional::normalize(
      query_features.to(torch::kFloat), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto g = torch::nn::functional::normalize(
      gallery_features.to(torch::kFloat), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const int64_t gallery_size = g.size(0);
  const int64_t max_k = std::min<int64_t>(*std::max_element(ks.begin(), ks.end()), gallery_size);
  const auto similarity = torch::matmul(q, g.t());                           // (Q, G)
  const auto top = std::get<1>(similarity.topk(max_k, /*dim=*/1, /*largest=*/true, /*sorted=*/true));
  const auto hits = gallery_labels.to(torch::kLong).index_select(0, top.flatten())
                        .view({q.size(0), max_k})
                        .eq(query_labels.to(torch::kLong).unsqueeze(1));     // (Q, max_k)
  // First-hit-within-k: cumulative "any" along the ranking.
  const auto any_hit = hits.to(torch::kInt).cumsum(1).gt(0).to(torch::kDouble);
  std::vector<double> recalls;
  for (int k : ks) {
    const int64_t column = std::min<int64_t>(k, max_k) - 1;
    recalls.push_back(any_hit.select(1, column).mean().item<double>());
  }
  return recalls;
}

LinearProbeResult LinearProbe(const at::Tensor& train_features, const at::Tensor& train_labels,
                              const at::Tensor& test_features, const at::Tensor& test_labels,
                              int num_classes, const LinearProbeOptions& options) {
  CheckFeatures(train_features, train_labels, "train");
  CheckFeatures(test_features, test_labels, "test");
  if (train_features.size(1) != test_features.size(1)) {
    throw std::invalid_argument("train and test features must have the same dimension");
  }
  if (num_classes < 2) throw std::invalid_argument("linear probe needs at least 2 classes");
  const auto check_labels = [num_classes](const at::Tensor& labels, const char* name) {
    if (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= num_classes) {
      std::ostringstream message;
      message << name << " labels must lie in [0, " << num_classes << ")";
      throw std::invalid_argument(message.str());
    }
  };
  check_labels(train_labels, "train");
  check_labels(test_labels, "test");
  if (options.max_iterations < 1 || !(options.learning_rate > 0) ||
      !(options.weight_decay >= 0) || !(options.tolerance >= 0)) {
    throw std::invalid_argument(
        "linear probe: max_iterations and learning_rate must be > 0, weight_decay and tolerance "
        ">= 0");
  }

  const auto x_train_raw = train_features.to(torch::kFloat).detach();
  const auto mean = x_train_raw.mean(0, /*keepdim=*/true);
  const auto std = x_train_raw.std(0, /*unbiased=*/false, /*keepdim=*/true).clamp_min(1e-6);
  const auto x_train = (x_train_raw - mean) / std;
  const auto x_test = (test_features.to(torch::kFloat).detach() - mean) / std;
  const auto y_train = train_labels.to(torch::kLong);
  const auto y_test = test_labels.to(torch::kLong);

  torch::nn::Linear classifier(x_train.size(1), num_classes);
  {
    torch::NoGradGuard no_grad;
    classifier->weight.zero_();
    classifier->bias.zero_();
  }
  torch::optim::LBFGS optimizer(classifier->parameters(),
                                torch::optim::LBFGSOptions(options.learning_rate)
                                    .max_iter(1)
                                    .history_size(20)
                                    .tolerance_grad(0)
                                    .tolerance_change(0)
                                    .line_search_fn("strong_wolfe"));
  const auto objective = [&] {
    return torch::nn::functional::cross_entropy(classifier->forward(x_train), y_train) +
           0.5 * options.weight_decay * classifier->weight.pow(2).sum();
  };
  LinearProbeResult result;
  double previous = objective().item<double>();
  for (int iteration = 0; iteration < options.max_iterations; ++iteration) {
    optimizer.step([&] {
      optimizer.zero_grad();
      torch::Tensor loss = objective();
      loss.backward();
      return loss;
    });
    ++result.iterations;
    double current;
    {
      torch::NoGradGuard no_grad;
      current = objective().item<double>();
    }
    const bool flat = previous - current <= options.tolerance * std::max(1.0, std::abs(current));
    previous = current;
    if (flat) {
      result.converged = true;
      break;
    }
  }
  result.train_loss = previous;
  torch::NoGradGuard no_grad;
  result.train_top1 =
      classifier->forward(x_train).argmax(1).eq(y_train).to(torch::kDouble).mean().item<double>();
  result.test_top1 =
      classifier->forward(x_test).argmax(1).eq(y_test).to(torch::kDouble).mean().item<double>();
  return result;
}

}  // namespace tecl::worker::eval
