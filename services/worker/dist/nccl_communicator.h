// NcclCommunicator: a Communicator that calls NCCL directly, for LibTorch builds without
// c10d::ProcessGroupNCCL. Rank 0 creates the NCCL unique id and publishes it through the shared
// c10d::Store under `id_key`; every rank creates its communicator (non-blocking init, bounded by
// the timeout) and runs collectives on its own CUDA stream.
//
// Ordering with compute: before a collective the communicator stream waits for an event recorded
// on `compute_stream` (the legacy default stream unless given), so gradients copied into a bucket
// there are complete; Wait() makes `compute_stream` wait for the collective before returning.
// Timeouts and failures: Wait() polls the collective's completion event and
// ncclCommGetAsyncError; an asynchronous error or an expired timeout aborts the NCCL communicator
// (ncclCommAbort), breaks this Communicator and throws CollectiveError / CollectiveTimeoutError.
// Every NCCL and CUDA result goes through one check that throws CollectiveError with
// ncclGetErrorString / cudaGetErrorString.
//
// Compiled only when NCCL and the CUDA runtime were found (TECL_HAVE_NCCL). Thread-safety: calls
// are serialised by an internal mutex; handles are used by one thread. Owns the NCCL communicator,
// the stream and the events.
#ifndef TECL_SERVICES_WORKER_DIST_NCCL_COMMUNICATOR_H_
#define TECL_SERVICES_WORKER_DIST_NCCL_COMMUNICATOR_H_

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "services/worker/dist/communicator.h"

namespace tecl::worker::dist {

struct NcclCommunicatorOptions {
  int rank = 0;
  int world_size = 1;
  // This rank's CUDA device.
  int cuda_device = 0;
  // Bound on forming the communicator and on every Wait().
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
  // Store key of the NCCL unique id.
  std::string id_key = "tecl_nccl_unique_id";
  // The cudaStream_t that produces and consumes the tensors (nullptr = legacy default stream,
  // which LibTorch uses unless told otherwise).
  void* compute_stream = nullptr;
};

class NcclCommunicator final : public Communicator {
 public:
  // Blocks until every rank joined or the timeout passed. Throws CollectiveError naming the cause
  // (no CUDA device, bad unique id in the store, NCCL init error or timeout).
  static std::unique_ptr<NcclCommunicator> Create(const c10::intrusive_ptr<c10d::Store>& store,
                                                  const NcclCommunicatorOptions& options);
  ~NcclCommunicator() override;

  int rank() const override;
  int world_size() const override;
  std::string backend_name() const override { return "nccl"; }
  std::chrono::milliseconds timeout() const override;

  std::unique_ptr<CollectiveHandle> AllReduceAverage(at::Tensor tensor) override;
  std::unique_ptr<CollectiveHandle> AllGather(at::Tensor input, at::Tensor output) override;
  std::unique_ptr<CollectiveHandle> Broadcast(at::Tensor tensor, int root) override;
  void Barrier() override;

  struct State;  // NCCL and CUDA handles; defined in the .cc

 private:
  explicit NcclCommunicator(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_NCCL_COMMUNICATOR_H_
