// LoaderManager: the dataloader's logic layer. It owns the decode thread pool, the memory of bad
// videos, the metrics and a short-lived manifest cache, validates stream requests and opens
// BatchStreams; the gRPC adapter (services/dataloader/service) only translates.
//
// Every file read (manifests, videos) happens on the pool, never on the caller's thread.
//
// Thread-safe. The ClipSource and the registry must outlive the manager; every stream must be
// released before the manager is destroyed (the gRPC server is shut down first).
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_LOADER_MANAGER_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_LOADER_MANAGER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/metrics.h"
#include "services/dataloader/manifest/data_roots.h"
#include "services/dataloader/manifest/manifest.h"
#include "services/dataloader/pipeline/bad_videos.h"
#include "services/dataloader/pipeline/batch_builder.h"
#include "services/dataloader/pipeline/batch_stream.h"
#include "services/dataloader/pipeline/clip_source.h"
#include "services/dataloader/pipeline/loader_metrics.h"
#include "services/dataloader/pipeline/stream_config.h"
#include "services/dataloader/pipeline/thread_pool.h"
#include "tecl/v1/dataloader.pb.h"

namespace tecl::dataloader {

struct LoaderOptions {
  // Decode threads shared by every stream; 0 = one per hardware thread.
  int decode_threads = 0;
  // Streams open at once; more get RESOURCE_EXHAUSTED.
  int max_streams = 64;
  // Wall-clock limit of decoding one video's clips (a slower file counts as bad: timeout).
  absl::Duration decode_budget = absl::Seconds(20);
  // Largest video decoded (width, height, frames); a larger one counts as bad: too_large.
  video::InputLimits input_limits;
  // How long a read manifest is reused by streams of the same data set.
  absl::Duration manifest_cache_ttl = absl::Seconds(30);
  ManifestLimits manifest_limits;
  // Data set of requests that name none (format unspecified and no root): --manifest.
  tecl::v1::DatasetSpec default_dataset;
};

class LoaderManager {
 public:
  LoaderManager(LoaderOptions options, DataRoots roots, ClipSource* source,
                metrics::Registry* registry);
  ~LoaderManager();
  LoaderManager(const LoaderManager&) = delete;
  LoaderManager& operator=(const LoaderManager&) = delete;

  // Validates `request` and opens its stream (already preparing on the pool). INVALID_ARGUMENT
  // naming the field; RESOURCE_EXHAUSTED beyond max_streams. Errors of the data set
  // (FAILED_PRECONDITION, PERMISSION_DENIED, INVALID_ARGUMENT naming the manifest file and line)
  // come out of the stream's first Next(). Never blocks.
  absl::StatusOr<std::shared_ptr<BatchStream>> OpenStream(
      const tecl::v1::StreamBatchesRequest& request);

  // Reads the manifest on the pool and calls `done` once from a pool thread (INVALID_ARGUMENT at
  // once, on the caller's thread, for a path or rate out of work_limits). Never blocks.
  void DescribeDataset(const tecl::v1::DatasetSpec& dataset,
                       std::function<void(absl::StatusOr<tecl::v1::DatasetInfo>)> done);

  // Reads (or reuses) the manifest of `dataset`. Blocks on file I/O.
  absl::StatusOr<std::shared_ptr<const Manifest>> GetManifest(const tecl::v1::DatasetSpec& dataset);

  const BatchBuilder& builder() const { return builder_; }
  ThreadPool& pool() { return *pool_; }
  LoaderMetrics& metrics() { return metrics_; }
  BadVideos& bad_videos() { return bad_videos_; }
  int open_streams() const { return open_streams_->load(); }
  const DataRoots& roots() const { return roots_; }

 private:
  struct CachedManifest {
    std::shared_ptr<const Manifest> manifest;
    absl::Time loaded;
  };

  const tecl::v1::DatasetSpec& DatasetOf(const tecl::v1::DatasetSpec& requested) const;

  const LoaderOptions options_;
  const DataRoots roots_;
  ClipSource* const source_;
  LoaderMetrics metrics_;
  BadVideos bad_videos_;
  std::shared_ptr<std::atomic<int>> open_streams_;

  absl::Mutex mu_;
  std::map<std::string, CachedManifest> manifests_ ABSL_GUARDED_BY(mu_);

  // Last: destroyed first, so no task runs once the members above go away.
  std::unique_ptr<ThreadPool> pool_;
  BatchBuilder builder_;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_LOADER_MANAGER_H_
