// JobLogs: the coordinator's bounded tail of each job's trainer log lines, for `teclctl logs`.
// Trainers carry their lines to the coordinator in heartbeats (Membership checks whose they are);
// readers page through a job's tail with a cursor (JobService.GetJobLogs). Nothing needs a
// shared file system or a route from the reader to the trainers, and a dead trainer's last lines
// are still there after it died.
//
// Bounds: each job keeps its newest lines up to `max_bytes_per_job` (older ones are evicted and
// reported to readers as skipped); at most `max_jobs` jobs keep a tail (the one written to least
// recently is dropped). Held in memory: a restarted coordinator starts with empty tails, told
// apart by `tail_id`.
//
// Cursors: a job's lines are numbered 1, 2, ... in the order they arrived; a reader passes the
// last cursor it saw. A job's tail that was dropped and started again gets a new tail_id.
//
// Thread-safety: thread-safe (one mutex; appends and reads copy at most one page).
#ifndef TECL_SERVICES_COORDINATOR_STATE_JOB_LOGS_H_
#define TECL_SERVICES_COORDINATOR_STATE_JOB_LOGS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "tecl/v1/coordinator.pb.h"

namespace tecl::coordinator {

struct JobLogsOptions {
  int64_t max_bytes_per_job = int64_t{8} << 20;  // Text plus a fixed per-line overhead.
  int max_jobs = 64;
};

// Longest line text kept (longer texts are cut and marked); trainers cut at the same length.
inline constexpr size_t kMaxLogLineBytes = 4096;
// What one read returns at most (a page stays far below gRPC's 4 MiB message limit).
inline constexpr int kMaxLogLinesPerRead = 10000;
inline constexpr int64_t kMaxLogBytesPerRead = int64_t{2} << 20;

struct LogQuery {
  std::optional<int> rank;   // Unset = every rank.
  int64_t after_cursor = 0;  // Lines with a larger cursor.
  int max_lines = 1000;      // 1..kMaxLogLinesPerRead.
  int tail = 0;              // With after_cursor 0: the newest `tail` matching lines (0 = all).
};

struct LogPage {
  std::vector<tecl::v1::LogLine> lines;  // Oldest first.
  int64_t next_cursor = 0;               // after_cursor when nothing newer is held.
  int64_t skipped = 0;                   // Lines after after_cursor evicted before this read.
  bool more = false;                     // A bound of the read was reached; read on.
  int64_t tail_id = 0;                   // 0 when the job has no tail.
};

class JobLogs {
 public:
  explicit JobLogs(JobLogsOptions options = {});

  // Appends `line` to the tail of line.job_id() (its cursor assigned here), cutting its text to
  // kMaxLogLineBytes, then evicts past the bounds.
  void Append(tecl::v1::LogLine line);
  // The page of `job_id`'s tail that `query` asks for (an empty page when it has none).
  LogPage Read(const std::string& job_id, const LogQuery& query) const;

  int64_t bytes() const;  // Held, over all jobs.
  int jobs() const;

 private:
  struct Tail {
    int64_t id = 0;
    std::deque<tecl::v1::LogLine> lines;  // Consecutive cursors from first_cursor.
    int64_t first_cursor = 1;
    int64_t bytes = 0;
    uint64_t last_append = 0;  // Order of the latest append over all jobs.
  };
  static int64_t LineBytes(const tecl::v1::LogLine& line);

  const JobLogsOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, Tail> tails_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t appends_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_tail_id_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_STATE_JOB_LOGS_H_
