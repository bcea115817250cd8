#include "services/coordinator/scheduler/job_manager.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/common/logging.h"
#include "services/coordinator/scheduler/job_state.h"

namespace tecl::coordinator {
namespace {

using ::tecl::v1::Job;
using ::tecl::v1::JobState;

bool IsActive(JobState state) {
  return state == tecl::v1::JOB_STATE_SCHEDULED || state == tecl::v1::JOB_STATE_RUNNING;
}

bool IsWaiting(JobState state) {
  return state == tecl::v1::JOB_STATE_PENDING || state == tecl::v1::JOB_STATE_RECOVERING;
}

std::string KindName(tecl::v1::WorkerKind kind) {
  return kind == tecl::v1::WORKER_KIND_DATALOADER ? "dataloader" : "trainer";
}

std::string DescribeWorker(const tecl::v1::WorkerInfo& w) {
  return absl::StrCat(KindName(w.kind()), " ", w.id(),
                      w.hostname().empty() ? "" : absl::StrCat(" on ", w.hostname()));
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

JobManager::JobManager(JobManagerOptions options, JobStore* store, const Clock* clock,
                       Rendezvous* rendezvous, metrics::Registry* registry)
    : options_(std::move(options)),
      store_(store),
      clock_(clock),
      rendezvous_(rendezvous),
      registry_(registry) {
  coordinator_address_ = options_.coordinator_address;
  id_state_ = (static_cast<uint64_t>(std::random_device()()) << 32) ^ std::random_device()() ^
              static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  if (registry_ == nullptr) return;
  scheduling_latency_ = &metrics::BuildHistogram()
                             .Name("tecl_coordinator_scheduling_latency_seconds")
                             .Help("Time from a job's submission to its first placement.")
                             .Register(*registry_)
                             .Add({}, metrics::Histogram::ExponentialBuckets(0.01, 2, 16));
  restarts_ = &metrics::BuildCounter()
                   .Name("tecl_coordinator_restarts_total")
                   .Help("Recoveries: attempts that failed and were restarted.")
                   .Register(*registry_)
                   .Add({});
  jobs_gauge_ = &metrics::BuildGauge()
                     .Name("tecl_coordinator_jobs")
                     .Help("Jobs by state.")
                     .Register(*registry_);
  workers_gauge_ = &metrics::BuildGauge()
                        .Name("tecl_coordinator_workers")
                        .Help("Registered workers by kind and state.")
                        .Register(*registry_);
  heartbeat_age_ = &metrics::BuildGauge()
                        .Name("tecl_coordinator_worker_heartbeat_age_seconds")
                        .Help("Seconds since each live worker's last heartbeat.")
                        .Register(*registry_);
  metrics_hook_ = std::make_shared<MetricsHook>();
  metrics_hook_->manager = this;
  registry_->AddCollectCallback([hook = metrics_hook_] {
    absl::MutexLock lock(&hook->mu);
    if (hook->manager != nullptr) hook->manager->CollectMetrics();
  });
}

JobManager::~JobManager() {
  if (metrics_hook_ != nullptr) {
    absl::MutexLock lock(&metrics_hook_->mu);
    metrics_hook_->manager = nullptr;
  }
}

// ------------------------------------------------------------------------------------------------
// Store plumbing.

absl::Status JobManager::CheckStore() const {
  absl::MutexLock lock(&error_mu_);
  if (store_error_.ok()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("the coordinator's state store failed (",
                                             store_error_.message(),
                                             "); fix the disk and restart tecl-coordinator"));
}

void JobManager::SetCoordinatorAddress(const std::string& address) {
  absl::MutexLock lock(&mu_);
  coordinator_address_ = address;
}

absl::Status JobManager::store_error() const {
  absl::MutexLock lock(&error_mu_);
  return store_error_;
}

void JobManager::Commit(Mutation& m, StatusCallback done) {
  const absl::Time now = clock_->Now();
  for (const std::string& id : m.jobs) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    m.batch.UpdateJob(it->second.job);
    it->second.progress_written = now;
    it->second.progress_dirty = false;
  }
  for (const std::string& id : m.workers) {
    auto it = workers_.find(id);
    if (it == workers_.end()) {
      m.batch.DeleteWorker(id);
    } else {
      tecl::v1::WorkerInfo info = it->second.info;
      info.set_last_heartbeat_unix_ms(ToUnixMillisOrZero(it->second.last_heartbeat));
      m.batch.PutWorker(info);
    }
  }
  store_->Write(std::move(m.batch), [this, done = std::move(done)](absl::Status status) {
    if (!status.ok()) {
      TECL_LOG(ERROR) << "state store write failed: " << status.message();
      absl::MutexLock lock(&error_mu_);
      if (store_error_.ok()) store_error_ = status;
    }
    if (!done) return;
    if (status.ok()) {
      done(status);
    } else {
      done(absl::UnavailableError(
          absl::StrCat("the coordinator could not store the change: ", status.message())));
    }
  });
}

std::vector<std::string> JobManager::TakeChanged() {
  std::vector<std::string> ids(changed_.begin(), changed_.end());
  changed_.clear();
  return ids;
}

void JobManager::Notify(const std::vector<std::string>& job_ids) {
  if (job_ids.empty()) return;
  absl::MutexLock lock(&watch_mu_);
  for (const auto& [id, watcher] : watchers_) {
    if (std::find(job_ids.begin(), job_ids.end(), watcher.first) != job_ids.end()) watcher.second();
  }
}

JobManager::WatchId JobManager::Watch(const std::string& job_id, std::function<void()> on_change) {
  absl::MutexLock lock(&watch_mu_);
  const WatchId id = next_watch_id_++;
  watchers_.emplace(id, std::make_pair(job_id, std::move(on_change)));
  return id;
}

void JobManager::Unwatch(WatchId id) {
  absl::MutexLock lock(&watch_mu_);
  watchers_.erase(id);
}

// ------------------------------------------------------------------------------------------------
// Jobs and transitions.

JobManager::JobEntry* JobManager::FindJob(const std::string& id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

void JobManager::AddEvent(JobEntry& entry, Mutation& m, const std::string& type, JobState from,
                          JobState to, const std::string& reason, int64_t step) {
  tecl::v1::JobEvent event;
  event.set_seq(entry.events.empty() ? 1 : entry.events.back().seq() + 1);
  event.set_job_id(entry.job.id());
  event.set_time_unix_ms(NowMs());
  event.set_type(type);
  event.set_from_state(from);
  event.set_to_state(to);
  event.set_attempt(entry.job.attempt());
  event.set_step(step);
  event.set_reason(reason);
  entry.events.push_back(event);
  m.batch.AppendEvent(event);
  changed_.insert(entry.job.id());
}

absl::Status JobManager::Transition(JobEntry& entry, JobState to, const std::string& reason,
                                    Mutation& m) {
  Job& job = entry.job;
  const JobState from = job.state();
  absl::Status allowed = CheckTransition(job.id(), from, to);
  if (!allowed.ok()) {
    TECL_LOG(ERROR) << allowed.message();
    return allowed;
  }
  job.set_state(to);
  job.set_reason(reason);
  job.set_updated_unix_ms(NowMs());
  if (IsTerminal(to)) job.set_finished_unix_ms(NowMs());
  if (IsWaiting(to)) {
    waiting_.insert(entry.seq);
  } else {
    waiting_.erase(entry.seq);
  }
  AddEvent(entry, m, "state", from, to, reason, job.progress().step());
  m.jobs.insert(job.id());
  needs_scheduling_ = true;
  if (to == tecl::v1::JOB_STATE_SCHEDULED && job.attempt() == 1 && scheduling_latency_ != nullptr) {
    scheduling_latency_->Observe(
        absl::ToDoubleSeconds(clock_->Now() - absl::FromUnixMillis(job.created_unix_ms())));
  }
  TECL_LOG(INFO) << "job " << job.id() << ": " << StateName(from) << " -> " << StateName(to) << " ("
                 << reason << ")";
  return absl::OkStatus();
}

void JobManager::SubmitJob(const tecl::v1::JobSpec& spec, const std::string& request_id,
                           Callback<Job> done) {
  absl::Status valid = ValidateJobSpec(spec, options_.limits);
  if (!valid.ok()) {
    done(valid);
    return;
  }
  std::vector<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    absl::Status healthy = CheckStore();
    if (!healthy.ok()) {
      done(healthy);
      return;
    }
    if (!request_id.empty()) {
      auto it = request_ids_.find(request_id);
      if (it != request_ids_.end()) {
        const Job& existing = jobs_.at(it->second).job;
        if (!google::protobuf::util::MessageDifferencer::Equals(existing.spec(), spec)) {
          done(absl::AlreadyExistsError(
              absl::StrCat("request id \"", request_id, "\" was already used for job ",
                           existing.id(), " with a different spec; use a new request id")));
          return;
        }
        // A retry: answer once the original is durable.
        Mutation barrier;
        Commit(barrier, [done, existing](absl::Status s) {
          if (s.ok()) {
            done(existing);
          } else {
            done(s);
          }
        });
        return;
      }
    }
    if (spec.kind() == tecl::v1::JOB_KIND_EVAL && !spec.eval().source_job_id().empty()) {
      const JobEntry* source = FindJob(spec.eval().source_job_id());
      if (source == nullptr) {
        done(absl::InvalidArgumentError(
            absl::StrCat("job spec: eval.source_job_id: no job \"", spec.eval().source_job_id(),
                         "\"; see `teclctl list` for the pretraining jobs")));
        return;
      }
      if (source->job.spec().kind() != tecl::v1::JOB_KIND_PRETRAIN) {
        done(absl::InvalidArgumentError(
            absl::StrCat("job spec: eval.source_job_id: job ", source->job.id(),
                         " is not a pretraining job; give the job whose encoder to evaluate")));
        return;
      }
    }
    const int64_t seq = next_job_seq_++;
    JobEntry& entry = jobs_[absl::StrFormat("job-%06d", seq)];
    entry.seq = seq;
    entry.request_id = request_id;
    Job& job = entry.job;
    job.set_id(absl::StrFormat("job-%06d", seq));
    *job.mutable_spec() = spec;
    job.set_state(tecl::v1::JOB_STATE_PENDING);
    const auto& r = spec.resources();
    const std::string source =
        spec.kind() == tecl::v1::JOB_KIND_EVAL ? spec.eval().source_job_id() : "";
    job.set_reason(absl::StrCat(
        "waiting for ", source.empty() ? "" : absl::StrCat("job ", source, " to finish and "),
        r.trainers(), " ",
        EnumValueShortName(*tecl::v1::Device_descriptor()->FindValueByNumber(r.device())),
        " trainer(s) and ", r.trainers() * r.dataloaders_per_trainer(), " dataloader(s)"));
    job.set_created_unix_ms(NowMs());
    job.set_updated_unix_ms(job.created_unix_ms());
    job.mutable_progress()->set_total_steps(spec.schedule().total_steps());
    jobs_by_seq_[seq] = job.id();
    waiting_.insert(seq);
    if (!request_id.empty()) request_ids_[request_id] = job.id();
    if (rendezvous_ != nullptr) rendezvous_->EndAttempt(job.id(), 0);  // Known, nothing open.
    needs_scheduling_ = true;

    Mutation m;
    m.batch.CreateJob(job, seq, request_id);
    AddEvent(entry, m, "state", tecl::v1::JOB_STATE_UNSPECIFIED, tecl::v1::JOB_STATE_PENDING,
             "submitted", 0);
    Commit(m, [done, job](absl::Status s) {
      if (s.ok()) {
        done(job);
      } else {
        done(s);
      }
    });
    changed = TakeChanged();
  }
  Notify(changed);
}

absl::StatusOr<Job> JobManager::GetJob(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\"; see `teclctl list`"));
  }
  return it->second.job;
}

absl::StatusOr<ListJobsResult> JobManager::ListJobs(const std::vector<JobState>& states,
                                                    int page_size,
                                                    const std::string& page_token) const {
  if (page_size < 0 || page_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", page_size, " is out of range; use 1..1000 (0 = 100)"));
  }
  if (page_size == 0) page_size = 100;
  int64_t before = std::numeric_limits<int64_t>::max();
  if (!page_token.empty() && (!absl::SimpleAtoi(page_token, &before) || before < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token \"", page_token,
                     "\" was not issued by this coordinator; pass the "
                     "next_page_token of the previous page"));
  }
  const std::set<JobState> wanted(states.begin(), states.end());
  ListJobsResult result;
  absl::MutexLock lock(&mu_);
  for (auto it = jobs_by_seq_.lower_bound(before); it != jobs_by_seq_.begin();) {
    --it;
    const Job& job = jobs_.at(it->second).job;
    if (!wanted.empty() && !wanted.count(job.state())) continue;
    if (static_cast<int>(result.jobs.size()) == page_size) {
      result.next_page_token = absl::StrCat(jobs_.at(result.jobs.back().id()).seq);
      break;
    }
    result.jobs.push_back(job);
  }
  return result;
}

absl::StatusOr<std::vector<tecl::v1::JobEvent>> JobManager::ListEvents(const std::string& job_id,
                                                                       int64_t after_seq,
                                                                       int limit) const {
  if (limit < 0) return absl::InvalidArgumentError("limit must be >= 0 (0 = all)");
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\"; see `teclctl list`"));
  }
  std::vector<tecl::v1::JobEvent> events;
  for (const auto& event : it->second.events) {
    if (event.seq() <= after_seq) continue;
    if (limit > 0 && static_cast<int>(events.size()) == limit) break;
    events.push_back(event);
  }
  return events;
}

void JobManager::CancelJob(const std::string& job_id, const std::string& reason,
                           Callback<Job> done) {
  std::vector<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    absl::Status healthy = CheckStore();
    if (!healthy.ok()) {
      done(healthy);
      return;
    }
    JobEntry* entry = FindJob(job_id);
    if (entry == nullptr) {
      done(absl::NotFoundError(absl::StrCat("no job \"", job_id, "\"; see `teclctl list`")));
      return;
    }
    absl::Status allowed =
        CheckTransition(job_id, entry->job.state(), tecl::v1::JOB_STATE_CANCELLED);
    if (!allowed.ok()) {
      done(allowed);
      return;
    }
    Mutation m;
    Finish(*entry, tecl::v1::JOB_STATE_CANCELLED,
           reason.empty() ? "cancelled by the user" : absl::StrCat("cancelled: ", reason), m);
    Commit(m, [done, job = entry->job](absl::Status s) {
      if (s.ok()) {
        done(job);
      } else {
        done(s);
      }
    });
    changed = TakeChanged();
  }
  Notify(changed);
}

void JobManager::EndAttempt(JobEntry& entry, JobState end_state, const std::string& reason,
                            Mutation& m) {
  const std::string& id = entry.job.id();
  const int attempt = entry.job.attempt();
  for (auto& [worker_id, worker] : workers_) {
    const tecl::v1::WorkerInfo& info = worker.info;
    if (info.state() != tecl::v1::WORKER_STATE_BUSY || info.job_id() != id ||
        info.attempt() != attempt) {
      continue;
    }
    if (info.kind() == tecl::v1::WORKER_KIND_DATALOADER) {
      FreeWorker(worker, m);
    } else if (!worker.stopping) {
      worker.stopping = true;
      worker.stop_reason = reason;
    }
  }
  for (tecl::v1::JobAttempt& a : entry.attempts) {
    if (a.attempt() != attempt || a.ended_unix_ms() != 0) continue;
    a.set_ended_unix_ms(NowMs());
    a.set_end_state(end_state);
    a.set_reason(reason);
    m.batch.PutAttempt(id, a);
  }
  if (rendezvous_ != nullptr) rendezvous_->EndAttempt(id, attempt);
  entry.running_ranks.clear();
}

void JobManager::FailAttempt(JobEntry& entry, const std::string& reason, Mutation& m) {
  Job& job = entry.job;
  const int max_restarts = job.spec().restart().max_restarts();
  if (job.restarts() >= max_restarts) {
    Finish(entry, tecl::v1::JOB_STATE_FAILED,
           absl::StrCat(reason, "; no restarts left (restart.max_restarts = ", max_restarts, ")"),
           m);
    return;
  }
  EndAttempt(entry, tecl::v1::JOB_STATE_RECOVERING, reason, m);
  if (!Transition(entry, tecl::v1::JOB_STATE_RECOVERING, reason, m).ok()) return;
  job.set_restarts(job.restarts() + 1);
  job.set_attempt(job.attempt() + 1);
  job.clear_ranks();
  if (restarts_ != nullptr) restarts_->Increment();
}

void JobManager::Finish(JobEntry& entry, JobState state, const std::string& reason, Mutation& m) {
  if (IsActive(entry.job.state())) EndAttempt(entry, state, reason, m);
  Transition(entry, state, reason, m).IgnoreError();
}

void JobManager::StartAttempt(JobEntry& entry, const Placement& placement, Mutation& m) {
  Job& job = entry.job;
  if (job.state() == tecl::v1::JOB_STATE_PENDING) job.set_attempt(1);
  job.clear_ranks();
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
      WorkerEntry& worker = workers_.at(worker_id);
      worker.info.set_state(tecl::v1::WORKER_STATE_BUSY);
      worker.info.set_job_id(job.id());
      worker.info.set_attempt(job.attempt());
      worker.info.set_rank(static_cast<int32_t>(r));
      worker.acknowledged = false;
      worker.stopping = false;
      worker.stop_reason.clear();
      m.workers.insert(worker_id);
      if (worker.info.kind() == tecl::v1::WORKER_KIND_TRAINER) {
        hosts.insert(worker.info.hostname().empty() ? "?" : worker.info.hostname());
      }
    }
  }
  tecl::v1::JobAttempt attempt;
  attempt.set_attempt(job.attempt());
  *attempt.mutable_ranks() = job.ranks();
  attempt.set_started_unix_ms(NowMs());
  entry.attempts.push_back(attempt);
  m.batch.PutAttempt(job.id(), attempt);
  entry.running_ranks.clear();
  entry.bypassed = 0;
  if (rendezvous_ != nullptr) rendezvous_->BeginAttempt(job.id(), job.attempt());
  std::string resume;
  if (!job.latest_checkpoint().path().empty()) {
    resume = absl::StrCat(", resuming from step ", job.latest_checkpoint().step());
  }
  Transition(entry, tecl::v1::JOB_STATE_SCHEDULED,
             absl::StrCat("attempt ", job.attempt(), " placed on ", placement.ranks.size(),
                          " trainer(s) (", absl::StrJoin(hosts, ", "), ") and ", loaders,
                          " dataloader(s)", resume),
             m)
      .IgnoreError();
}

// ------------------------------------------------------------------------------------------------
// Membership.

std::string JobManager::NewWorkerId(tecl::v1::WorkerKind kind) {
  const std::string prefix = kind == tecl::v1::WORKER_KIND_DATALOADER ? "loader-" : "trainer-";
  while (true) {
    std::string id =
        absl::StrCat(prefix, absl::StrFormat("%08x", static_cast<uint32_t>(SplitMix64(id_state_))));
    if (!workers_.count(id)) return id;
  }
}

void JobManager::RegisterWorker(const tecl::v1::WorkerInfo& worker,
                                Callback<tecl::v1::RegisterWorkerResponse> done) {
  if (worker.kind() == tecl::v1::WORKER_KIND_UNSPECIFIED) {
    done(absl::InvalidArgumentError("register: worker.kind is missing; set trainer or dataloader"));
    return;
  }
  if (worker.kind() == tecl::v1::WORKER_KIND_DATALOADER && worker.address().empty()) {
    done(absl::InvalidArgumentError(
        "register: a dataloader needs worker.address (host:port of its gRPC server) so that "
        "trainers can reach it"));
    return;
  }
  absl::MutexLock lock(&mu_);
  absl::Status healthy = CheckStore();
  if (!healthy.ok()) {
    done(healthy);
    return;
  }
  const std::string id = NewWorkerId(worker.kind());
  WorkerEntry& entry = workers_[id];
  entry.info = worker;
  entry.info.set_id(id);
  entry.info.set_state(tecl::v1::WORKER_STATE_IDLE);
  entry.info.clear_job_id();
  entry.info.clear_attempt();
  entry.info.clear_rank();
  entry.info.set_registered_unix_ms(NowMs());
  entry.last_heartbeat = clock_->Now();
  entry.restored = false;
  needs_scheduling_ = true;
  TECL_LOG(INFO) << "registered " << DescribeWorker(entry.info)
                 << (worker.address().empty() ? "" : absl::StrCat(" at ", worker.address()));
  Mutation m;
  m.workers.insert(id);
  tecl::v1::RegisterWorkerResponse response;
  response.set_worker_id(id);
  response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  Commit(m, [done, response](absl::Status s) {
    if (s.ok()) {
      done(response);
    } else {
      done(s);
    }
  });
}

void JobManager::FreeWorker(WorkerEntry& worker, Mutation& m) {
  worker.info.set_state(tecl::v1::WORKER_STATE_IDLE);
  worker.info.clear_job_id();
  worker.info.clear_attempt();
  worker.info.clear_rank();
  worker.acknowledged = false;
  worker.stopping = false;
  worker.stop_reason.clear();
  m.workers.insert(worker.info.id());
  needs_scheduling_ = true;
}

tecl::v1::Assignment JobManager::AssignmentFor(const WorkerEntry& worker) {
  const JobEntry& entry = jobs_.at(worker.info.job_id());
  const Job& job = entry.job;
  tecl::v1::Assignment a;
  a.set_job_id(job.id());
  a.set_attempt(job.attempt());
  a.set_rank(worker.info.rank());
  a.set_world_size(job.ranks_size());
  *a.mutable_spec() = job.spec();
  for (const auto& rank : job.ranks()) {
    if (rank.rank() != worker.info.rank()) continue;
    for (const std::string& loader : rank.dataloader_ids()) {
      auto it = workers_.find(loader);
      if (it != workers_.end()) a.add_dataloader_addresses(it->second.info.address());
    }
  }
  a.set_checkpoint_dir(job.spec().checkpoint().dir().empty()
                           ? absl::StrCat(options_.checkpoint_root, "/", job.id())
                           : job.spec().checkpoint().dir());
  if (job.spec().kind() == tecl::v1::JOB_KIND_EVAL) {
    const auto& eval = job.spec().eval();
    if (!eval.source_job_id().empty()) {
      auto source = jobs_.find(eval.source_job_id());
      if (source != jobs_.end()) *a.mutable_resume_from() = source->second.job.latest_checkpoint();
    } else if (!eval.checkpoint().empty()) {
      a.mutable_resume_from()->set_path(eval.checkpoint());
    }
  } else if (!job.latest_checkpoint().path().empty()) {
    *a.mutable_resume_from() = job.latest_checkpoint();
  }
  a.set_coordinator_address(coordinator_address_);
  return a;
}

void JobManager::Heartbeat(const tecl::v1::HeartbeatRequest& request,
                           Callback<tecl::v1::HeartbeatResponse> done) {
  std::vector<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(request.worker_id());
    if (it == workers_.end() || it->second.info.state() == tecl::v1::WORKER_STATE_LOST) {
      done(absl::NotFoundError(absl::StrCat(
          "worker \"", request.worker_id(), "\" ",
          it == workers_.end() ? "is not registered" : "was declared lost after missing heartbeats",
          "; register again")));
      return;
    }
    WorkerEntry& worker = it->second;
    worker.last_heartbeat = clock_->Now();
    if (worker.restored) needs_scheduling_ = true;  // Free again for new work.
    worker.restored = false;
    tecl::v1::HeartbeatResponse response;
    response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
    Mutation m;
    const tecl::v1::WorkerInfo& info = worker.info;
    const bool reports_work = !request.job_id().empty();
    const bool reports_assignment =
        reports_work && request.job_id() == info.job_id() && request.attempt() == info.attempt();
    auto stop = [&](const std::string& reason) {
      response.set_action(tecl::v1::HeartbeatResponse::ACTION_STOP);
      response.set_stop_reason(reason);
    };
    if (info.kind() == tecl::v1::WORKER_KIND_DATALOADER) {
      // Liveness only.
    } else if (info.state() != tecl::v1::WORKER_STATE_BUSY) {
      if (reports_work) {
        stop(absl::StrCat("attempt ", request.attempt(), " of job ", request.job_id(),
                          " is not current"));
      }
    } else if (worker.stopping) {
      if (reports_assignment) {
        stop(worker.stop_reason);
      } else {
        FreeWorker(worker, m);  // It has let go of the attempt.
      }
    } else if (reports_assignment) {
      worker.acknowledged = true;
      JobEntry& entry = jobs_.at(info.job_id());
      if (request.status() == tecl::v1::TRAINER_STATUS_RUNNING &&
          entry.job.state() == tecl::v1::JOB_STATE_SCHEDULED) {
        entry.running_ranks.insert(info.rank());
        if (static_cast<int>(entry.running_ranks.size()) == entry.job.ranks_size()) {
          Transition(entry, tecl::v1::JOB_STATE_RUNNING,
                     absl::StrCat("all ", entry.job.ranks_size(), " rank(s) are training"), m)
              .IgnoreError();
        }
      }
      if (info.rank() == 0 && request.has_progress() && IsActive(entry.job.state())) {
        *entry.job.mutable_progress() = request.progress();
        entry.job.mutable_progress()->set_updated_unix_ms(NowMs());
        entry.progress_dirty = true;
        changed_.insert(entry.job.id());
        if (clock_->Now() - entry.progress_written >= options_.progress_persist_interval) {
          m.jobs.insert(entry.job.id());
        }
      }
    } else if (!reports_work) {
      if (!worker.acknowledged) {
        response.set_action(tecl::v1::HeartbeatResponse::ACTION_RUN);
        *response.mutable_assignment() = AssignmentFor(worker);
      } else {
        // It ran the assignment and dropped it without reporting an outcome.
        JobEntry& entry = jobs_.at(info.job_id());
        const std::string reason = absl::StrCat("rank ", info.rank(), " (", DescribeWorker(info),
                                                ") went idle without reporting an outcome");
        FreeWorker(worker, m);
        if (IsActive(entry.job.state())) FailAttempt(entry, reason, m);
      }
    } else {
      stop(absl::StrCat("attempt ", request.attempt(), " of job ", request.job_id(),
                        " is not current"));
    }
    Commit(m, [done, response](absl::Status s) {
      if (s.ok()) {
        done(response);
      } else {
        done(s);
      }
    });
    changed = TakeChanged();
  }
  Notify(changed);
}

void JobManager::ReportOutcome(const tecl::v1::ReportOutcomeRequest& request, StatusCallback done) {
  std::vector<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    absl::Status healthy = CheckStore();
    if (!healthy.ok()) {
      done(healthy);
      return;
    }
    auto w = workers_.find(request.worker_id());
    if (w == workers_.end() || w->second.info.state() == tecl::v1::WORKER_STATE_LOST) {
      done(absl::NotFoundError(absl::StrCat("worker \"", request.worker_id(),
                                            "\" is not registered (or was declared lost); "
                                            "register again")));
      return;
    }
    JobEntry* entry = FindJob(request.job_id());
    if (entry == nullptr) {
      done(absl::NotFoundError(absl::StrCat("no job \"", request.job_id(), "\"")));
      return;
    }
    WorkerEntry& worker = w->second;
    Mutation m;
    if (worker.info.state() == tecl::v1::WORKER_STATE_BUSY &&
        worker.info.job_id() == request.job_id() && worker.info.attempt() == request.attempt()) {
      FreeWorker(worker, m);
    }
    Job& job = entry->job;
    absl::Status result;
    const std::string who =
        absl::StrCat("rank ", request.rank(), " (", DescribeWorker(worker.info), ")");
    if (request.attempt() != job.attempt() ||
        (!IsActive(job.state()) && !IsTerminal(job.state()))) {
      result = absl::AbortedError(absl::StrCat(
          "attempt ", request.attempt(), " of job ", job.id(), " is no longer current (the job is ",
          StateName(job.state()), ", attempt ", job.attempt(), "); outcome ignored"));
    } else if (IsTerminal(job.state())) {
      // A rank acknowledging the end of a finished job.
    } else {
      switch (request.outcome()) {
        case tecl::v1::OUTCOME_SUCCEEDED:
          if (request.rank() == 0) {
            if (request.has_progress()) *job.mutable_progress() = request.progress();
            job.mutable_progress()->set_updated_unix_ms(NowMs());
            if (request.has_eval_result()) *job.mutable_eval_result() = request.eval_result();
            Finish(*entry, tecl::v1::JOB_STATE_SUCCEEDED,
                   job.spec().kind() == tecl::v1::JOB_KIND_EVAL
                       ? "evaluation finished"
                       : absl::StrCat("rank 0 finished at step ", request.step()),
                   m);
          }
          break;
        case tecl::v1::OUTCOME_FAILED:
          FailAttempt(*entry,
                      absl::StrCat(who, " failed: ",
                                   request.reason().empty() ? "no reason given" : request.reason()),
                      m);
          break;
        case tecl::v1::OUTCOME_FATAL:
          Finish(*entry, tecl::v1::JOB_STATE_FAILED,
                 absl::StrCat(who, " failed fatally (not restarted): ", request.reason()), m);
          break;
        case tecl::v1::OUTCOME_STOPPED:
          FailAttempt(*entry,
                      absl::StrCat(who, " stopped without being told to: ", request.reason()), m);
          break;
        default:
          result = absl::InvalidArgumentError(
              "outcome is missing; set succeeded, failed, fatal "
              "or stopped");
          break;
      }
    }
    Commit(m, [done, result](absl::Status s) { done(s.ok() ? result : s); });
    changed = TakeChanged();
  }
  Notify(changed);
}

void JobManager::RegisterCheckpoint(const tecl::v1::RegisterCheckpointRequest& request,
                                    StatusCallback done) {
  std::vector<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    absl::Status healthy = CheckStore();
    if (!healthy.ok()) {
      done(healthy);
      return;
    }
    auto w = workers_.find(request.worker_id());
    if (w == workers_.end() || w->second.info.state() == tecl::v1::WORKER_STATE_LOST) {
      done(absl::NotFoundError(absl::StrCat("worker \"", request.worker_id(),
                                            "\" is not registered (or was declared lost)")));
      return;
    }
    JobEntry* entry = FindJob(request.job_id());
    if (entry == nullptr) {
      done(absl::NotFoundError(absl::StrCat("no job \"", request.job_id(), "\"")));
      return;
    }
    Job& job = entry->job;
    tecl::v1::Checkpoint c = request.checkpoint();
    if (c.path().empty()) {
      done(absl::InvalidArgumentError("checkpoint.path is empty; register the written file"));
      return;
    }
    if (c.step() < 0 || (job.spec().kind() == tecl::v1::JOB_KIND_PRETRAIN &&
                         c.step() > job.spec().schedule().total_steps())) {
      done(absl::InvalidArgumentError(absl::StrCat(
          "checkpoint.step ", c.step(),
          " is outside [0, schedule.total_steps = ", job.spec().schedule().total_steps(), "]")));
      return;
    }
    const tecl::v1::WorkerInfo& info = w->second.info;
    if (c.attempt() != job.attempt() || !IsActive(job.state()) || info.job_id() != job.id() ||
        info.attempt() != job.attempt()) {
      done(absl::AbortedError(
          absl::StrCat("checkpoint of attempt ", c.attempt(), " of job ", job.id(), " by worker ",
                       info.id(), " is not for the running attempt (", StateName(job.state()),
                       ", attempt ", job.attempt(), "); ignored")));
      return;
    }
    Mutation m;
    bool duplicate = false;
    for (const auto& existing : entry->checkpoints) {
      if (existing.step() == c.step() && existing.attempt() == c.attempt()) duplicate = true;
    }
    if (!duplicate) {  // A retried registration is acknowledged again.
      if (c.created_unix_ms() == 0) c.set_created_unix_ms(NowMs());
      entry->checkpoints.push_back(c);
      m.batch.AddCheckpoint(job.id(), c);
      if (job.latest_checkpoint().path().empty() || c.step() >= job.latest_checkpoint().step()) {
        *job.mutable_latest_checkpoint() = c;
        m.jobs.insert(job.id());
      }
      AddEvent(*entry, m, "checkpoint", job.state(), job.state(), c.path(), c.step());
    }
    Commit(m, done);
    changed = TakeChanged();
  }
  Notify(changed);
}

std::vector<tecl::v1::WorkerInfo> JobManager::ListWorkers(tecl::v1::WorkerKind kind) const {
  absl::MutexLock lock(&mu_);
  std::vector<tecl::v1::WorkerInfo> result;
  for (const auto& [id, worker] : workers_) {
    if (kind != tecl::v1::WORKER_KIND_UNSPECIFIED && worker.info.kind() != kind) continue;
    result.push_back(worker.info);
    result.back().set_last_heartbeat_unix_ms(ToUnixMillisOrZero(worker.last_heartbeat));
  }
  return result;
}

// ------------------------------------------------------------------------------------------------
// Background work.

absl::Duration JobManager::TimeoutFor(const WorkerEntry& worker) {
  if (worker.info.state() == tecl::v1::WORKER_STATE_BUSY) {
    auto it = jobs_.find(worker.info.job_id());
    if (it != jobs_.end()) {
      return absl::Seconds(it->second.job.spec().restart().heartbeat_timeout_s());
    }
  }
  return options_.heartbeat_timeout;
}

void JobManager::MarkLost(WorkerEntry& worker, Mutation& m) {
  tecl::v1::WorkerInfo& info = worker.info;
  const std::string reason =
      absl::StrCat(DescribeWorker(info), " missed heartbeats for ",
                   absl::FormatDuration(absl::Trunc(clock_->Now() - worker.last_heartbeat,
                                                    absl::Milliseconds(100))));
  TECL_LOG(WARNING) << reason << ": declared lost";
  const bool busy = info.state() == tecl::v1::WORKER_STATE_BUSY;
  const std::string job_id = info.job_id();
  const int attempt = info.attempt();
  const int rank = info.rank();
  const bool stopping = worker.stopping;
  info.set_state(tecl::v1::WORKER_STATE_LOST);
  info.clear_job_id();
  info.clear_attempt();
  info.clear_rank();
  worker.lost_at = clock_->Now();
  worker.stopping = false;
  m.workers.insert(info.id());
  if (!busy || stopping) return;
  JobEntry* entry = FindJob(job_id);
  if (entry == nullptr || entry->job.attempt() != attempt || !IsActive(entry->job.state())) return;
  const std::string why = absl::StrCat("rank ", rank, ": ", reason);
  AddEvent(*entry, m, "worker_lost", entry->job.state(), entry->job.state(), why,
           entry->job.progress().step());
  FailAttempt(*entry, why, m);
}

bool JobManager::ReadyToPlace(JobEntry& entry, Mutation& m) {
  const auto& spec = entry.job.spec();
  if (spec.kind() != tecl::v1::JOB_KIND_EVAL || spec.eval().source_job_id().empty()) return true;
  const JobEntry* source = FindJob(spec.eval().source_job_id());
  if (source != nullptr && !IsTerminal(source->job.state())) return false;  // Waits for it.
  if (source == nullptr || source->job.latest_checkpoint().path().empty()) {
    Finish(entry, tecl::v1::JOB_STATE_FAILED,
           absl::StrCat("source job ", spec.eval().source_job_id(),
                        source == nullptr ? " does not exist"
                                          : absl::StrCat(" ended (", StateName(source->job.state()),
                                                         ") without a checkpoint"),
                        "; nothing to evaluate"),
           m);
    return false;
  }
  return true;
}

void JobManager::Schedule(Mutation& m) {
  std::vector<WorkerSlot> free;
  std::vector<WorkerSlot> live;
  bool free_trainer = false;
  for (const auto& [id, worker] : workers_) {
    const tecl::v1::WorkerInfo& info = worker.info;
    if (info.state() == tecl::v1::WORKER_STATE_LOST) continue;
    WorkerSlot slot{id, info.kind(), info.device(), info.gpus(), info.hostname()};
    live.push_back(slot);
    if (info.state() == tecl::v1::WORKER_STATE_IDLE && !worker.restored) {
      free_trainer = free_trainer || info.kind() == tecl::v1::WORKER_KIND_TRAINER;
      free.push_back(std::move(slot));
    }
  }
  std::vector<JobEntry*> candidates;
  for (int64_t seq : waiting_) candidates.push_back(&jobs_.at(jobs_by_seq_.at(seq)));
  std::vector<QueuedJob> queue;
  for (JobEntry* entry : candidates) {
    if (!ReadyToPlace(*entry, m)) continue;
    if (!free_trainer) continue;
    QueuedJob q;
    q.job_id = entry->job.id();
    q.priority = entry->job.spec().priority();
    q.seq = entry->seq;
    q.request = GangRequestFor(entry->job.spec());
    q.bypassed = entry->bypassed;
    queue.push_back(std::move(q));
  }
  if (queue.empty()) return;
  ScheduleDecision decision = ScheduleQueue(std::move(queue), free, live, options_.scheduler);
  for (const auto& [id, count] : decision.bypassed) jobs_.at(id).bypassed = count;
  for (const auto& [id, placement] : decision.start) StartAttempt(jobs_.at(id), placement, m);
}

bool JobManager::NeedsScheduling() const {
  absl::MutexLock lock(&mu_);
  return needs_scheduling_;
}

void JobManager::Tick() {
  std::vector<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    if (!CheckStore().ok()) return;
    const absl::Time now = clock_->Now();
    Mutation m;
    for (auto it = workers_.begin(); it != workers_.end();) {
      WorkerEntry& worker = it->second;
      if (worker.info.state() == tecl::v1::WORKER_STATE_LOST) {
        if (now - worker.lost_at > options_.lost_worker_retention) {
          m.workers.insert(it->first);
          it = workers_.erase(it);
          continue;
        }
      } else if (now - worker.last_heartbeat > TimeoutFor(worker)) {
        MarkLost(worker, m);
      }
      ++it;
    }
    for (auto& [id, entry] : jobs_) {
      if (entry.progress_dirty &&
          now - entry.progress_written >= options_.progress_persist_interval) {
        m.jobs.insert(id);
      }
    }
    if (needs_scheduling_) {
      needs_scheduling_ = false;
      Schedule(m);
    }
    if (!m.batch.empty() || !m.jobs.empty() || !m.workers.empty()) Commit(m, nullptr);
    changed = TakeChanged();
  }
  Notify(changed);
}

// ------------------------------------------------------------------------------------------------
// Restore and metrics.

absl::Status JobManager::Restore() {
  absl::StatusOr<StoreSnapshot> snapshot = store_->Load();
  if (!snapshot.ok()) return snapshot.status();
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  for (StoredJob& stored : snapshot->jobs) {
    const std::string id = stored.job.id();
    JobEntry& entry = jobs_[id];
    entry.job = std::move(stored.job);
    entry.seq = stored.seq;
    entry.request_id = stored.request_id;
    entry.events = std::move(stored.events);
    entry.attempts = std::move(stored.attempts);
    entry.checkpoints = std::move(stored.checkpoints);
    entry.progress_written = now;
    jobs_by_seq_[entry.seq] = id;
    if (!entry.request_id.empty()) request_ids_[entry.request_id] = id;
    next_job_seq_ = std::max(next_job_seq_, entry.seq + 1);
    const JobState state = entry.job.state();
    if (IsWaiting(state)) waiting_.insert(entry.seq);
    if (state == tecl::v1::JOB_STATE_RUNNING) {
      for (const auto& rank : entry.job.ranks()) entry.running_ranks.insert(rank.rank());
    }
    if (rendezvous_ != nullptr) {
      // Known to the rendezvous: calls of any attempt but the open one get ABORTED.
      if (IsActive(state)) {
        rendezvous_->BeginAttempt(id, entry.job.attempt());
      } else {
        rendezvous_->EndAttempt(id, entry.job.attempt());
      }
    }
  }
  Mutation m;
  for (tecl::v1::WorkerInfo& info : snapshot->workers) {
    WorkerEntry& worker = workers_[info.id()];
    worker.info = std::move(info);
    worker.last_heartbeat = now;  // A full timeout to show up again.
    worker.restored = true;       // Not given new work until it does.
    worker.lost_at = now;
    if (worker.info.state() != tecl::v1::WORKER_STATE_BUSY) continue;
    const JobEntry* entry = FindJob(worker.info.job_id());
    const bool current = entry != nullptr && IsActive(entry->job.state()) &&
                         entry->job.attempt() == worker.info.attempt();
    if (worker.info.kind() == tecl::v1::WORKER_KIND_DATALOADER) {
      if (!current) FreeWorker(worker, m);
    } else if (!current) {
      worker.stopping = true;
      worker.stop_reason = absl::StrCat("attempt ", worker.info.attempt(), " of job ",
                                        worker.info.job_id(), " is no longer current");
    } else {
      worker.acknowledged = entry->job.state() == tecl::v1::JOB_STATE_RUNNING;
    }
  }
  needs_scheduling_ = true;
  TECL_LOG(INFO) << "restored " << jobs_.size() << " job(s) (" << waiting_.size()
                 << " waiting) and " << workers_.size() << " worker(s)";
  if (!m.workers.empty()) Commit(m, nullptr);
  return absl::OkStatus();
}

void JobManager::CollectMetrics() {
  absl::MutexLock lock(&mu_);
  std::map<JobState, int> jobs;
  for (int s = tecl::v1::JOB_STATE_PENDING; s <= tecl::v1::JOB_STATE_CANCELLED; ++s) {
    jobs[static_cast<JobState>(s)] = 0;
  }
  for (const auto& [id, entry] : jobs_) ++jobs[entry.job.state()];
  for (const auto& [state, count] : jobs)
    jobs_gauge_->Add({{"state", StateName(state)}}).Set(count);

  std::map<std::pair<std::string, std::string>, int> workers;
  for (const char* kind : {"trainer", "dataloader"}) {
    for (const char* state : {"idle", "busy", "lost"}) workers[{kind, state}] = 0;
  }
  const absl::Time now = clock_->Now();
  std::set<std::string> live;
  for (const auto& [id, worker] : workers_) {
    const auto* state = tecl::v1::WorkerState_descriptor()->FindValueByNumber(worker.info.state());
    ++workers[{KindName(worker.info.kind()), state ? EnumValueShortName(*state) : "unknown"}];
    if (worker.info.state() == tecl::v1::WORKER_STATE_LOST) continue;
    live.insert(id);
    heartbeat_age_->Add({{"worker", id}, {"kind", KindName(worker.info.kind())}})
        .Set(absl::ToDoubleSeconds(now - worker.last_heartbeat));
  }
  for (const auto& [key, count] : workers) {
    workers_gauge_->Add({{"kind", key.first}, {"state", key.second}}).Set(count);
  }
  for (const auto& [id, kind] : heartbeat_age_workers_) {
    if (!live.count(id)) heartbeat_age_->Remove({{"worker", id}, {"kind", kind}});
  }
  heartbeat_age_workers_.clear();
  for (const std::string& id : live)
    heartbeat_age_workers_[id] = KindName(workers_.at(id).info.kind());
}

}  // namespace tecl::coordinator
