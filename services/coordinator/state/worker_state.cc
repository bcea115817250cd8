#include "services/coordinator/state/worker_state.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tecl::coordinator {

absl::StatusOr<WorkerPhase> NextWorkerPhase(const std::string& worker_id, WorkerPhase from,
                                            WorkerEvent event) {
  std::optional<WorkerPhase> to;
  switch (from) {
    case WorkerPhase::kIdle:
      if (event == WorkerEvent::kAssign) to = WorkerPhase::kAssigned;
      break;
    case WorkerPhase::kAssigned:
      if (event == WorkerEvent::kAcknowledge) to = WorkerPhase::kRunning;
      if (event == WorkerEvent::kOrderStop) to = WorkerPhase::kStopping;
      if (event == WorkerEvent::kFree) to = WorkerPhase::kIdle;
      break;
    case WorkerPhase::kRunning:
      if (event == WorkerEvent::kOrderStop) to = WorkerPhase::kStopping;
      if (event == WorkerEvent::kFree) to = WorkerPhase::kIdle;
      break;
    case WorkerPhase::kStopping:
      if (event == WorkerEvent::kFree) to = WorkerPhase::kIdle;
      break;
    case WorkerPhase::kLost:
      break;  // Forgotten later; a lost worker registers again under a new id.
  }
  if (from != WorkerPhase::kLost && event == WorkerEvent::kTimeout) to = WorkerPhase::kLost;
  if (!to.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("worker ", worker_id, " is ",
                                                      PhaseName(from), ": it cannot take ",
                                                      EventName(event)));
  }
  return *to;
}

tecl::v1::WorkerState WireState(WorkerPhase phase) {
  switch (phase) {
    case WorkerPhase::kIdle:
      return tecl::v1::WORKER_STATE_IDLE;
    case WorkerPhase::kLost:
      return tecl::v1::WORKER_STATE_LOST;
    default:
      return tecl::v1::WORKER_STATE_BUSY;
  }
}

bool IsBusy(WorkerPhase phase) { return WireState(phase) == tecl::v1::WORKER_STATE_BUSY; }

std::string PhaseName(WorkerPhase phase) {
  switch (phase) {
    case WorkerPhase::kIdle:
      return "idle";
    case WorkerPhase::kAssigned:
      return "assigned";
    case WorkerPhase::kRunning:
      return "running";
    case WorkerPhase::kStopping:
      return "stopping";
    case WorkerPhase::kLost:
      return "lost";
  }
  return "unknown";
}

std::string EventName(WorkerEvent event) {
  switch (event) {
    case WorkerEvent::kAssign:
      return "an assignment";
    case WorkerEvent::kAcknowledge:
      return "an acknowledgement";
    case WorkerEvent::kOrderStop:
      return "a stop order";
    case WorkerEvent::kFree:
      return "a release";
    case WorkerEvent::kTimeout:
      return "a heartbeat timeout";
  }
  return "an unknown event";
}

HeartbeatDecision DecideHeartbeat(tecl::v1::WorkerKind kind, WorkerPhase phase,
                                  HeartbeatReport report, bool runs_assignment) {
  using Action = HeartbeatDecision::Action;
  using Effect = HeartbeatDecision::Effect;
  HeartbeatDecision d;
  if (kind == tecl::v1::WORKER_KIND_DATALOADER && !runs_assignment) return d;  // Liveness only.
  switch (phase) {
    case WorkerPhase::kIdle:
      if (report != HeartbeatReport::kNoWork) d.action = Action::kStopStale;
      break;
    case WorkerPhase::kAssigned:
      if (report == HeartbeatReport::kAssignment) {
        d.event = WorkerEvent::kAcknowledge;
        d.effect = Effect::kAcknowledged;
      } else if (report == HeartbeatReport::kNoWork) {
        d.action = Action::kSendAssignment;
      } else {
        d.action = Action::kStopStale;
      }
      break;
    case WorkerPhase::kRunning:
      if (report == HeartbeatReport::kAssignment) {
        d.effect = Effect::kAcknowledged;
      } else if (report == HeartbeatReport::kNoWork) {
        d.event = WorkerEvent::kFree;
        d.effect = Effect::kDroppedAssignment;
      } else {
        d.action = Action::kStopStale;
      }
      break;
    case WorkerPhase::kStopping:
      if (report == HeartbeatReport::kAssignment) {
        d.action = Action::kStopOwn;
      } else {
        d.event = WorkerEvent::kFree;  // It let go of the attempt.
        if (report == HeartbeatReport::kOtherWork) d.action = Action::kStopStale;
      }
      break;
    case WorkerPhase::kLost:
      break;  // Refused before a decision is asked for.
  }
  return d;
}

}  // namespace tecl::coordinator
