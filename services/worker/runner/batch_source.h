// BatchSource: where a running job takes its clip batches from, one step after another, and the
// factory the runner calls to open one. In production it is a BatchStream (batch_stream.h: the
// job's dataloaders over gRPC); tests hand the runner an in-memory source.
//
// Thread-safety: Next() is called by one consumer thread; Cancel() from any thread (the runner's
// stop watcher). Ownership: the runner owns the source it opened.
#ifndef TECL_SERVICES_WORKER_RUNNER_BATCH_SOURCE_H_
#define TECL_SERVICES_WORKER_RUNNER_BATCH_SOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tecl/v1/dataloader.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::worker {

// What a job asks its input for.
struct BatchStreamOptions {
  std::string job_id;
  tecl::v1::JobSpec spec;
  tecl::v1::StreamMode mode = tecl::v1::STREAM_MODE_TRAIN;
  int rank = 0;
  int world_size = 1;
  int64_t start_step = 0;  // First step delivered.
  int64_t end_step = 0;    // One past the last step (TRAIN); EVAL streams end with `last`.
  int prefetch = 2;        // Batches each loader may have ready ahead of the consumer.
  absl::Duration reconnect_backoff = absl::Milliseconds(500);  // Doubles up to 5 s.
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;

  // Blocks until the next step's batch is ready and returns it (steps in order from
  // options.start_step). OUT_OF_RANGE after the last step (EVAL: after the batch marked `last`);
  // CANCELLED after Cancel(); another code when the input failed for good (INVALID_ARGUMENT,
  // FAILED_PRECONDITION, ...: a bad spec or data set).
  virtual absl::StatusOr<tecl::v1::ClipBatch> Next() = 0;

  // Makes a blocked and every later Next() return CANCELLED. Does not block.
  virtual void Cancel() = 0;
};

// Opens the input of one job rank: `options` and the rank's dataloader addresses (in stream
// order). Does not block (a source connects lazily); never returns null.
using BatchSourceFactory = std::function<std::unique_ptr<BatchSource>(
    const BatchStreamOptions& options, const std::vector<std::string>& loader_addresses)>;

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_BATCH_SOURCE_H_
