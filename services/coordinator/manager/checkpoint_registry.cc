#include "services/coordinator/manager/checkpoint_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/coordinator/manager/worker_call.h"
#include "services/coordinator/state/job_state.h"

namespace tecl::coordinator {
namespace {

constexpr char kRejectedEvent[] = "checkpoint_rejected";

bool SameCheckpoint(const tecl::v1::Checkpoint& a, const tecl::v1::Checkpoint& b) {
  return a.step() == b.step() && a.attempt() == b.attempt();
}

// Newest first: by step, then by attempt.
bool Newer(const tecl::v1::Checkpoint& a, const tecl::v1::Checkpoint& b) {
  return a.step() != b.step() ? a.step() > b.step() : a.attempt() > b.attempt();
}

}  // namespace

CheckpointRegistry::CheckpointRegistry(CheckpointRegistryOptions options, StateHost* host,
                                       JobRegistry* jobs, Membership* membership)
    : options_(std::move(options)), host_(host), jobs_(jobs), membership_(membership) {}

void CheckpointRegistry::Register(const tecl::v1::RegisterCheckpointRequest& request,
                                  const std::string& session, StatusCallback done) {
  host_->Mutate(
      [&](Change& change) -> absl::Status {
        absl::StatusOr<WorkerCall> call = BeginWorkerCall(
            *membership_, *jobs_, request.worker_id(), session, request.job_id());
        if (!call.ok()) return call.status();
        JobRecord& record = *call->job;
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
        // The file must lie inside the folder the job was given (after resolving ".."): a
        // trainer cannot point the next attempt at another job's model.
        const std::string dir = DirFor(job);
        if (!IsPathUnder(c.path(), dir) || IsPathUnder(dir, c.path())) {
          return absl::PermissionDeniedError(absl::StrCat(
              "checkpoint.path \"", c.path(), "\" is not a file in job ", job.id(),
              "'s checkpoint folder ", dir, "; register the file written there"));
        }
        const tecl::v1::WorkerInfo& info = call->worker->info;
        if (JobRegistry::PlacedWorker(record, c.attempt(), 0) != info.id()) {
          return absl::PermissionDeniedError(absl::StrCat(
              "worker ", info.id(), " was not rank 0 of attempt ", c.attempt(), " of job ",
              job.id(), "; only rank 0 registers checkpoints"));
        }
        if (c.attempt() != job.attempt() || !IsActive(job.state())) {
          return absl::AbortedError(absl::StrCat(
              "checkpoint of attempt ", c.attempt(), " of job ", job.id(), " by worker ",
              info.id(), " is not for the running attempt (", StateName(job.state()),
              ", attempt ", job.attempt(), "); ignored"));
        }
        std::vector<Registered>& registered = checkpoints_[job.id()];
        for (const Registered& existing : registered) {
          // A retried registration is acknowledged again (once the first is durable).
          if (SameCheckpoint(existing.checkpoint, c)) return absl::OkStatus();
        }
        if (c.created_unix_ms() == 0) c.set_created_unix_ms(host_->NowMs());
        registered.push_back({c, false});
        change.batch.AddCheckpoint(job.id(), c);
        UpdateLatest(record, change);
        jobs_->AddEvent(record, "checkpoint", job.state(), job.state(), c.path(), c.step(),
                        change);
        return absl::OkStatus();
      },
      std::move(done));
}

void CheckpointRegistry::Reject(const tecl::v1::RejectCheckpointRequest& request,
                                const std::string& session, StatusCallback done) {
  host_->Mutate(
      [&](Change& change) -> absl::Status {
        absl::StatusOr<WorkerCall> call = BeginWorkerCall(
            *membership_, *jobs_, request.worker_id(), session, request.job_id());
        if (!call.ok()) return call.status();
        JobRecord& record = *call->job;
        const tecl::v1::Job& job = record.job;
        bool placed = false;
        for (int rank = 0; rank < job.spec().resources().trainers(); ++rank) {
          placed = placed ||
                   JobRegistry::PlacedWorker(record, request.attempt(), rank) == request.worker_id();
        }
        if (!placed) {
          return absl::PermissionDeniedError(absl::StrCat(
              "worker ", request.worker_id(), " was not placed in attempt ", request.attempt(),
              " of job ", job.id(), "; only its ranks may reject its checkpoints"));
        }
        if (request.attempt() != job.attempt() || !IsActive(job.state())) {
          return absl::AbortedError(absl::StrCat("attempt ", request.attempt(), " of job ",
                                                 job.id(), " is no longer running; ignored"));
        }
        Registered* target = nullptr;
        for (Registered& r : checkpoints_[job.id()]) {
          if (SameCheckpoint(r.checkpoint, request.checkpoint())) target = &r;
        }
        if (target == nullptr) {
          return absl::NotFoundError(absl::StrCat(
              "job ", job.id(), " has no checkpoint of step ", request.checkpoint().step(),
              " and attempt ", request.checkpoint().attempt()));
        }
        if (target->rejected) return absl::OkStatus();  // Another rank said so first.
        target->rejected = true;
        jobs_->AddEvent(record, kRejectedEvent, job.state(), job.state(),
                        absl::StrCat(target->checkpoint.path(), ": ", request.reason()),
                        target->checkpoint.step(), change, target->checkpoint.attempt());
        UpdateLatest(record, change);
        return absl::OkStatus();
      },
      std::move(done));
}

std::string CheckpointRegistry::DirFor(const tecl::v1::Job& job) const {
  return job.spec().checkpoint().dir().empty()
             ? absl::StrCat(options_.checkpoint_root, "/", job.id())
             : job.spec().checkpoint().dir();
}

std::vector<tecl::v1::Checkpoint> CheckpointRegistry::Usable(const std::string& job_id) const {
  std::vector<tecl::v1::Checkpoint> usable;
  if (auto it = checkpoints_.find(job_id); it != checkpoints_.end()) {
    for (const Registered& r : it->second) {
      if (!r.rejected) usable.push_back(r.checkpoint);
    }
  }
  std::sort(usable.begin(), usable.end(), Newer);
  return usable;
}

void CheckpointRegistry::UpdateLatest(JobRecord& record, Change& change) {
  const std::vector<tecl::v1::Checkpoint> usable = Usable(record.job.id());
  if (usable.empty()) {
    if (!record.job.has_latest_checkpoint()) return;
    record.job.clear_latest_checkpoint();
  } else if (record.job.latest_checkpoint().path() != usable.front().path() ||
             !SameCheckpoint(record.job.latest_checkpoint(), usable.front())) {
    *record.job.mutable_latest_checkpoint() = usable.front();
  } else {
    return;
  }
  jobs_->Touch(record, change);
}

std::vector<tecl::v1::Checkpoint> CheckpointRegistry::ResumeCandidates(
    const tecl::v1::Job& job) const {
  if (job.spec().kind() == tecl::v1::JOB_KIND_EVAL) {
    const auto& eval = job.spec().eval();
    if (!eval.source_job_id().empty()) return Usable(eval.source_job_id());
    if (eval.checkpoint().empty()) return {};
    tecl::v1::Checkpoint file;
    file.set_path(eval.checkpoint());
    return {file};
  }
  return Usable(job.id());
}

void CheckpointRegistry::Restore(const std::string& job_id,
                                 std::vector<tecl::v1::Checkpoint> checkpoints,
                                 const std::vector<tecl::v1::JobEvent>& events) {
  std::vector<Registered>& registered = checkpoints_[job_id];
  for (tecl::v1::Checkpoint& c : checkpoints) {
    bool rejected = false;
    for (const tecl::v1::JobEvent& e : events) {
      rejected = rejected || (e.type() == kRejectedEvent && e.step() == c.step() &&
                              e.attempt() == c.attempt());
    }
    registered.push_back({std::move(c), rejected});
  }
}

}  // namespace tecl::coordinator
