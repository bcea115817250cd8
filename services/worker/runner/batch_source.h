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
  // A failed loader sits out restarts this long, doubling per failure in a row up to 5 s (a
  // stalled one: at least its stall, up to 4x; batch_stream.h).
  absl::Duration reconnect_backoff = absl::Milliseconds(500);
  // A loader that owes the step the consumer waits for and sends nothing for this long is
  // treated as failed (restart.loader_stall_timeout_s): its steps move to the other loaders.
  absl::Duration stall_timeout = absl::Seconds(60);
  // The same for a loader that has not yet delivered a batch to this source (a cold loader reads
  // the manifest and indexes its first files; restart.loader_start_timeout_s).
  absl::Duration start_timeout = absl::Seconds(300);
  // Told of every loader the source stops using because it failed ("error": its stream broke or
  // could not start; "stalled": it sent nothing within the timeout above). Called on the source's
  // threads with its lock held: must be quick and must not call back into the source.
  std::function<void(const std::string& address, const std::string& reason)> on_failover;
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

  // Replaces the dataloader addresses (the coordinator placed a replacement or dropped a lost
  // loader); the stream goes on from its next step. Does not block. Sources without loaders (tests)
  // ignore it.
  virtual void SetAddresses(std::vector<std::string> /*addresses*/) {}
};

// Opens the input of one job rank: `options` and the rank's dataloader addresses (in stream
// order). Does not block (a source connects lazily); never returns null.
using BatchSourceFactory = std::function<std::unique_ptr<BatchSource>(
    const BatchStreamOptions& options, const std::vector<std::string>& loader_addresses)>;

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_BATCH_SOURCE_H_
