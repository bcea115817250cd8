// SqliteJobStore: the JobStore in one SQLite file (WAL mode, synchronous=FULL), the coordinator's
// embedded default.
//
// Durability: a batch's `done` runs after the transaction holding it is committed and the WAL is
// fsync'ed, so anything acknowledged after `done` survives kill -9 and power loss.
// Group commit: one thread commits; batches that arrive while a commit is in progress are applied
// together in the next transaction (each in its own savepoint, so one failing batch does not
// affect the others) and share one fsync. A lone batch is committed at once.
// Schema: versioned (table schema_version); Open applies the missing migrations in order, each in
// its own transaction. A file written by a newer version is refused. docs/coordinator.md lists
// the tables.
// Exclusive: Open takes a lock on "<path>.lock" (flock) held until destruction, so two
// coordinators cannot share a state folder; the lock dies with the process.
//
// Thread-safe. Destruction commits what is queued, then closes.
#ifndef TECL_SERVICES_COORDINATOR_STORE_SQLITE_JOB_STORE_H_
#define TECL_SERVICES_COORDINATOR_STORE_SQLITE_JOB_STORE_H_

#include <sqlite3.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/coordinator/store/job_store.h"

namespace tecl::coordinator {

struct SqliteJobStoreOptions {
  // How long a statement waits for a lock held by another connection before UNAVAILABLE.
  absl::Duration busy_timeout = absl::Seconds(5);
  // Most batches committed in one transaction.
  int max_group_batches = 4096;
  // Upgrade the schema only up to this version (migration tests); 0 = the newest.
  int schema_version = 0;
  // Called after every commit with its duration (BEGIN to fsync'ed COMMIT) and the number of
  // batches it carried (metrics). Runs on the commit thread.
  std::function<void(absl::Duration, int)> on_commit;
};

class SqliteJobStore final : public JobStore {
 public:
  // Opens (creating) the database at `path` and migrates it. FAILED_PRECONDITION: another process
  // holds the lock, or the file has a newer schema; PERMISSION_DENIED / UNAVAILABLE: the file
  // cannot be opened; DATA_LOSS: it is not a database.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const std::string& path,
                                                              SqliteJobStoreOptions options = {});
  ~SqliteJobStore() override;

  void Write(WriteBatch batch, WriteCallback done) override;
  absl::StatusOr<StoreSnapshot> Load() override;

  // The schema version of the open file.
  int schema_version() const { return schema_version_; }
  static int LatestSchemaVersion();

 private:
  struct Pending {
    WriteBatch batch;
    WriteCallback done;
    absl::Status status;
  };
  class Statements;

  SqliteJobStore(std::string path, SqliteJobStoreOptions options);
  absl::Status Initialize();
  absl::Status Migrate(int target);
  void CommitLoop();
  void CommitGroup(std::vector<Pending>& group);
  absl::Status ApplyOp(const WriteBatch::Op& op);
  absl::Status Exec(sqlite3* db, const char* sql, absl::string_view what);

  const std::string path_;
  const SqliteJobStoreOptions options_;
  int lock_fd_ = -1;
  int schema_version_ = 0;

  // Used only by the commit thread once started.
  sqlite3* write_db_ = nullptr;
  std::unique_ptr<Statements> statements_;

  absl::Mutex read_mu_;
  sqlite3* read_db_ ABSL_GUARDED_BY(read_mu_) = nullptr;

  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread commit_thread_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_STORE_SQLITE_JOB_STORE_H_
