#include "services/coordinator/store/fake_job_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tecl::coordinator {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

absl::Status UnknownJob(const std::string& id) {
  return absl::FailedPreconditionError(absl::StrCat("store: no job ", id));
}

}  // namespace

absl::Status FakeJobStore::Apply(const WriteBatch::Op& op, State& state) {
  return std::visit(
      Overloaded{
          [&](const WriteBatch::CreateJobOp& o) -> absl::Status {
            if (state.jobs.count(o.job.id())) {
              return absl::AlreadyExistsError(absl::StrCat("store: job ", o.job.id(), " exists"));
            }
            for (const auto& [id, stored] : state.jobs) {
              if (stored.seq == o.seq) {
                return absl::AlreadyExistsError(absl::StrCat("store: job seq ", o.seq, " exists"));
              }
              if (!o.request_id.empty() && stored.request_id == o.request_id) {
                return absl::AlreadyExistsError(
                    absl::StrCat("store: request id ", o.request_id, " exists"));
              }
            }
            StoredJob& stored = state.jobs[o.job.id()];
            stored.job = o.job;
            stored.seq = o.seq;
            stored.request_id = o.request_id;
            return absl::OkStatus();
          },
          [&](const WriteBatch::UpdateJobOp& o) -> absl::Status {
            auto it = state.jobs.find(o.job.id());
            if (it == state.jobs.end()) {
              return absl::NotFoundError(absl::StrCat("store: no job ", o.job.id()));
            }
            tecl::v1::JobSpec spec = std::move(*it->second.job.mutable_spec());
            it->second.job = o.job;
            *it->second.job.mutable_spec() = std::move(spec);
            return absl::OkStatus();
          },
          [&](const WriteBatch::AppendEventOp& o) -> absl::Status {
            auto it = state.jobs.find(o.event.job_id());
            if (it == state.jobs.end()) return UnknownJob(o.event.job_id());
            auto& events = it->second.events;
            for (const auto& e : events) {
              if (e.seq() == o.event.seq()) {
                return absl::AlreadyExistsError(absl::StrCat(
                    "store: event ", o.event.seq(), " of job ", o.event.job_id(), " exists"));
              }
            }
            events.push_back(o.event);
            std::sort(events.begin(), events.end(),
                      [](const auto& a, const auto& b) { return a.seq() < b.seq(); });
            return absl::OkStatus();
          },
          [&](const WriteBatch::PutAttemptOp& o) -> absl::Status {
            auto it = state.jobs.find(o.job_id);
            if (it == state.jobs.end()) return UnknownJob(o.job_id);
            auto& attempts = it->second.attempts;
            auto existing = std::find_if(attempts.begin(), attempts.end(), [&](const auto& a) {
              return a.attempt() == o.attempt.attempt();
            });
            if (existing != attempts.end()) {
              *existing = o.attempt;
            } else {
              attempts.push_back(o.attempt);
            }
            std::sort(attempts.begin(), attempts.end(),
                      [](const auto& a, const auto& b) { return a.attempt() < b.attempt(); });
            return absl::OkStatus();
          },
          [&](const WriteBatch::AddCheckpointOp& o) -> absl::Status {
            auto it = state.jobs.find(o.job_id);
            if (it == state.jobs.end()) return UnknownJob(o.job_id);
            auto& checkpoints = it->second.checkpoints;
            for (const auto& c : checkpoints) {
              if (c.step() == o.checkpoint.step() && c.attempt() == o.checkpoint.attempt()) {
                return absl::AlreadyExistsError(absl::StrCat("store: checkpoint of job ", o.job_id,
                                                             " at step ", c.step(), " exists"));
              }
            }
            checkpoints.push_back(o.checkpoint);
            std::sort(checkpoints.begin(), checkpoints.end(), [](const auto& a, const auto& b) {
              return std::make_pair(a.step(), a.attempt()) < std::make_pair(b.step(), b.attempt());
            });
            return absl::OkStatus();
          },
          [&](const WriteBatch::PutWorkerOp& o) -> absl::Status {
            state.workers[o.worker.id()] = o.worker;
            return absl::OkStatus();
          },
          [&](const WriteBatch::DeleteWorkerOp& o) -> absl::Status {
            state.workers.erase(o.worker_id);
            return absl::OkStatus();
          },
      },
      op);
}

void FakeJobStore::Write(WriteBatch batch, WriteCallback done) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (!batch.empty()) {
      if (!fail_with_.ok()) {
        status = fail_with_;
      } else {
        State copy = state_;
        for (const WriteBatch::Op& op : batch.ops()) {
          status = Apply(op, copy);
          if (!status.ok()) break;
        }
        if (status.ok()) {
          state_ = std::move(copy);
          ++batches_written_;
        }
      }
    }
  }
  if (done) done(status);
}

absl::StatusOr<StoreSnapshot> FakeJobStore::Load() {
  absl::MutexLock lock(&mu_);
  StoreSnapshot snapshot;
  for (const auto& [id, stored] : state_.jobs) snapshot.jobs.push_back(stored);
  std::sort(snapshot.jobs.begin(), snapshot.jobs.end(),
            [](const StoredJob& a, const StoredJob& b) { return a.seq < b.seq; });
  for (const auto& [id, worker] : state_.workers) snapshot.workers.push_back(worker);
  return snapshot;
}

void FakeJobStore::FailWrites(absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_with_ = std::move(status);
}

int64_t FakeJobStore::batches_written() const {
  absl::MutexLock lock(&mu_);
  return batches_written_;
}

}  // namespace tecl::coordinator
