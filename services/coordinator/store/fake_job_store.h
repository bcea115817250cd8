// FakeJobStore: a working in-memory JobStore for logic tests. Same constraints and atomicity as
// SqliteJobStore (the contract suite runs on both); Write applies the batch and runs `done` inline
// before returning. FailWrites() makes the following writes fail, to test how callers react.
//
// Thread-safe.
#ifndef TECL_SERVICES_COORDINATOR_STORE_FAKE_JOB_STORE_H_
#define TECL_SERVICES_COORDINATOR_STORE_FAKE_JOB_STORE_H_

#include <map>
#include <string>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/coordinator/store/job_store.h"

namespace tecl::coordinator {

class FakeJobStore final : public JobStore {
 public:
  void Write(WriteBatch batch, WriteCallback done) override;
  absl::StatusOr<StoreSnapshot> Load() override;

  // Every following non-empty Write fails with `status` (OK = writes succeed again).
  void FailWrites(absl::Status status);
  // Batches applied so far (non-empty ones).
  int64_t batches_written() const;

 private:
  struct State {
    std::map<std::string, StoredJob> jobs;
    std::map<std::string, tecl::v1::WorkerInfo> workers;
  };
  static absl::Status Apply(const WriteBatch::Op& op, State& state);

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_with_ ABSL_GUARDED_BY(mu_);
  int64_t batches_written_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_STORE_FAKE_JOB_STORE_H_
