// The coordinator's durable state: jobs (spec + status), their events, attempts and checkpoints,
// and the registered workers.
//
// JobStore is written to with WriteBatch: every batch is applied atomically (all of it or none)
// and durably (SqliteJobStore: committed with synchronous=FULL before `done` runs), and batches are
// applied in the order Write was called, so a caller that mutates its in-memory state under a
// mutex and calls Write under that same mutex gets the same order on disk. Reading is for start-up
// (Load), when the caller rebuilds its in-memory state.
//
// Implementations: SqliteJobStore (services/coordinator/store/sqlite_job_store.h) and
// FakeJobStore (in memory, for logic tests); tests/unit/coordinator/store holds the contract suite
// both pass.
//
// Thread-safety: every method may be called from any thread. `done` callbacks run either inline in
// Write (FakeJobStore) or on the store's commit thread (SqliteJobStore): they must not block and
// must not take locks the caller may hold while calling Write.
#ifndef TECL_SERVICES_COORDINATOR_STORE_JOB_STORE_H_
#define TECL_SERVICES_COORDINATOR_STORE_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

// A group of writes applied atomically.
//
// Constraint failures (the whole batch is rejected): CreateJob of an existing id, seq or
// request_id -> ALREADY_EXISTS; UpdateJob of an unknown job -> NOT_FOUND; an event, attempt or
// checkpoint of an unknown job -> FAILED_PRECONDITION; an event with an existing (job, seq) or a
// checkpoint with an existing (job, step, attempt) -> ALREADY_EXISTS.
class WriteBatch {
 public:
  struct CreateJobOp {
    tecl::v1::Job job;       // With its spec.
    int64_t seq;             // Submission order, unique.
    std::string request_id;  // Empty = none.
  };
  struct UpdateJobOp {
    tecl::v1::Job job;  // Its status fields; the spec was stored by CreateJob and is not rewritten.
  };
  struct AppendEventOp {
    tecl::v1::JobEvent event;
  };
  struct PutAttemptOp {
    std::string job_id;
    tecl::v1::JobAttempt attempt;  // Inserted or replaced by (job_id, attempt.attempt).
  };
  struct AddCheckpointOp {
    std::string job_id;
    tecl::v1::Checkpoint checkpoint;
  };
  struct PutWorkerOp {
    tecl::v1::WorkerInfo worker;  // Inserted or replaced by id.
  };
  struct DeleteWorkerOp {
    std::string worker_id;  // Absent = no-op.
  };
  using Op = std::variant<CreateJobOp, UpdateJobOp, AppendEventOp, PutAttemptOp, AddCheckpointOp,
                          PutWorkerOp, DeleteWorkerOp>;

  void CreateJob(const tecl::v1::Job& job, int64_t seq, const std::string& request_id) {
    ops_.push_back(CreateJobOp{job, seq, request_id});
  }
  void UpdateJob(const tecl::v1::Job& job) { ops_.push_back(UpdateJobOp{job}); }
  void AppendEvent(const tecl::v1::JobEvent& event) { ops_.push_back(AppendEventOp{event}); }
  void PutAttempt(const std::string& job_id, const tecl::v1::JobAttempt& attempt) {
    ops_.push_back(PutAttemptOp{job_id, attempt});
  }
  void AddCheckpoint(const std::string& job_id, const tecl::v1::Checkpoint& checkpoint) {
    ops_.push_back(AddCheckpointOp{job_id, checkpoint});
  }
  void PutWorker(const tecl::v1::WorkerInfo& worker) { ops_.push_back(PutWorkerOp{worker}); }
  void DeleteWorker(const std::string& worker_id) { ops_.push_back(DeleteWorkerOp{worker_id}); }

  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }
  const std::vector<Op>& ops() const { return ops_; }

 private:
  std::vector<Op> ops_;
};

// One stored job with everything attached to it.
struct StoredJob {
  tecl::v1::Job job;  // With its spec.
  int64_t seq = 0;
  std::string request_id;
  std::vector<tecl::v1::JobEvent> events;         // By seq.
  std::vector<tecl::v1::JobAttempt> attempts;     // By attempt.
  std::vector<tecl::v1::Checkpoint> checkpoints;  // By step, then attempt.
};

struct StoreSnapshot {
  std::vector<StoredJob> jobs;                // By seq.
  std::vector<tecl::v1::WorkerInfo> workers;  // By id.
};

using WriteCallback = std::function<void(absl::Status)>;

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Applies `batch` atomically; `done` gets OK once it is durable, or the reason it was not
  // applied (a constraint above; UNAVAILABLE / DATA_LOSS / RESOURCE_EXHAUSTED for I/O problems).
  // Never blocks on I/O. An empty batch is a barrier: `done` runs once every earlier batch is
  // durable.
  virtual void Write(WriteBatch batch, WriteCallback done) = 0;

  // Everything stored. Blocks on I/O. DATA_LOSS when a stored record does not parse.
  virtual absl::StatusOr<StoreSnapshot> Load() = 0;

  // Write, then wait for `done`. Blocks.
  absl::Status WriteSync(WriteBatch batch);
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_STORE_JOB_STORE_H_
