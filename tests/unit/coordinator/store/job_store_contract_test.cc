// The JobStore contract, run on every implementation (FakeJobStore, SqliteJobStore).
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "services/coordinator/store/fake_job_store.h"
#include "services/coordinator/store/sqlite_job_store.h"

namespace tecl::coordinator {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

// Makes a store and reopens it (the same data, as after a restart).
class StoreHarness {
 public:
  virtual ~StoreHarness() = default;
  virtual JobStore* store() = 0;
  virtual void Reopen() = 0;
};

class FakeHarness : public StoreHarness {
 public:
  JobStore* store() override { return &store_; }
  void Reopen() override {}

 private:
  FakeJobStore store_;
};

class SqliteHarness : public StoreHarness {
 public:
  SqliteHarness() {
    char pattern[] = "/tmp/tecl_store_test_XXXXXX";
    dir_ = mkdtemp(pattern);
    Reopen();
  }
  ~SqliteHarness() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  JobStore* store() override { return store_.get(); }
  void Reopen() override {
    store_.reset();
    auto store = SqliteJobStore::Open(dir_ + "/coordinator.db");
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

 private:
  std::string dir_;
  std::unique_ptr<SqliteJobStore> store_;
};

using HarnessFactory = std::function<std::unique_ptr<StoreHarness>()>;

tecl::v1::Job MakeJob(const std::string& id, int64_t created = 1000) {
  tecl::v1::Job job;
  job.set_id(id);
  job.mutable_spec()->set_name("name-" + id);
  job.mutable_spec()->set_kind(tecl::v1::JOB_KIND_PRETRAIN);
  job.mutable_spec()->mutable_sampling()->add_speeds(1);
  job.mutable_spec()->mutable_sampling()->add_speeds(2);
  job.mutable_spec()->mutable_dataset()->set_root("/data/" + id);
  job.set_state(tecl::v1::JOB_STATE_PENDING);
  job.set_reason("submitted");
  job.set_created_unix_ms(created);
  job.set_updated_unix_ms(created);
  return job;
}

tecl::v1::JobEvent MakeEvent(const std::string& job_id, int64_t seq) {
  tecl::v1::JobEvent event;
  event.set_job_id(job_id);
  event.set_seq(seq);
  event.set_time_unix_ms(1000 + seq);
  event.set_type("state");
  event.set_from_state(tecl::v1::JOB_STATE_PENDING);
  event.set_to_state(tecl::v1::JOB_STATE_SCHEDULED);
  event.set_attempt(1);
  event.set_step(seq * 10);
  event.set_reason("reason " + std::to_string(seq));
  return event;
}

class JobStoreContractTest : public ::testing::TestWithParam<HarnessFactory> {
 protected:
  void SetUp() override { harness_ = GetParam()(); }
  JobStore* store() { return harness_->store(); }

  StoreSnapshot Load() {
    absl::StatusOr<StoreSnapshot> snapshot = store()->Load();
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    return snapshot.ok() ? *std::move(snapshot) : StoreSnapshot();
  }

  absl::Status Create(const tecl::v1::Job& job, int64_t seq, const std::string& request_id = "") {
    WriteBatch batch;
    batch.CreateJob(job, seq, request_id);
    return store()->WriteSync(std::move(batch));
  }

  std::unique_ptr<StoreHarness> harness_;
};

TEST_P(JobStoreContractTest, CreatedJobLoadsBackWithItsSpecAndRequestId) {
  tecl::v1::Job job = MakeJob("job-1");
  ASSERT_TRUE(Create(job, 1, "req-1").ok());
  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.jobs.size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(snapshot.jobs[0].job, job))
      << snapshot.jobs[0].job.DebugString();
  EXPECT_EQ(snapshot.jobs[0].seq, 1);
  EXPECT_EQ(snapshot.jobs[0].request_id, "req-1");
}

TEST_P(JobStoreContractTest, JobsLoadInSeqOrder) {
  ASSERT_TRUE(Create(MakeJob("b"), 2).ok());
  ASSERT_TRUE(Create(MakeJob("c"), 3).ok());
  ASSERT_TRUE(Create(MakeJob("a"), 1).ok());
  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.jobs.size(), 3u);
  EXPECT_EQ(snapshot.jobs[0].job.id(), "a");
  EXPECT_EQ(snapshot.jobs[1].job.id(), "b");
  EXPECT_EQ(snapshot.jobs[2].job.id(), "c");
}

TEST_P(JobStoreContractTest, DuplicateIdSeqOrRequestIdIsAlreadyExists) {
  ASSERT_TRUE(Create(MakeJob("a"), 1, "r").ok());
  EXPECT_EQ(Create(MakeJob("a"), 2).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Create(MakeJob("b"), 1).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Create(MakeJob("c"), 3, "r").code(), absl::StatusCode::kAlreadyExists);
  // Jobs without a request id do not collide with each other.
  EXPECT_TRUE(Create(MakeJob("d"), 4).ok());
  EXPECT_TRUE(Create(MakeJob("e"), 5).ok());
  EXPECT_EQ(Load().jobs.size(), 3u);
}

TEST_P(JobStoreContractTest, UpdateReplacesTheStatusAndKeepsTheSpec) {
  tecl::v1::Job job = MakeJob("a");
  ASSERT_TRUE(Create(job, 1).ok());
  tecl::v1::Job update = job;
  update.clear_spec();
  update.set_state(tecl::v1::JOB_STATE_RUNNING);
  update.set_attempt(2);
  update.mutable_progress()->set_step(42);
  update.mutable_latest_checkpoint()->set_path("/ckpt/40");
  WriteBatch batch;
  batch.UpdateJob(update);
  ASSERT_TRUE(store()->WriteSync(std::move(batch)).ok());
  tecl::v1::Job expected = update;
  *expected.mutable_spec() = job.spec();
  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.jobs.size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(snapshot.jobs[0].job, expected))
      << snapshot.jobs[0].job.DebugString();
}

TEST_P(JobStoreContractTest, UpdateOfUnknownJobIsNotFound) {
  WriteBatch batch;
  batch.UpdateJob(MakeJob("ghost"));
  absl::Status status = store()->WriteSync(std::move(batch));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), HasSubstr("ghost"));
}

TEST_P(JobStoreContractTest, ABatchIsAllOrNothing) {
  ASSERT_TRUE(Create(MakeJob("a"), 1).ok());
  WriteBatch batch;
  batch.CreateJob(MakeJob("b"), 2, "");
  batch.AppendEvent(MakeEvent("b", 1));
  tecl::v1::Job update = MakeJob("a");
  update.set_state(tecl::v1::JOB_STATE_CANCELLED);
  batch.UpdateJob(update);
  batch.AppendEvent(MakeEvent("b", 1));  // Duplicate: the whole batch is refused.
  EXPECT_EQ(store()->WriteSync(std::move(batch)).code(), absl::StatusCode::kAlreadyExists);
  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.jobs.size(), 1u);
  EXPECT_EQ(snapshot.jobs[0].job.state(), tecl::v1::JOB_STATE_PENDING);
  EXPECT_TRUE(snapshot.jobs[0].events.empty());
}

TEST_P(JobStoreContractTest, EventsLoadBySeqAndRefuseDuplicatesAndUnknownJobs) {
  ASSERT_TRUE(Create(MakeJob("a"), 1).ok());
  for (int64_t seq : {2, 1, 3}) {
    WriteBatch batch;
    batch.AppendEvent(MakeEvent("a", seq));
    ASSERT_TRUE(store()->WriteSync(std::move(batch)).ok());
  }
  WriteBatch dup;
  dup.AppendEvent(MakeEvent("a", 2));
  EXPECT_EQ(store()->WriteSync(std::move(dup)).code(), absl::StatusCode::kAlreadyExists);
  WriteBatch orphan;
  orphan.AppendEvent(MakeEvent("nope", 1));
  EXPECT_EQ(store()->WriteSync(std::move(orphan)).code(), absl::StatusCode::kFailedPrecondition);
  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.jobs[0].events.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(snapshot.jobs[0].events[i], MakeEvent("a", i + 1)))
        << snapshot.jobs[0].events[i].DebugString();
  }
}

TEST_P(JobStoreContractTest, AttemptsAreInsertedOrReplaced) {
  ASSERT_TRUE(Create(MakeJob("a"), 1).ok());
  tecl::v1::JobAttempt first;
  first.set_attempt(1);
  first.set_started_unix_ms(10);
  auto* rank = first.add_ranks();
  rank->set_rank(0);
  rank->set_worker_id("w1");
  rank->add_dataloader_ids("d1");
  tecl::v1::JobAttempt second;
  second.set_attempt(2);
  second.set_started_unix_ms(30);
  WriteBatch batch;
  batch.PutAttempt("a", second);
  batch.PutAttempt("a", first);
  ASSERT_TRUE(store()->WriteSync(std::move(batch)).ok());
  first.set_ended_unix_ms(20);
  first.set_end_state(tecl::v1::JOB_STATE_RECOVERING);
  first.set_reason("rank 0 lost");
  WriteBatch end;
  end.PutAttempt("a", first);
  ASSERT_TRUE(store()->WriteSync(std::move(end)).ok());
  WriteBatch orphan;
  orphan.PutAttempt("nope", first);
  EXPECT_EQ(store()->WriteSync(std::move(orphan)).code(), absl::StatusCode::kFailedPrecondition);

  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.jobs[0].attempts.size(), 2u);
  EXPECT_TRUE(MessageDifferencer::Equals(snapshot.jobs[0].attempts[0], first));
  EXPECT_TRUE(MessageDifferencer::Equals(snapshot.jobs[0].attempts[1], second));
}

TEST_P(JobStoreContractTest, CheckpointsLoadByStepAndRefuseDuplicates) {
  ASSERT_TRUE(Create(MakeJob("a"), 1).ok());
  auto checkpoint = [](int64_t step, int attempt) {
    tecl::v1::Checkpoint c;
    c.set_step(step);
    c.set_attempt(attempt);
    c.set_path("/ckpt/step-" + std::to_string(step));
    c.set_sha256("abc");
    c.set_size_bytes(1234);
    c.set_created_unix_ms(99);
    return c;
  };
  for (auto [step, attempt] : {std::pair{200, 2}, std::pair{100, 1}, std::pair{100, 2}}) {
    WriteBatch batch;
    batch.AddCheckpoint("a", checkpoint(step, attempt));
    ASSERT_TRUE(store()->WriteSync(std::move(batch)).ok());
  }
  WriteBatch dup;
  dup.AddCheckpoint("a", checkpoint(200, 2));
  EXPECT_EQ(store()->WriteSync(std::move(dup)).code(), absl::StatusCode::kAlreadyExists);
  WriteBatch orphan;
  orphan.AddCheckpoint("x", checkpoint(1, 1));
  EXPECT_EQ(store()->WriteSync(std::move(orphan)).code(), absl::StatusCode::kFailedPrecondition);
  StoreSnapshot snapshot = Load();
  const auto& loaded = snapshot.jobs[0].checkpoints;
  ASSERT_EQ(loaded.size(), 3u);
  EXPECT_TRUE(MessageDifferencer::Equals(loaded[0], checkpoint(100, 1)));
  EXPECT_TRUE(MessageDifferencer::Equals(loaded[1], checkpoint(100, 2)));
  EXPECT_TRUE(MessageDifferencer::Equals(loaded[2], checkpoint(200, 2)));
}

TEST_P(JobStoreContractTest, WorkersArePutReplacedAndDeleted) {
  tecl::v1::WorkerInfo w1;
  w1.set_id("w-1");
  w1.set_kind(tecl::v1::WORKER_KIND_TRAINER);
  w1.set_state(tecl::v1::WORKER_STATE_IDLE);
  tecl::v1::WorkerInfo w2 = w1;
  w2.set_id("w-2");
  w2.set_kind(tecl::v1::WORKER_KIND_DATALOADER);
  w2.set_address("127.0.0.1:5");
  WriteBatch batch;
  batch.PutWorker(w1);
  batch.PutWorker(w2);
  ASSERT_TRUE(store()->WriteSync(std::move(batch)).ok());
  w1.set_state(tecl::v1::WORKER_STATE_BUSY);
  w1.set_job_id("a");
  WriteBatch change;
  change.PutWorker(w1);
  change.DeleteWorker("w-2");
  change.DeleteWorker("never-existed");
  ASSERT_TRUE(store()->WriteSync(std::move(change)).ok());
  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.workers.size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(snapshot.workers[0], w1));
}

TEST_P(JobStoreContractTest, AnEmptyBatchIsABarrierThatSucceeds) {
  EXPECT_TRUE(store()->WriteSync(WriteBatch()).ok());
}

TEST_P(JobStoreContractTest, EverythingSurvivesReopening) {
  ASSERT_TRUE(Create(MakeJob("a"), 1, "r1").ok());
  WriteBatch batch;
  batch.AppendEvent(MakeEvent("a", 1));
  tecl::v1::WorkerInfo w;
  w.set_id("w");
  batch.PutWorker(w);
  ASSERT_TRUE(store()->WriteSync(std::move(batch)).ok());
  harness_->Reopen();
  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.jobs.size(), 1u);
  EXPECT_EQ(snapshot.jobs[0].request_id, "r1");
  EXPECT_EQ(snapshot.jobs[0].events.size(), 1u);
  EXPECT_EQ(snapshot.workers.size(), 1u);
}

TEST_P(JobStoreContractTest, ConcurrentWritersAllLandInOrderPerWriter) {
  constexpr int kThreads = 8;
  constexpr int kJobsPerThread = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJobsPerThread; ++i) {
        const int seq = t * kJobsPerThread + i + 1;
        const std::string id = "job-" + std::to_string(seq);
        WriteBatch create;
        create.CreateJob(MakeJob(id), seq, "req-" + id);
        create.AppendEvent(MakeEvent(id, 1));
        if (!store()->WriteSync(std::move(create)).ok()) ++failures;
        // Two updates without waiting in between: the second must win.
        tecl::v1::Job running = MakeJob(id);
        running.set_state(tecl::v1::JOB_STATE_RUNNING);
        tecl::v1::Job done = MakeJob(id);
        done.set_state(tecl::v1::JOB_STATE_SUCCEEDED);
        WriteBatch first;
        first.UpdateJob(running);
        WriteBatch second;
        second.UpdateJob(done);
        store()->Write(std::move(first), [&](absl::Status s) { failures += !s.ok(); });
        if (!store()->WriteSync(std::move(second)).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  StoreSnapshot snapshot = Load();
  ASSERT_EQ(snapshot.jobs.size(), static_cast<size_t>(kThreads * kJobsPerThread));
  for (const StoredJob& stored : snapshot.jobs) {
    EXPECT_EQ(stored.job.state(), tecl::v1::JOB_STATE_SUCCEEDED) << stored.job.id();
    EXPECT_EQ(stored.events.size(), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Stores, JobStoreContractTest,
    ::testing::Values(HarnessFactory([] { return std::make_unique<FakeHarness>(); }),
                      HarnessFactory([] { return std::make_unique<SqliteHarness>(); })),
    [](const ::testing::TestParamInfo<HarnessFactory>& info) {
      return info.index == 0 ? std::string("Fake") : std::string("Sqlite");
    });

}  // namespace
}  // namespace tecl::coordinator
