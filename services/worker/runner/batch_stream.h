// BatchStream: the production BatchSource (batch_source.h): this rank's clip batches, in step
// order, streamed from the job's dataloaders with prefetch.
//
// With k healthy loaders, loader j streams steps s+j, s+j+k, ... (StreamBatches with a stride), so
// k loaders decode in parallel for one trainer, and each keeps up to `prefetch` batches ready ahead
// of the training step (the reader stops reading past that window, and gRPC flow control then
// stops the loader: memory stays bounded on both sides). Because a batch is a pure function of
// (seed, rank, world size, step), any loader can serve any step: when a loader fails, the stream
// restarts the remaining loaders from the first missing step; when none is left it retries all
// addresses with backoff (a restarted or replacement loader, see SetAddresses) until it is
// cancelled. A loader fails when its stream breaks, or when it stalls: the consumer waits for a
// step that loader owes and it sends nothing for `stall_timeout` (`start_timeout` while it has
// not yet delivered a batch to this stream), as a stopped or hung process with an open connection
// does. A failed loader is left out of later restarts for its own penalty: `reconnect_backoff`,
// doubling with each failure in a row up to 5 s; a stall keeps it out at least as long as the
// consumer waited for it, doubling up to 4x that (a hung loader that still heartbeats would
// otherwise cost a stall timeout at every restart); a batch from it clears its penalty. Errors that no loader can fix (INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED,
// UNAUTHENTICATED: a bad spec or dataset) end the stream with that status.
//
// Thread-safety: Next() is called by one consumer thread; Cancel() and SetAddresses() from any
// thread. Owns one reader thread per loader stream.
#ifndef TECL_SERVICES_WORKER_RUNNER_BATCH_STREAM_H_
#define TECL_SERVICES_WORKER_RUNNER_BATCH_STREAM_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/client/loader_client.h"
#include "services/worker/runner/batch_source.h"

namespace tecl::worker {

class BatchStream final : public BatchSource {
 public:
  BatchStream(BatchStreamOptions options, std::vector<std::string> addresses,
              LoaderClientFactory loaders);
  ~BatchStream() override;  // Cancels and joins every reader.
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  // Blocks until the next step's batch is ready and returns it. OUT_OF_RANGE after the last step;
  // CANCELLED after Cancel(); a non-retryable loader error as described above.
  absl::StatusOr<tecl::v1::ClipBatch> Next() override;

  // Replaces the loader addresses (a replacement loader, a lost one dropped); streams restart
  // from the next step. Addresses that stay keep their failure backoff.
  void SetAddresses(std::vector<std::string> addresses) override;
  void Cancel() override;

  int64_t next_step() const;
  int64_t reconnects() const;  // Stream restarts after a loader failure.

 private:
  struct Reader {
    std::string address;
    std::unique_ptr<BatchReader> stream;
    std::thread thread;
    absl::Time started;
  };

  // Starts one reader per healthy address from next_step_. Called with mu_ held.
  void StartGenerationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cancels and joins the current readers (releases mu_ while joining).
  void StopGenerationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReadLoop(int generation, std::string address, BatchReader* stream, int64_t stride);
  // Stops using `address` for its penalty (at least `waited`, what its failure cost the consumer)
  // and asks Next() to restart the others.
  void MarkFailedLocked(const std::string& address, const std::string& reason,
                        absl::Duration waited) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The reader of the current generation that owes next_step_; null when there is none.
  const Reader* OwnerLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  static bool IsFatal(absl::StatusCode code);

  const BatchStreamOptions options_;
  const LoaderClientFactory loaders_;

  mutable absl::Mutex mu_;
  std::vector<std::string> addresses_ ABSL_GUARDED_BY(mu_);
  // A loader that failed since it last delivered a batch.
  struct Penalty {
    absl::Time until;     // Left out of restarts until then.
    absl::Duration next;  // Its next penalty (doubling).
    absl::Duration cap;   // Of `next`: 5 s, or 4x the longest stall it cost.
  };
  std::map<std::string, Penalty> penalties_ ABSL_GUARDED_BY(mu_);
  std::vector<Reader> readers_ ABSL_GUARDED_BY(mu_);
  int64_t generation_start_step_ ABSL_GUARDED_BY(mu_) = 0;  // readers_[j] serves start + j + i*k.
  std::set<std::string> warm_ ABSL_GUARDED_BY(mu_);  // Loaders that delivered a batch.
  int64_t addresses_version_ ABSL_GUARDED_BY(mu_) = 0;  // Bumped by SetAddresses.
  std::map<int64_t, tecl::v1::ClipBatch> ready_ ABSL_GUARDED_BY(mu_);
  int64_t next_step_ ABSL_GUARDED_BY(mu_);
  int generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool restart_needed_ ABSL_GUARDED_BY(mu_) = true;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool eval_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  int64_t reconnects_ ABSL_GUARDED_BY(mu_) = 0;
};

// The BatchSourceFactory of tecl-worker: a BatchStream over the clients `loaders` makes (with the
// credentials of this process).
BatchSourceFactory LoaderBatchSources(LoaderClientFactory loaders);

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_BATCH_STREAM_H_
