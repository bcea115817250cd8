// BatchStream: the batches of one StreamBatches call, in order, built ahead of the client by at
// most `depth` batches.
//
// The stream first prepares (reads the manifest, builds the samplers) in an urgent pool task, then
// keeps batches next .. next + depth - 1 built or being built, where `next` is the first batch not
// yet handed out by Next(). A batch handed out is the caller's to send; the caller asks for the
// next one only when the previous one was sent (gRPC's OnWriteDone), so a stalled client stalls
// the stream: the loader holds at most depth + 1 batches per stream, whatever the client does.
//
// Cancel() (or destruction) drops the queued batches and cancels the builds in progress at once;
// the active-streams gauge counts a stream until it is destroyed.
//
// Thread-safe. Owned through shared_ptr (build callbacks hold weak references).
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_BATCH_STREAM_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_BATCH_STREAM_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/dataloader/pipeline/batch_builder.h"
#include "services/dataloader/pipeline/loader_metrics.h"
#include "services/dataloader/pipeline/thread_pool.h"
#include "tecl/v1/dataloader.pb.h"

namespace tecl::dataloader {

class BatchStream : public std::enable_shared_from_this<BatchStream> {
 public:
  using Result = absl::StatusOr<tecl::v1::ClipBatch>;
  using Callback = std::function<void(Result)>;
  // Starts building batch `index` (0-based within the stream); `done` as BatchBuilder's, never
  // called before the function returns (it runs on a pool thread).
  using BuildFn =
      std::function<std::shared_ptr<BuildHandle>(int64_t index, BatchBuilder::Done done)>;
  struct Prepared {
    BuildFn build;
    int64_t num_batches = -1;  // -1 = unbounded.
  };
  // Runs once on the pool; an error ends the stream with it.
  using PrepareFn = std::function<absl::StatusOr<Prepared>()>;

  // `on_destroy` runs in the destructor (e.g. to count open streams).
  static std::shared_ptr<BatchStream> Create(int depth, PrepareFn prepare, ThreadPool* pool,
                                             LoaderMetrics* metrics,
                                             std::function<void()> on_destroy = nullptr);
  ~BatchStream();
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  // Schedules the preparation. Never blocks.
  void Start();

  // Delivers the next batch to `callback` exactly once: inline when it is ready, else from the pool
  // thread that finishes it. OUT_OF_RANGE after the last batch, CANCELLED after Cancel(), or the
  // error that ended the stream. One call at a time. Never blocks.
  void Next(Callback callback);

  void Cancel();

  // Batches whose build was started so far, and built batches waiting to be handed out.
  int64_t started() const;
  int64_t ready() const;

 private:
  struct Entry {
    std::shared_ptr<BuildHandle> handle;
    bool done = false;
    Result result = absl::UnknownError("not built");
  };

  BatchStream(int depth, PrepareFn prepare, ThreadPool* pool, LoaderMetrics* metrics,
              std::function<void()> on_destroy);
  void Prepare();
  void StartBuildsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnBuilt(int64_t index, Result result);
  // Takes the result for `callback` when one is due; returns false when the caller must wait.
  bool TakeLocked(Result* result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int depth_;
  PrepareFn prepare_;
  ThreadPool* const pool_;
  LoaderMetrics* const metrics_;
  std::function<void()> on_destroy_;

  mutable absl::Mutex mu_;
  bool prepared_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);  // Ends the stream once delivered or on prepare.
  BuildFn build_ ABSL_GUARDED_BY(mu_);
  int64_t num_batches_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t next_ ABSL_GUARDED_BY(mu_) = 0;     // First batch not handed out.
  int64_t started_ ABSL_GUARDED_BY(mu_) = 0;  // First batch not started.
  int64_t ready_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  Callback pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_BATCH_STREAM_H_
