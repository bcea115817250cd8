// The trainer's per-rank Prometheus metrics, labelled {job_id, rank} so that a dashboard can put
// the ranks of a job side by side and spot the straggler (deploy/grafana, deploy/prometheus use
// exactly these names; docs/operations.md lists them).
//
//   tecl_worker_steps_total            counter    optimiser steps taken
//   tecl_worker_step                   gauge      current step (0-based count of steps taken)
//   tecl_worker_step_seconds           histogram  wall time of one step (data wait included)
//   tecl_worker_data_wait_seconds      histogram  time the step waited for its batch
//   tecl_worker_allreduce_seconds      histogram  time gradient all-reduces were in flight
//   tecl_worker_allreduce_exposed_seconds histogram part of it not hidden behind backward
//   tecl_worker_loss{term}             gauge      last step's loss terms and head accuracies
//   tecl_worker_clips_total            counter    clips trained on by this rank
//   tecl_worker_eta_seconds            gauge      estimated time to the job's last step
//   tecl_worker_learning_rate          gauge      learning rate of the last step
//   tecl_worker_checkpoints_total      counter    checkpoints written (rank 0)
//   tecl_worker_checkpoint_seconds     histogram  time to write one
//   tecl_worker_eval_videos_total      counter    videos whose features an eval job extracted
//   tecl_worker_loader_failovers_total{reason} counter dataloaders this rank stopped using:
//                                                  "error" (stream broke), "stalled" (nothing
//                                                  within restart.loader_stall_timeout_s)
//   tecl_worker_skipped_steps_total    counter    fp16 steps skipped: the gradients overflowed
//   tecl_worker_loss_scale             gauge      fp16 loss scale of the last step
//
// and, per process (RegisterHostCacheMetrics, read from train/host_allocator.h at each scrape):
//   tecl_worker_host_cache_hits_total      counter  large host tensors served from the cache
//   tecl_worker_host_cache_misses_total    counter  large host tensors that mapped new memory
//   tecl_worker_host_cache_releases_total  counter  cached blocks given back to the OS
//   tecl_worker_host_cache_cached_bytes    gauge    bytes held free for reuse
//   tecl_worker_host_cache_live_bytes      gauge    bytes of large host tensors in use
//
// Thread-safety: the metric objects are thread-safe; one JobMetrics per running job.
#ifndef TECL_SERVICES_WORKER_RUNNER_TRAINER_METRICS_H_
#define TECL_SERVICES_WORKER_RUNNER_TRAINER_METRICS_H_

#include <string>

#include "services/common/metrics.h"
#include "services/worker/loss/objective.h"

namespace tecl::worker {

class JobMetrics {
 public:
  JobMetrics(metrics::Registry& registry, const std::string& job_id, int rank);

  void RecordStep(int64_t step_done, double step_seconds, double data_wait_seconds,
                  double allreduce_seconds, double exposed_seconds, int64_t clips,
                  double learning_rate, const core::LossValues& loss, double eta_seconds);
  void RecordCheckpoint(double seconds);
  void RecordEvalVideos(int64_t videos);
  // A dataloader the rank's input stopped using; `reason` is "error" or "stalled".
  void RecordLoaderFailover(const std::string& reason);
  // fp16 only: the step's loss scale and whether it was skipped.
  void RecordLossScale(double scale, bool skipped);

 private:
  metrics::Counter& steps_;
  metrics::Gauge& step_;
  metrics::Histogram& step_seconds_;
  metrics::Histogram& data_wait_seconds_;
  metrics::Histogram& allreduce_seconds_;
  metrics::Histogram& exposed_seconds_;
  metrics::Counter& clips_;
  metrics::Gauge& eta_;
  metrics::Gauge& learning_rate_;
  metrics::Counter& checkpoints_;
  metrics::Histogram& checkpoint_seconds_;
  metrics::Counter& eval_videos_;
  metrics::Family<metrics::Gauge>& loss_;
  metrics::Family<metrics::Counter>& loader_failovers_;
  metrics::Counter& skipped_steps_;
  metrics::Gauge& loss_scale_;
  const metrics::Labels labels_;
};

// The host caching allocator's counters as metrics of `registry` (once per process).
void RegisterHostCacheMetrics(metrics::Registry& registry);

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_TRAINER_METRICS_H_
