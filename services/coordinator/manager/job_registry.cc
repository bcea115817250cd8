#include "services/coordinator/manager/job_registry.h"

#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/common/logging.h"
#include "services/coordinator/state/job_state.h"

namespace tecl::coordinator {
namespace {

using ::tecl::v1::Job;
using ::tecl::v1::JobState;

absl::Status NoSuchJob(const std::string& job_id) {
  return absl::NotFoundError(absl::StrCat("no job \"", job_id, "\"; see `teclctl list`"));
}

std::string PendingReason(const tecl::v1::JobSpec& spec) {
  const auto& r = spec.resources();
  const std::string source =
      spec.kind() == tecl::v1::JOB_KIND_EVAL ? spec.eval().source_job_id() : "";
  return absl::StrCat(
      "waiting for ", source.empty() ? "" : absl::StrCat("job ", source, " to finish and "),
      r.trainers(), " ",
      EnumValueShortName(*tecl::v1::Device_descriptor()->FindValueByNumber(r.device())),
      " trainer(s) and ", r.trainers() * r.dataloaders_per_trainer(), " dataloader(s)");
}

}  // namespace

JobRegistry::JobRegistry(JobRegistryOptions options, StateHost* host, metrics::Registry* registry)
    : options_(std::move(options)), host_(host) {
  host_->AddRowWriter([this](Change& change) { WriteRows(change); });
  if (registry == nullptr) return;
  scheduling_latency_ = &metrics::BuildHistogram()
                             .Name("tecl_coordinator_scheduling_latency_seconds")
                             .Help("Time from a job's submission to its first placement.")
                             .Register(*registry)
                             .Add({}, metrics::Histogram::ExponentialBuckets(0.01, 2, 16));
  jobs_gauge_ = &metrics::BuildGauge()
                     .Name("tecl_coordinator_jobs")
                     .Help("Jobs by state.")
                     .Register(*registry);
  host_->AddMetricsCollector(registry, [this] { CollectMetrics(); });
}

// ---- Entry points ----

void JobRegistry::Submit(const tecl::v1::JobSpec& spec, const std::string& request_id,
                         Callback<Job> done) {
  absl::Status valid = ValidateJobSpec(spec, options_.limits);
  if (!valid.ok()) {
    done(valid);
    return;
  }
  host_->Mutate<Job>(
      [&](Change& change) -> absl::StatusOr<Job> {
        if (!request_id.empty()) {
          auto it = request_ids_.find(request_id);
          if (it != request_ids_.end()) {
            // A retry: answered once the original is durable (the commit is a barrier).
            const Job& existing = jobs_.at(it->second).job;
            if (!google::protobuf::util::MessageDifferencer::Equals(existing.spec(), spec)) {
              return absl::AlreadyExistsError(
                  absl::StrCat("request id \"", request_id, "\" was already used for job ",
                               existing.id(), " with a different spec; use a new request id"));
            }
            return existing;
          }
        }
        if (spec.kind() == tecl::v1::JOB_KIND_EVAL && !spec.eval().source_job_id().empty()) {
          const JobRecord* source = Find(spec.eval().source_job_id());
          if (source == nullptr) {
            return absl::InvalidArgumentError(
                absl::StrCat("job spec: eval.source_job_id: no job \"",
                             spec.eval().source_job_id(),
                             "\"; see `teclctl list` for the pretraining jobs"));
          }
          if (source->job.spec().kind() != tecl::v1::JOB_KIND_PRETRAIN) {
            return absl::InvalidArgumentError(
                absl::StrCat("job spec: eval.source_job_id: job ", source->job.id(),
                             " is not a pretraining job; give the job whose encoder to evaluate"));
          }
        }
        if (const std::string& dir = spec.checkpoint().dir(); !dir.empty()) {
          // A folder of its own: pruning one job's checkpoints must not touch another's.
          for (const auto& [id, other] : jobs_) {
            const std::string& theirs = other.job.spec().checkpoint().dir();
            if (!theirs.empty() && (IsPathUnder(dir, theirs) || IsPathUnder(theirs, dir))) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "job spec: checkpoint.dir: \"", dir, "\" overlaps the checkpoint folder of job ",
                  id, " (\"", theirs, "\"); give this job a folder of its own"));
            }
          }
        }
        const int64_t seq = next_seq_++;
        const std::string id = absl::StrFormat("job-%06d", seq);
        JobRecord& record = jobs_[id];
        record.seq = seq;
        record.request_id = request_id;
        Job& job = record.job;
        job.set_id(id);
        *job.mutable_spec() = spec;
        job.set_state(tecl::v1::JOB_STATE_PENDING);
        job.set_reason(PendingReason(spec));
        job.set_created_unix_ms(host_->NowMs());
        job.set_updated_unix_ms(job.created_unix_ms());
        job.mutable_progress()->set_total_steps(spec.schedule().total_steps());
        jobs_by_seq_[seq] = id;
        waiting_.insert(seq);
        if (!request_id.empty()) request_ids_[request_id] = id;
        if (created_hook_) created_hook_(job);
        host_->RequestScheduling();
        change.batch.CreateJob(job, seq, request_id);
        AddEvent(record, "state", tecl::v1::JOB_STATE_UNSPECIFIED, tecl::v1::JOB_STATE_PENDING,
                 "submitted", 0, change);
        return job;
      },
      std::move(done));
}

absl::StatusOr<Job> JobRegistry::Get(const std::string& job_id) const {
  return host_->Read<absl::StatusOr<Job>>([&]() -> absl::StatusOr<Job> {
    const JobRecord* record = Find(job_id);
    if (record == nullptr) return NoSuchJob(job_id);
    return record->job;
  });
}

absl::Status JobRegistry::Exists(const std::string& job_id) const {
  return host_->Read<absl::Status>(
      [&]() { return Find(job_id) != nullptr ? absl::OkStatus() : NoSuchJob(job_id); });
}

absl::StatusOr<ListJobsResult> JobRegistry::List(const std::vector<JobState>& states,
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
  return host_->Read<ListJobsResult>([&] {
    ListJobsResult result;
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
  });
}

absl::StatusOr<std::vector<tecl::v1::JobEvent>> JobRegistry::ListEvents(const std::string& job_id,
                                                                        int64_t after_seq,
                                                                        int limit) const {
  if (limit < 0) return absl::InvalidArgumentError("limit must be >= 0 (0 = all)");
  using Events = std::vector<tecl::v1::JobEvent>;
  return host_->Read<absl::StatusOr<Events>>([&]() -> absl::StatusOr<Events> {
    const JobRecord* record = Find(job_id);
    if (record == nullptr) return NoSuchJob(job_id);
    Events events;
    for (const auto& event : record->events) {
      if (event.seq() <= after_seq) continue;
      if (limit > 0 && static_cast<int>(events.size()) == limit) break;
      events.push_back(event);
    }
    return events;
  });
}

// ---- Under the host's lock ----

JobRecord* JobRegistry::Find(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

const JobRecord* JobRegistry::Find(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

absl::StatusOr<JobRecord*> JobRegistry::FindOrNotFound(const std::string& job_id) {
  JobRecord* record = Find(job_id);
  if (record == nullptr) return NoSuchJob(job_id);
  return record;
}

void JobRegistry::AddEvent(JobRecord& record, const std::string& type, JobState from, JobState to,
                           const std::string& reason, int64_t step, Change& change, int attempt) {
  tecl::v1::JobEvent event;
  event.set_seq(record.events.empty() ? 1 : record.events.back().seq() + 1);
  event.set_job_id(record.job.id());
  event.set_time_unix_ms(host_->NowMs());
  event.set_type(type);
  event.set_from_state(from);
  event.set_to_state(to);
  event.set_attempt(attempt >= 0 ? attempt : record.job.attempt());
  event.set_step(step);
  event.set_reason(reason);
  record.events.push_back(event);
  change.batch.AppendEvent(event);
  change.changed_jobs.insert(record.job.id());
}

absl::Status JobRegistry::Transition(JobRecord& record, JobState to, const std::string& reason,
                                     Change& change) {
  Job& job = record.job;
  const JobState from = job.state();
  absl::Status allowed = CheckTransition(job.id(), from, to);
  if (!allowed.ok()) {
    TECL_LOG(ERROR) << allowed.message();
    return allowed;
  }
  const int64_t now = host_->NowMs();
  job.set_state(to);
  job.set_reason(reason);
  job.set_updated_unix_ms(now);
  if (IsTerminal(to)) job.set_finished_unix_ms(now);
  if (IsWaiting(to)) {
    waiting_.insert(record.seq);
  } else {
    waiting_.erase(record.seq);
  }
  AddEvent(record, "state", from, to, reason, job.progress().step(), change);
  Touch(record, change);
  host_->RequestScheduling();
  if (to == tecl::v1::JOB_STATE_SCHEDULED && job.attempt() == 1 && scheduling_latency_ != nullptr) {
    scheduling_latency_->Observe(absl::ToDoubleSeconds(
        host_->Now() - absl::FromUnixMillis(job.created_unix_ms())));
  }
  TECL_LOG(INFO) << "job " << job.id() << ": " << StateName(from) << " -> " << StateName(to) << " ("
                 << reason << ")";
  return absl::OkStatus();
}

void JobRegistry::Touch(JobRecord& record, Change& change) {
  change.job_rows.insert(record.job.id());
  change.changed_jobs.insert(record.job.id());
}

void JobRegistry::SetProgress(JobRecord& record, const tecl::v1::JobProgress& progress,
                              Change& change) {
  *record.job.mutable_progress() = progress;
  record.job.mutable_progress()->set_updated_unix_ms(host_->NowMs());
  record.progress_dirty = true;
  change.changed_jobs.insert(record.job.id());
  if (host_->Now() - record.progress_written >= options_.progress_persist_interval) {
    change.job_rows.insert(record.job.id());
  }
}

void JobRegistry::PersistDueProgress(Change& change) {
  const absl::Time now = host_->Now();
  for (auto& [id, record] : jobs_) {
    if (record.progress_dirty && now - record.progress_written >= options_.progress_persist_interval) {
      change.job_rows.insert(id);
    }
  }
}

std::vector<JobRecord*> JobRegistry::Waiting() {
  std::vector<JobRecord*> waiting;
  waiting.reserve(waiting_.size());
  for (int64_t seq : waiting_) waiting.push_back(&jobs_.at(jobs_by_seq_.at(seq)));
  return waiting;
}

std::string JobRegistry::PlacedWorker(const JobRecord& record, int attempt, int rank) {
  for (const tecl::v1::JobAttempt& a : record.attempts) {
    if (a.attempt() != attempt) continue;
    for (const tecl::v1::RankAssignment& r : a.ranks()) {
      if (r.rank() == rank) return r.worker_id();
    }
  }
  return "";
}

JobRecord& JobRegistry::Restore(StoredJob stored) {
  const std::string id = stored.job.id();
  JobRecord& record = jobs_[id];
  record.job = std::move(stored.job);
  record.seq = stored.seq;
  record.request_id = std::move(stored.request_id);
  record.events = std::move(stored.events);
  record.attempts = std::move(stored.attempts);
  record.progress_written = host_->Now();
  jobs_by_seq_[record.seq] = id;
  if (!record.request_id.empty()) request_ids_[record.request_id] = id;
  next_seq_ = std::max(next_seq_, record.seq + 1);
  if (IsWaiting(record.job.state())) waiting_.insert(record.seq);
  return record;
}

void JobRegistry::WriteRows(Change& change) {
  const absl::Time now = host_->Now();
  for (const std::string& id : change.job_rows) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    change.batch.UpdateJob(it->second.job);
    it->second.progress_written = now;
    it->second.progress_dirty = false;
  }
}

void JobRegistry::CollectMetrics() {
  std::map<JobState, int> jobs;
  for (int s = tecl::v1::JOB_STATE_PENDING; s <= tecl::v1::JOB_STATE_CANCELLED; ++s) {
    jobs[static_cast<JobState>(s)] = 0;
  }
  for (const auto& [id, record] : jobs_) ++jobs[record.job.state()];
  for (const auto& [state, count] : jobs) {
    jobs_gauge_->Add({{"state", StateName(state)}}).Set(count);
  }
}

}  // namespace tecl::coordinator
