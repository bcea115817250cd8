// StateHost: the one mutex the coordinator's logic (JobRegistry, Membership, CheckpointRegistry,
// AttemptController) keeps its state under, the store every change is recorded in, and the
// watchers told of changed jobs. Every change runs through Mutate, the one skeleton of
//
//   lock -> refuse with UNAVAILABLE once the store has failed -> `change` (validates, mutates
//   in-memory state, records its store writes in a Change) -> hand the Change's batch to the
//   store -> unlock -> run the watchers of the changed jobs -> answer `done` once the batch (and
//   every batch before it) is durable.
//
// So the store sees changes in the order they happened, and no caller learns of state that a
// crash could take back. A `change` that fails without touching anything is answered at once; one
// that fails after changing state (e.g. a stale report that still frees its worker) is answered
// with its error once that change is durable. Reads (`Read`) take the lock shared.
//
// Rows: the managers mark job and worker rows dirty in the Change; the row writers they register
// (AddRowWriter) turn those into batch operations just before the batch is handed over, so a row
// changed several times in one operation is written once.
//
// Thread-safety: thread-safe. `change` and row writers run under the lock and must not block or
// call back into Mutate/Read. `done` runs on the store's commit thread or inline, without the
// lock; watchers run without the lock and may call Read.
#ifndef TECL_SERVICES_COORDINATOR_MANAGER_STATE_HOST_H_
#define TECL_SERVICES_COORDINATOR_MANAGER_STATE_HOST_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/common/metrics.h"
#include "services/coordinator/store/job_store.h"

namespace tecl::coordinator {

template <typename T>
using Callback = std::function<void(absl::StatusOr<T>)>;
using StatusCallback = std::function<void(absl::Status)>;

// What one operation changed.
struct Change {
  WriteBatch batch;                   // Appends (events, attempts, checkpoints).
  std::set<std::string> job_rows;     // Job rows to rewrite.
  std::set<std::string> worker_rows;  // Worker rows to rewrite (deleted when the worker is gone).
  std::set<std::string> changed_jobs;  // Jobs whose watchers run afterwards.

  bool empty() const { return batch.empty() && job_rows.empty() && worker_rows.empty(); }
};

class StateHost {
 public:
  using WatchId = int64_t;
  using RowWriter = std::function<void(Change&)>;

  // `store` and `clock` must outlive the host.
  StateHost(JobStore* store, const Clock* clock);
  ~StateHost();
  StateHost(const StateHost&) = delete;
  StateHost& operator=(const StateHost&) = delete;

  absl::Mutex& mu() ABSL_LOCK_RETURNED(mu_) { return mu_; }
  const Clock& clock() const { return *clock_; }
  absl::Time Now() const { return clock_->Now(); }
  int64_t NowMs() const { return absl::ToUnixMillis(clock_->Now()); }

  // Called at construction of the managers, before any Mutate.
  void AddRowWriter(RowWriter writer);

  // The skeleton above. `done` gets `change`'s result (its error when it failed), or UNAVAILABLE
  // when the store failed.
  template <typename T>
  void Mutate(absl::FunctionRef<absl::StatusOr<T>(Change&)> change, Callback<T> done);
  void Mutate(absl::FunctionRef<absl::Status(Change&)> change, StatusCallback done);
  // Background work (timeouts, scheduling): nobody to answer; skipped once the store failed.
  void MutateInBackground(absl::FunctionRef<void(Change&)> change);

  // Runs `read` under the lock (shared).
  template <typename R>
  R Read(absl::FunctionRef<R()> read) const {
    absl::ReaderMutexLock lock(&mu_);
    return read();
  }

  // Scheduling requests: set by anything that may let a job start (a submit, a freed worker...),
  // taken by the scheduling pass.
  void RequestScheduling() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { needs_scheduling_ = true; }
  bool TakeSchedulingRequest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool scheduling_requested() const;

  // `on_change` runs (without the lock) after every change of the job: state, progress, events.
  // Unknown ids are allowed (the watcher never fires).
  WatchId Watch(const std::string& job_id, std::function<void()> on_change);
  // After Unwatch returns, `on_change` is not running and will not run again.
  void Unwatch(WatchId id);

  // The store's first write failure (OK while healthy). After one, Mutate refuses changes.
  absl::Status store_error() const;

  // `on_failure` runs once with the store's first write failure: on the store's commit thread
  // (or inline, with a store that answers inline), or at once when the store has already failed.
  // It must not call back into this host. Replaces an earlier handler; nullptr removes it. After
  // this returns, the previous handler is not running and will not run again.
  void OnStoreFailure(std::function<void(const absl::Status&)> on_failure);

  // Registers `collect` with `registry`'s collect callbacks; it runs under the lock and
  // stops being called when the host is destroyed.
  void AddMetricsCollector(metrics::Registry* registry, std::function<void()> collect);

 private:
  // UNAVAILABLE naming the store failure, or OK.
  absl::Status CheckStore() const;
  // Writes the dirty rows and hands the batch to the store, whose thread (or FakeJobStore,
  // inline) calls `done` once it is durable; returns true. Returns false without calling `done`
  // when there is nothing to write and every earlier batch is durable: the caller answers.
  bool Commit(Change& change, StatusCallback done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the failure handler once (the store has failed).
  void ReportStoreFailure();
  void Notify(const std::set<std::string>& job_ids);

  JobStore* const store_;
  const Clock* const clock_;

  mutable absl::Mutex mu_;
  std::vector<RowWriter> row_writers_ ABSL_GUARDED_BY(mu_);
  bool needs_scheduling_ ABSL_GUARDED_BY(mu_) = true;
  // Batches handed to the store whose `done` has not run yet.
  std::shared_ptr<std::atomic<int64_t>> in_flight_ = std::make_shared<std::atomic<int64_t>>(0);

  // Written from store callbacks, which never take mu_.
  mutable absl::Mutex error_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::Status store_error_ ABSL_GUARDED_BY(error_mu_);

  // Held while the failure handler runs, so replacing it waits for a running call.
  absl::Mutex failure_mu_ ABSL_ACQUIRED_BEFORE(error_mu_);
  std::function<void(const absl::Status&)> on_failure_ ABSL_GUARDED_BY(failure_mu_);
  bool failure_reported_ ABSL_GUARDED_BY(failure_mu_) = false;

  absl::Mutex watch_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::map<WatchId, std::pair<std::string, std::function<void()>>> watchers_
      ABSL_GUARDED_BY(watch_mu_);
  WatchId next_watch_id_ ABSL_GUARDED_BY(watch_mu_) = 1;

  // Lets the metrics registry's collect callbacks outlive the host.
  struct CollectHook {
    absl::Mutex mu;
    const StateHost* host ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<CollectHook> collect_hook_ = std::make_shared<CollectHook>();
};

template <typename T>
void StateHost::Mutate(absl::FunctionRef<absl::StatusOr<T>(Change&)> change, Callback<T> done) {
  // The result is moved into the commit callback; the wrapper keeps one code path.
  auto result = std::make_shared<absl::StatusOr<T>>(absl::UnknownError("not run"));
  Mutate(
      [&](Change& c) -> absl::Status {
        *result = change(c);
        return result->status();
      },
      [result, done = std::move(done)](absl::Status status) {
        if (status.ok()) {
          done(std::move(*result));
        } else {
          done(status);
        }
      });
}

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_MANAGER_STATE_HOST_H_
