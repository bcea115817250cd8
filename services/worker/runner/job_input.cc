#include "services/worker/runner/job_input.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "services/common/logging.h"

namespace tecl::worker {
namespace {

absl::Duration SecondsOr(double seconds, absl::Duration fallback) {
  return seconds > 0 ? absl::Seconds(seconds) : fallback;
}

}  // namespace

BatchStreamOptions JobInput::StreamOptions(const tecl::v1::Assignment& assignment,
                                           tecl::v1::StreamMode mode) {
  const tecl::v1::JobSpec& spec = assignment.spec();
  BatchStreamOptions options;
  options.job_id = assignment.job_id();
  options.spec = spec;
  options.mode = mode;
  options.rank = assignment.rank();
  options.world_size = assignment.world_size();
  options.prefetch = std::max(1, spec.resources().prefetch_batches());
  options.stall_timeout =
      SecondsOr(spec.restart().loader_stall_timeout_s(), BatchStreamOptions().stall_timeout);
  options.start_timeout =
      SecondsOr(spec.restart().loader_start_timeout_s(), BatchStreamOptions().start_timeout);
  return options;
}

absl::StatusOr<std::unique_ptr<JobInput>> JobInput::Open(const BatchSourceFactory& factory,
                                                         BatchStreamOptions options,
                                                         RunContext* context,
                                                         JobMetrics* metrics) {
  if (!factory) {
    return absl::FailedPreconditionError(
        "this trainer was given no batch source factory (JobRunnerOptions)");
  }
  options.on_failover = [metrics](const std::string&, const std::string& reason) {
    metrics->RecordLoaderFailover(reason);
  };
  DataloaderList loaders = context->Dataloaders();
  std::unique_ptr<BatchSource> source = factory(options, loaders.addresses);
  return std::unique_ptr<JobInput>(new JobInput(std::move(source), context, loaders.version));
}

JobInput::JobInput(std::unique_ptr<BatchSource> source, RunContext* context, int32_t version)
    : source_(std::move(source)), thread_([this, context, version] { Watch(context, version); }) {}

JobInput::~JobInput() {
  done_.Notify();
  thread_.join();
}

void JobInput::Watch(RunContext* context, int32_t version) {
  while (!done_.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
    if (context->StopRequested()) {
      source_->Cancel();
      return;
    }
    DataloaderList loaders = context->Dataloaders();
    if (loaders.version == version) continue;
    version = loaders.version;
    TECL_LOG(INFO) << "input: streaming from " << absl::StrJoin(loaders.addresses, ", ")
                   << " (dataloaders version " << version << ")";
    source_->SetAddresses(std::move(loaders.addresses));
  }
}

}  // namespace tecl::worker
