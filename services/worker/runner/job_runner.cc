#include "services/worker/runner/job_runner.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"
#include "services/worker/runner/job_options.h"
#include "services/worker/train/host_allocator.h"

namespace tecl::worker {

tecl::v1::Outcome OutcomeForStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return tecl::v1::OUTCOME_SUCCEEDED;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kOutOfRange:
      return tecl::v1::OUTCOME_FATAL;
    default:
      return tecl::v1::OUTCOME_FAILED;
  }
}

JobExecutor MakeJobExecutor(JobRunnerOptions options) {
  return [options = std::move(options)](const tecl::v1::Assignment& assignment,
                                        RunContext* context) -> JobOutcome {
    // The job's freed host tensors go back to the OS when it ends, whatever the outcome: the
    // next job's working set may be of other sizes.
    struct EmptyCacheAtEnd {
      ~EmptyCacheAtEnd() { core::EmptyHostCache(); }
    } empty_cache_at_end;
    try {
      switch (assignment.spec().kind()) {
        case tecl::v1::JOB_KIND_PRETRAIN:
          return RunTrainingJob(assignment, context, options);
        case tecl::v1::JOB_KIND_EVAL:
          return RunEvalJob(assignment, context, options);
        default: {
          JobOutcome outcome;
          outcome.outcome = tecl::v1::OUTCOME_FATAL;
          outcome.reason = absl::StrCat("kind: this trainer runs pretrain and eval jobs, not kind ",
                                        assignment.spec().kind());
          return outcome;
        }
      }
    } catch (...) {
      const absl::Status status = StatusFromCurrentException("job " + assignment.job_id());
      TECL_LOG(ERROR) << status;
      JobOutcome outcome;
      outcome.outcome = tecl::v1::OUTCOME_FAILED;
      outcome.reason = std::string(status.message());
      return outcome;
    }
  };
}

}  // namespace tecl::worker
