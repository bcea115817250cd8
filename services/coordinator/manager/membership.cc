#include "services/coordinator/manager/membership.h"

#include <algorithm>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/common/clock.h"
#include "services/common/crypto.h"
#include "services/common/logging.h"
#include "services/coordinator/spec/job_spec.h"

namespace tecl::coordinator {
namespace {

std::string KindName(tecl::v1::WorkerKind kind) {
  return kind == tecl::v1::WORKER_KIND_DATALOADER ? "dataloader" : "trainer";
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

HeartbeatReport Classify(const tecl::v1::HeartbeatRequest& request, const WorkerRecord& worker) {
  if (request.job_id().empty()) return HeartbeatReport::kNoWork;
  if (IsBusy(worker.phase) && request.job_id() == worker.info.job_id() &&
      request.attempt() == worker.info.attempt()) {
    return HeartbeatReport::kAssignment;
  }
  return HeartbeatReport::kOtherWork;
}

}  // namespace

std::string WorkerRecord::Describe() const {
  return absl::StrCat(KindName(info.kind()), " ", info.id(),
                      info.hostname().empty() ? "" : absl::StrCat(" on ", info.hostname()));
}

Membership::Membership(MembershipOptions options, StateHost* host, metrics::Registry* registry)
    : options_(std::move(options)), host_(host) {
  id_state_ = (static_cast<uint64_t>(std::random_device()()) << 32) ^ std::random_device()() ^
              static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  host_->AddRowWriter([this](Change& change) { WriteRows(change); });
  if (registry == nullptr) return;
  workers_gauge_ = &metrics::BuildGauge()
                        .Name("tecl_coordinator_workers")
                        .Help("Registered workers by kind and state.")
                        .Register(*registry);
  heartbeat_age_ = &metrics::BuildGauge()
                        .Name("tecl_coordinator_worker_heartbeat_age_seconds")
                        .Help("Seconds since each live worker's last heartbeat.")
                        .Register(*registry);
  stragglers_ = &metrics::BuildGauge()
                     .Name("tecl_coordinator_straggler_ranks")
                     .Help("Running ranks whose step time without the all-reduce exceeds the "
                           "straggler factor times their job's other ranks' median.")
                     .Register(*registry);
  log_lines_ = &metrics::BuildCounter()
                    .Name("tecl_coordinator_log_lines_total")
                    .Help("Trainer log lines from heartbeats: kept, lost (a trainer's buffer "
                          "overflowed), refused (not of an assignment the trainer was given).")
                    .Register(*registry);
  for (const char* outcome : {"kept", "lost", "refused"}) log_lines_->Add({{"outcome", outcome}});
  log_bytes_ = &metrics::BuildGauge()
                    .Name("tecl_coordinator_log_tail_bytes")
                    .Help("Memory held by the jobs' log tails (teclctl logs).")
                    .Register(*registry)
                    .Add({});
  host_->AddMetricsCollector(registry, [this] { CollectMetrics(); });
}

// ---- Entry points ----

void Membership::Register(const tecl::v1::WorkerInfo& worker,
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
  host_->Mutate<tecl::v1::RegisterWorkerResponse>(
      [&](Change& change) -> absl::StatusOr<tecl::v1::RegisterWorkerResponse> {
        const std::string id = NewWorkerId(worker.kind());
        const std::string session = RandomToken();
        const Digest digest = Sha256(session);
        const std::string digest_bytes(digest.begin(), digest.end());
        WorkerRecord& record = workers_[id];
        record.info = worker;
        record.info.set_id(id);
        record.info.set_session_sha256(digest_bytes);
        by_session_[digest_bytes] = id;
        record.info.set_state(tecl::v1::WORKER_STATE_IDLE);
        record.info.clear_job_id();
        record.info.clear_attempt();
        record.info.clear_rank();
        record.info.set_registered_unix_ms(host_->NowMs());
        record.phase = WorkerPhase::kIdle;
        record.last_heartbeat = host_->Now();
        host_->RequestScheduling();
        change.worker_rows.insert(id);
        TECL_LOG(INFO) << "registered " << record.Describe()
                       << (worker.address().empty() ? "" : absl::StrCat(" at ", worker.address()));
        tecl::v1::RegisterWorkerResponse response;
        response.set_worker_id(id);
        response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
        response.set_session_token(session);
        return response;
      },
      std::move(done));
}

void Membership::Heartbeat(const tecl::v1::HeartbeatRequest& request, const std::string& session,
                           Callback<tecl::v1::HeartbeatResponse> done) {
  using Action = HeartbeatDecision::Action;
  using Effect = HeartbeatDecision::Effect;
  host_->Mutate<tecl::v1::HeartbeatResponse>(
      [&](Change& change) -> absl::StatusOr<tecl::v1::HeartbeatResponse> {
        auto found = Authenticate(request.worker_id(), session);
        if (!found.ok()) return found.status();
        WorkerRecord& worker = **found;
        worker.last_heartbeat = host_->Now();
        TakeLogLines(worker, request);
        if (!worker.confirmed) host_->RequestScheduling();  // Free for new work again.
        worker.confirmed = true;
        tecl::v1::HeartbeatResponse response;
        response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
        const bool runs_assignment =
            worker.info.kind() == tecl::v1::WORKER_KIND_DATALOADER &&
            (!request.job_id().empty() ||
             (IsBusy(worker.phase) && listener_->RunsAssignment(worker)));
        const HeartbeatDecision decision = DecideHeartbeat(
            worker.info.kind(), worker.phase, Classify(request, worker), runs_assignment);
        const tecl::v1::WorkerInfo before = worker.info;
        if (decision.event.has_value()) Apply(worker, *decision.event, change).IgnoreError();
        if (decision.effect == Effect::kAcknowledged) {
          if (request.job_id() == worker.info.job_id() &&
              request.attempt() == worker.info.attempt()) {
            worker.stats.set_step(request.progress().step());
            worker.stats.set_step_seconds(request.step_seconds());
            worker.stats.set_data_wait_seconds(request.data_wait_seconds());
            worker.stats.set_allreduce_seconds(request.allreduce_seconds());
            worker.stats.set_updated_unix_ms(host_->NowMs());
            worker.stats_job = request.job_id();
            worker.stats_attempt = request.attempt();
          }
          listener_->OnRunning(worker, request, &response, change);
        } else if (decision.effect == Effect::kDroppedAssignment) {
          listener_->OnAssignmentDropped(worker.Describe(), before.job_id(), before.attempt(),
                                         before.rank(), change);
        }
        switch (decision.action) {
          case Action::kNone:
            break;
          case Action::kSendAssignment:
            response.set_action(tecl::v1::HeartbeatResponse::ACTION_RUN);
            *response.mutable_assignment() = listener_->AssignmentFor(worker);
            break;
          case Action::kStopOwn:
            response.set_action(tecl::v1::HeartbeatResponse::ACTION_STOP);
            response.set_stop_reason(worker.stop_reason);
            break;
          case Action::kStopStale:
            response.set_action(tecl::v1::HeartbeatResponse::ACTION_STOP);
            response.set_stop_reason(absl::StrCat("attempt ", request.attempt(), " of job ",
                                                  request.job_id(), " is not current"));
            break;
        }
        return response;
      },
      std::move(done));
}

std::vector<tecl::v1::WorkerInfo> Membership::List(tecl::v1::WorkerKind kind) const {
  return host_->Read<std::vector<tecl::v1::WorkerInfo>>([&] {
    std::vector<tecl::v1::WorkerInfo> result;
    for (const auto& [id, worker] : workers_) {
      if (kind != tecl::v1::WORKER_KIND_UNSPECIFIED && worker.info.kind() != kind) continue;
      result.push_back(worker.info);
      result.back().set_last_heartbeat_unix_ms(ToUnixMillisOrZero(worker.last_heartbeat));
      result.back().clear_session_sha256();
      if (const tecl::v1::RankStats* stats = CurrentStats(worker)) {
        *result.back().mutable_rank_stats() = *stats;
      }
    }
    return result;
  });
}

// ---- Under the host's lock ----

WorkerRecord* Membership::Find(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : &it->second;
}

absl::StatusOr<WorkerRecord*> Membership::FindLive(const std::string& worker_id) {
  WorkerRecord* worker = Find(worker_id);
  if (worker == nullptr || worker->phase == WorkerPhase::kLost) {
    return absl::NotFoundError(absl::StrCat(
        "worker \"", worker_id, "\" ",
        worker == nullptr ? "is not registered" : "was declared lost after missing heartbeats",
        "; register again"));
  }
  return worker;
}

absl::StatusOr<WorkerRecord*> Membership::Authenticate(const std::string& worker_id,
                                                      const std::string& session) {
  absl::StatusOr<WorkerRecord*> worker = FindLive(worker_id);
  if (!worker.ok()) return worker;
  const std::string& stored = (*worker)->info.session_sha256();
  Digest expected{};
  if (stored.size() == expected.size()) std::copy(stored.begin(), stored.end(), expected.begin());
  if (stored.size() != expected.size() || !DigestsEqual(Sha256(session), expected)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the call does not carry the session of worker ", worker_id,
        "; a worker calls with the session its RegisterWorker returned (x-tecl-session)"));
  }
  return worker;
}

absl::Status Membership::CheckRendezvousCaller(const std::string& session,
                                               const std::string& job_id, int attempt) const {
  return host_->Read<absl::Status>([&]() -> absl::Status {
    const Digest digest = Sha256(session);
    auto id = by_session_.find(std::string(digest.begin(), digest.end()));
    const WorkerRecord* worker = nullptr;
    if (id != by_session_.end()) {
      auto it = workers_.find(id->second);
      if (it != workers_.end()) worker = &it->second;
    }
    if (worker == nullptr || worker->phase == WorkerPhase::kLost) {
      return absl::PermissionDeniedError(
          "rendezvous: the call carries no session of a registered worker");
    }
    if (worker->info.kind() != tecl::v1::WORKER_KIND_TRAINER || !IsBusy(worker->phase) ||
        worker->info.job_id() != job_id || worker->info.attempt() != attempt) {
      return absl::PermissionDeniedError(absl::StrCat(
          "rendezvous of job ", job_id, " attempt ", attempt, ": ", worker->Describe(),
          " is not a trainer of that attempt"));
    }
    return absl::OkStatus();
  });
}

absl::Status Membership::Apply(WorkerRecord& worker, WorkerEvent event, Change& change) {
  absl::StatusOr<WorkerPhase> next = NextWorkerPhase(worker.id(), worker.phase, event);
  if (!next.ok()) {
    TECL_LOG(ERROR) << next.status().message();
    return next.status();
  }
  worker.phase = *next;
  worker.info.set_state(WireState(worker.phase));
  if (!IsBusy(worker.phase)) {
    worker.info.clear_job_id();
    worker.info.clear_attempt();
    worker.info.clear_rank();
    worker.stop_reason.clear();
  }
  if (worker.phase == WorkerPhase::kIdle) host_->RequestScheduling();
  change.worker_rows.insert(worker.id());
  return absl::OkStatus();
}

void Membership::Assign(WorkerRecord& worker, const std::string& job_id, int attempt, int rank,
                        absl::Duration busy_timeout, Change& change) {
  if (!Apply(worker, WorkerEvent::kAssign, change).ok()) return;
  worker.info.set_job_id(job_id);
  worker.info.set_attempt(attempt);
  worker.info.set_rank(rank);
  worker.busy_timeout = busy_timeout;
  worker.log_grants.push_back({job_id, attempt, rank});
  if (worker.log_grants.size() > kLogGrants) worker.log_grants.pop_front();
}

void Membership::TakeLogLines(WorkerRecord& worker, const tecl::v1::HeartbeatRequest& request) {
  if (request.log_lines().empty()) return;
  auto count = [&](const char* outcome, int64_t n) {
    if (log_lines_ != nullptr && n > 0) log_lines_->Add({{"outcome", outcome}}).Increment(n);
  };
  for (const tecl::v1::LogLine& line : request.log_lines()) {
    if (line.seq() <= worker.log_seq) continue;  // Sent again after a lost response.
    const bool granted =
        std::any_of(worker.log_grants.begin(), worker.log_grants.end(), [&](const LogGrant& g) {
          return g.job_id == line.job_id() && g.attempt == line.attempt() && g.rank == line.rank();
        });
    // A gap after the first line taken: the trainer dropped lines it could not deliver.
    const int64_t lost = worker.log_seq > 0 ? line.seq() - worker.log_seq - 1 : 0;
    worker.log_seq = line.seq();
    if (!granted) {
      count("refused", 1);
      continue;
    }
    if (logs_ == nullptr) continue;
    if (lost > 0) {
      tecl::v1::LogLine marker = line;
      marker.set_text(absl::StrCat("[", lost, " log lines of ", worker.Describe(),
                                   " were lost: its buffer overflowed while the coordinator "
                                   "was unreachable]"));
      marker.set_worker_id(worker.id());
      logs_->Append(std::move(marker));
      count("lost", lost);
    }
    tecl::v1::LogLine kept = line;
    kept.set_worker_id(worker.id());
    logs_->Append(std::move(kept));
    count("kept", 1);
  }
}

void Membership::OrderStop(WorkerRecord& worker, const std::string& reason, Change& change) {
  if (worker.phase == WorkerPhase::kStopping) return;
  if (Apply(worker, WorkerEvent::kOrderStop, change).ok()) worker.stop_reason = reason;
}

void Membership::Free(WorkerRecord& worker, Change& change) {
  if (!IsBusy(worker.phase)) return;
  Apply(worker, WorkerEvent::kFree, change).IgnoreError();
}

std::vector<WorkerRecord*> Membership::WorkersOf(const std::string& job_id, int attempt) {
  std::vector<WorkerRecord*> result;
  for (auto& [id, worker] : workers_) {
    if (IsBusy(worker.phase) && worker.info.job_id() == job_id &&
        worker.info.attempt() == attempt) {
      result.push_back(&worker);
    }
  }
  return result;
}

void Membership::Slots(std::vector<WorkerSlot>* free, std::vector<WorkerSlot>* live) const {
  for (const auto& [id, worker] : workers_) {
    const tecl::v1::WorkerInfo& info = worker.info;
    if (worker.phase == WorkerPhase::kLost) continue;
    WorkerSlot slot{id, info.kind(), info.device(), info.gpus(), info.hostname()};
    if (worker.phase == WorkerPhase::kIdle && worker.confirmed) free->push_back(slot);
    live->push_back(std::move(slot));
  }
}

void Membership::MarkLost(WorkerRecord& worker, Change& change) {
  const std::string reason = absl::StrCat(
      worker.Describe(), " missed heartbeats for ",
      absl::FormatDuration(
          absl::Trunc(host_->Now() - worker.last_heartbeat, absl::Milliseconds(100))));
  TECL_LOG(WARNING) << reason << ": declared lost";
  LostWorker lost{worker.id(),           worker.Describe(),   worker.info.kind(),
                  worker.info.job_id(),  worker.info.attempt(), worker.info.rank(), reason};
  const bool counted_on = IsBusy(worker.phase) && worker.phase != WorkerPhase::kStopping;
  if (!Apply(worker, WorkerEvent::kTimeout, change).ok()) return;
  worker.lost_at = host_->Now();
  if (counted_on) listener_->OnWorkerLost(lost, change);
}

void Membership::ExpireHeartbeats(Change& change) {
  const absl::Time now = host_->Now();
  for (auto it = workers_.begin(); it != workers_.end();) {
    WorkerRecord& worker = it->second;
    if (worker.phase == WorkerPhase::kLost) {
      if (now - worker.lost_at > options_.lost_worker_retention) {
        change.worker_rows.insert(it->first);  // Absent at commit: the row is deleted.
        by_session_.erase(worker.info.session_sha256());
        it = workers_.erase(it);
        continue;
      }
    } else {
      const absl::Duration timeout =
          IsBusy(worker.phase) ? worker.busy_timeout : options_.heartbeat_timeout;
      if (now - worker.last_heartbeat > timeout) MarkLost(worker, change);
    }
    ++it;
  }
}

WorkerRecord& Membership::Restore(tecl::v1::WorkerInfo info, WorkerPhase phase,
                                  absl::Duration busy_timeout) {
  WorkerRecord& worker = workers_[info.id()];
  worker.info = std::move(info);
  if (!worker.info.session_sha256().empty()) by_session_[worker.info.session_sha256()] = worker.id();
  worker.phase = phase;
  worker.busy_timeout = busy_timeout;
  worker.last_heartbeat = host_->Now();  // A full timeout to show up again.
  worker.lost_at = host_->Now();
  worker.confirmed = false;  // No new work until it does.
  if (WireState(phase) != worker.info.state()) {
    worker.info.set_state(WireState(phase));
    if (!IsBusy(phase)) {
      worker.info.clear_job_id();
      worker.info.clear_attempt();
      worker.info.clear_rank();
    }
  }
  if (IsBusy(phase) && !worker.info.job_id().empty()) {
    worker.log_grants.push_back({worker.info.job_id(), worker.info.attempt(), worker.info.rank()});
  }
  return worker;
}

std::string Membership::NewWorkerId(tecl::v1::WorkerKind kind) {
  const std::string prefix = kind == tecl::v1::WORKER_KIND_DATALOADER ? "loader-" : "trainer-";
  while (true) {
    std::string id =
        absl::StrCat(prefix, absl::StrFormat("%08x", static_cast<uint32_t>(SplitMix64(id_state_))));
    if (!workers_.count(id)) return id;
  }
}

void Membership::WriteRows(Change& change) {
  for (const std::string& id : change.worker_rows) {
    auto it = workers_.find(id);
    if (it == workers_.end()) {
      change.batch.DeleteWorker(id);
    } else {
      tecl::v1::WorkerInfo info = it->second.info;
      info.set_last_heartbeat_unix_ms(ToUnixMillisOrZero(it->second.last_heartbeat));
      change.batch.PutWorker(info);
    }
  }
}

const tecl::v1::RankStats* Membership::CurrentStats(const WorkerRecord& worker) {
  if (!IsBusy(worker.phase) || worker.stats_job.empty() ||
      worker.stats_job != worker.info.job_id() || worker.stats_attempt != worker.info.attempt()) {
    return nullptr;
  }
  return &worker.stats;
}

void Membership::CollectMetrics() {
  // Own step times (without the all-reduce) of each running attempt's ranks.
  std::map<std::pair<std::string, int>, std::vector<double>> own_seconds;
  for (const auto& [id, worker] : workers_) {
    if (const tecl::v1::RankStats* stats = CurrentStats(worker)) {
      own_seconds[{worker.info.job_id(), worker.info.attempt()}].push_back(
          OwnStepSeconds(stats->step_seconds(), stats->allreduce_seconds()));
    }
  }
  int stragglers = 0;
  for (const auto& [attempt, seconds] : own_seconds) {
    for (bool slow : FindStragglers(seconds, options_.straggler_factor)) stragglers += slow;
  }
  stragglers_->Add({}).Set(stragglers);
  if (logs_ != nullptr) log_bytes_->Set(static_cast<double>(logs_->bytes()));
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const char* kind : {"trainer", "dataloader"}) {
    for (const char* state : {"idle", "busy", "lost"}) counts[{kind, state}] = 0;
  }
  const absl::Time now = host_->Now();
  std::map<std::string, std::string> live;
  for (const auto& [id, worker] : workers_) {
    const auto* state = tecl::v1::WorkerState_descriptor()->FindValueByNumber(worker.info.state());
    const std::string kind = KindName(worker.info.kind());
    ++counts[{kind, state ? EnumValueShortName(*state) : "unknown"}];
    if (worker.phase == WorkerPhase::kLost) continue;
    live[id] = kind;
    heartbeat_age_->Add({{"worker", id}, {"kind", kind}})
        .Set(absl::ToDoubleSeconds(now - worker.last_heartbeat));
  }
  for (const auto& [key, count] : counts) {
    workers_gauge_->Add({{"kind", key.first}, {"state", key.second}}).Set(count);
  }
  for (const auto& [id, kind] : heartbeat_age_workers_) {
    if (!live.count(id)) heartbeat_age_->Remove({{"worker", id}, {"kind", kind}});
  }
  heartbeat_age_workers_ = std::move(live);
}

}  // namespace tecl::coordinator
