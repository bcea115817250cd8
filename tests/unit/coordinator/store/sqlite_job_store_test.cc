// SqliteJobStore beyond the contract: migrations, locking, WAL/fsync settings, group commit,
// corruption, and the SQLite -> Status mapping.
#include "services/coordinator/store/sqlite_job_store.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/coordinator/store/sqlite_status.h"

namespace tecl::coordinator {
namespace {

using ::testing::HasSubstr;

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tecl_sqlite_test_XXXXXX";
    dir_ = mkdtemp(pattern);
    path_ = dir_ + "/coordinator.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs SQL on a separate raw connection.
  void RawExec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  std::string RawQuery(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
    std::string result;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
      result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return result;
  }

  std::string dir_;
  std::string path_;
};

tecl::v1::Job MakeJob(const std::string& id) {
  tecl::v1::Job job;
  job.set_id(id);
  job.mutable_spec()->set_name(id);
  job.set_state(tecl::v1::JOB_STATE_PENDING);
  return job;
}

TEST_F(SqliteJobStoreTest, UsesWalWithFullSync) {
  auto store = SqliteJobStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(RawQuery("PRAGMA journal_mode"), "wal");
  EXPECT_EQ((*store)->schema_version(), SqliteJobStore::LatestSchemaVersion());
  EXPECT_EQ(RawQuery("SELECT version FROM schema_version"),
            std::to_string(SqliteJobStore::LatestSchemaVersion()));
}

TEST_F(SqliteJobStoreTest, UpgradesAVersion1File) {
  {
    SqliteJobStoreOptions v1;
    v1.schema_version = 1;
    auto store = SqliteJobStore::Open(path_, v1);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->schema_version(), 1);
  }
  // A job as version 1 wrote it: no request id column, no attempts table.
  tecl::v1::Job job = MakeJob("job-000001");
  tecl::v1::Job status = job;
  status.clear_spec();
  auto hex = [](const std::string& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
    return out;
  };
  RawExec(
      "INSERT INTO jobs (id, seq, name, kind, state, priority, created_unix_ms, "
      "updated_unix_ms, spec, status) VALUES ('job-000001', 1, 'job-000001', 1, 1, 0, 5, 5, x'" +
      hex(job.spec().SerializeAsString()) + "', x'" + hex(status.SerializeAsString()) + "')");
  EXPECT_EQ(RawQuery("SELECT count(*) FROM sqlite_master WHERE name='attempts'"), "0");

  auto store = SqliteJobStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->schema_version(), 2);
  absl::StatusOr<StoreSnapshot> snapshot = (*store)->Load();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_EQ(snapshot->jobs.size(), 1u);
  EXPECT_EQ(snapshot->jobs[0].job.id(), "job-000001");
  EXPECT_EQ(snapshot->jobs[0].request_id, "");
  // Version 2 features work on the upgraded file.
  WriteBatch batch;
  batch.CreateJob(MakeJob("job-000002"), 2, "req");
  tecl::v1::JobAttempt attempt;
  attempt.set_attempt(1);
  batch.PutAttempt("job-000001", attempt);
  EXPECT_TRUE((*store)->WriteSync(std::move(batch)).ok());
  WriteBatch again;
  again.CreateJob(MakeJob("job-000003"), 3, "req");
  EXPECT_EQ((*store)->WriteSync(std::move(again)).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(SqliteJobStoreTest, ReopeningRunsNoMigration) {
  { ASSERT_TRUE(SqliteJobStore::Open(path_).ok()); }
  RawExec("CREATE TABLE marker (x INTEGER)");  // Would be lost if the schema were recreated.
  ASSERT_TRUE(SqliteJobStore::Open(path_).ok());
  EXPECT_EQ(RawQuery("SELECT count(*) FROM sqlite_master WHERE name='marker'"), "1");
}

TEST_F(SqliteJobStoreTest, RefusesAFileFromANewerVersion) {
  { ASSERT_TRUE(SqliteJobStore::Open(path_).ok()); }
  RawExec("UPDATE schema_version SET version = 99");
  auto store = SqliteJobStore::Open(path_);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("schema version 99"));
}

TEST_F(SqliteJobStoreTest, ASecondOpenOfTheSameFileIsRefused) {
  auto first = SqliteJobStore::Open(path_);
  ASSERT_TRUE(first.ok());
  auto second = SqliteJobStore::Open(path_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use by another coordinator"));
  first->reset();
  EXPECT_TRUE(SqliteJobStore::Open(path_).ok());
}

TEST_F(SqliteJobStoreTest, AnUnwritableFolderIsPermissionDenied) {
  auto store = SqliteJobStore::Open(dir_ + "/missing/folder/coordinator.db");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("state folder"));
}

TEST_F(SqliteJobStoreTest, BatchesArrivingDuringACommitShareTheNextOne) {
  absl::Notification first_committed;
  absl::Notification release;
  std::vector<int> group_sizes;
  SqliteJobStoreOptions options;
  options.on_commit = [&](absl::Duration, int batches) {
    group_sizes.push_back(batches);
    if (!first_committed.HasBeenNotified()) {
      first_committed.Notify();
      release.WaitForNotification();  // Holds the commit thread.
    }
  };
  auto store = SqliteJobStore::Open(path_, options);
  ASSERT_TRUE(store.ok());
  WriteBatch first;
  first.CreateJob(MakeJob("job-0"), 0, "");
  (*store)->Write(std::move(first), nullptr);
  first_committed.WaitForNotification();
  std::atomic<int> ok{0};
  for (int i = 1; i <= 10; ++i) {
    WriteBatch batch;
    batch.CreateJob(MakeJob("job-" + std::to_string(i)), i, "");
    (*store)->Write(std::move(batch), [&](absl::Status s) { ok += s.ok(); });
  }
  // One of them fails alone; the others commit in the same transaction.
  WriteBatch duplicate;
  duplicate.CreateJob(MakeJob("job-3"), 99, "");
  absl::Status duplicate_status;
  (*store)->Write(std::move(duplicate), [&](absl::Status s) { duplicate_status = s; });
  absl::Notification barrier;
  (*store)->Write(WriteBatch(), [&](absl::Status s) {
    EXPECT_TRUE(s.ok());
    barrier.Notify();
  });
  release.Notify();
  barrier.WaitForNotification();
  EXPECT_EQ(ok.load(), 10);
  EXPECT_EQ(duplicate_status.code(), absl::StatusCode::kAlreadyExists);
  ASSERT_GE(group_sizes.size(), 2u);
  EXPECT_EQ(group_sizes[0], 1);
  EXPECT_EQ(group_sizes[1], 11 + 1);  // Ten creates, the duplicate and the barrier.
  EXPECT_EQ((*store)->Load()->jobs.size(), 11u);
}

TEST_F(SqliteJobStoreTest, ACorruptRecordIsDataLoss) {
  {
    auto store = SqliteJobStore::Open(path_);
    ASSERT_TRUE(store.ok());
    WriteBatch batch;
    batch.CreateJob(MakeJob("job-1"), 1, "");
    ASSERT_TRUE((*store)->WriteSync(std::move(batch)).ok());
  }
  RawExec("UPDATE jobs SET status = x'ffffffff'");
  auto store = SqliteJobStore::Open(path_);
  ASSERT_TRUE(store.ok());
  absl::StatusOr<StoreSnapshot> snapshot = (*store)->Load();
  EXPECT_EQ(snapshot.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(snapshot.status().message()), HasSubstr("job-1 is corrupt"));
}

TEST(SqliteStatusTest, MapsCodesByWhatTheCallerShouldDo) {
  EXPECT_TRUE(SqliteStatus(SQLITE_OK, nullptr, "x").ok());
  EXPECT_TRUE(SqliteStatus(SQLITE_DONE, nullptr, "x").ok());
  EXPECT_EQ(SqliteStatus(SQLITE_BUSY, nullptr, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(SqliteStatus(SQLITE_CONSTRAINT_UNIQUE, nullptr, "x").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(SqliteStatus(SQLITE_CONSTRAINT_FOREIGNKEY, nullptr, "x").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SqliteStatus(SQLITE_FULL, nullptr, "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(SqliteStatus(SQLITE_CORRUPT, nullptr, "x").code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(SqliteStatus(SQLITE_IOERR_FSYNC, nullptr, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(SqliteStatus(SQLITE_CANTOPEN, nullptr, "x").code(),
            absl::StatusCode::kPermissionDenied);
  absl::Status status = SqliteStatus(SQLITE_FULL, nullptr, "store job job-1");
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("store job job-1: database or disk is full"));
}

}  // namespace
}  // namespace tecl::coordinator
