#include "services/worker/loss/objective.h"

#include <torch/torch.h>

#include <sstream>
#include <vector>

#include "services/worker/loss/losses.h"
#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

namespace F = torch::nn::functional;

void CheckWeight(double weight, const char* field) {
  if (!(weight >= 0) || weight > 1e6) {
    std::ostringstream message;
    message << "method.weights." << field << ": " << weight << " must be in [0, 1e6]";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
}

void CheckTemperature(double temperature, const char* field) {
  if (!(temperature > 0)) {
    std::ostringstream message;
    message << "method." << field << ": " << temperature << " must be > 0";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
}

void RequireHead(bool present, const char* head, const char* weight) {
  if (!present) {
    std::ostringstream message;
    message << "the model has no " << head << " head but method.weights." << weight
            << " is > 0; build the model with HeadsFor(weights)";
    throw Error(ErrorCode::kFailedPrecondition, message.str());
  }
}

torch::Tensor Accuracy(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  return logits.argmax(1).eq(labels).to(torch::kFloat).mean();
}

}  // namespace

void LossOptions::Validate() const {
  CheckWeight(weights.equivariance, "equivariance");
  CheckWeight(weights.speed, "speed");
  CheckWeight(weights.direction, "direction");
  CheckWeight(weights.order, "order");
  CheckWeight(weights.instance, "instance");
  if (weights.equivariance == 0 && weights.speed == 0 && weights.direction == 0 &&
      weights.order == 0 && weights.instance == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "method.weights: every weight is 0; at least one term must be > 0");
  }
  CheckTemperature(equivariance_temperature, "equivariance_temperature");
  CheckTemperature(instance_temperature, "instance_temperature");
}

HeadSet HeadsFor(const LossWeights& weights) {
  HeadSet heads;
  heads.psi = weights.equivariance > 0;
  heads.speed = weights.speed > 0;
  heads.direction = weights.direction > 0;
  heads.order = weights.order > 0;
  heads.projection = weights.instance > 0;
  return heads;
}

LossTerms ComputeLosses(TeclModelImpl& model, const torch::Tensor& features, const BatchIndex& index,
                        const LossOptions& options, const GlobalBatch* global) {
  options.Validate();
  const LossWeights& w = options.weights;
  if (features.dim() != 2 || features.size(0) != index.num_clips ||
      features.size(1) != model.feature_dim()) {
    std::ostringstream message;
    message << "features must be (" << index.num_clips << ", " << model.feature_dim()
            << ") for this batch and backbone, got " << features.sizes();
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
  LossTerms terms;
  std::vector<torch::Tensor> weighted;  // Unscaled: their sum is total.
  std::vector<torch::Tensor> scaled;    // As backward needs them: their sum is for_backward.
  const auto add = [&](const torch::Tensor& term, double weight, bool is_global) {
    weighted.push_back(term * weight);
    scaled.push_back(is_global ? ScaleForAverage(weighted.back(), *global) : weighted.back());
  };

  torch::Tensor pairs;  // (2V, 2D): [h_A, h_B] per video, then [h_B, h_A].
  if (w.equivariance > 0 || w.order > 0) {
    const torch::Tensor h_a = features.index_select(0, index.clip_a);
    const torch::Tensor h_b = features.index_select(0, index.clip_b);
    pairs = torch::cat({torch::cat({h_a, h_b}, 1), torch::cat({h_b, h_a}, 1)}, 0);
  }
  if (w.equivariance > 0) {
    RequireHead(static_cast<bool>(model.psi()), "psi", "equivariance");
    const torch::Tensor z = model.psi()->forward(pairs);
    terms.equivariance =
        (global != nullptr ? GlobalEquivarianceLoss(z, index.transformation_label,
                                                    options.equivariance_temperature, *global)
                           : EquivarianceLoss(z, index.transformation_label,
                                              options.equivariance_temperature))
            .mean();
    add(terms.equivariance, w.equivariance, global != nullptr);
  }
  if (w.speed > 0) {
    RequireHead(static_cast<bool>(model.speed()), "speed", "speed");
    const torch::Tensor logits = model.speed()->forward(features);
    terms.speed = F::cross_entropy(logits, index.speed_label);
    terms.speed_accuracy = Accuracy(logits, index.speed_label);
    add(terms.speed, w.speed, false);
  }
  if (w.direction > 0) {
    RequireHead(static_cast<bool>(model.direction()), "direction", "direction");
    const torch::Tensor logits = model.direction()->forward(features);
    terms.direction = F::cross_entropy(logits, index.direction_label);
    terms.direction_accuracy = Accuracy(logits, index.direction_label);
    add(terms.direction, w.direction, false);
  }
  if (w.order > 0) {
    RequireHead(static_cast<bool>(model.order()), "order", "order");
    const torch::Tensor logits = model.order()->forward(pairs);
    terms.order = F::cross_entropy(logits, index.order_label);
    terms.order_accuracy = Accuracy(logits, index.order_label);
    add(terms.order, w.order, false);
  }
  if (w.instance > 0) {
    RequireHead(static_cast<bool>(model.projection()), "projection", "instance");
    const torch::Tensor g = model.projection()->forward(features);
    terms.instance =
        (global != nullptr
             ? GlobalInstanceLoss(g, index.instance_anchor, index.instance_positive, index.video,
                                  index.num_videos, options.instance_temperature, *global)
             : InstanceLoss(g, index.instance_anchor, index.instance_positive, index.video,
                            options.instance_temperature))
            .mean();
    add(terms.instance, w.instance, global != nullptr);
  }
  terms.total = weighted[0];
  terms.for_backward = scaled[0];
  for (size_t i = 1; i < weighted.size(); ++i) {
    terms.total = terms.total + weighted[i];
    terms.for_backward = terms.for_backward + scaled[i];
  }
  return terms;
}

LossValues ToValues(const LossTerms& terms) {
  const torch::Tensor* fields[] = {&terms.total,          &terms.equivariance,
                                   &terms.speed,          &terms.direction,
                                   &terms.order,          &terms.instance,
                                   &terms.speed_accuracy, &terms.direction_accuracy,
                                   &terms.order_accuracy};
  std::vector<torch::Tensor> defined;
  for (const torch::Tensor* field : fields) {
    if (field->defined()) defined.push_back(field->detach().to(torch::kDouble).reshape({}));
  }
  LossValues values;
  if (defined.empty()) return values;
  const torch::Tensor host = torch::stack(defined).to(torch::kCPU);
  const double* data = host.data_ptr<double>();
  size_t next = 0;
  const auto take = [&](const torch::Tensor& field) -> std::optional<double> {
    if (!field.defined()) return std::nullopt;
    return data[next++];
  };
  values.total = take(terms.total).value_or(0);
  values.equivariance = take(terms.equivariance);
  values.speed = take(terms.speed);
  values.direction = take(terms.direction);
  values.order = take(terms.order);
  values.instance = take(terms.instance);
  values.speed_accuracy = take(terms.speed_accuracy);
  values.direction_accuracy = take(terms.direction_accuracy);
  values.order_accuracy = take(terms.order_accuracy);
  return values;
}

std::string LossValues::ToString() const {
  std::ostringstream out;
  out.precision(4);
  out << std::fixed << "total=" << total;
  const auto add = [&out](const char* name, const std::optional<double>& value) {
    if (value) out << " " << name << "=" << *value;
  };
  add("equi", equivariance);
  add("speed", speed);
  add("dir", direction);
  add("order", order);
  add("inst", instance);
  add("speed_acc", speed_accuracy);
  add("dir_acc", direction_accuracy);
  add("order_acc", order_accuracy);
  return out.str();
}

}  // namespace tecl::worker::core
