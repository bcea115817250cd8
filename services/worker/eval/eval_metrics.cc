#include "services/worker/eval/eval_metrics.h"

#include <torch/torch.h>

#include <algorithm>
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
  if (options.epochs < 1 || options.batch_size < 1 || options.learning_rate <= 0) {
    throw std::invalid_argument("linear probe: epochs, batch_size and learning_rate must be > 0");
  }

  torch::manual_seed(options.seed);
  const auto x_train_raw = train_features.to(torch::kFloat).detach();
  const auto mean = x_train_raw.mean(0, /*keepdim=*/true);
  const auto std = x_train_raw.std(0, /*unbiased=*/false, /*keepdim=*/true).clamp_min(1e-6);
  const auto x_train = (x_train_raw - mean) / std;
  const auto x_test = (test_features.to(torch::kFloat).detach() - mean) / std;
  const auto y_train = train_labels.to(torch::kLong);
  const auto y_test = test_labels.to(torch::kLong);

  torch::nn::Linear classifier(x_train.size(1), num_classes);
  torch::optim::Adam optimizer(
      classifier->parameters(),
      torch::optim::AdamOptions(options.learning_rate).weight_decay(options.weight_decay));
  const int64_t n = x_train.size(0);
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    const auto order = torch::randperm(n, torch::kLong);
    for (int64_t begin = 0; begin < n; begin += options.batch_size) {
      const auto index = order.slice(0, begin, std::min<int64_t>(begin + options.batch_size, n));
      optimizer.zero_grad();
      const auto loss = torch::nn::functional::cross_entropy(
          classifier->forward(x_train.index_select(0, index)), y_train.index_select(0, index));
      loss.backward();
      optimizer.step();
    }
  }
  torch::NoGradGuard no_grad;
  LinearProbeResult result;
  result.train_top1 =
      classifier->forward(x_train).argmax(1).eq(y_train).to(torch::kDouble).mean().item<double>();
  result.test_top1 =
      classifier->forward(x_test).argmax(1).eq(y_test).to(torch::kDouble).mean().item<double>();
  return result;
}

}  // namespace tecl::worker::eval
