// LoaderMetrics: the dataloader's Prometheus metrics (names start with tecl_dataloader_).
//
//   tecl_dataloader_clips_total                  clips built into batches
//   tecl_dataloader_batches_total{mode}          batches built (train, eval)
//   tecl_dataloader_frames_decoded_total         frames that came out of the decoder
//   tecl_dataloader_frames_used_total            distinct frames written into clips
//   tecl_dataloader_decode_seconds               histogram: one video's decode call
//   tecl_dataloader_batch_build_seconds          histogram: a batch's decode + augmentation work
//   tecl_dataloader_bad_files_total{reason}      videos found unreadable or too short (first time)
//   tecl_dataloader_videos_skipped_total{reason} videos replaced in built batches
//   tecl_dataloader_labels_total{label,value}    training clips by speed (stride) and direction
//                                                (forward, backward); groups by relation
//                                                (before, after, overlap)
//   tecl_dataloader_speed_unavailable_total{speed} groups whose shorter video is too short for a
//                                                clip at that speed (it could not be drawn)
//   tecl_dataloader_index_loads_total{source}    video indexes a cache miss needed: stored (a
//                                                matching .tecli loaded), built (read from the
//                                                video), stale / corrupt (a .tecli rejected, then
//                                                built)
//   tecl_dataloader_queue_depth                  built batches waiting for their client
//   tecl_dataloader_active_streams               open StreamBatches streams
//
// Thread-safe (metric updates are atomic); the registry must outlive this object.
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_LOADER_METRICS_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_LOADER_METRICS_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/common/metrics.h"
#include "services/dataloader/video/video_reader.h"

namespace tecl::dataloader {

struct LoaderMetrics {
  explicit LoaderMetrics(metrics::Registry& registry);

  metrics::Counter& BadFiles(const std::string& reason) { return bad_files.Add({{"reason", reason}}); }
  metrics::Counter& Skipped(const std::string& reason) { return skipped.Add({{"reason", reason}}); }
  metrics::Counter& Batches(const std::string& mode) { return batches.Add({{"mode", mode}}); }
  metrics::Counter& Labels(const std::string& label, const std::string& value) {
    return labels.Add({{"label", label}, {"value", value}});
  }
  metrics::Counter& SpeedUnavailable(int speed) {
    return speed_unavailable.Add({{"speed", std::to_string(speed)}});
  }
  // Brings tecl_dataloader_index_loads_total up to the process's video::GetIndexLoadCounts().
  void SyncIndexLoads();

  metrics::Counter& clips;
  metrics::Family<metrics::Counter>& batches;
  metrics::Counter& frames_decoded;
  metrics::Counter& frames_used;
  metrics::Histogram& decode_seconds;
  metrics::Histogram& batch_build_seconds;
  metrics::Family<metrics::Counter>& bad_files;
  metrics::Family<metrics::Counter>& skipped;
  metrics::Family<metrics::Counter>& labels;
  metrics::Family<metrics::Counter>& speed_unavailable;
  metrics::Family<metrics::Counter>& index_loads;
  metrics::Gauge& queue_depth;
  metrics::Gauge& active_streams;

 private:
  absl::Mutex index_mu_;
  video::IndexLoadCounts index_synced_ ABSL_GUARDED_BY(index_mu_);
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_LOADER_METRICS_H_
