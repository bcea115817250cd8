#include "services/worker/dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "NcclCommunicator needs NCCL >= 2.14 (non-blocking init, ncclAvg, ncclCommFinalize)"
#endif

namespace tecl::worker::dist {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::microseconds(50);

// The one place NCCL and CUDA results become exceptions.
void Check(ncclResult_t result, const char* call, ncclComm_t comm = nullptr) {
  if (result == ncclSuccess || result == ncclInProgress) return;
  std::string message = std::string("NCCL ") + call + ": " + ncclGetErrorString(result);
  if (comm != nullptr) {
    const char* last = ncclGetLastError(comm);
    if (last != nullptr && *last != '\0') message += std::string(" (") + last + ")";
  }
  throw CollectiveError(message);
}

void Check(cudaError_t result, const char* call) {
  if (result == cudaSuccess) return;
  throw CollectiveError(std::string("CUDA ") + call + ": " + cudaGetErrorString(result));
}

ncclDataType_t NcclType(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    case at::kBool: return ncclUint8;
    default:
      throw std::invalid_argument(std::string("NCCL: dtype ") + c10::toString(type) +
                                  " is not supported; use float, double, half or bfloat16");
  }
}

}  // namespace

struct NcclCommunicator::State {
  std::mutex mu;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaStream_t compute_stream = nullptr;
  cudaEvent_t inputs_ready = nullptr;
  float* barrier_buffer = nullptr;
  int rank = 0;
  int world_size = 1;
  int device = 0;
  std::chrono::milliseconds timeout{0};
  int64_t sequence = 0;
  bool aborted = false;
  std::string first_error;  // non-empty once broken

  ~State() {
    cudaSetDevice(device);
    if (comm != nullptr && !aborted) {
      // Orderly teardown; if it cannot complete in time, abort instead.
      ncclResult_t state = ncclCommFinalize(comm);
      const auto deadline = Clock::now() + timeout;
      while (state == ncclInProgress && Clock::now() < deadline) {
        if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) break;
        if (state == ncclInProgress) std::this_thread::sleep_for(kPollInterval);
      }
      if (state == ncclSuccess) {
        ncclCommDestroy(comm);
      } else {
        ncclCommAbort(comm);
      }
    }
    if (inputs_ready != nullptr) cudaEventDestroy(inputs_ready);
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (barrier_buffer != nullptr) cudaFree(barrier_buffer);
  }

  // Marks the communicator broken and aborts NCCL (unblocking every rank's pending kernels).
  void Abort(const std::string& reason) {
    if (first_error.empty()) first_error = reason;
    if (!aborted && comm != nullptr) {
      ncclCommAbort(comm);
      aborted = true;
    }
  }

  void ThrowIfBroken(const std::string& op) const {
    if (!first_error.empty()) {
      throw CollectiveError(op + " refused: this NCCL communicator already failed (" +
                            first_error + "); drop it and form a new one");
    }
  }

  // Non-blocking communicators may answer ncclInProgress; poll until settled or the deadline.
  void Settle(const std::string& what, Clock::time_point deadline) {
    ncclResult_t state = ncclInProgress;
    while (true) {
      Check(ncclCommGetAsyncError(comm, &state), "ncclCommGetAsyncError", comm);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) {
        std::string message = what + ": NCCL asynchronous error: " + ncclGetErrorString(state);
        Abort(message);
        throw CollectiveError(message);
      }
      if (Clock::now() >= deadline) {
        std::string message = what + ": timed out after " + std::to_string(timeout.count()) +
                              " ms waiting for NCCL";
        Abort(message);
        throw CollectiveTimeoutError(message);
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }
};

namespace {

class NcclHandle final : public CollectiveHandle {
 public:
  NcclHandle(std::shared_ptr<NcclCommunicator::State> state, std::string description,
             std::vector<at::Tensor> tensors)
      : state_(std::move(state)),
        description_(std::move(description)),
        tensors_(std::move(tensors)) {
    Check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    Check(cudaEventRecord(done_, state_->stream), "cudaEventRecord");
  }
  ~NcclHandle() override {
    if (done_ != nullptr) cudaEventDestroy(done_);
  }

  void Wait(std::chrono::milliseconds timeout) override {
    if (finished_) return;
    const auto deadline = Clock::now() + timeout;
    while (true) {
      cudaError_t query = cudaEventQuery(done_);
      if (query == cudaSuccess) break;
      std::lock_guard<std::mutex> lock(state_->mu);
      if (query != cudaErrorNotReady) {
        std::string message = description_ + ": CUDA " + cudaGetErrorString(query);
        state_->Abort(message);
        finished_ = true;
        throw CollectiveError(message);
      }
      if (!state_->first_error.empty() && state_->aborted) {
        finished_ = true;
        throw CollectiveError(description_ + ": the communicator was aborted (" +
                              state_->first_error + ")");
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(state_->comm, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        std::string message = description_ + ": NCCL asynchronous error: " +
                              ncclGetErrorString(async) +
                              "; a peer is gone: drop this group and form a new one";
        state_->Abort(message);
        finished_ = true;
        throw CollectiveError(message);
      }
      if (Clock::now() >= deadline) {
        std::string message = description_ + ": timed out after " +
                              std::to_string(timeout.count()) +
                              " ms; a peer is hung or gone: drop this group and form a new one";
        state_->Abort(message);
        finished_ = true;
        throw CollectiveTimeoutError(message);
      }
      std::this_thread::sleep_for(kPollInterval);
    }
    completed_ = Clock::now();
    finished_ = true;
    Check(cudaStreamWaitEvent(state_->compute_stream, done_, 0), "cudaStreamWaitEvent");
  }

  std::optional<Clock::time_point> CompletedAt() const override { return completed_; }

 private:
  std::shared_ptr<NcclCommunicator::State> state_;
  const std::string description_;
  std::vector<at::Tensor> tensors_;  // Kept alive until the collective finished.
  cudaEvent_t done_ = nullptr;
  bool finished_ = false;
  std::optional<Clock::time_point> completed_;
};

}  // namespace

std::unique_ptr<NcclCommunicator> NcclCommunicator::Create(
    const c10::intrusive_ptr<c10d::Store>& store, const NcclCommunicatorOptions& options) {
  const std::string where = "forming the NCCL communicator as rank " +
                            std::to_string(options.rank) + " of " +
                            std::to_string(options.world_size);
  int devices = 0;
  cudaError_t count = cudaGetDeviceCount(&devices);
  if (count != cudaSuccess || devices == 0) {
    throw CollectiveError(where + ": no CUDA device is usable (" +
                          (count != cudaSuccess ? cudaGetErrorString(count) : "0 devices") +
                          "); run on a GPU machine or use the gloo backend");
  }
  if (options.cuda_device < 0 || options.cuda_device >= devices) {
    throw CollectiveError(where + ": cuda_device " + std::to_string(options.cuda_device) +
                          " does not exist (" + std::to_string(devices) + " visible)");
  }
  auto state = std::make_shared<State>();
  state->rank = options.rank;
  state->world_size = options.world_size;
  state->device = options.cuda_device;
  state->timeout = options.timeout;
  state->compute_stream = static_cast<cudaStream_t>(options.compute_stream);
  try {
    Check(cudaSetDevice(options.cuda_device), "cudaSetDevice");
    Check(cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking),
          "cudaStreamCreateWithFlags");
    Check(cudaEventCreateWithFlags(&state->inputs_ready, cudaEventDisableTiming),
          "cudaEventCreateWithFlags");
    Check(cudaMalloc(reinterpret_cast<void**>(&state->barrier_buffer), sizeof(float)),
          "cudaMalloc");

    ncclUniqueId id;
    if (options.rank == 0) {
      Check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      const auto* bytes = reinterpret_cast<const uint8_t*>(&id);
      store->set(options.id_key, std::vector<uint8_t>(bytes, bytes + sizeof(id)));
    } else {
      std::vector<uint8_t> bytes = store->get(options.id_key);
      if (bytes.size() != sizeof(id)) {
        throw CollectiveError("store key \"" + options.id_key + "\" holds " +
                              std::to_string(bytes.size()) + " bytes, not an NCCL unique id (" +
                              std::to_string(sizeof(id)) + "); is another group using the key?");
      }
      std::memcpy(&id, bytes.data(), sizeof(id));
    }

    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    Check(ncclCommInitRankConfig(&state->comm, options.world_size, id, options.rank, &config),
          "ncclCommInitRankConfig");
    state->Settle("ncclCommInitRankConfig", Clock::now() + options.timeout);
  } catch (const CollectiveError& e) {
    throw CollectiveError(where + ": " + e.what());
  } catch (const std::exception& e) {
    throw CollectiveError(where + ": " + e.what());
  }
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(state)));
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<State> state) : state_(std::move(state)) {}
NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::rank() const { return state_->rank; }
int NcclCommunicator::world_size() const { return state_->world_size; }
std::chrono::milliseconds NcclCommunicator::timeout() const { return state_->timeout; }

namespace {

void CheckDevice(const at::Tensor& tensor, int device, const char* what) {
  if (!tensor.is_cuda() || tensor.device().index() != device) {
    throw std::invalid_argument(std::string(what) + ": tensor is on " + tensor.device().str() +
                                ", the NCCL communicator is on cuda:" + std::to_string(device));
  }
}

}  // namespace

std::unique_ptr<CollectiveHandle> NcclCommunicator::AllReduceAverage(at::Tensor tensor) {
  CheckCollectiveTensor(tensor, /*floating_only=*/true, "all-reduce");
  CheckDevice(tensor, state_->device, "all-reduce");
  std::lock_guard<std::mutex> lock(state_->mu);
  const std::string op = "all-reduce #" + std::to_string(state_->sequence++);
  state_->ThrowIfBroken(op);
  const std::string description = DescribeCollective(op, state_->rank, state_->world_size, "nccl");
  try {
    Check(cudaSetDevice(state_->device), "cudaSetDevice");
    Check(cudaEventRecord(state_->inputs_ready, state_->compute_stream), "cudaEventRecord");
    Check(cudaStreamWaitEvent(state_->stream, state_->inputs_ready, 0), "cudaStreamWaitEvent");
    Check(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                        NcclType(tensor.scalar_type()), ncclAvg, state_->comm, state_->stream),
          "ncclAllReduce", state_->comm);
    state_->Settle(description, Clock::now() + state_->timeout);
    return std::make_unique<NcclHandle>(state_, description,
                                        std::vector<at::Tensor>{std::move(tensor)});
  } catch (const CollectiveError& e) {
    state_->Abort(e.what());
    throw CollectiveError(description + ": " + e.what());
  }
}

std::unique_ptr<CollectiveHandle> NcclCommunicator::AllGather(at::Tensor input,
                                                              at::Tensor output) {
  CheckAllGather(input, output, state_->world_size);
  CheckDevice(input, state_->device, "all-gather");
  std::lock_guard<std::mutex> lock(state_->mu);
  const std::string op = "all-gather #" + std::to_string(state_->sequence++);
  state_->ThrowIfBroken(op);
  const std::string description = DescribeCollective(op, state_->rank, state_->world_size, "nccl");
  try {
    Check(cudaSetDevice(state_->device), "cudaSetDevice");
    Check(cudaEventRecord(state_->inputs_ready, state_->compute_stream), "cudaEventRecord");
    Check(cudaStreamWaitEvent(state_->stream, state_->inputs_ready, 0), "cudaStreamWaitEvent");
    Check(ncclAllGather(input.data_ptr(), output.data_ptr(), input.numel(),
                        NcclType(input.scalar_type()), state_->comm, state_->stream),
          "ncclAllGather", state_->comm);
    state_->Settle(description, Clock::now() + state_->timeout);
    return std::make_unique<NcclHandle>(state_, description,
                                        std::vector<at::Tensor>{std::move(input), std::move(output)});
  } catch (const CollectiveError& e) {
    state_->Abort(e.what());
    throw CollectiveError(description + ": " + e.what());
  }
}

std::unique_ptr<CollectiveHandle> NcclCommunicator::Broadcast(at::Tensor tensor, int root) {
  CheckCollectiveTensor(tensor, /*floating_only=*/false, "broadcast");
  CheckDevice(tensor, state_->device, "broadcast");
  CheckRoot(root, state_->world_size);
  std::lock_guard<std::mutex> lock(state_->mu);
  const std::string op = "broadcast #" + std::to_string(state_->sequence++);
  state_->ThrowIfBroken(op);
  const std::string description = DescribeCollective(op, state_->rank, state_->world_size, "nccl");
  try {
    Check(cudaSetDevice(state_->device), "cudaSetDevice");
    Check(cudaEventRecord(state_->inputs_ready, state_->compute_stream), "cudaEventRecord");
    Check(cudaStreamWaitEvent(state_->stream, state_->inputs_ready, 0), "cudaStreamWaitEvent");
    Check(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                        NcclType(tensor.scalar_type()), root, state_->comm, state_->stream),
          "ncclBroadcast", state_->comm);
    state_->Settle(description, Clock::now() + state_->timeout);
    return std::make_unique<NcclHandle>(state_, description,
                                        std::vector<at::Tensor>{std::move(tensor)});
  } catch (const CollectiveError& e) {
    state_->Abort(e.what());
    throw CollectiveError(description + ": " + e.what());
  }
}

void NcclCommunicator::Barrier() {
  std::unique_ptr<CollectiveHandle> handle;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    const std::string op = "barrier #" + std::to_string(state_->sequence++);
    state_->ThrowIfBroken(op);
    const std::string description =
        DescribeCollective(op, state_->rank, state_->world_size, "nccl");
    try {
      Check(cudaSetDevice(state_->device), "cudaSetDevice");
      Check(ncclAllReduce(state_->barrier_buffer, state_->barrier_buffer, 1, ncclFloat32, ncclSum,
                          state_->comm, state_->stream),
            "ncclAllReduce", state_->comm);
      state_->Settle(description, Clock::now() + state_->timeout);
      handle = std::make_unique<NcclHandle>(state_, description, std::vector<at::Tensor>{});
    } catch (const CollectiveError& e) {
      state_->Abort(e.what());
      throw CollectiveError(description + ": " + e.what());
    }
  }
  handle->Wait(state_->timeout);
}

}  // namespace tecl::worker::dist
