// JobRegistry: every job the coordinator knows, its state machine and its event history. Submit,
// Get, List and ListEvents serve teclctl (through JobService); the other managers change jobs
// through the locked methods below, inside a StateHost::Mutate.
//
// A job's row is rewritten in the store on every transition and other status change (Change::
// job_rows); rank 0's progress is kept in memory at once (GetJob and WatchJob see it) and written
// at most every `progress_persist_interval`, and with every state change. Events are appended in
// the same batch as the change they record.
//
// Thread-safety: the entry points are thread-safe. Methods marked "under the host's lock" must be
// called from a StateHost::Mutate change (or Read). The registry must outlive nothing it is given;
// the host and the registry of metrics must outlive it.
#ifndef TECL_SERVICES_COORDINATOR_MANAGER_JOB_REGISTRY_H_
#define TECL_SERVICES_COORDINATOR_MANAGER_JOB_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/metrics.h"
#include "services/coordinator/manager/state_host.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/coordinator/store/job_store.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

struct JobRegistryOptions {
  SpecLimits limits;
  // Rank 0's progress is written to the store at most this often (and on every state change).
  absl::Duration progress_persist_interval = absl::Seconds(5);
};

struct ListJobsResult {
  std::vector<tecl::v1::Job> jobs;
  std::string next_page_token;
};

// One job and what is attached to it in memory.
struct JobRecord {
  tecl::v1::Job job;
  int64_t seq = 0;  // Submission order.
  std::string request_id;
  std::vector<tecl::v1::JobEvent> events;
  // Every attempt: where its ranks ran, how it ended (AttemptController writes them).
  std::vector<tecl::v1::JobAttempt> attempts;
  absl::Time progress_written = absl::InfinitePast();
  bool progress_dirty = false;
};

class JobRegistry {
 public:
  // Told of every new job, under the host's lock (the rendezvous learns the job exists).
  using CreatedHook = std::function<void(const tecl::v1::Job&)>;

  JobRegistry(JobRegistryOptions options, StateHost* host, metrics::Registry* registry);

  void SetCreatedHook(CreatedHook hook) { created_hook_ = std::move(hook); }

  // ---- Entry points ----
  // Validates and stores a job in PENDING. INVALID_ARGUMENT (nothing stored) for a bad spec, an
  // eval.source_job_id that names no pretraining job, or a checkpoint.dir that is, contains or lies
  // in another job's; ALREADY_EXISTS when `request_id` was used for
  // a different spec (the same spec returns the stored job once it is durable); UNAVAILABLE when
  // the store failed.
  void Submit(const tecl::v1::JobSpec& spec, const std::string& request_id,
              Callback<tecl::v1::Job> done);
  // NOT_FOUND.
  absl::StatusOr<tecl::v1::Job> Get(const std::string& job_id) const;
  // OK or NOT_FOUND, without copying the job (for callers that only need to know).
  absl::Status Exists(const std::string& job_id) const;
  // Newest first. INVALID_ARGUMENT: page_size outside [0, 1000] or a bad page_token.
  absl::StatusOr<ListJobsResult> List(const std::vector<tecl::v1::JobState>& states, int page_size,
                                      const std::string& page_token) const;
  // Events with seq > after_seq, oldest first, at most `limit` (0 = all). NOT_FOUND.
  absl::StatusOr<std::vector<tecl::v1::JobEvent>> ListEvents(const std::string& job_id,
                                                             int64_t after_seq, int limit) const;

  // ---- Under the host's lock ----
  JobRecord* Find(const std::string& job_id);
  const JobRecord* Find(const std::string& job_id) const;
  // NOT_FOUND naming the job.
  absl::StatusOr<JobRecord*> FindOrNotFound(const std::string& job_id);
  // Moves the job to `to` (FAILED_PRECONDITION, nothing changed, when the state machine forbids
  // it), records a "state" event with the reason and the job's step, rewrites the row.
  absl::Status Transition(JobRecord& record, tecl::v1::JobState to, const std::string& reason,
                          Change& change);
  // Appends an event of the job's current attempt (or of `attempt` when >= 0).
  void AddEvent(JobRecord& record, const std::string& type, tecl::v1::JobState from,
                tecl::v1::JobState to, const std::string& reason, int64_t step, Change& change,
                int attempt = -1);
  // The job's row is rewritten with this change.
  void Touch(JobRecord& record, Change& change);
  // Rank 0's progress: kept now, written when the persist interval has passed.
  void SetProgress(JobRecord& record, const tecl::v1::JobProgress& progress, Change& change);
  // Writes the rows of jobs whose progress changed and was not written for the interval.
  void PersistDueProgress(Change& change);
  // PENDING and RECOVERING jobs in submission order.
  std::vector<JobRecord*> Waiting();
  // The worker that was placed as `rank` of `attempt` of the job; "" when there is no such rank.
  static std::string PlacedWorker(const JobRecord& record, int attempt, int rank);
  // Rebuilds a job read from the store (start-up).
  JobRecord& Restore(StoredJob stored);
  size_t size() const { return jobs_.size(); }

 private:
  void WriteRows(Change& change);
  void CollectMetrics();

  const JobRegistryOptions options_;
  StateHost* const host_;
  CreatedHook created_hook_;

  // Guarded by host_->mu().
  std::map<std::string, JobRecord> jobs_;
  std::map<int64_t, std::string> jobs_by_seq_;
  std::map<std::string, std::string> request_ids_;
  std::set<int64_t> waiting_;  // Seqs of PENDING and RECOVERING jobs.
  int64_t next_seq_ = 1;

  metrics::Histogram* scheduling_latency_ = nullptr;
  metrics::Family<metrics::Gauge>* jobs_gauge_ = nullptr;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_MANAGER_JOB_REGISTRY_H_
