// GradientReducer: averages parameter gradients across the ranks of a Communicator in buckets,
// overlapping the all-reduce with backward (the design of PyTorch DDP's reducer, written for
// LibTorch C++, which has no DDP).
//
// Per step:
//   loss.backward();          // hooks copy each ready gradient into its bucket's flat buffer and
//                             // launch a bucket's all-reduce as soon as the bucket is complete
//   StepTimings t = reducer.Finalize();   // waits (bounded by the collective timeout), writes the
//                                         // averaged gradients back into param.grad()
//   optimizer.step();
//
// Hooks: a post hook on each parameter's gradient accumulator (AccumulateGrad), which runs once
// per backward after the full gradient (the sum over every use of the parameter in the graph) has
// been accumulated into param.grad(). The reducer keeps the accumulators alive so the hooks
// survive across forwards. A gradient that becomes ready twice in one step (two backward passes
// without Finalize in between) throws std::logic_error from backward.
// Ordering: bucket i is launched only after buckets 0..i-1 were launched, so every rank issues the
// same collectives in the same order even when gradients arrive in a different order.
// Parameters without a gradient in a step: see UnusedParameters.
// Buffers (BatchNorm running statistics) are not reduced: they stay local to each rank.
// Failure: a failed or timed-out collective throws CollectiveError (CollectiveTimeoutError) from
// Finalize; the reducer is then broken (every later Finalize or launch throws CollectiveError)
// and must be dropped together with its Communicator.
//
// Thread-safety: hooks run on the autograd engine's threads and Finalize on the training thread;
// internal state is guarded by a mutex. One backward at a time. Do not destroy the reducer while
// a backward is running. Ownership: shares the Communicator; holds references to the parameters.
#ifndef TECL_SERVICES_WORKER_DIST_GRADIENT_REDUCER_H_
#define TECL_SERVICES_WORKER_DIST_GRADIENT_REDUCER_H_

#include <ATen/Tensor.h>
#include <torch/csrc/autograd/function.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "services/worker/dist/bucket_assignment.h"
#include "services/worker/dist/communicator.h"

namespace tecl::worker::dist {

// What to do with parameters whose gradient was not produced in a step.
enum class UnusedParameters {
  // Finalize throws UnusedParametersError naming them (default: the model layer builds only the
  // heads that are trained, so every parameter gets a gradient; a missing one is a bug).
  kError,
  // Their contribution is zero: the averaged gradient (zero unless another rank produced one) is
  // written to param.grad(). Costs overlap: a bucket holding such a parameter launches only in
  // Finalize. Note that an optimizer with momentum or weight decay still moves such parameters.
  kTreatAsZero,
};

struct ReducerOptions {
  // Cap of one bucket in MiB (DDP's bucket_cap_mb).
  double bucket_size_mb = 25.0;
  UnusedParameters unused_parameters = UnusedParameters::kError;
  // false: launch every bucket in Finalize, after backward (the non-overlapped baseline).
  bool overlap_with_backward = true;
};

struct NamedParameter {
  std::string name;
  at::Tensor tensor;
};

// Thrown by Finalize under UnusedParameters::kError.
class UnusedParametersError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Wall-clock figures of one step, in seconds.
struct StepTimings {
  // Time a bucket's collective was in progress: the sum over buckets, in launch order, of
  // completion - max(launch, previous bucket's completion) (the backends run a group's
  // collectives one after another). Includes waiting inside the collective for slower peers.
  double allreduce_seconds = 0;
  // Time Finalize spent launching leftover buckets and waiting for the collectives, i.e. the part
  // of the all-reduce that backward did not hide.
  double exposed_seconds = 0;
  // Copying the averaged buckets back into param.grad().
  double writeback_seconds = 0;
  int buckets = 0;
  // Buckets launched from hooks during backward (the rest were launched by Finalize).
  int buckets_launched_in_backward = 0;
  // Gradient hooks that fired this step (one per parameter with a gradient).
  int hooks_fired = 0;
  int64_t bytes = 0;

  // Share of the all-reduce time hidden behind backward: 1 - exposed / allreduce, in [0, 1].
  double HiddenShare() const;
};

class GradientReducer {
 public:
  // Registers the hooks and allocates the bucket buffers. Parameters that do not require grad are
  // skipped. Throws std::invalid_argument for an empty parameter list, a parameter that is not a
  // leaf, duplicate parameters (same tensor registered twice) or a bad bucket size.
  GradientReducer(std::vector<NamedParameter> parameters,
                  std::shared_ptr<Communicator> communicator, ReducerOptions options = {});
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Launches the buckets not launched yet, waits for all of them (at most the communicator's
  // timeout in total), writes the averages into param.grad() and resets for the next step.
  // Blocks. Throws CollectiveError / CollectiveTimeoutError (the reducer is broken afterwards) and
  // UnusedParametersError (kError with parameters that got no gradient; the step is discarded).
  StepTimings Finalize();

  const std::vector<BucketSpec>& buckets() const { return buckets_; }
  const Communicator& communicator() const { return *communicator_; }

  // Internal: called by the hook of parameter `index` when its gradient is ready.
  struct Shared;

 private:
  std::vector<NamedParameter> parameters_;
  std::shared_ptr<Communicator> communicator_;
  const ReducerOptions options_;
  std::vector<BucketSpec> buckets_;
  std::shared_ptr<Shared> shared_;
  // Keeps each parameter's AccumulateGrad node (and with it the hook) alive across forwards.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;
};

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_GRADIENT_REDUCER_H_
