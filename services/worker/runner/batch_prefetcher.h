// BatchPrefetcher: the training loop's input, one step ahead. A thread of its own takes the next
// ClipBatch from the job's BatchSource, converts it (BatchFromProto, zero copy) and hands it to the
// DeviceStager, so that while step k computes, batch k+1 is already received, converted and on its
// way to the GPU (device_staging.h: page-locked buffers, a side stream); Next() then only makes the
// compute stream wait for that copy. At most two batches are held ahead of the consumer: one
// ready, one being staged.
//
//   BatchPrefetcher input(source, stager);
//   absl::StatusOr<BatchPrefetcher::Item> item = input.Next();  // blocks until ready
//
// The thread is the source's one consumer (batch_source.h). The first error the source or the
// conversion returns (OUT_OF_RANGE after the last step, CANCELLED, a bad batch) is returned by
// Next() after every batch before it, and by every Next() after it; the thread then ends.
//
// Thread-safety: Next() from one thread. Ownership: the source and the stager must outlive the
// prefetcher; its destructor cancels the source (a thread blocked in it returns) and joins.
#ifndef TECL_SERVICES_WORKER_RUNNER_BATCH_PREFETCHER_H_
#define TECL_SERVICES_WORKER_RUNNER_BATCH_PREFETCHER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/worker/loss/batch.h"
#include "services/worker/runner/batch_source.h"
#include "services/worker/train/device_staging.h"

namespace tecl::worker {

class BatchPrefetcher {
 public:
  struct Item {
    int64_t step = 0;
    int64_t epoch = 0;
    core::Batch batch;  // Clips on the stager's device (or the host, for a CPU trainer).
  };

  // Starts the thread.
  BatchPrefetcher(BatchSource& source, core::DeviceStager& stager);
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // The next step's batch (see above).
  absl::StatusOr<Item> Next();

 private:
  struct Staged {
    int64_t step = 0;
    int64_t epoch = 0;
    core::StagedBatch staged;
  };

  void Run();

  BatchSource& source_;
  core::DeviceStager& stager_;
  absl::Mutex mu_;
  std::optional<absl::StatusOr<Staged>> ready_ ABSL_GUARDED_BY(mu_);
  absl::Status final_ ABSL_GUARDED_BY(mu_);  // The error that ended the thread, once taken.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // Last: started once the rest exists.
};

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_BATCH_PREFETCHER_H_
