#include "services/worker/train/device_staging.h"

#include <utility>

namespace tecl::worker::core {

// The CUDA implementation (device_staging_cuda.cc) exists in builds with the CUDA runtime.
#if TECL_HAVE_CUDART
std::unique_ptr<DeviceStager::Impl> MakeCudaStagerImpl(const c10::Device& device);
#endif

DeviceStager::DeviceStager(const c10::Device& device) {
#if TECL_HAVE_CUDART
  if (device.is_cuda()) impl_ = MakeCudaStagerImpl(device);
#else
  (void)device;
#endif
}

DeviceStager::~DeviceStager() = default;

StagedBatch DeviceStager::Stage(Batch host) {
  if (impl_ == nullptr) return StagedBatch{std::move(host), nullptr};
  return impl_->Stage(std::move(host));
}

Batch DeviceStager::Ready(StagedBatch staged) {
  if (staged.fence != nullptr) {
    staged.fence->MakeComputeStreamWait();
    staged.fence.reset();
  }
  return std::move(staged.batch);
}

}  // namespace tecl::worker::core
