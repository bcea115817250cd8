// The training objective: the five loss terms of the method on one batch, their weighted total,
// and the training accuracies of the auxiliary heads (formulas in docs/core.md "Losses").
//
//   L = w_equi*L_equi + w_speed*L_speed + w_dir*L_dir + w_order*L_order + w_inst*L_inst
//
// A term whose weight is 0 is not computed (its LossTerms tensor stays undefined) and its head is
// not built (HeadsFor). Thread-safety: ComputeLosses runs the model's heads, so one thread per
// model at a time.
#ifndef TECL_SERVICES_WORKER_LOSS_OBJECTIVE_H_
#define TECL_SERVICES_WORKER_LOSS_OBJECTIVE_H_

#include <ATen/Tensor.h>

#include <optional>
#include <string>

#include "services/worker/loss/batch.h"
#include "services/worker/loss/global_batch.h"
#include "services/worker/model/model.h"

namespace tecl::worker::core {

// Mirrors tecl.v1.LossWeights. A weight of 0 disables the term and its head; weights must be >= 0
// and at least one > 0.
struct LossWeights {
  double equivariance = 1.0;  // Transformation discrimination (psi).
  double speed = 1.0;         // Speed classification (speed head).
  double direction = 1.0;     // Direction classification (direction head).
  double order = 1.0;         // Overlap/order classification (order head).
  double instance = 1.0;      // Instance discrimination (projection g).
};

// Mirrors tecl.v1.MethodSpec.
struct LossOptions {
  LossWeights weights;
  // lambda of L_equi. MethodSpec.equivariance_temperature.
  double equivariance_temperature = 0.1;
  // Temperature of L_inst. MethodSpec.instance_temperature.
  double instance_temperature = 0.1;
  // MethodSpec.instance_positive.
  InstancePositive instance_positive = InstancePositive::kOtherClip;

  // Throws Error(kInvalidArgument) naming the first bad field.
  void Validate() const;
};

// The heads the weights need: a head exists iff its term's weight is > 0 (psi: equivariance,
// projection: instance).
HeadSet HeadsFor(const LossWeights& weights);

// One batch's terms as 0-dim tensors on the model's device. total, and each term with a weight
// > 0, carry autograd history; the rest are undefined. Accuracies carry no history and are
// defined iff their head exists.
struct LossTerms {
  torch::Tensor total;
  // What backward differentiates: total, except that with a global batch the global terms are
  // scaled by world_size (ScaleForAverage) so that the gradient reducer's average is the gradient
  // of the global objective. Equal to total on one process.
  torch::Tensor for_backward;
  torch::Tensor equivariance;
  torch::Tensor speed;
  torch::Tensor direction;
  torch::Tensor order;
  torch::Tensor instance;
  torch::Tensor speed_accuracy;      // Fraction of clips whose speed is predicted right.
  torch::Tensor direction_accuracy;  // Fraction of clips whose direction is predicted right.
  torch::Tensor order_accuracy;      // Fraction of pair rows ([h_A,h_B] and [h_B,h_A]) right.
};

// The same as plain numbers (tecl.v1.LossTerms); absent terms are empty.
struct LossValues {
  double total = 0;
  std::optional<double> equivariance;
  std::optional<double> speed;
  std::optional<double> direction;
  std::optional<double> order;
  std::optional<double> instance;
  std::optional<double> speed_accuracy;
  std::optional<double> direction_accuracy;
  std::optional<double> order_accuracy;

  // "total=1.234 equi=0.5 speed=..." (present values only), for logs.
  std::string ToString() const;
};

// Computes every term with a weight > 0. features: (N, D) backbone features of the batch's clips
// (rows as in the batch); index: the batch's IndexBatch on the features' device. Pair rows are
// [h_A, h_B] for every video, then [h_B, h_A]; psi and the order head each see all 2V pair rows
// in one call (one BatchNorm batch).
// With `global` (a data-parallel step with distributed.global_batch_loss), L_equi and L_inst are
// the global terms of loss/global_batch.h over every rank's rows: their values are the same on
// every rank and for_backward carries them scaled by world_size. Without it every term is this
// batch's own.
// Throws Error(kInvalidArgument) for invalid options or a features/index mismatch, and
// Error(kFailedPrecondition) when the model lacks a head that a weight > 0 needs.
LossTerms ComputeLosses(TeclModelImpl& model, const torch::Tensor& features, const BatchIndex& index,
                        const LossOptions& options, const GlobalBatch* global = nullptr);

// Copies the defined terms to the host (one device synchronisation).
LossValues ToValues(const LossTerms& terms);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_LOSS_OBJECTIVE_H_
