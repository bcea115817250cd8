#include "services/coordinator/manager/state_host.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"

namespace tecl::coordinator {

StateHost::StateHost(JobStore* store, const Clock* clock) : store_(store), clock_(clock) {
  absl::MutexLock lock(&collect_hook_->mu);
  collect_hook_->host = this;
}

StateHost::~StateHost() {
  absl::MutexLock lock(&collect_hook_->mu);
  collect_hook_->host = nullptr;
}

void StateHost::AddRowWriter(RowWriter writer) {
  absl::MutexLock lock(&mu_);
  row_writers_.push_back(std::move(writer));
}

absl::Status StateHost::CheckStore() const {
  absl::MutexLock lock(&error_mu_);
  if (store_error_.ok()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("the coordinator's state store failed (",
                                             store_error_.message(),
                                             "); fix the disk and restart tecl-coordinator"));
}

absl::Status StateHost::store_error() const {
  absl::MutexLock lock(&error_mu_);
  return store_error_;
}

void StateHost::OnStoreFailure(std::function<void(const absl::Status&)> on_failure) {
  absl::MutexLock lock(&failure_mu_);
  on_failure_ = std::move(on_failure);
  failure_reported_ = false;
  const absl::Status error = store_error();
  if (on_failure_ && !error.ok()) {
    failure_reported_ = true;
    on_failure_(error);
  }
}

void StateHost::ReportStoreFailure() {
  absl::MutexLock lock(&failure_mu_);
  if (failure_reported_ || !on_failure_) return;
  failure_reported_ = true;
  on_failure_(store_error());
}

void StateHost::Mutate(absl::FunctionRef<absl::Status(Change&)> change, StatusCallback done) {
  Change c;
  absl::Status answer;
  bool answer_now = true;
  {
    absl::MutexLock lock(&mu_);
    answer = CheckStore();
    if (answer.ok()) {
      answer = change(c);
      if (answer.ok() || !c.empty()) {
        answer_now = !Commit(c, [result = answer, done](absl::Status stored) {
          if (done) done(stored.ok() ? result : stored);
        });
      }
    }
  }
  if (answer_now && done) done(answer);
  Notify(c.changed_jobs);
}

void StateHost::MutateInBackground(absl::FunctionRef<void(Change&)> change) {
  Change c;
  {
    absl::MutexLock lock(&mu_);
    if (!CheckStore().ok()) return;
    change(c);
    Commit(c, nullptr);
  }
  Notify(c.changed_jobs);
}

bool StateHost::Commit(Change& change, StatusCallback done) {
  for (const RowWriter& write_rows : row_writers_) write_rows(change);
  // Nothing to write and everything written before is durable: the caller answers at once.
  if (change.batch.empty() && in_flight_->load() == 0) return false;
  in_flight_->fetch_add(1);
  store_->Write(std::move(change.batch),
                [this, in_flight = in_flight_, done = std::move(done)](absl::Status status) {
                  in_flight->fetch_sub(1);
                  if (!status.ok()) {
                    TECL_LOG(ERROR) << "state store write failed: " << status.message();
                    {
                      absl::MutexLock lock(&error_mu_);
                      if (store_error_.ok()) store_error_ = status;
                    }
                    ReportStoreFailure();
                  }
                  if (!done) return;
                  if (status.ok()) {
                    done(status);
                  } else {
                    done(absl::UnavailableError(absl::StrCat(
                        "the coordinator could not store the change: ", status.message())));
                  }
                });
  return true;
}

bool StateHost::TakeSchedulingRequest() {
  const bool requested = needs_scheduling_;
  needs_scheduling_ = false;
  return requested;
}

bool StateHost::scheduling_requested() const {
  absl::ReaderMutexLock lock(&mu_);
  return needs_scheduling_;
}

void StateHost::Notify(const std::set<std::string>& job_ids) {
  if (job_ids.empty()) return;
  absl::MutexLock lock(&watch_mu_);
  for (const auto& [id, watcher] : watchers_) {
    if (job_ids.count(watcher.first)) watcher.second();
  }
}

StateHost::WatchId StateHost::Watch(const std::string& job_id, std::function<void()> on_change) {
  absl::MutexLock lock(&watch_mu_);
  const WatchId id = next_watch_id_++;
  watchers_.emplace(id, std::make_pair(job_id, std::move(on_change)));
  return id;
}

void StateHost::Unwatch(WatchId id) {
  absl::MutexLock lock(&watch_mu_);
  watchers_.erase(id);
}

void StateHost::AddMetricsCollector(metrics::Registry* registry, std::function<void()> collect) {
  if (registry == nullptr) return;
  registry->AddCollectCallback([hook = collect_hook_, collect = std::move(collect)] {
    absl::MutexLock hook_lock(&hook->mu);
    if (hook->host == nullptr) return;
    absl::MutexLock lock(&hook->host->mu_);
    collect();
  });
}

}  // namespace tecl::coordinator
