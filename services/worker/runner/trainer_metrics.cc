#include "services/worker/runner/trainer_metrics.h"

#include "absl/strings/str_cat.h"
#include "services/worker/train/host_allocator.h"

namespace tecl::worker {
namespace {

using metrics::BuildCounter;
using metrics::BuildGauge;
using metrics::BuildHistogram;
using metrics::Histogram;

metrics::Labels RankLabels(const std::string& job_id, int rank) {
  return {{"job_id", job_id}, {"rank", absl::StrCat(rank)}};
}

// 18 doubling buckets from `start` seconds.
Histogram::BucketBoundaries Seconds(double start) {
  return Histogram::ExponentialBuckets(start, 2.0, 18);
}

}  // namespace

JobMetrics::JobMetrics(metrics::Registry& registry, const std::string& job_id, int rank)
    : steps_(BuildCounter()
                 .Name("tecl_worker_steps_total")
                 .Help("Optimiser steps taken, by job and rank")
                 .Register(registry)
                 .Add(RankLabels(job_id, rank))),
      step_(BuildGauge()
                .Name("tecl_worker_step")
                .Help("Steps of the job taken so far (the checkpointed step after a resume)")
                .Register(registry)
                .Add(RankLabels(job_id, rank))),
      step_seconds_(BuildHistogram()
                        .Name("tecl_worker_step_seconds")
                        .Help("Wall time of one training step, data wait included")
                        .Register(registry)
                        .Add(RankLabels(job_id, rank), Seconds(0.001))),
      data_wait_seconds_(BuildHistogram()
                             .Name("tecl_worker_data_wait_seconds")
                             .Help("Time a step waited for its batch from the dataloaders")
                             .Register(registry)
                             .Add(RankLabels(job_id, rank), Seconds(0.0001))),
      allreduce_seconds_(BuildHistogram()
                             .Name("tecl_worker_allreduce_seconds")
                             .Help("Time the step's gradient all-reduces were in flight")
                             .Register(registry)
                             .Add(RankLabels(job_id, rank), Seconds(0.0001))),
      exposed_seconds_(BuildHistogram()
                           .Name("tecl_worker_allreduce_exposed_seconds")
                           .Help("Part of the all-reduce time not hidden behind backward")
                           .Register(registry)
                           .Add(RankLabels(job_id, rank), Seconds(0.0001))),
      clips_(BuildCounter()
                 .Name("tecl_worker_clips_total")
                 .Help("Clips trained on by this rank")
                 .Register(registry)
                 .Add(RankLabels(job_id, rank))),
      eta_(BuildGauge()
               .Name("tecl_worker_eta_seconds")
               .Help("Estimated seconds to the job's last step at the recent step rate")
               .Register(registry)
               .Add(RankLabels(job_id, rank))),
      learning_rate_(BuildGauge()
                         .Name("tecl_worker_learning_rate")
                         .Help("Learning rate of the last step")
                         .Register(registry)
                         .Add(RankLabels(job_id, rank))),
      checkpoints_(BuildCounter()
                       .Name("tecl_worker_checkpoints_total")
                       .Help("Checkpoints written and registered (rank 0)")
                       .Register(registry)
                       .Add(RankLabels(job_id, rank))),
      checkpoint_seconds_(BuildHistogram()
                              .Name("tecl_worker_checkpoint_seconds")
                              .Help("Time to write, seal and register one checkpoint")
                              .Register(registry)
                              .Add(RankLabels(job_id, rank), Seconds(0.001))),
      eval_videos_(BuildCounter()
                       .Name("tecl_worker_eval_videos_total")
                       .Help("Videos whose features an evaluation job extracted")
                       .Register(registry)
                       .Add(RankLabels(job_id, rank))),
      loss_(BuildGauge()
                .Name("tecl_worker_loss")
                .Help("Loss terms and auxiliary head accuracies of the last step, by term")
                .Register(registry)),
      loader_failovers_(BuildCounter()
                            .Name("tecl_worker_loader_failovers_total")
                            .Help("Dataloaders this rank stopped using and whose steps moved to "
                                  "its other loaders, by reason (error, stalled)")
                            .Register(registry)),
      skipped_steps_(BuildCounter()
                         .Name("tecl_worker_skipped_steps_total")
                         .Help("fp16 steps skipped because the scaled gradients overflowed")
                         .Register(registry)
                         .Add(RankLabels(job_id, rank))),
      loss_scale_(BuildGauge()
                      .Name("tecl_worker_loss_scale")
                      .Help("fp16 dynamic loss scale of the last step")
                      .Register(registry)
                      .Add(RankLabels(job_id, rank))),
      labels_(RankLabels(job_id, rank)) {}

void JobMetrics::RecordStep(int64_t step_done, double step_seconds, double data_wait_seconds,
                            double allreduce_seconds, double exposed_seconds, int64_t clips,
                            double learning_rate, const core::LossValues& loss,
                            double eta_seconds) {
  steps_.Increment();
  step_.Set(static_cast<double>(step_done));
  step_seconds_.Observe(step_seconds);
  data_wait_seconds_.Observe(data_wait_seconds);
  allreduce_seconds_.Observe(allreduce_seconds);
  exposed_seconds_.Observe(exposed_seconds);
  clips_.Increment(static_cast<double>(clips));
  learning_rate_.Set(learning_rate);
  eta_.Set(eta_seconds);
  auto set = [&](const char* term, const std::optional<double>& value) {
    if (!value) return;
    metrics::Labels labels = labels_;
    labels["term"] = term;
    loss_.Add(labels).Set(*value);
  };
  set("total", loss.total);
  set("equivariance", loss.equivariance);
  set("speed", loss.speed);
  set("direction", loss.direction);
  set("order", loss.order);
  set("instance", loss.instance);
  set("speed_accuracy", loss.speed_accuracy);
  set("direction_accuracy", loss.direction_accuracy);
  set("order_accuracy", loss.order_accuracy);
}

void JobMetrics::RecordCheckpoint(double seconds) {
  checkpoints_.Increment();
  checkpoint_seconds_.Observe(seconds);
}

void JobMetrics::RecordEvalVideos(int64_t videos) {
  eval_videos_.Increment(static_cast<double>(videos));
}

void JobMetrics::RecordLossScale(double scale, bool skipped) {
  loss_scale_.Set(scale);
  if (skipped) skipped_steps_.Increment();
}

void JobMetrics::RecordLoaderFailover(const std::string& reason) {
  metrics::Labels labels = labels_;
  labels["reason"] = reason;
  loader_failovers_.Add(labels).Increment();
}

void RegisterHostCacheMetrics(metrics::Registry& registry) {
  const auto counter = [&](const char* name, const char* help) -> metrics::Counter& {
    return BuildCounter().Name(name).Help(help).Register(registry).Add({});
  };
  const auto gauge = [&](const char* name, const char* help) -> metrics::Gauge& {
    return BuildGauge().Name(name).Help(help).Register(registry).Add({});
  };
  metrics::Counter& hits = counter("tecl_worker_host_cache_hits_total",
                                   "Large host tensors served from the host caching allocator");
  metrics::Counter& misses = counter("tecl_worker_host_cache_misses_total",
                                     "Large host tensors for which the cache mapped new memory");
  metrics::Counter& releases = counter("tecl_worker_host_cache_releases_total",
                                       "Cached host blocks given back to the operating system");
  metrics::Gauge& cached = gauge("tecl_worker_host_cache_cached_bytes",
                                 "Bytes the host caching allocator holds free for reuse");
  metrics::Gauge& live =
      gauge("tecl_worker_host_cache_live_bytes", "Bytes of large host tensors in use");
  registry.AddCollectCallback([&hits, &misses, &releases, &cached, &live] {
    const core::HostAllocatorStats stats = core::GetHostAllocatorStats();
    hits.Increment(static_cast<double>(stats.hits) - hits.Value());
    misses.Increment(static_cast<double>(stats.misses) - misses.Value());
    releases.Increment(static_cast<double>(stats.releases) - releases.Value());
    cached.Set(static_cast<double>(stats.cached_bytes));
    live.Set(static_cast<double>(stats.live_bytes));
  });
}

}  // namespace tecl::worker
