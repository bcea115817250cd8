// The job state machine: which JobState transitions are allowed, in one function.
//
//   PENDING ──> SCHEDULED ──> RUNNING ──> SUCCEEDED
//      │            │  ▲         │   ╲──> FAILED
//      │            │  │         ▼
//      │            ├──┼───> RECOVERING ──> FAILED
//      │            │  └────────┘   (re-ganged: RECOVERING -> SCHEDULED)
//      └────────────┴─────────────────────> CANCELLED (from every non-terminal state)
//
// SUCCEEDED, FAILED and CANCELLED are terminal. docs/coordinator.md has the full table.
// Pure functions: thread-safe.
#ifndef TECL_SERVICES_COORDINATOR_STATE_JOB_STATE_H_
#define TECL_SERVICES_COORDINATOR_STATE_JOB_STATE_H_

#include <string>

#include "absl/status/status.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

// Whether a job may move from `from` to `to`. The one place that says so.
bool IsTransitionAllowed(tecl::v1::JobState from, tecl::v1::JobState to);

// OK, or FAILED_PRECONDITION naming the job and both states.
absl::Status CheckTransition(const std::string& job_id, tecl::v1::JobState from,
                             tecl::v1::JobState to);

bool IsTerminal(tecl::v1::JobState state);
// SCHEDULED or RUNNING: an attempt holds workers.
bool IsActive(tecl::v1::JobState state);
// PENDING or RECOVERING: waiting to be placed.
bool IsWaiting(tecl::v1::JobState state);

// "running", "succeeded", ...
std::string StateName(tecl::v1::JobState state);

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_STATE_JOB_STATE_H_
