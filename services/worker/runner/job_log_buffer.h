// JobLogBuffer: a trainer's log lines on their way to the coordinator (`teclctl logs`). As a
// LogSink it keeps every line logged in the process while a run is on (Begin..End), tagged with
// the run's job, attempt and rank and numbered by a process-wide seq; the worker agent puts the
// oldest undelivered ones into each heartbeat (Take) and drops them once a heartbeat carrying
// them was answered (Delivered). Lines wait while the coordinator is unreachable, up to
// `max_bytes`; past that the oldest are dropped and counted, and the seq gap tells the
// coordinator how many were lost.
//
// The process's every line counts while a run is on (its threads, the loop's, the libraries'):
// one agent per process, as tecl-worker runs.
//
// Thread-safety: thread-safe.
#ifndef TECL_SERVICES_WORKER_RUNNER_JOB_LOG_BUFFER_H_
#define TECL_SERVICES_WORKER_RUNNER_JOB_LOG_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "tecl/v1/coordinator.pb.h"

namespace tecl::worker {

struct JobLogBufferOptions {
  size_t max_bytes = size_t{4} << 20;             // Undelivered text held.
  size_t max_bytes_per_take = size_t{256} << 10;  // Per heartbeat.
  size_t max_lines_per_take = 4096;
  size_t max_line_bytes = 4096;  // Longer lines are cut (the coordinator keeps no more).
};

class JobLogBuffer final : public LogSink {
 public:
  // `dropped` (may be null) counts lines dropped for want of room.
  explicit JobLogBuffer(JobLogBufferOptions options = {}, metrics::Counter* dropped = nullptr);

  // Lines logged from now on belong to (job_id, attempt, rank), until End().
  void Begin(const std::string& job_id, int attempt, int rank);
  void End();

  void Send(LogSeverity severity, absl::string_view line) override;

  // Appends the oldest undelivered lines, within the per-take bounds, to `out` and remembers them
  // as in flight (a later Take sends them again unless Delivered came in between).
  void Take(google::protobuf::RepeatedPtrField<tecl::v1::LogLine>* out);
  // The lines of the latest Take reached the coordinator.
  void Delivered();

  size_t pending_lines() const;
  int64_t dropped() const;

 private:
  struct Run {
    std::string job_id;
    int attempt = 0;
    int rank = 0;
  };

  const JobLogBufferOptions options_;
  metrics::Counter* const dropped_counter_;
  mutable absl::Mutex mu_;
  std::optional<Run> run_ ABSL_GUARDED_BY(mu_);
  std::deque<tecl::v1::LogLine> pending_ ABSL_GUARDED_BY(mu_);  // Consecutive seqs.
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t in_flight_through_ ABSL_GUARDED_BY(mu_) = 0;  // Seq of the last line taken.
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_JOB_LOG_BUFFER_H_
