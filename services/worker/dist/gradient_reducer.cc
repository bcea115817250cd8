#include "services/worker/dist/gradient_reducer.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <unordered_set>
#include <utility>

namespace tecl::worker::dist {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

double StepTimings::HiddenShare() const {
  if (allreduce_seconds <= 0) return 0;
  return std::clamp(1.0 - exposed_seconds / allreduce_seconds, 0.0, 1.0);
}

struct GradientReducer::Shared {
  std::mutex mu;
  bool enabled = true;  // false once the reducer is destroyed (hooks may outlive it)
  std::shared_ptr<Communicator> communicator;
  std::vector<NamedParameter> parameters;
  std::vector<BucketSpec> buckets;
  std::vector<at::Tensor> buffers;                     // one flat buffer per bucket
  std::vector<std::pair<size_t, int64_t>> location;    // parameter -> (bucket, offset)
  bool overlap = true;
  std::string broken;  // non-empty after a collective failed

  // Step state.
  std::vector<bool> ready;
  std::vector<size_t> pending;  // parameters of each bucket still without a gradient
  size_t next_launch = 0;
  std::vector<std::unique_ptr<CollectiveHandle>> handles;
  std::vector<Clock::time_point> launched_at;
  int hooks_fired = 0;
  int launched_in_backward = 0;

  void ResetStep() {
    std::fill(ready.begin(), ready.end(), false);
    for (size_t b = 0; b < buckets.size(); ++b) pending[b] = buckets[b].parameters.size();
    next_launch = 0;
    handles.clear();
    handles.resize(buckets.size());
    launched_at.assign(buckets.size(), Clock::time_point());
    hooks_fired = 0;
    launched_in_backward = 0;
  }

  at::Tensor Slice(size_t index) {
    const auto [bucket, offset] = location[index];
    return buffers[bucket].narrow(0, offset, parameters[index].tensor.numel());
  }

  // Launches every bucket that is complete and whose predecessors were launched. A launch that
  // fails breaks the reducer; Finalize reports it (hooks must not throw it into the engine).
  void LaunchReady(bool in_backward) {
    while (broken.empty() && next_launch < buckets.size() && pending[next_launch] == 0) {
      const size_t b = next_launch;
      launched_at[b] = Clock::now();
      try {
        handles[b] = communicator->AllReduceAverage(buffers[b]);
      } catch (const CollectiveError& e) {
        broken = e.what();
        return;
      }
      ++next_launch;
      if (in_backward) ++launched_in_backward;
    }
  }

  void MarkReady(size_t index) {
    std::lock_guard<std::mutex> lock(mu);
    if (!enabled) return;
    const NamedParameter& p = parameters[index];
    if (ready[index]) {
      throw std::logic_error("gradient reducer: the gradient of parameter \"" + p.name +
                             "\" became ready twice in one step; call Finalize() after every "
                             "backward (gradient accumulation across backwards is not supported)");
    }
    const at::Tensor& grad = p.tensor.grad();
    if (!grad.defined()) {
      throw std::logic_error("gradient reducer: parameter \"" + p.name +
                             "\" has no gradient after its accumulator ran");
    }
    if (grad.is_sparse()) {
      throw std::invalid_argument("gradient reducer: parameter \"" + p.name +
                                  "\" has a sparse gradient; only dense gradients are averaged");
    }
    ready[index] = true;
    ++hooks_fired;
    {
      at::NoGradGuard no_grad;
      Slice(index).copy_(grad.reshape({-1}));
    }
    --pending[location[index].first];
    if (overlap) LaunchReady(/*in_backward=*/true);
  }
};

namespace {

// Runs after AccumulateGrad wrote the parameter's full gradient for this backward.
class GradientReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  GradientReadyHook(std::weak_ptr<GradientReducer::Shared> shared, size_t index)
      : shared_(std::move(shared)), index_(index) {}

  torch::autograd::variable_list operator()(
      const torch::autograd::variable_list& outputs,
      const torch::autograd::variable_list& /*inputs*/) override {
    if (auto shared = shared_.lock()) shared->MarkReady(index_);
    return outputs;
  }

 private:
  std::weak_ptr<GradientReducer::Shared> shared_;
  size_t index_;
};

}  // namespace

GradientReducer::GradientReducer(std::vector<NamedParameter> parameters,
                                 std::shared_ptr<Communicator> communicator,
                                 ReducerOptions options)
    : communicator_(std::move(communicator)), options_(options) {
  if (!communicator_) throw std::invalid_argument("gradient reducer: communicator is null");
  std::unordered_set<const void*> seen;
  for (NamedParameter& p : parameters) {
    if (!p.tensor.defined()) {
      throw std::invalid_argument("gradient reducer: parameter \"" + p.name + "\" is undefined");
    }
    if (!p.tensor.requires_grad()) continue;
    if (!p.tensor.is_leaf()) {
      throw std::invalid_argument("gradient reducer: parameter \"" + p.name +
                                  "\" is not a leaf tensor; register the module's parameters");
    }
    if (!seen.insert(p.tensor.unsafeGetTensorImpl()).second) {
      throw std::invalid_argument("gradient reducer: parameter \"" + p.name +
                                  "\" is registered twice (shared weights: register it once)");
    }
    parameters_.push_back(std::move(p));
  }
  if (parameters_.empty()) {
    throw std::invalid_argument("gradient reducer: no parameter requires grad");
  }

  std::vector<ParameterSpec> specs;
  specs.reserve(parameters_.size());
  for (const NamedParameter& p : parameters_) {
    specs.push_back({p.tensor.numel(), p.tensor.scalar_type(), p.tensor.device()});
  }
  buckets_ = AssignBuckets(specs, BucketBytes(options_.bucket_size_mb));

  shared_ = std::make_shared<Shared>();
  shared_->communicator = communicator_;
  shared_->parameters = parameters_;
  shared_->buckets = buckets_;
  shared_->overlap = options_.overlap_with_backward;
  shared_->location.resize(parameters_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const BucketSpec& bucket = buckets_[b];
    shared_->buffers.push_back(
        at::zeros({bucket.numel}, at::TensorOptions().dtype(bucket.dtype).device(bucket.device)));
    for (size_t k = 0; k < bucket.parameters.size(); ++k) {
      shared_->location[bucket.parameters[k]] = {b, bucket.offsets[k]};
    }
  }
  shared_->ready.assign(parameters_.size(), false);
  shared_->pending.assign(buckets_.size(), 0);
  shared_->ResetStep();

  for (size_t i = 0; i < parameters_.size(); ++i) {
    std::shared_ptr<torch::autograd::Node> accumulator =
        torch::autograd::impl::grad_accumulator(parameters_[i].tensor);
    if (!accumulator) {
      throw std::invalid_argument("gradient reducer: parameter \"" + parameters_[i].name +
                                  "\" has no gradient accumulator");
    }
    hook_keys_.push_back(
        accumulator->add_post_hook(std::make_unique<GradientReadyHook>(shared_, i)));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradientReducer::~GradientReducer() {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->enabled = false;
  }
  for (size_t i = 0; i < accumulators_.size(); ++i) {
    accumulators_[i]->del_post_hook(hook_keys_[i]);
  }
}

StepTimings GradientReducer::Finalize() {
  Shared& s = *shared_;
  std::lock_guard<std::mutex> lock(s.mu);
  const auto start = Clock::now();
  const auto deadline = start + communicator_->timeout();

  // Waits for every launched bucket; a failure breaks the reducer and propagates.
  auto wait_launched = [&] {
    for (size_t b = 0; b < s.next_launch; ++b) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      try {
        s.handles[b]->Wait(std::max(left, std::chrono::milliseconds(1)));
      } catch (const CollectiveError& e) {
        s.broken = e.what();
        s.ResetStep();
        throw;
      }
    }
  };

  if (!s.broken.empty()) {
    const std::string reason = s.broken;
    s.ResetStep();
    throw CollectiveError("gradient reducer: refused, a collective already failed (" + reason +
                          "); drop this reducer and its process group and form a new group");
  }

  std::vector<size_t> missing;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (!s.ready[i]) missing.push_back(i);
  }
  if (!missing.empty()) {
    if (options_.unused_parameters == UnusedParameters::kError) {
      // Buckets already launched were launched on every rank of a symmetric model: finish them
      // so the group stays usable, then discard the step.
      wait_launched();
      std::ostringstream message;
      message << "gradient reducer: " << missing.size() << " of " << parameters_.size()
              << " parameters got no gradient in this step:";
      for (size_t k = 0; k < missing.size() && k < 20; ++k) {
        message << (k == 0 ? " " : ", ") << parameters_[missing[k]].name;
      }
      if (missing.size() > 20) message << ", ...";
      message << "; make every parameter take part in the loss, or construct the reducer with "
                 "unused_parameters = kTreatAsZero";
      s.ResetStep();
      throw UnusedParametersError(message.str());
    }
    at::NoGradGuard no_grad;
    for (size_t i : missing) {
      s.Slice(i).zero_();
      s.ready[i] = true;
      --s.pending[s.location[i].first];
    }
  }

  s.LaunchReady(/*in_backward=*/false);
  if (!s.broken.empty()) {
    const std::string reason = s.broken;
    s.ResetStep();
    throw CollectiveError("gradient reducer: launching a bucket failed: " + reason);
  }
  wait_launched();
  const auto waited = Clock::now();

  StepTimings timings;
  timings.exposed_seconds = Seconds(waited - start);
  Clock::time_point previous_end = Clock::time_point::min();
  for (size_t b = 0; b < s.handles.size(); ++b) {
    const Clock::time_point end = s.handles[b]->CompletedAt().value_or(waited);
    const Clock::time_point begin = std::max(s.launched_at[b], previous_end);
    if (end > begin) timings.allreduce_seconds += Seconds(end - begin);
    previous_end = std::max(previous_end, end);
  }
  timings.buckets = static_cast<int>(buckets_.size());
  timings.buckets_launched_in_backward = s.launched_in_backward;
  timings.hooks_fired = s.hooks_fired;
  for (const BucketSpec& bucket : buckets_) {
    timings.bytes += bucket.numel * static_cast<int64_t>(c10::elementSize(bucket.dtype));
  }

  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < parameters_.size(); ++i) {
      at::Tensor& param = parameters_[i].tensor;
      at::Tensor average = s.Slice(i).view(param.sizes());
      at::Tensor& grad = param.mutable_grad();
      if (grad.defined() && grad.sizes() == param.sizes() && !grad.is_sparse()) {
        grad.copy_(average);
      } else {
        grad = average.clone();
      }
    }
  }
  timings.writeback_seconds = Seconds(Clock::now() - waited);
  s.ResetStep();
  return timings;
}

}  // namespace tecl::worker::dist
