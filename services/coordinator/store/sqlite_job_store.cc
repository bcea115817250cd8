#include "services/coordinator/store/sqlite_job_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/coordinator/store/sqlite_status.h"

namespace tecl::coordinator {
namespace {

// The schema, as an ordered list of migrations. Never edit a shipped migration: add one.
struct Migration {
  int version;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, R"sql(
      CREATE TABLE schema_version (version INTEGER NOT NULL);
      INSERT INTO schema_version (version) VALUES (0);
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        name TEXT NOT NULL,
        kind INTEGER NOT NULL,
        state INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        created_unix_ms INTEGER NOT NULL,
        updated_unix_ms INTEGER NOT NULL,
        spec BLOB NOT NULL,      -- tecl.v1.JobSpec
        status BLOB NOT NULL     -- tecl.v1.Job without its spec
      );
      CREATE INDEX jobs_by_state ON jobs (state, priority DESC, seq);
      CREATE TABLE events (
        job_id TEXT NOT NULL REFERENCES jobs (id),
        seq INTEGER NOT NULL,
        time_unix_ms INTEGER NOT NULL,
        type TEXT NOT NULL,
        from_state INTEGER NOT NULL,
        to_state INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        step INTEGER NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
      ) WITHOUT ROWID;
      CREATE TABLE checkpoints (
        job_id TEXT NOT NULL REFERENCES jobs (id),
        step INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        created_unix_ms INTEGER NOT NULL,
        PRIMARY KEY (job_id, step, attempt)
      ) WITHOUT ROWID;
      CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        kind INTEGER NOT NULL,
        state INTEGER NOT NULL,
        info BLOB NOT NULL       -- tecl.v1.WorkerInfo
      );
    )sql"},
    // Idempotent submits (request ids) and the history of attempts.
    {2, R"sql(
      ALTER TABLE jobs ADD COLUMN request_id TEXT;
      CREATE UNIQUE INDEX jobs_by_request_id ON jobs (request_id) WHERE request_id IS NOT NULL;
      CREATE TABLE attempts (
        job_id TEXT NOT NULL REFERENCES jobs (id),
        attempt INTEGER NOT NULL,
        started_unix_ms INTEGER NOT NULL,
        ended_unix_ms INTEGER NOT NULL,
        end_state INTEGER NOT NULL,
        reason TEXT NOT NULL,
        ranks BLOB NOT NULL,     -- tecl.v1.JobAttempt
        PRIMARY KEY (job_id, attempt)
      ) WITHOUT ROWID;
    )sql"},
};

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

// A prepared statement, reset after every use.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) {
    other.stmt_ = nullptr;
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  absl::Status Run(absl::string_view what) {
    const int rc = Step();
    return rc == SQLITE_DONE ? absl::OkStatus()
                             : SqliteStatus(sqlite3_extended_errcode(db_), db_, what);
  }
  int64_t Int(int column) { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) {
    const auto* p = sqlite3_column_blob(stmt_, column);
    return p == nullptr
               ? std::string()
               : std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, column));
  }
  bool IsNull(int column) { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

absl::Status Prepare(sqlite3* db, const char* sql, sqlite3_stmt** stmt) {
  const int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr);
  return SqliteStatus(rc, db, absl::StrCat("prepare \"", sql, "\""));
}

// The job row's status blob: the Job without its spec.
std::string StatusBlob(const tecl::v1::Job& job) {
  tecl::v1::Job copy = job;
  copy.clear_spec();
  return copy.SerializeAsString();
}

// Runs a query returning one integer (0 when it returns no row).
absl::Status QueryInt(sqlite3* db, const char* sql, int64_t* out) {
  sqlite3_stmt* stmt = nullptr;
  TECL_RETURN_IF_ERROR(Prepare(db, sql, &stmt));
  const int rc = sqlite3_step(stmt);
  *out = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
  sqlite3_finalize(stmt);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? absl::OkStatus()
                                               : SqliteStatus(rc, db, absl::StrCat("query ", sql));
}

absl::Status OpenConnection(const std::string& path, absl::Duration busy_timeout, sqlite3** db) {
  const int rc = sqlite3_open_v2(
      path.c_str(), db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteStatus(rc, *db, absl::StrCat("open ", path));
    sqlite3_close_v2(*db);
    *db = nullptr;
    return status;
  }
  sqlite3_extended_result_codes(*db, 1);
  sqlite3_busy_timeout(*db, static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
  return absl::OkStatus();
}

}  // namespace

// The write connection's prepared statements (commit thread only).
class SqliteJobStore::Statements {
 public:
  explicit Statements(sqlite3* db) : db_(db) {}
  ~Statements() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  }
  absl::StatusOr<Statement> Get(const char* sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* stmt = nullptr;
      TECL_RETURN_IF_ERROR(Prepare(db_, sql, &stmt));
      it = cache_.emplace(sql, stmt).first;
    }
    return Statement(db_, it->second);
  }

 private:
  sqlite3* db_;
  std::map<const char*, sqlite3_stmt*> cache_;
};

int SqliteJobStore::LatestSchemaVersion() {
  return kMigrations[std::size(kMigrations) - 1].version;
}

SqliteJobStore::SqliteJobStore(std::string path, SqliteJobStoreOptions options)
    : path_(std::move(path)), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(
    const std::string& path, SqliteJobStoreOptions options) {
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore(path, std::move(options)));
  TECL_RETURN_IF_ERROR(store->Initialize());
  store->commit_thread_ = std::thread(&SqliteJobStore::CommitLoop, store.get());
  return store;
}

absl::Status SqliteJobStore::Exec(sqlite3* db, const char* sql, absl::string_view what) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
  sqlite3_free(error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  return SqliteStatus(sqlite3_extended_errcode(db), db, what);
}

absl::Status SqliteJobStore::Initialize() {
  const std::string lock_path = path_ + ".lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", lock_path, ": ", std::strerror(errno),
                     "; check that the state folder exists and is writable"));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, " is in use by another coordinator (", lock_path,
                     " is locked); stop it or use another --state_dir"));
  }
  TECL_RETURN_IF_ERROR(OpenConnection(path_, options_.busy_timeout, &write_db_));
  TECL_RETURN_IF_ERROR(Exec(write_db_, "PRAGMA journal_mode=WAL", "enable WAL on " + path_));
  TECL_RETURN_IF_ERROR(Exec(write_db_, "PRAGMA synchronous=FULL", "set synchronous=FULL"));
  TECL_RETURN_IF_ERROR(Exec(write_db_, "PRAGMA foreign_keys=ON", "enable foreign keys"));
  TECL_RETURN_IF_ERROR(
      Migrate(options_.schema_version > 0 ? options_.schema_version : LatestSchemaVersion()));
  statements_ = std::make_unique<Statements>(write_db_);
  absl::MutexLock lock(&read_mu_);
  return OpenConnection(path_, options_.busy_timeout, &read_db_);
}

absl::Status SqliteJobStore::Migrate(int target) {
  // The current version: 0 for a new file.
  int64_t has_table = 0;
  TECL_RETURN_IF_ERROR(QueryInt(
      write_db_, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'",
      &has_table));
  int64_t current = 0;
  if (has_table > 0) {
    TECL_RETURN_IF_ERROR(QueryInt(write_db_, "SELECT version FROM schema_version", &current));
  }
  if (current > LatestSchemaVersion()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, " has schema version ", current, " but this coordinator knows up to ",
                     LatestSchemaVersion(), "; run a newer tecl-coordinator"));
  }
  for (const Migration& migration : kMigrations) {
    if (migration.version <= current || migration.version > target) continue;
    TECL_RETURN_IF_ERROR(Exec(write_db_, "BEGIN IMMEDIATE", "begin migration"));
    absl::Status status = Exec(write_db_, migration.sql,
                               absl::StrCat("migrate ", path_, " to schema ", migration.version));
    if (status.ok()) {
      const std::string update =
          absl::StrCat("UPDATE schema_version SET version = ", migration.version);
      status = Exec(write_db_, update.c_str(), "record the schema version");
    }
    if (status.ok()) status = Exec(write_db_, "COMMIT", "commit migration");
    if (!status.ok()) {
      Exec(write_db_, "ROLLBACK", "roll back migration").IgnoreError();
      return status;
    }
    TECL_LOG(INFO) << "store " << path_ << ": migrated to schema version " << migration.version;
    current = migration.version;
  }
  schema_version_ = static_cast<int>(current);
  return absl::OkStatus();
}

SqliteJobStore::~SqliteJobStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (commit_thread_.joinable()) commit_thread_.join();
  statements_.reset();
  if (write_db_ != nullptr) sqlite3_close_v2(write_db_);
  {
    absl::MutexLock lock(&read_mu_);
    if (read_db_ != nullptr) sqlite3_close_v2(read_db_);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void SqliteJobStore::Write(WriteBatch batch, WriteCallback done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(Pending{std::move(batch), std::move(done), absl::OkStatus()});
      return;
    }
  }
  if (done) done(absl::UnavailableError("the store is closing"));
}

void SqliteJobStore::CommitLoop() {
  while (true) {
    std::vector<Pending> group;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // Stopping with nothing left.
      while (!queue_.empty() && static_cast<int>(group.size()) < options_.max_group_batches) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const absl::Time start = absl::Now();
    CommitGroup(group);
    if (options_.on_commit) options_.on_commit(absl::Now() - start, static_cast<int>(group.size()));
    for (Pending& pending : group) {
      if (pending.done) pending.done(pending.status);
    }
  }
}

void SqliteJobStore::CommitGroup(std::vector<Pending>& group) {
  bool any = false;
  for (const Pending& p : group) any = any || !p.batch.empty();
  if (!any) return;
  absl::Status status = Exec(write_db_, "BEGIN IMMEDIATE", "begin transaction");
  if (!status.ok()) {
    for (Pending& p : group) p.status = status;
    return;
  }
  for (Pending& p : group) {
    if (p.batch.empty()) continue;
    absl::Status s = Exec(write_db_, "SAVEPOINT batch", "savepoint");
    for (const WriteBatch::Op& op : p.batch.ops()) {
      if (!s.ok()) break;
      s = ApplyOp(op);
    }
    if (!s.ok()) Exec(write_db_, "ROLLBACK TO batch", "roll back batch").IgnoreError();
    Exec(write_db_, "RELEASE batch", "release savepoint").IgnoreError();
    p.status = s;
  }
  status = Exec(write_db_, "COMMIT", "commit");
  if (!status.ok()) {
    TECL_LOG(ERROR) << "store " << path_ << ": " << status.message();
    Exec(write_db_, "ROLLBACK", "roll back").IgnoreError();
    for (Pending& p : group) {
      if (p.status.ok()) p.status = status;
    }
  }
}

absl::Status SqliteJobStore::ApplyOp(const WriteBatch::Op& op) {
  Statements& st = *statements_;
  return std::visit(
      Overloaded{
          [&](const WriteBatch::CreateJobOp& o) -> absl::Status {
            TECL_ASSIGN_OR_RETURN(
                Statement s,
                st.Get("INSERT INTO jobs (id, seq, name, kind, state, priority, created_unix_ms, "
                       "updated_unix_ms, spec, status, request_id) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
            s.Bind(1, o.job.id()).Bind(2, o.seq).Bind(3, o.job.spec().name());
            s.Bind(4, o.job.spec().kind()).Bind(5, o.job.state()).Bind(6, o.job.spec().priority());
            s.Bind(7, o.job.created_unix_ms()).Bind(8, o.job.updated_unix_ms());
            s.BindBlob(9, o.job.spec().SerializeAsString()).BindBlob(10, StatusBlob(o.job));
            o.request_id.empty() ? s.BindNull(11) : s.Bind(11, o.request_id);
            return s.Run(absl::StrCat("store job ", o.job.id()));
          },
          [&](const WriteBatch::UpdateJobOp& o) -> absl::Status {
            TECL_ASSIGN_OR_RETURN(
                Statement s, st.Get("UPDATE jobs SET state = ?, updated_unix_ms = ?, status = ? "
                                    "WHERE id = ?"));
            s.Bind(1, o.job.state()).Bind(2, o.job.updated_unix_ms());
            s.BindBlob(3, StatusBlob(o.job)).Bind(4, o.job.id());
            TECL_RETURN_IF_ERROR(s.Run(absl::StrCat("update job ", o.job.id())));
            if (sqlite3_changes(write_db_) == 0) {
              return absl::NotFoundError(absl::StrCat("store: no job ", o.job.id()));
            }
            return absl::OkStatus();
          },
          [&](const WriteBatch::AppendEventOp& o) -> absl::Status {
            TECL_ASSIGN_OR_RETURN(
                Statement s,
                st.Get("INSERT INTO events (job_id, seq, time_unix_ms, type, from_state, to_state, "
                       "attempt, step, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
            const auto& e = o.event;
            s.Bind(1, e.job_id()).Bind(2, e.seq()).Bind(3, e.time_unix_ms()).Bind(4, e.type());
            s.Bind(5, e.from_state()).Bind(6, e.to_state()).Bind(7, e.attempt()).Bind(8, e.step());
            s.Bind(9, e.reason());
            return s.Run(absl::StrCat("store event ", e.seq(), " of job ", e.job_id()));
          },
          [&](const WriteBatch::PutAttemptOp& o) -> absl::Status {
            TECL_ASSIGN_OR_RETURN(
                Statement s,
                st.Get("INSERT OR REPLACE INTO attempts (job_id, attempt, started_unix_ms, "
                       "ended_unix_ms, end_state, reason, ranks) VALUES (?, ?, ?, ?, ?, ?, ?)"));
            const auto& a = o.attempt;
            s.Bind(1, o.job_id).Bind(2, a.attempt()).Bind(3, a.started_unix_ms());
            s.Bind(4, a.ended_unix_ms()).Bind(5, a.end_state()).Bind(6, a.reason());
            s.BindBlob(7, a.SerializeAsString());
            return s.Run(absl::StrCat("store attempt ", a.attempt(), " of job ", o.job_id));
          },
          [&](const WriteBatch::AddCheckpointOp& o) -> absl::Status {
            TECL_ASSIGN_OR_RETURN(
                Statement s,
                st.Get("INSERT INTO checkpoints (job_id, step, attempt, path, sha256, size_bytes, "
                       "created_unix_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"));
            const auto& c = o.checkpoint;
            s.Bind(1, o.job_id).Bind(2, c.step()).Bind(3, c.attempt()).Bind(4, c.path());
            s.Bind(5, c.sha256()).Bind(6, c.size_bytes()).Bind(7, c.created_unix_ms());
            return s.Run(absl::StrCat("store checkpoint of job ", o.job_id, " at step ", c.step()));
          },
          [&](const WriteBatch::PutWorkerOp& o) -> absl::Status {
            TECL_ASSIGN_OR_RETURN(
                Statement s,
                st.Get(
                    "INSERT OR REPLACE INTO workers (id, kind, state, info) VALUES (?, ?, ?, ?)"));
            s.Bind(1, o.worker.id()).Bind(2, o.worker.kind()).Bind(3, o.worker.state());
            s.BindBlob(4, o.worker.SerializeAsString());
            return s.Run(absl::StrCat("store worker ", o.worker.id()));
          },
          [&](const WriteBatch::DeleteWorkerOp& o) -> absl::Status {
            TECL_ASSIGN_OR_RETURN(Statement s, st.Get("DELETE FROM workers WHERE id = ?"));
            s.Bind(1, o.worker_id);
            return s.Run(absl::StrCat("delete worker ", o.worker_id));
          },
      },
      op);
}

absl::StatusOr<StoreSnapshot> SqliteJobStore::Load() {
  absl::MutexLock lock(&read_mu_);
  sqlite3* db = read_db_;
  StoreSnapshot snapshot;
  std::map<std::string, size_t> index;
  TECL_RETURN_IF_ERROR(Exec(db, "BEGIN", "begin read"));
  auto query = [&](const char* sql, auto&& row) -> absl::Status {
    sqlite3_stmt* stmt = nullptr;
    TECL_RETURN_IF_ERROR(Prepare(db, sql, &stmt));
    absl::Status status;
    {
      Statement s(db, stmt);
      int rc;
      while ((rc = s.Step()) == SQLITE_ROW) {
        status = row(s);
        if (!status.ok()) break;
      }
      if (status.ok() && rc != SQLITE_DONE) status = SqliteStatus(rc, db, "read " + path_);
    }
    sqlite3_finalize(stmt);
    return status;
  };
  auto job_of = [&](const std::string& id, absl::string_view what) -> absl::StatusOr<StoredJob*> {
    auto it = index.find(id);
    if (it == index.end()) {
      return absl::DataLossError(absl::StrCat(path_, ": ", what, " of unknown job ", id));
    }
    return &snapshot.jobs[it->second];
  };
  absl::Status status =
      query("SELECT id, seq, request_id, spec, status FROM jobs ORDER BY seq", [&](Statement& s) {
        StoredJob stored;
        const std::string id = s.Text(0);
        stored.seq = s.Int(1);
        stored.request_id = s.IsNull(2) ? "" : s.Text(2);
        if (!stored.job.ParseFromString(s.Text(4)) ||
            !stored.job.mutable_spec()->ParseFromString(s.Text(3)) || stored.job.id() != id) {
          return absl::DataLossError(
              absl::StrCat(path_, ": the record of job ", id, " is corrupt"));
        }
        index[id] = snapshot.jobs.size();
        snapshot.jobs.push_back(std::move(stored));
        return absl::OkStatus();
      });
  if (status.ok()) {
    status = query(
        "SELECT job_id, seq, time_unix_ms, type, from_state, to_state, attempt, step, reason "
        "FROM events ORDER BY job_id, seq",
        [&](Statement& s) -> absl::Status {
          TECL_ASSIGN_OR_RETURN(StoredJob * job, job_of(s.Text(0), "event"));
          tecl::v1::JobEvent& e = job->events.emplace_back();
          e.set_job_id(s.Text(0));
          e.set_seq(s.Int(1));
          e.set_time_unix_ms(s.Int(2));
          e.set_type(s.Text(3));
          e.set_from_state(static_cast<tecl::v1::JobState>(s.Int(4)));
          e.set_to_state(static_cast<tecl::v1::JobState>(s.Int(5)));
          e.set_attempt(static_cast<int32_t>(s.Int(6)));
          e.set_step(s.Int(7));
          e.set_reason(s.Text(8));
          return absl::OkStatus();
        });
  }
  if (status.ok() && schema_version_ >= 2) {
    status = query("SELECT job_id, attempt, ranks FROM attempts ORDER BY job_id, attempt",
                   [&](Statement& s) -> absl::Status {
                     TECL_ASSIGN_OR_RETURN(StoredJob * job, job_of(s.Text(0), "attempt"));
                     tecl::v1::JobAttempt& a = job->attempts.emplace_back();
                     if (!a.ParseFromString(s.Text(2))) {
                       return absl::DataLossError(absl::StrCat(
                           path_, ": attempt ", s.Int(1), " of job ", s.Text(0), " is corrupt"));
                     }
                     return absl::OkStatus();
                   });
  }
  if (status.ok()) {
    status = query(
        "SELECT job_id, step, attempt, path, sha256, size_bytes, created_unix_ms FROM checkpoints "
        "ORDER BY job_id, step, attempt",
        [&](Statement& s) -> absl::Status {
          TECL_ASSIGN_OR_RETURN(StoredJob * job, job_of(s.Text(0), "checkpoint"));
          tecl::v1::Checkpoint& c = job->checkpoints.emplace_back();
          c.set_step(s.Int(1));
          c.set_attempt(static_cast<int32_t>(s.Int(2)));
          c.set_path(s.Text(3));
          c.set_sha256(s.Text(4));
          c.set_size_bytes(s.Int(5));
          c.set_created_unix_ms(s.Int(6));
          return absl::OkStatus();
        });
  }
  if (status.ok()) {
    status = query("SELECT id, info FROM workers ORDER BY id", [&](Statement& s) {
      tecl::v1::WorkerInfo& w = snapshot.workers.emplace_back();
      if (!w.ParseFromString(s.Text(1)) || w.id() != s.Text(0)) {
        return absl::DataLossError(
            absl::StrCat(path_, ": the record of worker ", s.Text(0), " is corrupt"));
      }
      return absl::OkStatus();
    });
  }
  Exec(db, "COMMIT", "end read").IgnoreError();
  if (!status.ok()) return status;
  return snapshot;
}

}  // namespace tecl::coordinator
