// Communicator: the collectives the trainer needs (in-place average, gather, broadcast, barrier) behind one
// small interface, so the gradient reducer and the parameter sync do not care whether Gloo, NCCL
// through LibTorch, NCCL directly, or an in-process fake moves the bytes.
//
// Semantics every implementation follows:
//   * Collectives are matched by call order: the k-th collective of every rank is the same
//     operation with tensors of the same shapes and dtypes. A caller that issues them in different
//     orders on different ranks gets a hang until the timeout (real backends) or a CollectiveError.
//   * AllReduceAverage, AllGather and Broadcast start the collective and return at once; the
//     tensors must not be read or written until the handle's Wait() returned.
//   * Wait() blocks at most `timeout`; a collective that fails (a peer died, a socket closed, NCCL
//     reported an asynchronous error) or does not finish in time throws CollectiveError
//     (CollectiveTimeoutError for the latter). After the first failure the communicator is broken:
//     every later call throws CollectiveError at once. The owner is expected to report, drop the
//     communicator (and the reducer that uses it) and form a new group; the process stays usable.
//
// Thread-safety: a communicator may be called from the autograd engine thread (gradient hooks) and
// the training thread, but calls must not interleave in a way that changes their order across
// ranks; the reducer serialises its own calls. Handles are used by one thread.
// Ownership: tensors passed in are shared (at::Tensor is a reference); the caller keeps them alive
// until Wait() returns (the handle also holds references).
#ifndef TECL_SERVICES_WORKER_DIST_COMMUNICATOR_H_
#define TECL_SERVICES_WORKER_DIST_COMMUNICATOR_H_

#include <ATen/Tensor.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace tecl::worker::dist {

// A collective failed: a peer died or closed its connection, the backend reported an error, or the
// communicator had already failed. Catch it, report, and drop the group.
class CollectiveError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A collective did not finish within the collective timeout (a peer is hung or gone silently).
class CollectiveTimeoutError : public CollectiveError {
 public:
  using CollectiveError::CollectiveError;
};

// One in-flight collective.
class CollectiveHandle {
 public:
  virtual ~CollectiveHandle() = default;

  // Blocks until the collective finished, at most `timeout`. Throws CollectiveTimeoutError when it
  // did not finish in time and CollectiveError when it failed. Calling it again after it returned
  // is a no-op.
  virtual void Wait(std::chrono::milliseconds timeout) = 0;

  // When the collective completed as seen by this process (set by the backend's completion
  // callback); nullopt while it is running or when the backend cannot tell before Wait().
  virtual std::optional<std::chrono::steady_clock::time_point> CompletedAt() const = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "gloo", "nccl (c10d)", "nccl", "fake".
  virtual std::string backend_name() const = 0;
  // The collective timeout this communicator was built with.
  virtual std::chrono::milliseconds timeout() const = 0;

  // Starts replacing `tensor` by its element-wise mean over all ranks. The tensor must be dense,
  // contiguous, floating point, and on this communicator's device kind (flatten several tensors
  // into one buffer first, as the reducer's buckets do). Throws CollectiveError if the
  // communicator already failed, std::invalid_argument for an unusable tensor.
  virtual std::unique_ptr<CollectiveHandle> AllReduceAverage(at::Tensor tensor) = 0;

  // Starts writing every rank's `input` into `output` in rank order: rank r's rows go to rows
  // [r*n, (r+1)*n) of `output`, n = input.size(0). `input` has the same shape and dtype on every
  // rank (at least one dimension, n >= 1); `output` has world_size*n rows and input's other
  // dimensions and dtype. Both dense, contiguous, on this communicator's device kind. Throws like
  // AllReduceAverage, and std::invalid_argument for tensors that do not fit.
  virtual std::unique_ptr<CollectiveHandle> AllGather(at::Tensor input, at::Tensor output) = 0;

  // Starts overwriting `tensor` with `root`'s values. Any dtype. Throws like AllReduceAverage, and
  // std::invalid_argument for a root outside [0, world_size).
  virtual std::unique_ptr<CollectiveHandle> Broadcast(at::Tensor tensor, int root) = 0;

  // Blocks until every rank reached the barrier (at most timeout()). Throws like Wait().
  virtual void Barrier() = 0;
};

// Every rank's `rows` concatenated in rank order (a new tensor), blocking until the gather is done
// (at most the communicator's timeout). The rows are made contiguous and carry no autograd history
// into the result. Throws like AllGather and Wait.
at::Tensor AllGatherRows(Communicator& communicator, const at::Tensor& rows);

// The error text every backend uses: "<op> failed on rank R of W (<backend>): <cause>".
std::string DescribeCollective(const std::string& op, int rank, int world_size,
                               const std::string& backend);

// Throws std::invalid_argument unless `tensor` is defined, dense and contiguous (and floating
// point when `floating_only`). `what` names the caller in the message.
void CheckCollectiveTensor(const at::Tensor& tensor, bool floating_only, const char* what);

// Throws std::invalid_argument unless `input` and `output` fit AllGather over `world_size` ranks.
void CheckAllGather(const at::Tensor& input, const at::Tensor& output, int world_size);

// Throws std::invalid_argument unless 0 <= root < world_size.
void CheckRoot(int root, int world_size);

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_COMMUNICATOR_H_
