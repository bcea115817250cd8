// The worker state machine: the phases a registered worker goes through, which events move it,
// and what a heartbeat does in each phase, in two pure functions (job_state.h is the same for
// jobs).
//
//   RegisterWorker ──> IDLE ──assign──> ASSIGNED ──heartbeat names the assignment──> RUNNING
//                       ▲                  │  (dataloaders stay ASSIGNED)               │
//                       │                  └──────── stop ──────> STOPPING <── stop ────┘
//                       └──── free (outcome reported, let go, its attempt ended) ────────┘
//   every phase but LOST ── heartbeat timeout ──> LOST ── (retention) ──> forgotten
//
// A trainer learns of its assignment from the response to an idle heartbeat and is ASSIGNED
// until one of its heartbeats names the assignment (job, attempt); then it is RUNNING. A STOPPING
// trainer was told to stop (cancel, recovery, the job ended) and is busy until it reports an
// outcome or heartbeats without the attempt. Dataloaders heartbeat for liveness only, except as
// the ranks of a prepare job, which they run like trainers (same phases, same decisions).
//
// The wire state (tecl.v1.WorkerState) is derived: IDLE, BUSY (ASSIGNED, RUNNING, STOPPING), LOST.
// Pure functions: thread-safe.
#ifndef TECL_SERVICES_COORDINATOR_STATE_WORKER_STATE_H_
#define TECL_SERVICES_COORDINATOR_STATE_WORKER_STATE_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

enum class WorkerPhase { kIdle, kAssigned, kRunning, kStopping, kLost };

enum class WorkerEvent {
  kAssign,       // Given a rank of an attempt (IDLE only).
  kAcknowledge,  // A heartbeat named the assignment (trainers).
  kOrderStop,    // Its attempt ended while it runs it.
  kFree,         // Outcome reported, assignment let go, or (dataloaders) the attempt ended.
  kTimeout,      // Missed its heartbeat timeout.
};

// The phase `event` moves a worker in `from` to; FAILED_PRECONDITION naming the worker, the phase
// and the event when the machine has no such edge. The one place that says which edges exist.
absl::StatusOr<WorkerPhase> NextWorkerPhase(const std::string& worker_id, WorkerPhase from,
                                            WorkerEvent event);

tecl::v1::WorkerState WireState(WorkerPhase phase);
bool IsBusy(WorkerPhase phase);
// "idle", "assigned", ...
std::string PhaseName(WorkerPhase phase);
std::string EventName(WorkerEvent event);

// What a heartbeat says about the work the worker runs.
enum class HeartbeatReport {
  kNoWork,      // No job named: idle.
  kAssignment,  // Names the worker's current assignment (job and attempt).
  kOtherWork,   // Names a job or attempt that is not its assignment (stale).
};

// What the coordinator does with a heartbeat, by phase and report.
struct HeartbeatDecision {
  enum class Action {
    kNone,
    kSendAssignment,  // ACTION_RUN with the worker's assignment.
    kStopOwn,         // ACTION_STOP with the reason the worker was told to stop.
    kStopStale,       // ACTION_STOP: the named attempt is not current.
  };
  enum class Effect {
    kNone,
    kAcknowledged,     // It runs its assignment: its status and progress count.
    kDroppedAssignment,  // It ran its assignment and went idle without an outcome: the attempt
                         // failed.
  };
  Action action = Action::kNone;
  Effect effect = Effect::kNone;
  std::optional<WorkerEvent> event;  // Applied to the worker's phase (NextWorkerPhase).
};

// `runs_assignment`: a dataloader that runs its assignment itself (a rank of a prepare job, or a
// heartbeat naming one) is decided like a trainer; otherwise dataloaders heartbeat for liveness
// only (a pretraining job's loaders serve streams; their attempt ends without their word).
HeartbeatDecision DecideHeartbeat(tecl::v1::WorkerKind kind, WorkerPhase phase,
                                  HeartbeatReport report, bool runs_assignment = false);

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_STATE_WORKER_STATE_H_
