// Start-of-group agreement of model state across ranks: broadcast rank 0's parameters and buffers
// to every rank, and verify that all ranks hold the same bytes (a checksum compared through the
// communicator).
//
// Functions block (bounded by the communicator's timeout per collective) and throw
// CollectiveError / CollectiveTimeoutError on a failed collective. Thread-safe as the Communicator
// they use; they modify the given tensors in place (without recording autograd history).
#ifndef TECL_SERVICES_WORKER_DIST_PARAMETER_SYNC_H_
#define TECL_SERVICES_WORKER_DIST_PARAMETER_SYNC_H_

#include <ATen/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "services/worker/dist/communicator.h"

namespace tecl::worker::dist {

// Every parameter and buffer of `module` (recursively), in registration order.
std::vector<at::Tensor> ModuleState(const torch::nn::Module& module);

// Overwrites `tensors` on every rank with `root`'s values: tensors of one (dtype, device) travel
// as one flat buffer. All ranks must pass tensors of the same shapes, dtypes and order.
void BroadcastFromRoot(const std::vector<at::Tensor>& tensors, Communicator& communicator,
                       int root = 0);

// 64-bit FNV-1a over every tensor's dtype, shape and bytes (tensors are copied to the CPU when
// needed). Equal iff the bytes are equal, up to hash collisions.
uint64_t StateChecksum(const std::vector<at::Tensor>& tensors);

// Ranks disagree on the model state.
class StateMismatchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Compares StateChecksum(tensors) of every rank with `root`'s. Returns normally when all agree;
// throws StateMismatchError on every rank when any rank differs (the message says whether this
// rank is one of them).
void VerifyStateAgrees(const std::vector<at::Tensor>& tensors, Communicator& communicator,
                       int root = 0);

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_PARAMETER_SYNC_H_
