// BatchBuilder: builds one ClipBatch from a plan on the decode thread pool.
//
// A TRAIN batch is built by G group tasks; each resolves its two slots (probing candidates,
// skipping unusable videos, batch_plan.h), draws the group's plan, decodes each video's clips
// with one ClipSource::Decode call (the union of the frames, decoded once, each clip scaled from
// its crop rectangle straight to S x S) and writes them, colour-augmented, into the batch's
// uint8 (N, T, S, S, 3) buffer. An EVAL batch has one task per video. Nothing blocks between
// tasks: the last task to finish assembles the ClipBatch and calls `done` from its thread.
//
// Bad videos: a probe or decode failure marks the file in BadVideos (logged once, counted in
// tecl_dataloader_bad_files_total{reason}); the group is then planned again, so the slot takes its
// next candidate. Every video passed over in the final plan counts in ClipBatch.videos_skipped and
// tecl_dataloader_videos_skipped_total{reason}. EVAL batches report an unreadable video with
// num_clips 0 and count it as skipped. A batch fails (FAILED_PRECONDITION) only when no usable
// video is left in the split.
//
// Cancel() makes every task that has not started return at once, frees the batch buffer (once no
// task writes into it) and calls `done` with CANCELLED.
//
// Thread-safe. The environment (source, pool, bad-video memory, metrics) must outlive every build.
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_BATCH_BUILDER_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_BATCH_BUILDER_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/dataloader/pipeline/bad_videos.h"
#include "services/dataloader/pipeline/batch_plan.h"
#include "services/dataloader/pipeline/clip_source.h"
#include "services/dataloader/pipeline/loader_metrics.h"
#include "services/dataloader/pipeline/thread_pool.h"
#include "tecl/v1/dataloader.pb.h"

namespace tecl::dataloader {

struct BuilderEnv {
  ClipSource* source = nullptr;
  ThreadPool* pool = nullptr;
  BadVideos* bad_videos = nullptr;
  LoaderMetrics* metrics = nullptr;
};

// A build in progress.
class BuildHandle {
 public:
  virtual ~BuildHandle() = default;
  // Stops the build; `done` is called with CANCELLED unless it already ran. Never blocks.
  virtual void Cancel() = 0;
};

class BatchBuilder {
 public:
  using Done = std::function<void(absl::StatusOr<tecl::v1::ClipBatch>)>;

  explicit BatchBuilder(BuilderEnv env) : env_(env) {}

  // Starts the TRAIN batch of `global_step`. `done` runs exactly once, on a pool thread, with the
  // batch, an error (FAILED_PRECONDITION: no usable video) or CANCELLED. Never blocks.
  std::shared_ptr<BuildHandle> StartTrain(std::shared_ptr<const TrainSampler> sampler,
                                          const video::DecodeOptions& decode, int64_t global_step,
                                          Done done) const;

  // Starts EVAL batch `batch` (step = batch). `done` as above.
  std::shared_ptr<BuildHandle> StartEval(std::shared_ptr<const EvalSampler> sampler,
                                         const video::DecodeOptions& decode, int64_t batch,
                                         Done done) const;

  // Start and wait (tests, benchmarks). Blocks; must not be called from a pool thread.
  absl::StatusOr<tecl::v1::ClipBatch> BuildTrain(std::shared_ptr<const TrainSampler> sampler,
                                                 const video::DecodeOptions& decode,
                                                 int64_t global_step) const;
  absl::StatusOr<tecl::v1::ClipBatch> BuildEval(std::shared_ptr<const EvalSampler> sampler,
                                                const video::DecodeOptions& decode,
                                                int64_t batch) const;

  const BuilderEnv& env() const { return env_; }

 private:
  const BuilderEnv env_;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_BATCH_BUILDER_H_
