#include "services/coordinator/manager/coordinator.h"

#include <utility>

#include "services/common/logging.h"

namespace tecl::coordinator {

Coordinator::Coordinator(CoordinatorOptions options, JobStore* store, const Clock* clock,
                         Rendezvous* rendezvous, metrics::Registry* registry)
    : store_(store),
      logs_(options.logs),
      host_(store, clock),
      jobs_(std::move(options.jobs), &host_, registry),
      membership_(options.membership, &host_, registry),
      checkpoints_(std::move(options.checkpoints), &host_, &jobs_, &membership_),
      attempts_(std::move(options.attempts), &host_, &jobs_, &membership_, &checkpoints_,
                rendezvous, registry) {
  membership_.SetListener(&attempts_);
  membership_.SetJobLogs(&logs_);
  jobs_.SetCreatedHook([this](const tecl::v1::Job& job) { attempts_.OnJobCreated(job); });
}

absl::StatusOr<tecl::v1::GetJobLogsResponse> Coordinator::GetJobLogs(
    const tecl::v1::GetJobLogsRequest& request) const {
  if (absl::Status found = jobs_.Exists(request.job_id()); !found.ok()) return found;
  LogQuery query;
  if (request.has_rank()) query.rank = request.rank();
  query.after_cursor = request.after_cursor();
  query.max_lines = request.max_lines() == 0 ? 1000 : request.max_lines();
  query.tail = request.tail();
  LogPage page = logs_.Read(request.job_id(), query);
  tecl::v1::GetJobLogsResponse response;
  for (auto& line : page.lines) *response.add_lines() = std::move(line);
  response.set_next_cursor(page.next_cursor);
  response.set_skipped(page.skipped);
  response.set_more(page.more);
  response.set_tail_id(page.tail_id);
  return response;
}

absl::Status Coordinator::Restore() {
  absl::StatusOr<StoreSnapshot> snapshot = store_->Load();
  if (!snapshot.ok()) return snapshot.status();
  host_.Mutate(
      [&](Change& change) {
        for (StoredJob& stored : snapshot->jobs) {
          const std::string id = stored.job.id();
          std::vector<tecl::v1::Checkpoint> checkpoints = std::move(stored.checkpoints);
          const JobRecord& record = jobs_.Restore(std::move(stored));
          checkpoints_.Restore(id, std::move(checkpoints), record.events);
          attempts_.RestoreJob(record);
        }
        for (tecl::v1::WorkerInfo& info : snapshot->workers) {
          std::string stop_reason;
          const WorkerPhase phase = attempts_.RestoredPhase(info, &stop_reason);
          absl::Duration busy_timeout;
          if (const JobRecord* job = jobs_.Find(info.job_id()); job != nullptr) {
            busy_timeout = absl::Seconds(job->job.spec().restart().heartbeat_timeout_s());
          }
          const tecl::v1::WorkerState stored_state = info.state();
          WorkerRecord& worker = membership_.Restore(std::move(info), phase, busy_timeout);
          worker.stop_reason = stop_reason;
          if (worker.info.state() != stored_state) change.worker_rows.insert(worker.id());
        }
        host_.RequestScheduling();
        TECL_LOG(INFO) << "restored " << jobs_.size() << " job(s) ("
                       << jobs_.Waiting().size() << " waiting) and " << snapshot->workers.size()
                       << " worker(s)";
        return absl::OkStatus();
      },
      nullptr);
  return absl::OkStatus();
}

void Coordinator::Tick() {
  host_.MutateInBackground([&](Change& change) {
    membership_.ExpireHeartbeats(change);
    jobs_.PersistDueProgress(change);
    if (host_.TakeSchedulingRequest()) attempts_.Schedule(change);
  });
}

}  // namespace tecl::coordinator
