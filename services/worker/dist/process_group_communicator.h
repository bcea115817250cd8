// ProcessGroupCommunicator: a Communicator over a c10d::ProcessGroup (ProcessGroupGloo on CPU,
// ProcessGroupNCCL when LibTorch was built with it). Averages as SUM of tensors pre-divided by the
// world size (Gloo has no AVG), which is exact for power-of-two world sizes.
//
// Thread-safety: safe to call from several threads (c10d queues work in call order); calls from
// different threads must still keep the same order on every rank. Ownership: shares the process
// group; destroying the last reference to a ProcessGroupGloo waits for its queued work, which
// after a failure finishes with an error or by the collective timeout.
#ifndef TECL_SERVICES_WORKER_DIST_PROCESS_GROUP_COMMUNICATOR_H_
#define TECL_SERVICES_WORKER_DIST_PROCESS_GROUP_COMMUNICATOR_H_

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/version.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "services/worker/dist/communicator.h"

namespace tecl::worker::dist {

// The c10d class that ProcessGroupGloo and ProcessGroupNCCL derive from: ProcessGroup in
// LibTorch 1.x, Backend since 2.0 (same collective signatures).
#if TORCH_VERSION_MAJOR >= 2
using C10dGroup = c10d::Backend;
#else
using C10dGroup = c10d::ProcessGroup;
#endif

class ProcessGroupCommunicator final : public Communicator {
 public:
  // `backend_name` is used in messages ("gloo", "nccl (c10d)").
  ProcessGroupCommunicator(c10::intrusive_ptr<C10dGroup> group, std::string backend_name,
                           std::chrono::milliseconds timeout);
  ~ProcessGroupCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend_name() const override { return backend_name_; }
  std::chrono::milliseconds timeout() const override { return timeout_; }

  std::unique_ptr<CollectiveHandle> AllReduceAverage(at::Tensor tensor) override;
  std::unique_ptr<CollectiveHandle> AllGather(at::Tensor input, at::Tensor output) override;
  std::unique_ptr<CollectiveHandle> Broadcast(at::Tensor tensor, int root) override;
  void Barrier() override;

  const c10::intrusive_ptr<C10dGroup>& group() const { return group_; }

  // Shared between the communicator and its handles: the first failure breaks the communicator.
  struct FailureState {
    std::mutex mu;
    std::string first_error;  // guarded by mu; empty while healthy
    void Record(const std::string& error);
    // Throws CollectiveError naming the first failure, if any.
    void ThrowIfFailed(const std::string& op);
  };

 private:
  // Starts `launch` (a c10d call) and wraps its work; a synchronous failure becomes
  // CollectiveError and breaks the communicator.
  template <typename Launch>
  std::unique_ptr<CollectiveHandle> Start(const std::string& op, std::vector<at::Tensor> keep_alive,
                                          Launch launch);

  c10::intrusive_ptr<C10dGroup> group_;
  const std::string backend_name_;
  const std::chrono::milliseconds timeout_;
  const int rank_;
  const int world_size_;
  std::shared_ptr<FailureState> failure_;
  std::atomic<int64_t> sequence_{0};
};

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_PROCESS_GROUP_COMMUNICATOR_H_
