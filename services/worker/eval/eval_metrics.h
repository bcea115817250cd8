// Evaluation of frozen video features: nearest-neighbour retrieval recall@k and a linear probe.
//
// Features are rows of a float tensor (N, D), one per video (the trainer averages the features of
// n clips per video before calling these). Labels are int64 (N). LibTorch only; pure functions,
// thread-safe. Invalid input (shape mismatch, empty sets, k < 1) throws std::invalid_argument with
// a message naming the argument.
#ifndef TECL_SERVICES_WORKER_EVAL_EVAL_METRICS_H_
#define TECL_SERVICES_WORKER_EVAL_EVAL_METRICS_H_

#include <ATen/Tensor.h>

#include <cstdint>
#include <vector>

namespace tecl::worker::eval {

// Recall at each k: the fraction of queries for which at least one of the k gallery rows most
// similar by cosine similarity has the query's label. Rows are L2-normalised here (zero rows
// stay zero). k larger than the gallery is clamped to its size.
std::vector<double> RetrievalRecall(const at::Tensor& query_features, const at::Tensor& query_labels,
                                    const at::Tensor& gallery_features,
                                    const at::Tensor& gallery_labels, const std::vector<int>& ks);

struct LinearProbeOptions {
  int epochs = 100;            // Full passes over the training features.
  double learning_rate = 0.1;  // Adam.
  double weight_decay = 1e-4;
  int batch_size = 256;
  uint64_t seed = 0;           // Initialisation and shuffling.
};

struct LinearProbeResult {
  double train_top1 = 0;
  double test_top1 = 0;
};

// Trains a linear softmax classifier on standardised train features (mean/std of the train set
// applied to both sets) and reports top-1 accuracy. Labels must lie in [0, num_classes).
LinearProbeResult LinearProbe(const at::Tensor& train_features, const at::Tensor& train_labels,
                              const at::Tensor& test_features, const at::Tensor& test_labels,
                              int num_classes, const LinearProbeOptions& options);

}  // namespace tecl::worker::eval

#endif  // TECL_SERVICES_WORKER_EVAL_EVAL_METRICS_H_
