#include "services/coordinator/manager/checkpoint_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/coordinator/state/job_state.h"

namespace tecl::coordinator {

CheckpointRegistry::CheckpointRegistry(CheckpointRegistryOptions options, StateHost* host,
                                       JobRegistry* jobs, Membership* membership)
    : options_(std::move(options)), host_(host), jobs_(jobs), membership_(membership) {}

void CheckpointRegistry::Register(const tecl::v1::RegisterCheckpointRequest& request,
                                  StatusCallback done) {
  host_->Mutate(
      [&](Change& change) -> absl::Status {
        auto worker = membership_->FindLive(request.worker_id());
        if (!worker.ok()) return worker.status();
        auto found = jobs_->FindOrNotFound(request.job_id());
        if (!found.ok()) return found.status();
        JobRecord& record = **found;
        tecl::v1::Job& job = record.job;
        tecl::v1::Checkpoint c = request.checkpoint();
        if (c.path().empty()) {
          return absl::InvalidArgumentError("checkpoint.path is empty; register the written file");
        }
        if (c.step() < 0 || (job.spec().kind() == tecl::v1::JOB_KIND_PRETRAIN &&
                             c.step() > job.spec().schedule().total_steps())) {
          return absl::InvalidArgumentError(absl::StrCat(
              "checkpoint.step ", c.step(), " is outside [0, schedule.total_steps = ",
              job.spec().schedule().total_steps(), "]"));
        }
        const tecl::v1::WorkerInfo& info = (*worker)->info;
        if (c.attempt() != job.attempt() || !IsActive(job.state()) || info.job_id() != job.id() ||
            info.attempt() != job.attempt()) {
          return absl::AbortedError(absl::StrCat(
              "checkpoint of attempt ", c.attempt(), " of job ", job.id(), " by worker ",
              info.id(), " is not for the running attempt (", StateName(job.state()),
              ", attempt ", job.attempt(), "); ignored"));
        }
        std::vector<tecl::v1::Checkpoint>& registered = checkpoints_[job.id()];
        for (const auto& existing : registered) {
          // A retried registration is acknowledged again (once the first is durable).
          if (existing.step() == c.step() && existing.attempt() == c.attempt()) {
            return absl::OkStatus();
          }
        }
        if (c.created_unix_ms() == 0) c.set_created_unix_ms(host_->NowMs());
        registered.push_back(c);
        change.batch.AddCheckpoint(job.id(), c);
        if (job.latest_checkpoint().path().empty() || c.step() >= job.latest_checkpoint().step()) {
          *job.mutable_latest_checkpoint() = c;
          jobs_->Touch(record, change);
        }
        jobs_->AddEvent(record, "checkpoint", job.state(), job.state(), c.path(), c.step(),
                        change);
        return absl::OkStatus();
      },
      std::move(done));
}

std::string CheckpointRegistry::DirFor(const tecl::v1::Job& job) const {
  return job.spec().checkpoint().dir().empty()
             ? absl::StrCat(options_.checkpoint_root, "/", job.id())
             : job.spec().checkpoint().dir();
}

tecl::v1::Checkpoint CheckpointRegistry::ResumeFrom(const tecl::v1::Job& job) const {
  if (job.spec().kind() == tecl::v1::JOB_KIND_EVAL) {
    const auto& eval = job.spec().eval();
    if (!eval.source_job_id().empty()) {
      const JobRecord* source = jobs_->Find(eval.source_job_id());
      return source == nullptr ? tecl::v1::Checkpoint() : source->job.latest_checkpoint();
    }
    tecl::v1::Checkpoint explicit_file;
    explicit_file.set_path(eval.checkpoint());
    return explicit_file;
  }
  return job.latest_checkpoint();
}

void CheckpointRegistry::Restore(const std::string& job_id,
                                 std::vector<tecl::v1::Checkpoint> checkpoints) {
  checkpoints_[job_id] = std::move(checkpoints);
}

}  // namespace tecl::coordinator
