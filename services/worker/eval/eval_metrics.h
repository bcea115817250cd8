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
  // Full-batch L-BFGS iterations at most (EvalSpec.probe_epochs).
  int max_iterations = 500;
  // L-BFGS's first step; a strong-Wolfe line search picks each step (EvalSpec.probe_lr).
  double learning_rate = 1.0;
  // L2 penalty weight_decay / 2 * ||W||^2 on the weights (not the bias) (EvalSpec.probe_weight_decay).
  double weight_decay = 1e-4;
  // Converged once an iteration lowers the training objective by less than tolerance * max(1,
  // objective).
  double tolerance = 1e-7;
};

struct LinearProbeResult {
  double train_top1 = 0;
  double test_top1 = 0;
  int iterations = 0;      // L-BFGS iterations run.
  bool converged = false;  // Stopped by the tolerance, not by max_iterations.
  double train_loss = 0;   // The final training objective.
};

// Trains a linear softmax classifier (multinomial logistic regression, a convex problem) on
// standardised train features (mean/std of the train set applied to both sets) to convergence with
// full-batch L-BFGS from zero weights, so the result depends on the features alone (not on a
// seed, a batch order or an unfinished optimisation), and reports top-1 accuracy. Labels must lie
// in [0, num_classes).
LinearProbeResult LinearProbe(const at::Tensor& train_features, const at::Tensor& train_labels,
                              const at::Tensor& test_features, const at::Tensor& test_labels,
                              int num_classes, const LinearProbeOptions& options);

}  // namespace tecl::worker::eval

#endif  // TECL_SERVICES_WORKER_EVAL_EVAL_METRICS_H_
