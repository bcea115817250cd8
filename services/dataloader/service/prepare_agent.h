// PrepareAgent: a dataloader's share of prepare jobs (kind: prepare; docs/prepare.md). It plugs
// into the dataloader's MembershipLoop (Hooks): an assignment in a heartbeat response starts a run
// thread that transcodes shard `rank` of `world_size` of the job's data set with PrepareDataset;
// the following heartbeats carry the run's job, attempt, rank and progress (videos done, kept,
// failed, bytes, videos/s); a stop order, a lost registration or Shutdown ends the run within one
// chunk of the videos it is transcoding (they leave no file and are redone later); its outcome is
// reported before the next heartbeat, and the loader is idle again (an assignment sent again
// after its run ended gets the report again, not a second run).
//
// Confinement: the output must lie under one of `write_roots` (--write_root; none by default, so
// a loader writes nothing until told where it may) and the source under the loader's read roots
// (--data_root); otherwise the run ends FATAL with a message naming the flag.
//
// Outcomes: SUCCEEDED when the shard is done (with PrepareProgress.dataset_files_written when this
// run found every shard done and wrote the lists and prepare.json); STOPPED when told to stop;
// FATAL for what another attempt cannot fix (a bad spec or data set, a path outside the roots, a
// full volume); FAILED otherwise (the coordinator runs another attempt, which keeps the finished
// videos).
//
// Thread-safety: thread-safe. Owns the run thread; Shutdown (or the destructor) joins it.
#ifndef TECL_SERVICES_DATALOADER_SERVICE_PREPARE_AGENT_H_
#define TECL_SERVICES_DATALOADER_SERVICE_PREPARE_AGENT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/client/coordinator_client.h"
#include "services/client/membership_loop.h"
#include "services/common/metrics.h"
#include "services/dataloader/manifest/data_roots.h"
#include "services/dataloader/video/input_policy.h"
#include "tecl/v1/coordinator.pb.h"
#include "tecl/v1/job.pb.h"

namespace tecl::dataloader {

struct PrepareAgentOptions {
  // Folders prepare jobs may write under (--write_root); empty = prepare jobs are refused.
  std::vector<std::string> write_roots;
  // Folders sources may be read from (--data_root; empty = any).
  std::vector<std::string> data_roots;
  // The loader's limits on the videos it decodes.
  video::InputLimits input_limits;
  // Share of the output volume kept free (PrepareOptions::min_free_fraction).
  double min_free_fraction = 0.05;
  // Most videos transcoded at once, whatever the job asks (resources.decode_threads): the
  // loader's own decode threads (each transcode holds up to 64 MiB of frames). 0 = one per core.
  int max_threads = 0;
};

// What an assignment's run ended with, as reported to the coordinator.
struct PrepareRunOutcome {
  tecl::v1::Outcome outcome = tecl::v1::OUTCOME_FAILED;
  std::string reason;
  tecl::v1::JobProgress progress;
};

class PrepareAgent {
 public:
  // INVALID_ARGUMENT for an empty root.
  static absl::StatusOr<std::unique_ptr<PrepareAgent>> Create(
      PrepareAgentOptions options, std::shared_ptr<CoordinatorClient> coordinator,
      metrics::Registry* registry);
  ~PrepareAgent();  // Shutdown().
  PrepareAgent(const PrepareAgent&) = delete;
  PrepareAgent& operator=(const PrepareAgent&) = delete;

  // The hooks to give the dataloader's MembershipLoop; `loop` is woken when a run ends (may be
  // set after the loop was built; must outlive the agent or be reset to null first).
  MembershipLoop::Hooks Hooks();
  void SetLoop(MembershipLoop* loop);

  // Stops the current run (within a chunk of its videos), reports its outcome, joins the thread.
  void Shutdown();

  // Runs one assignment on the calling thread (the run thread's body; tests call it directly),
  // until done or `stop`; `on_progress` (may be empty) gets the shard's progress after each video.
  PrepareRunOutcome RunAssignment(
      const tecl::v1::Assignment& assignment, const std::atomic<bool>& stop,
      const std::function<void(const tecl::v1::JobProgress&)>& on_progress = {});

  // Assignments run to an end (for tests).
  int64_t runs() const { return runs_.load(); }

 private:
  struct Run;
  PrepareAgent(PrepareAgentOptions options, DataRoots read_roots, DataRoots write_roots,
               std::shared_ptr<CoordinatorClient> coordinator, metrics::Registry* registry);

  void BeforeHeartbeat(const MembershipLoop::Registration& registration,
                       tecl::v1::HeartbeatRequest* request);
  void OnResponse(const tecl::v1::HeartbeatResponse& response);
  void OnLost();
  void StartRun(const tecl::v1::Assignment& assignment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Joins a finished run and reports its outcome.
  void Finish(const std::shared_ptr<Run>& run);
  // Sends `request` under `session`; logs a refusal.
  void Report(const tecl::v1::ReportOutcomeRequest& request, const std::string& session);

  const PrepareAgentOptions options_;
  const DataRoots read_roots_;
  const DataRoots write_roots_;
  const std::shared_ptr<CoordinatorClient> coordinator_;

  mutable absl::Mutex mu_;
  std::shared_ptr<Run> run_ ABSL_GUARDED_BY(mu_);
  MembershipLoop::Registration registration_ ABSL_GUARDED_BY(mu_);
  MembershipLoop* loop_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // The last finished run's report: when the coordinator sends that assignment again (the report
  // was lost or refused), the report is sent again instead of running the shard twice.
  tecl::v1::ReportOutcomeRequest last_report_ ABSL_GUARDED_BY(mu_);
  std::string last_report_session_ ABSL_GUARDED_BY(mu_);
  bool resend_report_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> runs_{0};

  metrics::Family<metrics::Counter>* videos_ = nullptr;    // {outcome}
  metrics::Family<metrics::Counter>* bytes_ = nullptr;     // {direction}
  metrics::Family<metrics::Counter>* outcomes_ = nullptr;  // {outcome}
  metrics::Gauge* running_ = nullptr;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_SERVICE_PREPARE_AGENT_H_
