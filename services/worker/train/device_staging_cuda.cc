// DeviceStager on a CUDA device: page-locked host buffers and a side stream (device_staging.h).
// Plain CUDA runtime calls, so this compiles against any LibTorch (Debian's CPU build included)
// wherever the CUDA runtime's headers exist.
#include <ATen/ATen.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "services/worker/model/error.h"
#include "services/worker/train/device_staging.h"

namespace tecl::worker::core {
namespace {

void Check(cudaError_t result, const char* call) {
  if (result == cudaSuccess) return;
  throw Error(ErrorCode::kUnavailable,
              std::string("staging a batch on the GPU: CUDA ") + call + ": " +
                  cudaGetErrorString(result));
}

// One copy's completion, recorded on the side stream.
class Event {
 public:
  Event() { Check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate"); }
  ~Event() {
    cudaEventSynchronize(event_);  // Never free what a copy still writes or reads.
    cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

class CudaFence : public StagingFence {
 public:
  CudaFence(int device, std::shared_ptr<Event> copied)
      : device_(device), copied_(std::move(copied)) {}
  // Abandoned (never made the compute stream wait): the copy may still write the tensor that is
  // freed next, so wait for it here. (The event's own destructor would not run while the host
  // buffer still shares it.)
  ~CudaFence() override {
    if (!waited_) cudaEventSynchronize(copied_->get());
  }
  void MakeComputeStreamWait() override {
    Check(cudaSetDevice(device_), "cudaSetDevice");
    // Stream 0 is LibTorch's default stream, where the training step's kernels run; from here on
    // the tensor is used (and freed) in that stream's order, after the copy.
    Check(cudaStreamWaitEvent(nullptr, copied_->get(), 0), "cudaStreamWaitEvent");
    waited_ = true;
  }

 private:
  int device_;
  std::shared_ptr<Event> copied_;  // Shared with the host buffer the copy read.
  bool waited_ = false;
};

class CudaStager : public DeviceStager::Impl {
 public:
  explicit CudaStager(const c10::Device& device)
      : device_(device), index_(device.has_index() ? device.index() : 0) {
    Check(cudaSetDevice(index_), "cudaSetDevice");
    Check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    Check(cudaEventCreateWithFlags(&queued_, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~CudaStager() override {
    cudaSetDevice(index_);
    cudaStreamSynchronize(stream_);  // No copy reads a buffer any more.
    for (Buffer& buffer : buffers_) {
      buffer.last_copy.reset();
      if (buffer.data != nullptr) cudaFreeHost(buffer.data);
    }
    cudaEventDestroy(queued_);
    cudaStreamDestroy(stream_);
  }

  StagedBatch Stage(Batch host) override {
    const at::Tensor source = host.clips.contiguous();
    if (source.is_cuda() || !source.defined()) return StagedBatch{std::move(host), nullptr};
    Check(cudaSetDevice(index_), "cudaSetDevice");
    const size_t bytes = source.nbytes();
    Buffer& buffer = buffers_[next_];
    next_ = (next_ + 1) % buffers_.size();
    if (buffer.last_copy != nullptr) {  // Its previous copy must have finished reading it.
      Check(cudaEventSynchronize(buffer.last_copy->get()), "cudaEventSynchronize");
      buffer.last_copy.reset();
    }
    if (bytes > buffer.capacity) {
      if (buffer.data != nullptr) Check(cudaFreeHost(buffer.data), "cudaFreeHost");
      buffer.data = nullptr;
      buffer.capacity = 0;
      Check(cudaHostAlloc(&buffer.data, bytes, cudaHostAllocDefault), "cudaHostAlloc");
      buffer.capacity = bytes;
    }
    std::memcpy(buffer.data, source.data_ptr(), bytes);

    // Allocated for the compute stream; the side stream waits for everything queued there so far
    // (the allocator may hand out memory a queued kernel still reads).
    at::Tensor clips = at::empty(source.sizes(), source.options().device(device_));
    Check(cudaEventRecord(queued_, nullptr), "cudaEventRecord");
    Check(cudaStreamWaitEvent(stream_, queued_, 0), "cudaStreamWaitEvent");
    Check(cudaMemcpyAsync(clips.data_ptr(), buffer.data, bytes, cudaMemcpyHostToDevice, stream_),
          "cudaMemcpyAsync");
    auto copied = std::make_shared<Event>();
    Check(cudaEventRecord(copied->get(), stream_), "cudaEventRecord");
    buffer.last_copy = copied;

    host.clips = std::move(clips);
    return StagedBatch{std::move(host), std::make_unique<CudaFence>(index_, std::move(copied))};
  }

 private:
  struct Buffer {
    void* data = nullptr;
    size_t capacity = 0;
    std::shared_ptr<Event> last_copy;
  };

  const c10::Device device_;
  const int index_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t queued_ = nullptr;
  std::array<Buffer, 2> buffers_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<DeviceStager::Impl> MakeCudaStagerImpl(const c10::Device& device) {
  return std::make_unique<CudaStager>(device);
}

}  // namespace tecl::worker::core
