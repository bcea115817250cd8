// JobInput: a running job's input. It opens the rank's BatchSource from the dataloaders the
// coordinator placed last (RunContext::Dataloaders) and keeps a watcher thread that relays what
// the agent hears while the job computes: a stop order cancels the source (a rank blocked waiting
// for data notices at once), a new dataloader list (a lost loader dropped, a replacement placed)
// goes to the source's SetAddresses. Loaders the source stops using are counted in the job's
// metrics (tecl_worker_loader_failovers_total).
//
// Thread-safety: source() is used by the job's thread; the watcher polls the context every 50 ms on
// its own thread. The context and the metrics must outlive the input.
#ifndef TECL_SERVICES_WORKER_RUNNER_JOB_INPUT_H_
#define TECL_SERVICES_WORKER_RUNNER_JOB_INPUT_H_

#include <cstdint>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "services/worker/runner/batch_source.h"
#include "services/worker/runner/trainer_metrics.h"
#include "services/worker/runner/worker_agent.h"
#include "tecl/v1/dataloader.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::worker {

class JobInput {
 public:
  // The stream options of `assignment` in `mode`: job, spec, rank, world size, prefetch and the
  // loader timeouts of spec.restart (0 = the defaults). The steps are the caller's to set.
  static BatchStreamOptions StreamOptions(const tecl::v1::Assignment& assignment,
                                          tecl::v1::StreamMode mode);

  // Opens the source with `factory` and starts the watcher. Does not block. FAILED_PRECONDITION
  // when there is no factory.
  static absl::StatusOr<std::unique_ptr<JobInput>> Open(const BatchSourceFactory& factory,
                                                        BatchStreamOptions options,
                                                        RunContext* context, JobMetrics* metrics);

  ~JobInput();  // Stops the watcher, then closes the source.
  JobInput(const JobInput&) = delete;
  JobInput& operator=(const JobInput&) = delete;

  BatchSource& source() { return *source_; }

 private:
  JobInput(std::unique_ptr<BatchSource> source, RunContext* context, int32_t version);
  void Watch(RunContext* context, int32_t version);

  std::unique_ptr<BatchSource> source_;
  absl::Notification done_;
  std::thread thread_;  // Last: started once the rest exists.
};

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_JOB_INPUT_H_
