// Membership: the registered trainers and dataloaders, each in a phase of the worker state
// machine (state/worker_state.h), their heartbeats and timeouts. RegisterWorker, Heartbeat and
// ListWorkers (MembershipService) enter here; the AttemptController assigns, stops and frees
// workers through the locked methods and hears of what heartbeats and timeouts mean for its
// attempts through Membership::Listener.
//
// Every registration gets a session token (returned once, kept as its SHA-256 in the worker's row):
// the worker's later calls carry it, and Authenticate refuses a call whose session is not the
// named worker's (PERMISSION_DENIED), so one worker cannot heartbeat, report or rendezvous as
// another.
//
// A worker silent longer than its timeout (its job's restart.heartbeat_timeout_s while busy,
// else `heartbeat_timeout`) is LOST; a lost or unknown worker's calls get NOT_FOUND and it
// registers again under a new id; lost workers are listed for `lost_worker_retention`, then
// forgotten. Workers restored from the store after a coordinator restart are unconfirmed: they
// get no new work until their first heartbeat.
//
// Trainers' heartbeats carry their log lines (LogLine); the membership keeps those of assignments
// it gave that worker (its latest kLogGrants ones, so lines logged while a run ended still count)
// in the JobLogs, drops repeats by the line's seq, marks a seq gap as lost lines and counts lines
// naming anything else as refused.
//
// Thread-safety: the entry points are thread-safe. Methods marked "under the host's lock" must be
// called from a StateHost::Mutate change. The host, the listener and the metrics registry must
// outlive the membership.
#ifndef TECL_SERVICES_COORDINATOR_MANAGER_MEMBERSHIP_H_
#define TECL_SERVICES_COORDINATOR_MANAGER_MEMBERSHIP_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/metrics.h"
#include "services/coordinator/manager/state_host.h"
#include "services/coordinator/scheduler/gang_scheduler.h"
#include "services/coordinator/state/job_logs.h"
#include "services/coordinator/state/stragglers.h"
#include "services/coordinator/state/worker_state.h"
#include "tecl/v1/coordinator.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

struct MembershipOptions {
  // Interval workers are told to heartbeat at.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // An idle worker is lost after this much silence (busy workers use their job's timeout).
  absl::Duration heartbeat_timeout = absl::Seconds(30);
  // Lost workers are listed this long, then forgotten.
  absl::Duration lost_worker_retention = absl::Hours(1);
  // A running rank whose own step time (without the all-reduce) exceeds this times its job's
  // other ranks' median counts in tecl_coordinator_straggler_ranks (state/stragglers.h).
  double straggler_factor = kDefaultStragglerFactor;
};

// An assignment a trainer was given: its log lines may name it.
struct LogGrant {
  std::string job_id;
  int attempt = 0;
  int rank = 0;
};
inline constexpr size_t kLogGrants = 4;

// One registered worker. `info.state`, `info.job_id`, `attempt` and `rank` follow `phase`.
struct WorkerRecord {
  tecl::v1::WorkerInfo info;
  WorkerPhase phase = WorkerPhase::kIdle;
  absl::Time last_heartbeat;
  absl::Time lost_at;
  // Heard from since it registered or since the coordinator restarted: may get new work.
  bool confirmed = true;
  std::string stop_reason;                   // Why it was told to stop (STOPPING).
  absl::Duration busy_timeout;               // Its job's heartbeat timeout while busy.
  // A running trainer's latest report, of (stats_job, stats_attempt); listed only while it still
  // works on that attempt.
  tecl::v1::RankStats stats;
  std::string stats_job;
  int stats_attempt = 0;
  std::deque<LogGrant> log_grants;  // Its latest assignments, oldest first.
  int64_t log_seq = 0;              // The seq of the last log line taken from it.

  const std::string& id() const { return info.id(); }
  // "trainer trainer-1a2b3c4d on host-1"
  std::string Describe() const;
};

// A busy worker that was lost while its attempt still counted on it.
struct LostWorker {
  std::string worker_id;
  std::string description;
  tecl::v1::WorkerKind kind = tecl::v1::WORKER_KIND_UNSPECIFIED;
  std::string job_id;
  int attempt = 0;
  int rank = 0;
  std::string reason;  // "<worker> missed heartbeats for 10s"
};

class Membership {
 public:
  // What heartbeats and timeouts mean for attempts (the AttemptController). Called under the
  // host's lock, inside the change that caused them.
  class Listener {
   public:
    virtual ~Listener() = default;
    // The assignment of an ASSIGNED trainer, repeated in its heartbeat responses until it runs it.
    virtual tecl::v1::Assignment AssignmentFor(const WorkerRecord& worker) = 0;
    // A heartbeat of a trainer running its assignment (its status and progress); may add to the
    // response (a new dataloader list).
    virtual void OnRunning(const WorkerRecord& worker, const tecl::v1::HeartbeatRequest& request,
                           tecl::v1::HeartbeatResponse* response, Change& change) = 0;
    // A trainer ran its assignment and went idle without an outcome (it is idle already):
    // `description` is the worker, `job_id`/`rank` what it dropped.
    virtual void OnAssignmentDropped(const std::string& description, const std::string& job_id,
                                     int attempt, int rank, Change& change) = 0;
    virtual void OnWorkerLost(const LostWorker& lost, Change& change) = 0;
    // Whether the busy dataloader runs its assignment itself (a rank of a prepare job: its
    // heartbeats are decided like a trainer's) rather than serving streams.
    virtual bool RunsAssignment(const WorkerRecord& worker) = 0;
  };

  Membership(MembershipOptions options, StateHost* host, metrics::Registry* registry);
  void SetListener(Listener* listener) { listener_ = listener; }
  // Where trainers' log lines go; null (the default) drops them. Must outlive the membership.
  void SetJobLogs(JobLogs* logs) { logs_ = logs; }

  // ---- Entry points ----
  // A new id and session for the worker, IDLE. INVALID_ARGUMENT: no kind, or a dataloader without
  // an address.
  void Register(const tecl::v1::WorkerInfo& worker,
                Callback<tecl::v1::RegisterWorkerResponse> done);
  // Liveness, the trainer's report of its work, and the answer: its assignment, a stop order, or
  // nothing (DecideHeartbeat). NOT_FOUND: unknown or lost worker (register again);
  // PERMISSION_DENIED: `session` is not the worker's.
  void Heartbeat(const tecl::v1::HeartbeatRequest& request, const std::string& session,
                 Callback<tecl::v1::HeartbeatResponse> done);
  // OK when `session` belongs to a live trainer assigned to (job, attempt): a rendezvous call of
  // that attempt's process group. PERMISSION_DENIED otherwise (no such session, another job or
  // attempt, a dataloader).
  absl::Status CheckRendezvousCaller(const std::string& session, const std::string& job_id,
                                     int attempt) const;
  // Unspecified kind = all; by id. Running trainers carry their latest RankStats.
  std::vector<tecl::v1::WorkerInfo> List(tecl::v1::WorkerKind kind) const;

  // ---- Under the host's lock ----
  WorkerRecord* Find(const std::string& worker_id);
  // NOT_FOUND ("register again") for an unknown or lost worker.
  absl::StatusOr<WorkerRecord*> FindLive(const std::string& worker_id);
  // FindLive, then PERMISSION_DENIED unless `session` is the worker's.
  absl::StatusOr<WorkerRecord*> Authenticate(const std::string& worker_id,
                                             const std::string& session);
  // IDLE -> ASSIGNED as `rank` of (job, attempt); lost after `busy_timeout` of silence.
  void Assign(WorkerRecord& worker, const std::string& job_id, int attempt, int rank,
              absl::Duration busy_timeout, Change& change);
  // ASSIGNED/RUNNING -> STOPPING (no-op for a worker already stopping).
  void OrderStop(WorkerRecord& worker, const std::string& reason, Change& change);
  // Back to IDLE (no-op for an idle or lost worker).
  void Free(WorkerRecord& worker, Change& change);
  // The busy workers of (job, attempt).
  std::vector<WorkerRecord*> WorkersOf(const std::string& job_id, int attempt);
  // Workers that may get new work (idle and confirmed), and every live worker.
  void Slots(std::vector<WorkerSlot>* free, std::vector<WorkerSlot>* live) const;
  // Marks workers past their timeout lost (telling the listener of busy ones) and forgets lost
  // workers past the retention.
  void ExpireHeartbeats(Change& change);
  // A worker read from the store (start-up): unconfirmed, a full timeout to show up again.
  WorkerRecord& Restore(tecl::v1::WorkerInfo info, WorkerPhase phase, absl::Duration busy_timeout);

 private:
  // Moves the worker along the state machine and keeps its info and row in step. An edge the
  // machine lacks is a bug: logged, nothing changes.
  absl::Status Apply(WorkerRecord& worker, WorkerEvent event, Change& change);
  void MarkLost(WorkerRecord& worker, Change& change);
  std::string NewWorkerId(tecl::v1::WorkerKind kind);
  void WriteRows(Change& change);
  void CollectMetrics();
  // Keeps the heartbeat's log lines that belong to the worker's assignments.
  void TakeLogLines(WorkerRecord& worker, const tecl::v1::HeartbeatRequest& request);
  // The worker's stats when they belong to the attempt it works on now, else null.
  static const tecl::v1::RankStats* CurrentStats(const WorkerRecord& worker);

  const MembershipOptions options_;
  StateHost* const host_;
  Listener* listener_ = nullptr;
  JobLogs* logs_ = nullptr;

  // Guarded by host_->mu().
  std::map<std::string, WorkerRecord> workers_;
  std::map<std::string, std::string> by_session_;  // SHA-256 of a session -> worker id.
  uint64_t id_state_ = 0;

  metrics::Family<metrics::Gauge>* workers_gauge_ = nullptr;
  metrics::Family<metrics::Gauge>* heartbeat_age_ = nullptr;
  metrics::Family<metrics::Gauge>* stragglers_ = nullptr;
  metrics::Family<metrics::Counter>* log_lines_ = nullptr;
  metrics::Gauge* log_bytes_ = nullptr;
  std::map<std::string, std::string> heartbeat_age_workers_;  // id -> kind, of the last collection.
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_MANAGER_MEMBERSHIP_H_
