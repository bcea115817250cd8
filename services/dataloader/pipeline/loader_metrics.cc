#include "services/dataloader/pipeline/loader_metrics.h"

#include <algorithm>

namespace tecl::dataloader {

using metrics::BuildCounter;
using metrics::BuildGauge;
using metrics::BuildHistogram;
using metrics::Histogram;

LoaderMetrics::LoaderMetrics(metrics::Registry& registry)
    : clips(BuildCounter()
                .Name("tecl_dataloader_clips_total")
                .Help("Clips built into batches")
                .Register(registry)
                .Add({})),
      batches(BuildCounter()
                  .Name("tecl_dataloader_batches_total")
                  .Help("Batches built, by stream mode")
                  .Register(registry)),
      frames_decoded(BuildCounter()
                         .Name("tecl_dataloader_frames_decoded_total")
                         .Help("Frames that came out of the video decoder")
                         .Register(registry)
                         .Add({})),
      frames_used(BuildCounter()
                      .Name("tecl_dataloader_frames_used_total")
                      .Help("Distinct decoded frames written into at least one clip")
                      .Register(registry)
                      .Add({})),
      decode_seconds(BuildHistogram()
                         .Name("tecl_dataloader_decode_seconds")
                         .Help("Wall time of decoding one video's clips")
                         .Register(registry)
                         .Add({}, Histogram::ExponentialBuckets(0.001, 2.0, 16))),
      batch_build_seconds(BuildHistogram()
                              .Name("tecl_dataloader_batch_build_seconds")
                              .Help("Decode and augmentation work of one batch (summed over threads)")
                              .Register(registry)
                              .Add({}, Histogram::ExponentialBuckets(0.005, 2.0, 16))),
      bad_files(BuildCounter()
                    .Name("tecl_dataloader_bad_files_total")
                    .Help("Videos found unreadable or too short, counted when first found")
                    .Register(registry)),
      skipped(BuildCounter()
                  .Name("tecl_dataloader_videos_skipped_total")
                  .Help("Videos skipped and replaced while building batches")
                  .Register(registry)),
      labels(BuildCounter()
                 .Name("tecl_dataloader_labels_total")
                 .Help("Training clips by speed (stride) and direction, groups by relation")
                 .Register(registry)),
      speed_unavailable(BuildCounter()
                            .Name("tecl_dataloader_speed_unavailable_total")
                            .Help("Groups whose shorter video is too short for a clip at this "
                                  "speed, which therefore could not be drawn")
                            .Register(registry)),
      index_loads(BuildCounter()
                      .Name("tecl_dataloader_index_loads_total")
                      .Help("Video indexes a cache miss needed, by source: stored (.tecli "
                            "loaded), built (read from the video), stale or corrupt (.tecli "
                            "rejected, then built)")
                      .Register(registry)),
      queue_depth(BuildGauge()
                      .Name("tecl_dataloader_queue_depth")
                      .Help("Built batches waiting to be sent to their client, all streams")
                      .Register(registry)
                      .Add({})),
      active_streams(BuildGauge()
                         .Name("tecl_dataloader_active_streams")
                         .Help("Open batch streams (until all their work is freed)")
                         .Register(registry)
                         .Add({})) {
  for (const char* source : {"stored", "built", "stale", "corrupt"}) index_loads.Add({{"source", source}});
}

void LoaderMetrics::SyncIndexLoads() {
  const video::IndexLoadCounts now = video::GetIndexLoadCounts();
  absl::MutexLock lock(&index_mu_);
  const auto add = [&](const char* source, int64_t current, int64_t& synced) {
    if (current > synced) index_loads.Add({{"source", source}}).Increment(static_cast<double>(current - synced));
    synced = std::max(synced, current);
  };
  add("stored", now.stored, index_synced_.stored);
  add("built", now.built, index_synced_.built);
  add("stale", now.stale, index_synced_.stale);
  add("corrupt", now.corrupt, index_synced_.corrupt);
}

}  // namespace tecl::dataloader
