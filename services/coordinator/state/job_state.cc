#include "services/coordinator/state/job_state.h"

#include "absl/strings/str_cat.h"
#include "services/coordinator/spec/job_spec.h"

namespace tecl::coordinator {

using tecl::v1::JobState;

bool IsTransitionAllowed(JobState from, JobState to) {
  switch (from) {
    case tecl::v1::JOB_STATE_PENDING:
      // Gang placed; cancelled while waiting; failed before it could ever run (e.g. an
      // evaluation whose source job ended without a checkpoint).
      return to == tecl::v1::JOB_STATE_SCHEDULED || to == tecl::v1::JOB_STATE_CANCELLED ||
             to == tecl::v1::JOB_STATE_FAILED;
    case tecl::v1::JOB_STATE_SCHEDULED:
      // Every rank is training; a rank failed or was lost while starting (RECOVERING, or FAILED
      // when out of restarts or fatal); cancelled. A short job may also finish before every
      // rank's RUNNING heartbeat arrived.
      return to == tecl::v1::JOB_STATE_RUNNING || to == tecl::v1::JOB_STATE_RECOVERING ||
             to == tecl::v1::JOB_STATE_SUCCEEDED || to == tecl::v1::JOB_STATE_FAILED ||
             to == tecl::v1::JOB_STATE_CANCELLED;
    case tecl::v1::JOB_STATE_RUNNING:
      return to == tecl::v1::JOB_STATE_RECOVERING || to == tecl::v1::JOB_STATE_SUCCEEDED ||
             to == tecl::v1::JOB_STATE_FAILED || to == tecl::v1::JOB_STATE_CANCELLED;
    case tecl::v1::JOB_STATE_RECOVERING:
      // Re-ganged (the new attempt starts in SCHEDULED); cannot be placed or restarted any more;
      // cancelled.
      return to == tecl::v1::JOB_STATE_SCHEDULED || to == tecl::v1::JOB_STATE_FAILED ||
             to == tecl::v1::JOB_STATE_CANCELLED;
    default:
      return false;  // Terminal states and UNSPECIFIED go nowhere.
  }
}

absl::Status CheckTransition(const std::string& job_id, JobState from, JobState to) {
  if (IsTransitionAllowed(from, to)) return absl::OkStatus();
  if (IsTerminal(from)) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " already finished (",
                                                      StateName(from), "); it cannot become ",
                                                      StateName(to)));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("job ", job_id, " cannot go from ", StateName(from), " to ", StateName(to)));
}

bool IsTerminal(JobState state) {
  return state == tecl::v1::JOB_STATE_SUCCEEDED || state == tecl::v1::JOB_STATE_FAILED ||
         state == tecl::v1::JOB_STATE_CANCELLED;
}

bool IsActive(JobState state) {
  return state == tecl::v1::JOB_STATE_SCHEDULED || state == tecl::v1::JOB_STATE_RUNNING;
}

bool IsWaiting(JobState state) {
  return state == tecl::v1::JOB_STATE_PENDING || state == tecl::v1::JOB_STATE_RECOVERING;
}

std::string StateName(JobState state) {
  const auto* value = tecl::v1::JobState_descriptor()->FindValueByNumber(state);
  return value == nullptr ? absl::StrCat("state ", static_cast<int>(state))
                          : EnumValueShortName(*value);
}

}  // namespace tecl::coordinator
