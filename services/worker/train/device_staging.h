// DeviceStager: a clip batch's host-to-device copy, taken off the training step's critical path.
//
//   DeviceStager stager(device);
//   StagedBatch next = stager.Stage(std::move(host_batch));  // any one thread; returns at once
//   ...                                                      // the copy runs while a step computes
//   Batch batch = stager.Ready(std::move(next));             // the training thread, before use
//   trainer.ForwardBackward(batch);
//
// On a CUDA device Stage copies the uint8 clips (the batch's only large tensor) into a page-locked
// host buffer and from it, asynchronously, into a fresh device tensor on a side stream of its own,
// so the copy overlaps the kernels of the step before it (the pattern of PyTorch's pin_memory +
// non_blocking copies on a side stream). Ready makes the compute stream (the default stream, where
// LibTorch runs the step) wait for that copy on the device, without blocking the host. The labels
// stay on the host: IndexBatch reads them there. Two host buffers take turns; before one is
// refilled its previous copy is waited for, so a buffer is never overwritten while the device
// reads it. The device tensor is allocated on the compute stream and the side stream first waits
// for what the compute stream has queued, so memory the caching allocator hands out again is not
// written while a queued kernel still reads it; a StagedBatch dropped without Ready waits for its
// copy before its tensor is freed.
//
// On the CPU (or a build without the CUDA runtime) Stage and Ready hand the batch through as it is
// and NormalizeClips copies it.
//
// Errors: c10::Error from LibTorch (e.g. device out of memory); Error(kUnavailable) when a CUDA
// runtime call fails (its message names the call and CUDA's error string).
//
// Thread-safety: Stage from one thread at a time and Ready from one thread at a time (they may be
// different threads: a prefetcher and the training thread). Ownership: the stager owns its buffers
// and stream; a StagedBatch may outlive the stager that made it.
#ifndef TECL_SERVICES_WORKER_TRAIN_DEVICE_STAGING_H_
#define TECL_SERVICES_WORKER_TRAIN_DEVICE_STAGING_H_

#include <c10/core/Device.h>

#include <memory>

#include "services/worker/loss/batch.h"

namespace tecl::worker::core {

// What one batch's copy waits on (a CUDA event); opaque outside the stager.
class StagingFence {
 public:
  virtual ~StagingFence() = default;  // Waits for the copy on the host if it was never waited on.
  virtual void MakeComputeStreamWait() = 0;
};

// A batch whose clips may still be on their way to the device.
struct StagedBatch {
  Batch batch;
  // Declared after `batch`, so destroyed before it: an abandoned copy finishes before its tensor
  // goes back to the allocator.
  std::unique_ptr<StagingFence> fence;
};

class DeviceStager {
 public:
  explicit DeviceStager(const c10::Device& device);
  ~DeviceStager();
  DeviceStager(const DeviceStager&) = delete;
  DeviceStager& operator=(const DeviceStager&) = delete;

  // Starts the clips' copy to the device and returns without waiting for it (see above).
  StagedBatch Stage(Batch host);
  // The batch, usable by the kernels the calling thread queues from now on.
  Batch Ready(StagedBatch staged);

  // Whether copies go through page-locked buffers on a side stream (a CUDA device in a build with
  // the CUDA runtime); false: pass-through.
  bool asynchronous() const { return impl_ != nullptr; }

  // The asynchronous implementation (device_staging_cuda.cc).
  class Impl {
   public:
    virtual ~Impl() = default;
    virtual StagedBatch Stage(Batch host) = 0;
  };

 private:
  std::unique_ptr<Impl> impl_;  // Null: pass-through.
};

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_DEVICE_STAGING_H_
