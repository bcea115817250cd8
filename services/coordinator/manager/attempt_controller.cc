#include "services/coordinator/manager/attempt_controller.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/logging.h"
#include "services/coordinator/manager/worker_call.h"
#include "services/coordinator/state/job_state.h"

namespace tecl::coordinator {
namespace {

using ::tecl::v1::Job;
using ::tecl::v1::JobState;

std::string OutcomeName(tecl::v1::Outcome outcome) {
  switch (outcome) {
    case tecl::v1::OUTCOME_SUCCEEDED:
      return "succeeded";
    case tecl::v1::OUTCOME_FAILED:
      return "failed";
    case tecl::v1::OUTCOME_FATAL:
      return "failed fatally";
    case tecl::v1::OUTCOME_STOPPED:
      return "stopped";
    default:
      return "ended";
  }
}

}  // namespace

AttemptController::AttemptController(AttemptControllerOptions options, StateHost* host,
                                     JobRegistry* jobs, Membership* membership,
                                     CheckpointRegistry* checkpoints, Rendezvous* rendezvous,
                                     metrics::Registry* registry)
    : options_(std::move(options)),
      host_(host),
      jobs_(jobs),
      membership_(membership),
      checkpoints_(checkpoints),
      rendezvous_(rendezvous),
      coordinator_address_(options_.coordinator_address) {
  if (registry == nullptr) return;
  restarts_ = &metrics::BuildCounter()
                   .Name("tecl_coordinator_restarts_total")
                   .Help("Recoveries: attempts that failed and were restarted.")
                   .Register(*registry)
                   .Add({});
  dataloaders_dropped_ =
      &metrics::BuildCounter()
           .Name("tecl_coordinator_dataloaders_dropped_total")
           .Help("Lost dataloaders taken out of a running rank that kept other loaders (no "
                 "restart).")
           .Register(*registry)
           .Add({});
  dataloaders_replaced_ =
      &metrics::BuildCounter()
           .Name("tecl_coordinator_dataloader_replacements_total")
           .Help("Free dataloaders placed in a running rank in place of lost ones.")
           .Register(*registry)
           .Add({});
}

void AttemptController::SetCoordinatorAddress(const std::string& address) {
  host_->Mutate([&](Change&) {
    coordinator_address_ = address;
    return absl::OkStatus();
  }, nullptr);
}

void AttemptController::OnJobCreated(const Job& job) {
  if (rendezvous_ != nullptr) rendezvous_->EndAttempt(job.id(), 0);  // Known, nothing open.
}

// ---- Entry points ----

void AttemptController::Cancel(const std::string& job_id, const std::string& reason,
                               Callback<Job> done) {
  host_->Mutate<Job>(
      [&](Change& change) -> absl::StatusOr<Job> {
        auto found = jobs_->FindOrNotFound(job_id);
        if (!found.ok()) return found.status();
        JobRecord& record = **found;
        absl::Status allowed =
            CheckTransition(job_id, record.job.state(), tecl::v1::JOB_STATE_CANCELLED);
        if (!allowed.ok()) return allowed;
        Finish(record, tecl::v1::JOB_STATE_CANCELLED,
               reason.empty() ? "cancelled by the user" : absl::StrCat("cancelled: ", reason),
               change);
        return record.job;
      },
      std::move(done));
}

void AttemptController::ReportOutcome(const tecl::v1::ReportOutcomeRequest& request,
                                      const std::string& session, StatusCallback done) {
  host_->Mutate(
      [&](Change& change) -> absl::Status {
        absl::StatusOr<WorkerCall> call = BeginWorkerCall(
            *membership_, *jobs_, request.worker_id(), session, request.job_id());
        if (!call.ok()) return call.status();
        JobRecord& record = *call->job;
        if (JobRegistry::PlacedWorker(record, request.attempt(), request.rank()) !=
            request.worker_id()) {
          return absl::PermissionDeniedError(absl::StrCat(
              "worker ", request.worker_id(), " was not placed as rank ", request.rank(),
              " of attempt ", request.attempt(), " of job ", request.job_id(),
              "; a worker reports only the ranks it was assigned"));
        }
        const tecl::v1::WorkerInfo& info = call->worker->info;
        const std::string who =
            absl::StrCat("rank ", request.rank(), " (", call->worker->Describe(), ")");
        if (IsBusy(call->worker->phase) && info.job_id() == request.job_id() &&
            info.attempt() == request.attempt()) {
          membership_->Free(*call->worker, change);
        }
        // Where each rank of each attempt ended, whatever became of the attempt: the step a
        // surviving rank's collective failed at is exact here, unlike the heartbeat progress.
        jobs_->AddEvent(record, "outcome", record.job.state(), record.job.state(),
                        absl::StrCat(who, " ", OutcomeName(request.outcome()),
                                     request.reason().empty() ? "" : ": ", request.reason()),
                        request.step(), change, request.attempt());
        const Job& job = record.job;
        if (request.attempt() != job.attempt() ||
            (!IsActive(job.state()) && !IsTerminal(job.state()))) {
          return absl::AbortedError(absl::StrCat(
              "attempt ", request.attempt(), " of job ", job.id(),
              " is no longer current (the job is ", StateName(job.state()), ", attempt ",
              job.attempt(), "); outcome ignored"));
        }
        if (IsTerminal(job.state())) return absl::OkStatus();  // A rank acknowledging the end.
        return ApplyOutcome(record, request, who, change);
      },
      std::move(done));
}

absl::Status AttemptController::ApplyOutcome(JobRecord& record,
                                             const tecl::v1::ReportOutcomeRequest& request,
                                             const std::string& who, Change& change) {
  Job& job = record.job;
  switch (request.outcome()) {
    case tecl::v1::OUTCOME_SUCCEEDED:
      if (IsPrepare(job)) {
        PrepareRankSucceeded(record, request, change);
        return absl::OkStatus();
      }
      if (request.rank() != 0) return absl::OkStatus();
      if (request.has_progress()) *job.mutable_progress() = request.progress();
      job.mutable_progress()->set_updated_unix_ms(host_->NowMs());
      if (request.has_eval_result()) *job.mutable_eval_result() = request.eval_result();
      Finish(record, tecl::v1::JOB_STATE_SUCCEEDED,
             job.spec().kind() == tecl::v1::JOB_KIND_EVAL
                 ? "evaluation finished"
                 : absl::StrCat("rank 0 finished at step ", request.step()),
             change);
      return absl::OkStatus();
    case tecl::v1::OUTCOME_FAILED:
      FailAttempt(record,
                  absl::StrCat(who, " failed: ",
                               request.reason().empty() ? "no reason given" : request.reason()),
                  change);
      return absl::OkStatus();
    case tecl::v1::OUTCOME_FATAL:
      Finish(record, tecl::v1::JOB_STATE_FAILED,
             absl::StrCat(who, " failed fatally (not restarted): ", request.reason()), change);
      return absl::OkStatus();
    case tecl::v1::OUTCOME_STOPPED:
      FailAttempt(record, absl::StrCat(who, " stopped without being told to: ", request.reason()),
                  change);
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          "outcome is missing; set succeeded, failed, fatal or stopped");
  }
}

// ---- Attempts ----

void AttemptController::EndAttempt(JobRecord& record, JobState end_state,
                                   const std::string& reason, Change& change) {
  const std::string& id = record.job.id();
  const int attempt = record.job.attempt();
  for (WorkerRecord* worker : membership_->WorkersOf(id, attempt)) {
    // A pretraining job's dataloaders serve streams and are free at once; a prepare job's run
    // their shard and are told to stop, like trainers.
    if (worker->info.kind() == tecl::v1::WORKER_KIND_DATALOADER && !IsPrepare(record.job)) {
      membership_->Free(*worker, change);
    } else {
      membership_->OrderStop(*worker, reason, change);
    }
  }
  for (tecl::v1::JobAttempt& a : record.attempts) {
    if (a.attempt() != attempt || a.ended_unix_ms() != 0) continue;
    a.set_ended_unix_ms(host_->NowMs());
    a.set_end_state(end_state);
    a.set_reason(reason);
    change.batch.PutAttempt(id, a);
  }
  if (rendezvous_ != nullptr) rendezvous_->EndAttempt(id, attempt);
  Attempts& a = attempts_[id];
  a.running_ranks.clear();
  a.rank_progress.clear();
  a.succeeded_ranks.clear();
}

void AttemptController::FailAttempt(JobRecord& record, const std::string& reason,
                                    Change& change) {
  Job& job = record.job;
  const int max_restarts = job.spec().restart().max_restarts();
  if (job.restarts() >= max_restarts) {
    Finish(record, tecl::v1::JOB_STATE_FAILED,
           absl::StrCat(reason, "; no restarts left (restart.max_restarts = ", max_restarts, ")"),
           change);
    return;
  }
  EndAttempt(record, tecl::v1::JOB_STATE_RECOVERING, reason, change);
  if (!jobs_->Transition(record, tecl::v1::JOB_STATE_RECOVERING, reason, change).ok()) return;
  job.set_restarts(job.restarts() + 1);
  job.set_attempt(job.attempt() + 1);
  job.clear_ranks();
  if (restarts_ != nullptr) restarts_->Increment();
}

void AttemptController::Finish(JobRecord& record, JobState state, const std::string& reason,
                               Change& change) {
  if (IsActive(record.job.state())) EndAttempt(record, state, reason, change);
  jobs_->Transition(record, state, reason, change).IgnoreError();
}

void AttemptController::StartAttempt(JobRecord& record, const Placement& placement,
                                     Change& change) {
  Job& job = record.job;
  if (job.state() == tecl::v1::JOB_STATE_PENDING) job.set_attempt(1);
  job.clear_ranks();
  const absl::Duration busy_timeout = absl::Seconds(job.spec().restart().heartbeat_timeout_s());
  std::set<std::string> hosts;
  size_t loaders = 0;
  for (size_t r = 0; r < placement.ranks.size(); ++r) {
    const RankPlacement& rank = placement.ranks[r];
    tecl::v1::RankAssignment* assignment = job.add_ranks();
    assignment->set_rank(static_cast<int32_t>(r));
    assignment->set_worker_id(rank.trainer_id);
    std::vector<std::string> ids = {rank.trainer_id};
    for (const std::string& loader : rank.dataloader_ids) {
      assignment->add_dataloader_ids(loader);
      ids.push_back(loader);
    }
    loaders += rank.dataloader_ids.size();
    for (const std::string& worker_id : ids) {
      WorkerRecord* worker = membership_->Find(worker_id);
      membership_->Assign(*worker, job.id(), job.attempt(), static_cast<int>(r), busy_timeout,
                          change);
      if (worker->info.kind() == tecl::v1::WORKER_KIND_TRAINER) {
        hosts.insert(worker->info.hostname().empty() ? "?" : worker->info.hostname());
      }
    }
  }
  tecl::v1::JobAttempt attempt;
  attempt.set_attempt(job.attempt());
  *attempt.mutable_ranks() = job.ranks();
  attempt.set_started_unix_ms(host_->NowMs());
  record.attempts.push_back(attempt);
  Attempts& attempts = attempts_[job.id()];
  attempts.running_ranks.clear();
  attempts.rank_progress.clear();
  attempts.succeeded_ranks.clear();
  attempts.bypassed = 0;
  change.batch.PutAttempt(job.id(), attempt);
  if (rendezvous_ != nullptr) rendezvous_->BeginAttempt(job.id(), job.attempt());
  if (IsPrepare(job)) {
    std::set<std::string> loader_hosts;
    for (const RankPlacement& rank : placement.ranks) {
      const WorkerRecord* loader = membership_->Find(rank.trainer_id);
      loader_hosts.insert(loader == nullptr || loader->info.hostname().empty()
                              ? "?"
                              : loader->info.hostname());
    }
    jobs_->Transition(
        record, tecl::v1::JOB_STATE_SCHEDULED,
        absl::StrCat("attempt ", job.attempt(), " placed on ", placement.ranks.size(), " of ",
                     job.spec().resources().dataloaders(), " dataloader(s) (",
                     absl::StrJoin(loader_hosts, ", "), "), one shard each",
                     job.attempt() > 1 ? "; videos finished before are kept" : ""),
        change)
        .IgnoreError();
    return;
  }
  std::string resume;
  if (!job.latest_checkpoint().path().empty()) {
    resume = absl::StrCat(", resuming from step ", job.latest_checkpoint().step());
  }
  jobs_->Transition(record, tecl::v1::JOB_STATE_SCHEDULED,
                    absl::StrCat("attempt ", job.attempt(), " placed on ", placement.ranks.size(),
                                 " trainer(s) (", absl::StrJoin(hosts, ", "), ") and ", loaders,
                                 " dataloader(s)", resume),
                    change)
      .IgnoreError();
}

// ---- Dataloader failover ----

std::vector<std::string> AttemptController::DataloaderAddresses(
    const tecl::v1::RankAssignment& rank) {
  std::vector<std::string> addresses;
  for (const std::string& loader_id : rank.dataloader_ids()) {
    if (const WorkerRecord* loader = membership_->Find(loader_id); loader != nullptr) {
      addresses.push_back(loader->info.address());
    }
  }
  return addresses;
}

void AttemptController::PlacementChanged(JobRecord& record, tecl::v1::RankAssignment& rank,
                                         Change& change) {
  rank.set_dataloaders_version(rank.dataloaders_version() + 1);
  for (tecl::v1::JobAttempt& a : record.attempts) {
    if (a.attempt() != record.job.attempt() || a.ended_unix_ms() != 0) continue;
    *a.mutable_ranks() = record.job.ranks();
    change.batch.PutAttempt(record.job.id(), a);
  }
  jobs_->Touch(record, change);
}

void AttemptController::DropDataloader(JobRecord& record, const LostWorker& lost,
                                       Change& change) {
  Job& job = record.job;
  const std::string why = absl::StrCat("rank ", lost.rank, ": ", lost.reason);
  tecl::v1::RankAssignment* rank = nullptr;
  for (tecl::v1::RankAssignment& r : *job.mutable_ranks()) {
    if (r.rank() == lost.rank) rank = &r;
  }
  int left = 0;
  if (rank != nullptr) {
    auto* ids = rank->mutable_dataloader_ids();
    const int before = ids->size();
    ids->erase(std::remove(ids->begin(), ids->end(), lost.worker_id), ids->end());
    left = ids->size();
    if (left == before) return;  // Not one of the rank's loaders: nothing depends on it.
  }
  if (left == 0) {
    jobs_->AddEvent(record, "worker_lost", job.state(), job.state(), why, job.progress().step(),
                    change);
    FailAttempt(record, absl::StrCat(why, "; rank ", lost.rank, " has no dataloader left"),
                change);
    return;
  }
  PlacementChanged(record, *rank, change);
  jobs_->AddEvent(record, "worker_lost", job.state(), job.state(),
                  absl::StrCat(why, "; rank ", lost.rank, " goes on with ", left,
                               " dataloader(s), no restart"),
                  job.progress().step(), change);
  if (dataloaders_dropped_ != nullptr) dataloaders_dropped_->Increment();
  short_of_dataloaders_.insert(job.id());
  host_->RequestScheduling();  // A free dataloader may take its place.
}

void AttemptController::ReplaceDataloaders(std::vector<WorkerSlot>* free, Change& change) {
  for (auto it = short_of_dataloaders_.begin(); it != short_of_dataloaders_.end();) {
    JobRecord* record = jobs_->Find(*it);
    if (record == nullptr || !IsActive(record->job.state()) || IsPrepare(record->job)) {
      it = short_of_dataloaders_.erase(it);
      continue;
    }
    Job& job = record->job;
    const int want = job.spec().resources().dataloaders_per_trainer();
    const absl::Duration busy_timeout = absl::Seconds(job.spec().restart().heartbeat_timeout_s());
    bool short_still = false;
    for (tecl::v1::RankAssignment& rank : *job.mutable_ranks()) {
      bool placed = false;
      while (rank.dataloader_ids_size() < want) {
        const WorkerRecord* trainer = membership_->Find(rank.worker_id());
        std::optional<WorkerSlot> slot =
            TakeDataloader(free, trainer == nullptr ? "" : trainer->info.hostname());
        if (!slot.has_value()) {
          short_still = true;
          break;
        }
        WorkerRecord* loader = membership_->Find(slot->id);
        membership_->Assign(*loader, job.id(), job.attempt(), rank.rank(), busy_timeout, change);
        rank.add_dataloader_ids(slot->id);
        placed = true;
        jobs_->AddEvent(*record, "dataloader_replaced", job.state(), job.state(),
                        absl::StrCat("rank ", rank.rank(), ": ", loader->Describe(), " at ",
                                     loader->info.address(), " placed in place of a lost one (",
                                     rank.dataloader_ids_size(), " of ", want, ")"),
                        job.progress().step(), change);
        if (dataloaders_replaced_ != nullptr) dataloaders_replaced_->Increment();
      }
      if (placed) PlacementChanged(*record, rank, change);
    }
    it = short_still ? std::next(it) : short_of_dataloaders_.erase(it);
  }
}

// ---- Scheduling ----

bool AttemptController::ReadyToPlace(JobRecord& record, Change& change) {
  const auto& spec = record.job.spec();
  if (spec.kind() != tecl::v1::JOB_KIND_EVAL || spec.eval().source_job_id().empty()) return true;
  const JobRecord* source = jobs_->Find(spec.eval().source_job_id());
  if (source != nullptr && !IsTerminal(source->job.state())) return false;  // Waits for it.
  if (source == nullptr || source->job.latest_checkpoint().path().empty()) {
    Finish(record, tecl::v1::JOB_STATE_FAILED,
           absl::StrCat("source job ", spec.eval().source_job_id(),
                        source == nullptr ? " does not exist"
                                          : absl::StrCat(" ended (", StateName(source->job.state()),
                                                         ") without a checkpoint"),
                        "; nothing to evaluate"),
           change);
    return false;
  }
  return true;
}

void AttemptController::Schedule(Change& change) {
  std::vector<WorkerSlot> free;
  std::vector<WorkerSlot> live;
  membership_->Slots(&free, &live);
  // Running attempts get their lost dataloaders back before waiting jobs are placed: their
  // trainers are held already.
  ReplaceDataloaders(&free, change);
  bool free_trainer = false;
  bool free_loader = false;
  for (const WorkerSlot& slot : free) {
    free_trainer = free_trainer || slot.kind == tecl::v1::WORKER_KIND_TRAINER;
    free_loader = free_loader || slot.kind == tecl::v1::WORKER_KIND_DATALOADER;
  }
  std::vector<QueuedJob> queue;
  for (JobRecord* record : jobs_->Waiting()) {
    if (!ReadyToPlace(*record, change)) continue;
    if (!(IsPrepare(record->job) ? free_loader : free_trainer)) continue;
    QueuedJob q;
    q.job_id = record->job.id();
    q.priority = record->job.spec().priority();
    q.seq = record->seq;
    q.request = GangRequestFor(record->job.spec());
    q.bypassed = attempts_[q.job_id].bypassed;
    queue.push_back(std::move(q));
  }
  if (queue.empty()) return;
  ScheduleDecision decision = ScheduleQueue(std::move(queue), free, live, options_.scheduler);
  for (const auto& [id, count] : decision.bypassed) attempts_[id].bypassed = count;
  for (const auto& [id, placement] : decision.start) {
    StartAttempt(*jobs_->Find(id), placement, change);
  }
}

// ---- Membership::Listener ----

tecl::v1::Assignment AttemptController::AssignmentFor(const WorkerRecord& worker) {
  const Job& job = jobs_->Find(worker.info.job_id())->job;
  tecl::v1::Assignment a;
  a.set_job_id(job.id());
  a.set_attempt(job.attempt());
  a.set_rank(worker.info.rank());
  a.set_world_size(job.ranks_size());
  *a.mutable_spec() = job.spec();
  for (const auto& rank : job.ranks()) {
    if (rank.rank() != worker.info.rank()) continue;
    for (std::string& address : DataloaderAddresses(rank)) {
      a.add_dataloader_addresses(std::move(address));
    }
    a.set_dataloaders_version(rank.dataloaders_version());
  }
  a.set_checkpoint_dir(checkpoints_->DirFor(job));
  for (tecl::v1::Checkpoint& c : checkpoints_->ResumeCandidates(job)) {
    if (!a.has_resume_from()) *a.mutable_resume_from() = c;
    *a.add_resume_candidates() = std::move(c);
  }
  a.set_coordinator_address(coordinator_address_);
  return a;
}

void AttemptController::OnRunning(const WorkerRecord& worker,
                                  const tecl::v1::HeartbeatRequest& request,
                                  tecl::v1::HeartbeatResponse* response, Change& change) {
  JobRecord* record = jobs_->Find(worker.info.job_id());
  if (record == nullptr) return;
  Job& job = record->job;
  if (IsActive(job.state()) && job.attempt() == worker.info.attempt()) {
    for (const auto& rank : job.ranks()) {
      if (rank.rank() != worker.info.rank() ||
          rank.dataloaders_version() == request.dataloaders_version()) {
        continue;
      }
      tecl::v1::DataloaderPlacement* update = response->mutable_dataloaders();
      update->set_job_id(job.id());
      update->set_attempt(job.attempt());
      update->set_rank(rank.rank());
      update->set_version(rank.dataloaders_version());
      for (std::string& address : DataloaderAddresses(rank)) {
        update->add_addresses(std::move(address));
      }
    }
  }
  if (request.status() == tecl::v1::TRAINER_STATUS_RUNNING &&
      job.state() == tecl::v1::JOB_STATE_SCHEDULED) {
    attempts_[job.id()].running_ranks.insert(worker.info.rank());
    MaybeRunning(*record, change);
  }
  if (IsPrepare(job)) {
    if (request.has_progress() && IsActive(job.state()) &&
        job.attempt() == worker.info.attempt()) {
      attempts_[job.id()].rank_progress[worker.info.rank()] = request.progress();
      SumPrepareProgress(*record, change);
    }
    return;
  }
  if (worker.info.rank() == 0 && request.has_progress() && IsActive(job.state())) {
    jobs_->SetProgress(*record, request.progress(), change);
  }
}

void AttemptController::MaybeRunning(JobRecord& record, Change& change) {
  Job& job = record.job;
  if (job.state() != tecl::v1::JOB_STATE_SCHEDULED) return;
  const Attempts& a = attempts_[job.id()];
  std::set<int> started = a.running_ranks;
  started.insert(a.succeeded_ranks.begin(), a.succeeded_ranks.end());
  if (static_cast<int>(started.size()) != job.ranks_size()) return;
  jobs_->Transition(record, tecl::v1::JOB_STATE_RUNNING,
                    IsPrepare(job)
                        ? absl::StrCat("all ", job.ranks_size(), " dataloader(s) are preparing")
                        : absl::StrCat("all ", job.ranks_size(), " rank(s) are training"),
                    change)
      .IgnoreError();
}

void AttemptController::SumPrepareProgress(JobRecord& record, Change& change) {
  tecl::v1::JobProgress sum;
  tecl::v1::PrepareProgress* p = sum.mutable_prepare();
  bool files = false;
  for (const auto& [rank, progress] : attempts_[record.job.id()].rank_progress) {
    const tecl::v1::PrepareProgress& r = progress.prepare();
    p->set_videos_total(p->videos_total() + r.videos_total());
    p->set_videos_prepared(p->videos_prepared() + r.videos_prepared());
    p->set_videos_kept(p->videos_kept() + r.videos_kept());
    p->set_videos_failed(p->videos_failed() + r.videos_failed());
    p->set_bytes_in(p->bytes_in() + r.bytes_in());
    p->set_bytes_out(p->bytes_out() + r.bytes_out());
    files = files || r.dataset_files_written();
    sum.set_clips_per_second(sum.clips_per_second() + progress.clips_per_second());
  }
  p->set_dataset_files_written(files);
  const int64_t done = p->videos_prepared() + p->videos_kept() + p->videos_failed();
  sum.set_step(done);
  sum.set_total_steps(p->videos_total());
  if (sum.clips_per_second() > 0 && p->videos_total() > done) {
    sum.set_eta_s(static_cast<double>(p->videos_total() - done) / sum.clips_per_second());
  }
  jobs_->SetProgress(record, sum, change);
}

void AttemptController::PrepareRankSucceeded(JobRecord& record,
                                             const tecl::v1::ReportOutcomeRequest& request,
                                             Change& change) {
  Job& job = record.job;
  Attempts& a = attempts_[job.id()];
  a.succeeded_ranks.insert(request.rank());
  if (request.has_progress()) {
    tecl::v1::JobProgress final_progress = request.progress();
    final_progress.set_clips_per_second(0);  // Its shard is done: no rate left to count.
    a.rank_progress[request.rank()] = final_progress;
  }
  SumPrepareProgress(record, change);
  MaybeRunning(record, change);
  const tecl::v1::PrepareProgress& p = job.progress().prepare();
  if (request.progress().prepare().dataset_files_written()) {
    // The rank found every video of every shard done and wrote the lists and prepare.json.
    Finish(record, tecl::v1::JOB_STATE_SUCCEEDED,
           absl::StrCat("data set prepared in ", job.spec().prepare().output_root(), ": ",
                        p.videos_prepared() + p.videos_kept(), " video(s) ready (",
                        p.videos_prepared(), " transcoded by this attempt, ", p.videos_kept(),
                        " kept), ", p.videos_failed(),
                        " failed and left out (listed in prepare.json)"),
           change);
    return;
  }
  if (static_cast<int>(a.succeeded_ranks.size()) == job.ranks_size()) {
    FailAttempt(record,
                absl::StrCat("all ", job.ranks_size(),
                             " shard(s) finished but none found every video done, so the "
                             "data set files were not written; retrying the missing videos"),
                change);
  }
}

void AttemptController::OnAssignmentDropped(const std::string& description,
                                            const std::string& job_id, int attempt, int rank,
                                            Change& change) {
  JobRecord* record = jobs_->Find(job_id);
  if (record == nullptr || record->job.attempt() != attempt || !IsActive(record->job.state())) {
    return;
  }
  FailAttempt(*record,
              absl::StrCat("rank ", rank, " (", description,
                           ") went idle without reporting an outcome"),
              change);
}

void AttemptController::OnWorkerLost(const LostWorker& lost, Change& change) {
  JobRecord* record = jobs_->Find(lost.job_id);
  if (record == nullptr || record->job.attempt() != lost.attempt ||
      !IsActive(record->job.state())) {
    return;
  }
  if (lost.kind == tecl::v1::WORKER_KIND_DATALOADER && !IsPrepare(record->job)) {
    DropDataloader(*record, lost, change);
    return;
  }
  const std::string why = absl::StrCat("rank ", lost.rank, ": ", lost.reason);
  jobs_->AddEvent(*record, "worker_lost", record->job.state(), record->job.state(), why,
                  record->job.progress().step(), change);
  FailAttempt(*record, why, change);
}

bool AttemptController::RunsAssignment(const WorkerRecord& worker) {
  if (worker.info.kind() == tecl::v1::WORKER_KIND_TRAINER) return true;
  const JobRecord* record = jobs_->Find(worker.info.job_id());
  return record != nullptr && IsPrepare(record->job);
}

// ---- Restore ----

void AttemptController::RestoreJob(const JobRecord& record) {
  const Job& job = record.job;
  Attempts& a = attempts_[job.id()];
  if (job.state() == tecl::v1::JOB_STATE_RUNNING) {
    for (const auto& rank : job.ranks()) a.running_ranks.insert(rank.rank());
  }
  if (IsActive(job.state()) && !IsPrepare(job)) {
    for (const auto& rank : job.ranks()) {
      if (rank.dataloader_ids_size() < job.spec().resources().dataloaders_per_trainer()) {
        short_of_dataloaders_.insert(job.id());
      }
    }
  }
  if (rendezvous_ == nullptr) return;
  // Known to the rendezvous: calls of any attempt but the open one get ABORTED.
  if (IsActive(job.state())) {
    rendezvous_->BeginAttempt(job.id(), job.attempt());
  } else {
    rendezvous_->EndAttempt(job.id(), job.attempt());
  }
}

WorkerPhase AttemptController::RestoredPhase(const tecl::v1::WorkerInfo& info,
                                             std::string* stop_reason) const {
  switch (info.state()) {
    case tecl::v1::WORKER_STATE_BUSY:
      break;
    case tecl::v1::WORKER_STATE_LOST:
      return WorkerPhase::kLost;
    default:
      return WorkerPhase::kIdle;
  }
  const JobRecord* record = jobs_->Find(info.job_id());
  const bool current = record != nullptr && IsActive(record->job.state()) &&
                       record->job.attempt() == info.attempt();
  if (info.kind() == tecl::v1::WORKER_KIND_DATALOADER &&
      (record == nullptr || !IsPrepare(record->job))) {
    return current ? WorkerPhase::kAssigned : WorkerPhase::kIdle;
  }
  if (!current) {
    *stop_reason = absl::StrCat("attempt ", info.attempt(), " of job ", info.job_id(),
                                " is no longer current");
    return WorkerPhase::kStopping;
  }
  return record->job.state() == tecl::v1::JOB_STATE_RUNNING ? WorkerPhase::kRunning
                                                             : WorkerPhase::kAssigned;
}

}  // namespace tecl::coordinator
