// The coordinator's logic (its four managers on one StateHost) with a FakeClock and a FakeJobStore,
// end to end through the managers' entry points: submission, gang scheduling, assignments,
// heartbeat timeouts, recovery, cancellation, restarts, stale attempts, restore.
#include "services/coordinator/manager/coordinator.h"

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/coordinator/state/job_state.h"
#include "services/coordinator/store/fake_job_store.h"

namespace tecl::coordinator {
namespace {

using ::tecl::v1::HeartbeatResponse;
using ::tecl::v1::Job;
using ::tecl::v1::JobSpec;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr auto kPending = tecl::v1::JOB_STATE_PENDING;
constexpr auto kScheduled = tecl::v1::JOB_STATE_SCHEDULED;
constexpr auto kRunning = tecl::v1::JOB_STATE_RUNNING;
constexpr auto kRecovering = tecl::v1::JOB_STATE_RECOVERING;
constexpr auto kSucceeded = tecl::v1::JOB_STATE_SUCCEEDED;
constexpr auto kFailed = tecl::v1::JOB_STATE_FAILED;
constexpr auto kCancelled = tecl::v1::JOB_STATE_CANCELLED;

JobSpec Spec(int trainers = 1, int loaders = 1, tecl::v1::Device device = tecl::v1::DEVICE_CPU) {
  JobSpec spec = DefaultJobSpec(tecl::v1::JOB_KIND_PRETRAIN, "tiny3d");
  spec.set_name("test");
  spec.mutable_dataset()->set_root("/data/synth");
  spec.mutable_resources()->set_trainers(trainers);
  spec.mutable_resources()->set_dataloaders_per_trainer(loaders);
  spec.mutable_resources()->set_device(device);
  spec.mutable_restart()->set_heartbeat_timeout_s(10);
  spec.mutable_restart()->set_max_restarts(2);
  spec.mutable_schedule()->set_total_steps(1000);
  return spec;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  CoordinatorTest() { Start(); }

  static CoordinatorOptions Options() {
    CoordinatorOptions options;
    options.checkpoints.checkpoint_root = "/state/checkpoints";
    options.attempts.coordinator_address = "10.0.0.1:7070";
    options.membership.heartbeat_interval = absl::Seconds(1);
    options.membership.heartbeat_timeout = absl::Seconds(30);
    options.jobs.progress_persist_interval = absl::Seconds(5);
    options.jobs.limits.max_trainers = 8;
    return options;
  }

  static RendezvousOptions NoTimer() {
    RendezvousOptions options;
    options.run_timer_thread = false;
    return options;
  }

  // A fresh manager on the same store (a coordinator restart).
  void Start(CoordinatorOptions options = Options()) {
    coordinator_.reset();
    rendezvous_ = std::make_unique<Rendezvous>(&clock_, NoTimer());
    registry_ = std::make_unique<metrics::Registry>();
    coordinator_ =
        std::make_unique<Coordinator>(options, &store_, &clock_, rendezvous_.get(), registry_.get());
    ASSERT_TRUE(coordinator_->Restore().ok());
  }

  absl::StatusOr<Job> Submit(const JobSpec& spec, const std::string& request_id = "") {
    std::optional<absl::StatusOr<Job>> result;
    coordinator_->jobs().Submit(spec, request_id, [&](absl::StatusOr<Job> r) { result = std::move(r); });
    EXPECT_TRUE(result.has_value()) << "the fake store answers inline";
    return *result;
  }
  std::string SubmitOk(const JobSpec& spec) {
    absl::StatusOr<Job> job = Submit(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }

  std::string Register(tecl::v1::WorkerKind kind, const std::string& host,
                       tecl::v1::Device device = tecl::v1::DEVICE_CPU, int gpus = 0) {
    tecl::v1::WorkerInfo info;
    info.set_kind(kind);
    info.set_hostname(host);
    info.set_device(device);
    info.set_gpus(gpus);
    info.set_threads(4);
    static int port = 9000;
    if (kind == tecl::v1::WORKER_KIND_DATALOADER)
      info.set_address(host + ":" + std::to_string(++port));
    std::optional<absl::StatusOr<tecl::v1::RegisterWorkerResponse>> result;
    coordinator_->membership().Register(info, [&](auto r) { result = std::move(r); });
    EXPECT_TRUE(result.has_value() && result->ok());
    EXPECT_EQ((*result)->heartbeat_interval_ms(), 1000);
    EXPECT_EQ((*result)->session_token().size(), 64u);
    sessions_[(*result)->worker_id()] = (*result)->session_token();
    return (*result)->worker_id();
  }
  std::string Trainer(const std::string& host = "h1") {
    return Register(tecl::v1::WORKER_KIND_TRAINER, host);
  }
  std::string Loader(const std::string& host = "h1") {
    return Register(tecl::v1::WORKER_KIND_DATALOADER, host);
  }

  absl::StatusOr<HeartbeatResponse> Beat(
      const std::string& worker, tecl::v1::TrainerStatus status = tecl::v1::TRAINER_STATUS_IDLE,
      const std::string& job = "", int attempt = 0, int rank = 0, int64_t step = -1) {
    tecl::v1::HeartbeatRequest request;
    request.set_worker_id(worker);
    request.set_status(status);
    request.set_job_id(job);
    request.set_attempt(attempt);
    request.set_rank(rank);
    if (step >= 0) {
      request.mutable_progress()->set_step(step);
      request.mutable_progress()->set_total_steps(1000);
      request.mutable_progress()->mutable_loss()->set_total(1.5);
    }
    std::optional<absl::StatusOr<HeartbeatResponse>> result;
    coordinator_->membership().Heartbeat(request, sessions_[worker],
                                         [&](auto r) { result = std::move(r); });
    EXPECT_TRUE(result.has_value());
    return *result;
  }
  // An idle heartbeat that must deliver an assignment.
  tecl::v1::Assignment TakeAssignment(const std::string& worker) {
    absl::StatusOr<HeartbeatResponse> response = Beat(worker);
    EXPECT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->action(), HeartbeatResponse::ACTION_RUN) << worker;
    return response->assignment();
  }
  // Takes the assignment and reports RUNNING.
  tecl::v1::Assignment StartRank(const std::string& worker) {
    tecl::v1::Assignment a = TakeAssignment(worker);
    auto response =
        Beat(worker, tecl::v1::TRAINER_STATUS_RUNNING, a.job_id(), a.attempt(), a.rank());
    EXPECT_TRUE(response.ok());
    EXPECT_EQ(response->action(), HeartbeatResponse::ACTION_NONE);
    return a;
  }

  // Registers `trainers` trainers and as many dataloaders, places job `id` on them and starts
  // every rank; its trainers' ids by rank.
  std::vector<std::string> StartJobOnNewWorkers(const std::string& id, int trainers) {
    for (int i = 0; i < trainers; ++i) {
      Trainer();
      Loader();
    }
    coordinator_->Tick();
    std::vector<std::string> ranks;
    for (int r = 0; r < trainers; ++r) ranks.push_back(Get(id).ranks(r).worker_id());
    for (const std::string& w : ranks) StartRank(w);
    return ranks;
  }

  absl::Status Report(const std::string& worker, const std::string& job, int attempt, int rank,
                      tecl::v1::Outcome outcome, const std::string& reason = "", int64_t step = 0) {
    tecl::v1::ReportOutcomeRequest request;
    request.set_worker_id(worker);
    request.set_job_id(job);
    request.set_attempt(attempt);
    request.set_rank(rank);
    request.set_outcome(outcome);
    request.set_reason(reason);
    request.set_step(step);
    std::optional<absl::Status> result;
    coordinator_->attempts().ReportOutcome(request, sessions_[worker],
                                           [&](absl::Status s) { result = s; });
    EXPECT_TRUE(result.has_value());
    return *result;
  }

  absl::Status Checkpoint(const std::string& worker, const std::string& job, int attempt,
                          int64_t step, const std::string& path = "") {
    tecl::v1::RegisterCheckpointRequest request;
    request.set_worker_id(worker);
    request.set_job_id(job);
    request.mutable_checkpoint()->set_step(step);
    request.mutable_checkpoint()->set_attempt(attempt);
    // By default a file in the job's default folder (<checkpoint_root>/<job id>).
    request.mutable_checkpoint()->set_path(
        path.empty() ? absl::StrCat("/state/checkpoints/", job, "/step-", step) : path);
    std::optional<absl::Status> result;
    coordinator_->checkpoints().Register(request, sessions_[worker],
                                         [&](absl::Status s) { result = s; });
    EXPECT_TRUE(result.has_value());
    return *result;
  }

  absl::StatusOr<Job> Cancel(const std::string& job) {
    std::optional<absl::StatusOr<Job>> result;
    coordinator_->attempts().Cancel(job, "", [&](auto r) { result = std::move(r); });
    EXPECT_TRUE(result.has_value());
    return *result;
  }

  Job Get(const std::string& id) {
    absl::StatusOr<Job> job = coordinator_->jobs().Get(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : Job();
  }
  tecl::v1::WorkerInfo Worker(const std::string& id) {
    for (const auto& w : coordinator_->membership().List(tecl::v1::WORKER_KIND_UNSPECIFIED)) {
      if (w.id() == id) return w;
    }
    ADD_FAILURE() << "no worker " << id;
    return {};
  }
  StoredJob Stored(const std::string& id) {
    absl::StatusOr<StoreSnapshot> snapshot = store_.Load();
    EXPECT_TRUE(snapshot.ok());
    for (const StoredJob& stored : snapshot->jobs) {
      if (stored.job.id() == id) return stored;
    }
    ADD_FAILURE() << "job " << id << " is not stored";
    return {};
  }
  std::vector<tecl::v1::JobState> StateHistory(const std::string& id) {
    std::vector<tecl::v1::JobState> states;
    const auto events = coordinator_->jobs().ListEvents(id, 0, 0);
    for (const auto& e : *events) {
      if (e.type() == "state") states.push_back(e.to_state());
    }
    return states;
  }
  // Heartbeats every worker in `alive` while time passes in 1 s steps.
  void PassTime(absl::Duration d, const std::vector<std::string>& alive) {
    for (absl::Duration t; t < d; t += absl::Seconds(1)) {
      clock_.Advance(absl::Seconds(1));
      for (const std::string& w : alive) {
        // Busy workers keep reporting their assignment.
        tecl::v1::WorkerInfo info = Worker(w);
        if (info.kind() == tecl::v1::WORKER_KIND_TRAINER &&
            info.state() == tecl::v1::WORKER_STATE_BUSY) {
          EXPECT_TRUE(
              Beat(w, tecl::v1::TRAINER_STATUS_RUNNING, info.job_id(), info.attempt(), info.rank())
                  .ok());
        } else {
          EXPECT_TRUE(Beat(w).ok());
        }
      }
      coordinator_->Tick();
    }
  }

  FakeClock clock_;
  FakeJobStore store_;
  std::map<std::string, std::string> sessions_;  // Worker id -> session token.
  std::unique_ptr<Rendezvous> rendezvous_;
  std::unique_ptr<metrics::Registry> registry_;
  std::unique_ptr<Coordinator> coordinator_;
};

// ---- Submission ----

TEST_F(CoordinatorTest, SubmitStoresAPendingJobWithItsFirstEvent) {
  absl::StatusOr<Job> job = Submit(Spec(2, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->id(), "job-000001");
  EXPECT_EQ(job->state(), kPending);
  EXPECT_EQ(job->attempt(), 0);
  EXPECT_THAT(job->reason(), HasSubstr("waiting for 2 cpu trainer(s) and 2 dataloader(s)"));
  StoredJob stored = Stored(job->id());
  EXPECT_EQ(stored.job.state(), kPending);
  EXPECT_EQ(stored.job.spec().resources().trainers(), 2);
  ASSERT_EQ(stored.events.size(), 1u);
  EXPECT_EQ(stored.events[0].to_state(), kPending);
  EXPECT_EQ(stored.events[0].reason(), "submitted");
  EXPECT_EQ(SubmitOk(Spec()), "job-000002");
}

TEST_F(CoordinatorTest, AnInvalidSpecIsRefusedAndNothingIsStored) {
  JobSpec spec = Spec();
  spec.mutable_model()->set_backbone("r50");
  spec.mutable_resources()->set_trainers(0);
  absl::StatusOr<Job> job = Submit(spec);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(job.status().message()), HasSubstr("model.backbone"));
  EXPECT_THAT(std::string(job.status().message()), HasSubstr("resources.trainers"));
  spec = Spec(9);  // More than the cluster's max_trainers = 8.
  EXPECT_THAT(std::string(Submit(spec).status().message()),
              HasSubstr("more than this cluster's maximum of 8"));
  EXPECT_TRUE(store_.Load()->jobs.empty());
  EXPECT_TRUE(coordinator_->jobs().List({}, 0, "")->jobs.empty());
}

TEST_F(CoordinatorTest, SubmitsAreIdempotentByRequestId) {
  absl::StatusOr<Job> first = Submit(Spec(), "req-1");
  absl::StatusOr<Job> again = Submit(Spec(), "req-1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), first->id());
  JobSpec other = Spec();
  other.set_priority(3);
  absl::StatusOr<Job> conflict = Submit(other, "req-1");
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(conflict.status().message()), HasSubstr(first->id()));
  EXPECT_EQ(coordinator_->jobs().List({}, 0, "")->jobs.size(), 1u);
}

TEST_F(CoordinatorTest, AFailedStoreRefusesChanges) {
  store_.FailWrites(absl::UnavailableError("disk I/O error"));
  absl::StatusOr<Job> job = Submit(Spec());
  EXPECT_EQ(job.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(job.status().message()), HasSubstr("could not store"));
  store_.FailWrites(absl::OkStatus());
  job = Submit(Spec());
  EXPECT_EQ(job.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(job.status().message()), HasSubstr("restart tecl-coordinator"));
}

// ---- Gang scheduling ----

TEST_F(CoordinatorTest, AJobStartsOnlyWhenItsWholeGangFits) {
  const std::string id = SubmitOk(Spec(2, 1));
  const std::string t1 = Trainer();
  const std::string l1 = Loader();
  const std::string l2 = Loader();
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kPending);
  // No partial allocation: the free workers stay free.
  EXPECT_EQ(Worker(t1).state(), tecl::v1::WORKER_STATE_IDLE);
  EXPECT_EQ(Worker(l1).state(), tecl::v1::WORKER_STATE_IDLE);
  const std::string t2 = Trainer("h2");
  coordinator_->Tick();
  Job job = Get(id);
  EXPECT_EQ(job.state(), kScheduled);
  EXPECT_EQ(job.attempt(), 1);
  ASSERT_EQ(job.ranks_size(), 2);
  for (const std::string& w : {t1, t2, l1, l2}) {
    EXPECT_EQ(Worker(w).state(), tecl::v1::WORKER_STATE_BUSY) << w;
    EXPECT_EQ(Worker(w).job_id(), id);
  }
  // Placement, workers and the attempt are durable.
  StoredJob stored = Stored(id);
  EXPECT_EQ(stored.job.state(), kScheduled);
  ASSERT_EQ(stored.attempts.size(), 1u);
  EXPECT_EQ(stored.attempts[0].ranks_size(), 2);
  const absl::StatusOr<StoreSnapshot> snapshot = store_.Load();
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ(snapshot->workers.size(), 4u);
  for (const auto& w : snapshot->workers) EXPECT_EQ(w.state(), tecl::v1::WORKER_STATE_BUSY);
}

TEST_F(CoordinatorTest, CudaJobsWaitForGpuTrainers) {
  const std::string id = SubmitOk(Spec(1, 1, tecl::v1::DEVICE_CUDA));
  Trainer();
  Loader();
  Register(tecl::v1::WORKER_KIND_TRAINER, "gpu-box", tecl::v1::DEVICE_CUDA, 0);
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kPending);
  const std::string gpu =
      Register(tecl::v1::WORKER_KIND_TRAINER, "gpu-box", tecl::v1::DEVICE_CUDA, 8);
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kScheduled);
  EXPECT_EQ(Get(id).ranks(0).worker_id(), gpu);
}

TEST_F(CoordinatorTest, HigherPriorityFirstAndFifoWithinAPriority) {
  const std::string a = SubmitOk(Spec());
  const std::string b = SubmitOk(Spec());
  JobSpec urgent = Spec();
  urgent.set_priority(5);
  const std::string c = SubmitOk(urgent);
  const std::string t = Trainer();
  Loader();
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    coordinator_->Tick();
    tecl::v1::Assignment run = StartRank(t);
    order.push_back(run.job_id());
    ASSERT_TRUE(Report(t, run.job_id(), run.attempt(), 0, tecl::v1::OUTCOME_SUCCEEDED).ok());
  }
  EXPECT_THAT(order, ElementsAre(c, a, b));
  EXPECT_EQ(Get(b).state(), kSucceeded);
}

TEST_F(CoordinatorTest, BackfillIsBoundedThenTheBlockedJobReserves) {
  CoordinatorOptions options = Options();
  options.attempts.scheduler.max_bypasses = 2;
  Start(options);
  const std::string t1 = Trainer();
  const std::string t2 = Trainer();
  Loader();
  Loader();
  // t2 is taken by a long job submitted first.
  const std::string blocker = SubmitOk(Spec());
  coordinator_->Tick();
  ASSERT_EQ(Get(blocker).state(), kScheduled);
  const std::string runner = Get(blocker).ranks(0).worker_id();
  const std::string other = runner == t1 ? t2 : t1;
  StartRank(runner);
  const std::string big = SubmitOk(Spec(2, 1));
  std::vector<std::string> small;
  for (int i = 0; i < 3; ++i) small.push_back(SubmitOk(Spec()));
  // Two small jobs backfill on the other trainer, one after the other.
  for (int i = 0; i < 2; ++i) {
    coordinator_->Tick();
    ASSERT_EQ(Get(small[i]).state(), kScheduled) << i;
    tecl::v1::Assignment run = StartRank(other);
    ASSERT_TRUE(Report(other, run.job_id(), run.attempt(), 0, tecl::v1::OUTCOME_SUCCEEDED).ok());
  }
  // The big job was passed twice: the third small job must wait behind it.
  coordinator_->Tick();
  EXPECT_EQ(Get(small[2]).state(), kPending);
  EXPECT_EQ(Get(big).state(), kPending);
  // When the long job ends, the big job gets both trainers.
  ASSERT_TRUE(Report(runner, blocker, 1, 0, tecl::v1::OUTCOME_SUCCEEDED).ok());
  coordinator_->Tick();
  EXPECT_EQ(Get(big).state(), kScheduled);
  EXPECT_EQ(Get(small[2]).state(), kPending);
}

// ---- Assignments and progress ----

TEST_F(CoordinatorTest, AssignmentsReachTrainersInHeartbeats) {
  const std::string id = SubmitOk(Spec(2, 2));
  const std::string t1 = Trainer("a");
  const std::string t2 = Trainer("b");
  std::vector<std::string> loaders;
  for (const char* host : {"a", "a", "b", "b"}) loaders.push_back(Loader(host));
  coordinator_->Tick();
  const Job job = Get(id);
  ASSERT_EQ(job.state(), kScheduled);
  // Dataloader heartbeats carry nothing.
  EXPECT_EQ(Beat(loaders[0])->action(), HeartbeatResponse::ACTION_NONE);
  tecl::v1::Assignment a = TakeAssignment(job.ranks(0).worker_id());
  EXPECT_EQ(a.job_id(), id);
  EXPECT_EQ(a.attempt(), 1);
  EXPECT_EQ(a.rank(), 0);
  EXPECT_EQ(a.world_size(), 2);
  EXPECT_EQ(a.spec().resources().trainers(), 2);
  EXPECT_EQ(a.checkpoint_dir(), "/state/checkpoints/" + id);
  EXPECT_EQ(a.coordinator_address(), "10.0.0.1:7070");
  EXPECT_TRUE(a.resume_from().path().empty());
  // Its own dataloaders, on its host.
  ASSERT_EQ(a.dataloader_addresses_size(), 2);
  for (const std::string& address : a.dataloader_addresses()) {
    EXPECT_EQ(address.substr(0, 2), Worker(job.ranks(0).worker_id()).hostname() + ":");
  }
  // Until the worker shows it runs the assignment, it is offered again.
  EXPECT_EQ(Beat(job.ranks(0).worker_id())->action(), HeartbeatResponse::ACTION_RUN);
  EXPECT_EQ(Beat(job.ranks(0).worker_id(), tecl::v1::TRAINER_STATUS_STARTING, id, 1, 0)->action(),
            HeartbeatResponse::ACTION_NONE);
}

TEST_F(CoordinatorTest, RunningOnceEveryRankTrains) {
  const std::string id = SubmitOk(Spec(2, 1));
  const std::string t1 = Trainer();
  const std::string t2 = Trainer();
  Loader();
  Loader();
  coordinator_->Tick();
  tecl::v1::Assignment a0 = StartRank(Get(id).ranks(0).worker_id());
  EXPECT_EQ(Get(id).state(), kScheduled);
  StartRank(Get(id).ranks(1).worker_id());
  EXPECT_EQ(Get(id).state(), kRunning);
  EXPECT_THAT(StateHistory(id), ElementsAre(kPending, kScheduled, kRunning));
  EXPECT_THAT(Get(id).reason(), HasSubstr("all 2 rank(s) are training"));
}

// Each running rank's latest step time, data wait and all-reduce time are listed with its worker
// (teclctl top); a rank past 1.5x the others' median counts as a straggler until it catches up,
// and stats of an attempt the worker no longer runs are not listed.
TEST_F(CoordinatorTest, RunningRanksReportTheirStepTimesAndStragglersAreCounted) {
  const std::string id = SubmitOk(Spec(3, 1));
  const std::vector<std::string> ranks = StartJobOnNewWorkers(id, 3);
  auto beat = [&](int rank, double step_seconds) {
    tecl::v1::HeartbeatRequest request;
    request.set_worker_id(ranks[rank]);
    request.set_status(tecl::v1::TRAINER_STATUS_RUNNING);
    request.set_job_id(id);
    request.set_attempt(1);
    request.set_rank(rank);
    request.mutable_progress()->set_step(40 + rank);
    request.set_step_seconds(step_seconds);
    request.set_data_wait_seconds(step_seconds / 4);
    request.set_allreduce_seconds(0.01);
    std::optional<absl::StatusOr<HeartbeatResponse>> result;
    coordinator_->membership().Heartbeat(request, sessions_[ranks[rank]],
                                         [&](auto r) { result = std::move(r); });
    ASSERT_TRUE(result.has_value() && result->ok());
  };
  EXPECT_THAT(registry_->Serialize(), HasSubstr("tecl_coordinator_straggler_ranks 0"));
  beat(0, 0.20);
  beat(1, 0.22);
  beat(2, 0.50);
  const tecl::v1::RankStats stats = Worker(ranks[2]).rank_stats();
  EXPECT_EQ(stats.step(), 42);
  EXPECT_DOUBLE_EQ(stats.step_seconds(), 0.50);
  EXPECT_DOUBLE_EQ(stats.data_wait_seconds(), 0.125);
  EXPECT_DOUBLE_EQ(stats.allreduce_seconds(), 0.01);
  EXPECT_GT(stats.updated_unix_ms(), 0);
  EXPECT_THAT(registry_->Serialize(), HasSubstr("tecl_coordinator_straggler_ranks 1"));
  beat(2, 0.25);  // Caught up.
  EXPECT_THAT(registry_->Serialize(), HasSubstr("tecl_coordinator_straggler_ranks 0"));
  // Idle workers and dataloaders carry no stats; nor does a worker once its attempt ended.
  ASSERT_TRUE(Cancel(id).ok());
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(Report(ranks[r], id, 1, r, tecl::v1::OUTCOME_STOPPED).ok());
  }
  for (const auto& w : coordinator_->membership().List(tecl::v1::WORKER_KIND_UNSPECIFIED)) {
    EXPECT_FALSE(w.has_rank_stats()) << w.id();
  }
}

TEST_F(CoordinatorTest, TrainersLogLinesArriveInHeartbeatsAndAreReadByJobAndRank) {
  const std::string id = SubmitOk(Spec(2, 1));
  const std::string other = SubmitOk(Spec(1, 1));
  const std::vector<std::string> ranks = StartJobOnNewWorkers(id, 2);
  // A heartbeat of rank `rank` carrying lines (seq, job, text).
  auto beat = [&](int rank, std::vector<std::tuple<int64_t, std::string, std::string>> lines) {
    tecl::v1::HeartbeatRequest request;
    request.set_worker_id(ranks[rank]);
    request.set_status(tecl::v1::TRAINER_STATUS_RUNNING);
    request.set_job_id(id);
    request.set_attempt(1);
    request.set_rank(rank);
    for (const auto& [seq, job, text] : lines) {
      tecl::v1::LogLine* line = request.add_log_lines();
      line->set_seq(seq);
      line->set_job_id(job);
      line->set_attempt(1);
      line->set_rank(rank);
      line->set_text(text);
    }
    std::optional<absl::StatusOr<HeartbeatResponse>> result;
    coordinator_->membership().Heartbeat(request, sessions_[ranks[rank]],
                                         [&](auto r) { result = std::move(r); });
    ASSERT_TRUE(result.has_value() && result->ok());
  };
  auto read = [&](std::optional<int> rank, int64_t after = 0) {
    tecl::v1::GetJobLogsRequest request;
    request.set_job_id(id);
    if (rank.has_value()) request.set_rank(*rank);
    request.set_after_cursor(after);
    absl::StatusOr<tecl::v1::GetJobLogsResponse> page = coordinator_->GetJobLogs(request);
    EXPECT_TRUE(page.ok()) << page.status();
    std::vector<std::string> texts;
    for (const auto& line : page->lines()) texts.push_back(line.text());
    return texts;
  };
  beat(0, {{1, id, "r0 starting"}, {2, id, "r0 step 10"}});
  beat(1, {{1, id, "r1 starting"}});
  beat(0, {{2, id, "r0 step 10"}, {3, id, "r0 step 20"}});  // A repeat after a lost answer.
  // A line naming a job the worker was never given is refused.
  beat(1, {{2, other, "forged into another job"}, {3, id, "r1 step 10"}});
  EXPECT_THAT(read(std::nullopt),
              ElementsAre("r0 starting", "r0 step 10", "r1 starting", "r0 step 20", "r1 step 10"));
  EXPECT_THAT(read(1), ElementsAre("r1 starting", "r1 step 10"));
  EXPECT_THAT(read(std::nullopt, 4), ElementsAre("r1 step 10"));
  // A gap in a trainer's seqs: its buffer overflowed while the coordinator was unreachable.
  beat(0, {{9, id, "r0 after the outage"}});
  EXPECT_THAT(read(0), ElementsAre("r0 starting", "r0 step 10", "r0 step 20",
                                   HasSubstr("5 log lines of trainer"), "r0 after the outage"));
  const std::string metrics = registry_->Serialize();
  EXPECT_THAT(metrics, HasSubstr("tecl_coordinator_log_lines_total{outcome=\"kept\"} 6"));
  EXPECT_THAT(metrics, HasSubstr("tecl_coordinator_log_lines_total{outcome=\"refused\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("tecl_coordinator_log_lines_total{outcome=\"lost\"} 5"));

  // Lines logged as a rank ended arrive after its outcome, from an idle worker: still its job's.
  ASSERT_TRUE(Cancel(id).ok());
  ASSERT_TRUE(Report(ranks[1], id, 1, 1, tecl::v1::OUTCOME_STOPPED).ok());
  tecl::v1::HeartbeatRequest idle;
  idle.set_worker_id(ranks[1]);
  idle.set_status(tecl::v1::TRAINER_STATUS_IDLE);
  tecl::v1::LogLine* last = idle.add_log_lines();
  last->set_seq(4);
  last->set_job_id(id);
  last->set_attempt(1);
  last->set_rank(1);
  last->set_text("r1 ended: OUTCOME_STOPPED");
  std::optional<absl::StatusOr<HeartbeatResponse>> result;
  coordinator_->membership().Heartbeat(idle, sessions_[ranks[1]],
                                       [&](auto r) { result = std::move(r); });
  ASSERT_TRUE(result.has_value() && result->ok());
  EXPECT_THAT(read(1), ElementsAre("r1 starting", "r1 step 10", "r1 ended: OUTCOME_STOPPED"));

  tecl::v1::GetJobLogsRequest missing;
  missing.set_job_id("job-nope");
  EXPECT_EQ(coordinator_->GetJobLogs(missing).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, RankZeroProgressIsTheJobsAndIsPersistedAtABoundedRate) {
  const std::string id = SubmitOk(Spec(2, 1));
  Trainer();
  Trainer();
  Loader();
  Loader();
  coordinator_->Tick();
  const std::string r0 = Get(id).ranks(0).worker_id();
  const std::string r1 = Get(id).ranks(1).worker_id();
  StartRank(r0);
  StartRank(r1);
  EXPECT_TRUE(Beat(r0, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0, /*step=*/10).ok());
  EXPECT_TRUE(Beat(r1, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 1, /*step=*/999).ok());
  EXPECT_EQ(Get(id).progress().step(), 10);
  EXPECT_DOUBLE_EQ(Get(id).progress().loss().total(), 1.5);
  // The RUNNING transition stored the job just before; the new progress waits for the interval.
  EXPECT_EQ(Stored(id).job.progress().step(), 0);
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(Beat(r0, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0, /*step=*/20).ok());
  EXPECT_EQ(Stored(id).job.progress().step(), 0);
  clock_.Advance(absl::Seconds(3));
  EXPECT_TRUE(Beat(r0, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0, /*step=*/30).ok());
  EXPECT_EQ(Stored(id).job.progress().step(), 30);
  // Without further heartbeats, Tick writes what is pending once the interval passed.
  EXPECT_TRUE(Beat(r0, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0, /*step=*/31).ok());
  clock_.Advance(absl::Seconds(5));
  coordinator_->Tick();
  EXPECT_EQ(Stored(id).job.progress().step(), 31);
}

TEST_F(CoordinatorTest, SucceedsWhenRankZeroFinishesAndFreesEveryone) {
  const std::string id = SubmitOk(Spec(2, 1));
  Trainer();
  Trainer();
  const std::string l1 = Loader();
  const std::string l2 = Loader();
  coordinator_->Tick();
  const std::string r0 = Get(id).ranks(0).worker_id();
  const std::string r1 = Get(id).ranks(1).worker_id();
  StartRank(r0);
  StartRank(r1);
  ASSERT_TRUE(Checkpoint(r0, id, 1, 1000).ok());
  ASSERT_TRUE(Report(r0, id, 1, 0, tecl::v1::OUTCOME_SUCCEEDED, "", 1000).ok());
  Job job = Get(id);
  EXPECT_EQ(job.state(), kSucceeded);
  EXPECT_THAT(job.reason(), HasSubstr("rank 0 finished at step 1000"));
  EXPECT_GT(job.finished_unix_ms(), 0);
  EXPECT_EQ(Stored(id).job.state(), kSucceeded);
  EXPECT_EQ(Worker(r0).state(), tecl::v1::WORKER_STATE_IDLE);
  EXPECT_EQ(Worker(l1).state(), tecl::v1::WORKER_STATE_IDLE);
  EXPECT_EQ(Worker(l2).state(), tecl::v1::WORKER_STATE_IDLE);
  // Rank 1 is told to stop if it still runs, and is freed by its own report.
  EXPECT_EQ(Beat(r1, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 1)->action(),
            HeartbeatResponse::ACTION_STOP);
  EXPECT_TRUE(Report(r1, id, 1, 1, tecl::v1::OUTCOME_SUCCEEDED).ok());
  EXPECT_EQ(Worker(r1).state(), tecl::v1::WORKER_STATE_IDLE);
  EXPECT_EQ(Stored(id).attempts[0].end_state(), kSucceeded);
}

// ---- Prepare jobs (dataloaders as ranks) ----

JobSpec PrepareSpec(int loaders) {
  JobSpec spec = DefaultJobSpec(tecl::v1::JOB_KIND_PREPARE, "tiny3d");
  spec.set_name("prep");
  spec.mutable_dataset()->set_root("/data/raw");
  spec.mutable_prepare()->set_output_root("/data/prepared");
  spec.mutable_resources()->set_dataloaders(loaders);
  spec.mutable_restart()->set_heartbeat_timeout_s(5);
  return spec;
}

tecl::v1::HeartbeatRequest PrepareBeat(const std::string& worker, const tecl::v1::Assignment& a,
                                       int64_t total, int64_t prepared, int64_t kept,
                                       double videos_per_s) {
  tecl::v1::HeartbeatRequest request;
  request.set_worker_id(worker);
  request.set_status(tecl::v1::TRAINER_STATUS_RUNNING);
  request.set_job_id(a.job_id());
  request.set_attempt(a.attempt());
  request.set_rank(a.rank());
  tecl::v1::JobProgress* p = request.mutable_progress();
  p->mutable_prepare()->set_videos_total(total);
  p->mutable_prepare()->set_videos_prepared(prepared);
  p->mutable_prepare()->set_videos_kept(kept);
  p->set_step(prepared + kept);
  p->set_total_steps(total);
  p->set_clips_per_second(videos_per_s);
  return request;
}

// A prepare job runs on dataloaders alone, each a rank with one shard; it is elastic (placed on
// the free loaders up to its count), its progress is the sum of its ranks', a lost loader ends
// the attempt and the next one runs on the loaders free then, and it succeeds when a rank reports
// having written the data set files.
TEST_F(CoordinatorTest, APrepareJobShardsOverFreeDataloadersAndSurvivesALostOne) {
  const std::string trainer = Trainer();
  const std::string l0 = Loader("h1");
  const std::string l1 = Loader("h2");
  const std::string id = SubmitOk(PrepareSpec(3));
  coordinator_->Tick();
  Job job = Get(id);
  ASSERT_EQ(job.state(), kScheduled) << job.reason();
  ASSERT_EQ(job.ranks_size(), 2) << "elastic: two of the three loaders asked for are free";
  EXPECT_THAT(job.reason(), HasSubstr("placed on 2 of 3 dataloader(s)"));
  EXPECT_EQ(Worker(trainer).state(), tecl::v1::WORKER_STATE_IDLE);
  std::map<std::string, tecl::v1::Assignment> assigned;
  for (const std::string& loader : {l0, l1}) {
    assigned[loader] = TakeAssignment(loader);
    EXPECT_EQ(assigned[loader].world_size(), 2);
    EXPECT_EQ(assigned[loader].spec().kind(), tecl::v1::JOB_KIND_PREPARE);
    EXPECT_TRUE(assigned[loader].dataloader_addresses().empty());
  }
  EXPECT_NE(assigned[l0].rank(), assigned[l1].rank());
  auto beat = [&](const tecl::v1::HeartbeatRequest& request) {
    std::optional<absl::StatusOr<HeartbeatResponse>> result;
    coordinator_->membership().Heartbeat(request, sessions_[request.worker_id()],
                                         [&](auto r) { result = std::move(r); });
    EXPECT_TRUE(result.has_value() && result->ok());
    return result->ok() ? **result : HeartbeatResponse();
  };
  EXPECT_EQ(beat(PrepareBeat(l0, assigned[l0], 10, 3, 0, 2.0)).action(),
            HeartbeatResponse::ACTION_NONE);
  EXPECT_EQ(Get(id).state(), kScheduled) << "one rank still starting";
  beat(PrepareBeat(l1, assigned[l1], 9, 1, 0, 1.0));
  job = Get(id);
  EXPECT_EQ(job.state(), kRunning);
  EXPECT_EQ(job.progress().step(), 4);
  EXPECT_EQ(job.progress().total_steps(), 19);
  EXPECT_EQ(job.progress().prepare().videos_prepared(), 4);
  EXPECT_DOUBLE_EQ(job.progress().clips_per_second(), 3.0);
  EXPECT_NEAR(job.progress().eta_s(), 5.0, 1e-9);

  // l1 goes silent (SIGKILL): after the job's 5 s heartbeat timeout the attempt ends, l0 is told
  // to stop and, once it reported, the next attempt runs on it alone.
  for (int s = 0; s < 6; ++s) {
    clock_.Advance(absl::Seconds(1));
    beat(PrepareBeat(l0, assigned[l0], 10, 3, 0, 2.0));
    coordinator_->Tick();
  }
  job = Get(id);
  EXPECT_EQ(job.state(), kRecovering) << job.reason();
  EXPECT_THAT(job.reason(), HasSubstr("missed heartbeats"));
  EXPECT_EQ(beat(PrepareBeat(l0, assigned[l0], 10, 3, 0, 2.0)).action(),
            HeartbeatResponse::ACTION_STOP);
  EXPECT_EQ(Report(l0, id, 1, assigned[l0].rank(), tecl::v1::OUTCOME_STOPPED).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(Worker(l0).state(), tecl::v1::WORKER_STATE_IDLE);
  coordinator_->Tick();
  job = Get(id);
  ASSERT_EQ(job.state(), kScheduled) << job.reason();
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_THAT(job.reason(), HasSubstr("videos finished before are kept"));
  const tecl::v1::Assignment second = TakeAssignment(l0);
  EXPECT_EQ(second.attempt(), 2);
  EXPECT_EQ(second.rank(), 0);
  EXPECT_EQ(second.world_size(), 1);
  beat(PrepareBeat(l0, second, 19, 2, 4, 1.0));

  // Its report with the data set files written ends the job.
  tecl::v1::ReportOutcomeRequest done;
  done.set_worker_id(l0);
  done.set_job_id(id);
  done.set_attempt(2);
  done.set_rank(0);
  done.set_outcome(tecl::v1::OUTCOME_SUCCEEDED);
  *done.mutable_progress() = PrepareBeat(l0, second, 19, 15, 4, 1.0).progress();
  done.mutable_progress()->mutable_prepare()->set_dataset_files_written(true);
  std::optional<absl::Status> reported;
  coordinator_->attempts().ReportOutcome(done, sessions_[l0], [&](absl::Status s) { reported = s; });
  ASSERT_TRUE(reported.has_value() && reported->ok()) << *reported;
  job = Get(id);
  EXPECT_EQ(job.state(), kSucceeded) << job.reason();
  EXPECT_THAT(job.reason(), HasSubstr("19 video(s) ready (15 transcoded by this attempt, 4 kept)"));
  EXPECT_EQ(job.progress().step(), 19);
  EXPECT_EQ(Worker(l0).state(), tecl::v1::WORKER_STATE_IDLE);
}

// Shards that all finish without one of them finding every video done (a record missing) fail
// the attempt instead of leaving the job running without workers.
TEST_F(CoordinatorTest, APrepareAttemptWhoseShardsAllEndWithoutTheFilesIsRetried) {
  const std::string l0 = Loader();
  const std::string id = SubmitOk(PrepareSpec(1));
  coordinator_->Tick();
  const tecl::v1::Assignment a = TakeAssignment(l0);
  EXPECT_TRUE(Report(l0, id, 1, 0, tecl::v1::OUTCOME_SUCCEEDED).ok());
  const Job job = Get(id);
  EXPECT_EQ(job.state(), kRecovering);
  EXPECT_THAT(job.reason(), HasSubstr("data set files were not written"));
  EXPECT_EQ(a.world_size(), 1);
}

// A prepare job needs a free dataloader; a free trainer does not start it.
TEST_F(CoordinatorTest, APrepareJobWaitsForAFreeDataloaderNotATrainer) {
  Trainer();
  const std::string id = SubmitOk(PrepareSpec(2));
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kPending);
  const std::string loader = Loader();
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kScheduled);
  EXPECT_EQ(Get(id).ranks(0).worker_id(), loader);
}

// ---- Failures and recovery ----

TEST_F(CoordinatorTest, ALostTrainerTriggersRecoveryFromTheNewestCheckpoint) {
  const std::string id = SubmitOk(Spec(2, 1));
  Trainer();
  Trainer();
  Loader();
  Loader();
  coordinator_->Tick();
  const std::string r0 = Get(id).ranks(0).worker_id();
  const std::string r1 = Get(id).ranks(1).worker_id();
  StartRank(r0);
  StartRank(r1);
  ASSERT_TRUE(Checkpoint(r0, id, 1, 100).ok());
  ASSERT_TRUE(Checkpoint(r0, id, 1, 200).ok());
  std::vector<std::string> alive = {r0};
  for (const auto& w : coordinator_->membership().List(tecl::v1::WORKER_KIND_DATALOADER))
    alive.push_back(w.id());
  // The job's restart.heartbeat_timeout_s is 10 s: rank 1 goes silent.
  PassTime(absl::Seconds(9), alive);
  EXPECT_EQ(Get(id).state(), kRunning);
  PassTime(absl::Seconds(2), alive);
  Job job = Get(id);
  EXPECT_EQ(job.state(), kRecovering);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.restarts(), 1);
  EXPECT_THAT(job.reason(), HasSubstr("rank 1"));
  EXPECT_THAT(job.reason(), HasSubstr("missed heartbeats"));
  EXPECT_EQ(Worker(r1).state(), tecl::v1::WORKER_STATE_LOST);
  // The lost worker is told to register again.
  absl::StatusOr<HeartbeatResponse> lost = Beat(r1);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(lost.status().message()), HasSubstr("register again"));
  // The surviving rank is stopped, and freed once it goes idle.
  EXPECT_EQ(Beat(r0, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0)->action(),
            HeartbeatResponse::ACTION_STOP);
  EXPECT_EQ(Report(r0, id, 1, 0, tecl::v1::OUTCOME_STOPPED).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Worker(r0).state(), tecl::v1::WORKER_STATE_IDLE);
  // A replacement registers; the job re-gangs and resumes from step 200.
  const std::string replacement = Trainer("h9");
  EXPECT_NE(replacement, r1);
  coordinator_->Tick();
  job = Get(id);
  EXPECT_EQ(job.state(), kScheduled);
  EXPECT_EQ(job.attempt(), 2);
  tecl::v1::Assignment a = TakeAssignment(replacement);
  EXPECT_EQ(a.attempt(), 2);
  EXPECT_EQ(a.resume_from().step(), 200);
  EXPECT_EQ(a.resume_from().path(), "/state/checkpoints/job-000001/step-200");
  EXPECT_THAT(StateHistory(id),
              ElementsAre(kPending, kScheduled, kRunning, kRecovering, kScheduled));
  // Events tell the story, durably.
  StoredJob stored = Stored(id);
  bool lost_event = false;
  for (const auto& e : stored.events) lost_event = lost_event || e.type() == "worker_lost";
  EXPECT_TRUE(lost_event);
  ASSERT_EQ(stored.attempts.size(), 2u);
  EXPECT_EQ(stored.attempts[0].end_state(), kRecovering);
  EXPECT_EQ(stored.attempts[1].ended_unix_ms(), 0);
}

// The step an attempt failed at is the furthest step its ranks reported in their outcomes, not
// the heartbeat progress the coordinator happened to hold when it noticed the failure: every
// outcome is an event of its own attempt with the rank's step, even once the attempt is stale.
TEST_F(CoordinatorTest, OutcomesAreEventsOfTheirAttemptWithTheExactStep) {
  const std::string id = SubmitOk(Spec(2, 1));
  Trainer();
  Trainer();
  Loader();
  Loader();
  coordinator_->Tick();
  const std::string r0 = Get(id).ranks(0).worker_id();
  const std::string r1 = Get(id).ranks(1).worker_id();
  StartRank(r0);
  StartRank(r1);
  // The last heartbeat said step 18; rank 0 went on, checkpointed 20, and its collective failed
  // at step 23 when rank 1 died.
  ASSERT_TRUE(Beat(r0, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0, 18).ok());
  ASSERT_TRUE(Checkpoint(r0, id, 1, 20).ok());
  ASSERT_TRUE(
      Report(r1, id, 1, 1, tecl::v1::OUTCOME_FAILED, "rank 0 closed the connection", 22).ok());
  EXPECT_EQ(Get(id).state(), kRecovering);
  EXPECT_EQ(Report(r0, id, 1, 0, tecl::v1::OUTCOME_FAILED, "peer 1 is gone", 23).code(),
            absl::StatusCode::kAborted);
  int64_t recovering_step = -1;
  std::vector<std::pair<int, int64_t>> outcomes;  // (attempt, step)
  const auto events = coordinator_->jobs().ListEvents(id, 0, 0);
  ASSERT_TRUE(events.ok());
  for (const auto& e : *events) {
    if (e.type() == "state" && e.to_state() == kRecovering) recovering_step = e.step();
    if (e.type() == "outcome") {
      outcomes.push_back({e.attempt(), e.step()});
      EXPECT_THAT(e.reason(), HasSubstr("failed"));
    }
  }
  EXPECT_EQ(recovering_step, 18) << "the heartbeat progress lags";
  EXPECT_THAT(outcomes, ElementsAre(std::make_pair(1, 22), std::make_pair(1, 23)));
}

// ---- Sessions: a worker calls only as itself, only for what it was assigned ----

TEST_F(CoordinatorTest, ForgedWorkerCallsAreRefusedAndChangeNothing) {
  const std::string a = SubmitOk(Spec(2, 1));
  const std::string b = SubmitOk(Spec(1, 1));
  for (int i = 0; i < 3; ++i) Trainer();
  for (int i = 0; i < 3; ++i) Loader();
  coordinator_->Tick();
  const std::string r0 = Get(a).ranks(0).worker_id();
  const std::string r1 = Get(a).ranks(1).worker_id();
  const std::string other = Get(b).ranks(0).worker_id();
  StartRank(r0);
  StartRank(r1);
  StartRank(other);
  const int64_t batches = store_.batches_written();
  const Job before = Get(a);
  const size_t events = coordinator_->jobs().ListEvents(a, 0, 0)->size();
  auto denied = [](const absl::Status& s) {
    return s.code() == absl::StatusCode::kPermissionDenied;
  };

  // Rank 1 (its own session) claims rank 0's success: it was not placed as rank 0.
  EXPECT_TRUE(denied(Report(r1, a, 1, 0, tecl::v1::OUTCOME_SUCCEEDED)));
  // ... or reports for an attempt it did not run.
  EXPECT_TRUE(denied(Report(r1, a, 2, 1, tecl::v1::OUTCOME_FAILED)));
  // Another job's trainer reports for this job.
  EXPECT_TRUE(denied(Report(other, a, 1, 0, tecl::v1::OUTCOME_FATAL)));
  // A dataloader serving the job (it may report the ranks of prepare jobs it was placed as).
  const std::string loader = Get(a).ranks(0).dataloader_ids(0);
  EXPECT_TRUE(denied(Report(loader, a, 1, 0, tecl::v1::OUTCOME_SUCCEEDED)));
  // Rank 1 registers a checkpoint (only rank 0 may): it would become the resume point.
  EXPECT_TRUE(denied(Checkpoint(r1, a, 1, 100, "/elsewhere/evil.tecl")));
  // Rank 0 itself names a file outside its job's folder: another job's model, a path climbing
  // out with "..", or the folder itself.
  EXPECT_TRUE(denied(Checkpoint(r0, a, 1, 100, "/state/checkpoints/" + b + "/step-100")));
  EXPECT_TRUE(
      denied(Checkpoint(r0, a, 1, 100, "/state/checkpoints/" + a + "/../" + b + "/step-100")));
  EXPECT_TRUE(denied(Checkpoint(r0, a, 1, 100, "/state/checkpoints/" + a)));
  // A worker calls under another's id with its own session.
  std::swap(sessions_[r0], sessions_[other]);
  EXPECT_TRUE(denied(Report(r0, a, 1, 0, tecl::v1::OUTCOME_SUCCEEDED)));
  EXPECT_TRUE(denied(Checkpoint(r0, a, 1, 100)));
  EXPECT_TRUE(denied(Beat(r0).status()));
  std::swap(sessions_[r0], sessions_[other]);
  // No session at all.
  EXPECT_TRUE(denied(coordinator_->membership().CheckRendezvousCaller("", a, 1)));
  // The rendezvous of another job, or of another attempt of its own.
  EXPECT_TRUE(denied(coordinator_->membership().CheckRendezvousCaller(sessions_[other], a, 1)));
  EXPECT_TRUE(denied(coordinator_->membership().CheckRendezvousCaller(sessions_[r0], a, 2)));
  EXPECT_TRUE(coordinator_->membership().CheckRendezvousCaller(sessions_[r0], a, 1).ok());
  // A dataloader of the job is not in its process group.
  EXPECT_TRUE(denied(coordinator_->membership().CheckRendezvousCaller(sessions_[loader], a, 1)));

  // Nothing changed.
  EXPECT_EQ(store_.batches_written(), batches);
  const Job after = Get(a);
  EXPECT_EQ(after.state(), kRunning);
  EXPECT_EQ(after.attempt(), before.attempt());
  EXPECT_FALSE(after.has_latest_checkpoint());
  EXPECT_EQ(coordinator_->jobs().ListEvents(a, 0, 0)->size(), events);
  // The real rank 0 still can.
  EXPECT_TRUE(Checkpoint(r0, a, 1, 100).ok());
  EXPECT_TRUE(Report(r0, a, 1, 0, tecl::v1::OUTCOME_SUCCEEDED).ok());
  EXPECT_EQ(Get(a).state(), kSucceeded);
}

TEST_F(CoordinatorTest, SessionsSurviveACoordinatorRestartAndAreNeverListed) {
  const std::string t = Trainer();
  for (const auto& w : coordinator_->membership().List(tecl::v1::WORKER_KIND_UNSPECIFIED)) {
    EXPECT_TRUE(w.session_sha256().empty());
  }
  Start();  // A restart on the same store.
  EXPECT_TRUE(Beat(t).ok());
  const std::string forged = sessions_[t];
  sessions_[t] = std::string(64, '0');
  EXPECT_EQ(Beat(t).status().code(), absl::StatusCode::kPermissionDenied);
  sessions_[t] = forged;
  EXPECT_TRUE(Beat(t).ok());
}

// A rank whose only dataloader is lost cannot go on: the attempt is recovered, and the new one is
// placed on a replacement.
TEST_F(CoordinatorTest, ARankLeftWithoutADataloaderRecovers) {
  const std::string id = SubmitOk(Spec(1, 1));
  const std::string t = Trainer();
  const std::string l = Loader();
  coordinator_->Tick();
  StartRank(t);
  PassTime(absl::Seconds(11), {t});
  EXPECT_EQ(Get(id).state(), kRecovering);
  EXPECT_THAT(Get(id).reason(), HasSubstr("dataloader " + l));
  EXPECT_THAT(Get(id).reason(), HasSubstr("rank 0 has no dataloader left"));
  const std::string l2 = Loader();
  EXPECT_EQ(Beat(t, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0)->action(),
            HeartbeatResponse::ACTION_STOP);
  EXPECT_TRUE(Beat(t).ok());  // Idle: lets go of attempt 1.
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kScheduled);
  EXPECT_EQ(Get(id).ranks(0).dataloader_ids(0), l2);
}

// A rank with two dataloaders that loses one goes on with the other (no restart); the trainer
// hears of its new list in its heartbeat responses until it reports that version; a dataloader
// that registers later is placed in the lost one's stead (before a waiting job gets it), and the
// placement is durable across a coordinator restart.
TEST_F(CoordinatorTest, ALostDataloaderLeavesItsRankAndAFreeOneReplacesIt) {
  const std::string id = SubmitOk(Spec(1, 2));
  const std::string t = Trainer();
  const std::string l1 = Loader();
  const std::string l2 = Loader();
  coordinator_->Tick();
  ASSERT_EQ(Get(id).ranks(0).dataloader_ids_size(), 2);
  const std::string lost = Get(id).ranks(0).dataloader_ids(0);
  const std::string kept = lost == l1 ? l2 : l1;
  tecl::v1::Assignment a = StartRank(t);
  EXPECT_EQ(a.dataloaders_version(), 0);
  PassTime(absl::Seconds(11), {t, kept});

  Job job = Get(id);
  EXPECT_EQ(job.state(), kRunning);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_EQ(job.restarts(), 0);
  EXPECT_THAT(job.ranks(0).dataloader_ids(), ElementsAre(kept));
  EXPECT_EQ(job.ranks(0).dataloaders_version(), 1);
  EXPECT_EQ(Worker(lost).state(), tecl::v1::WORKER_STATE_LOST);
  StoredJob stored = Stored(id);
  EXPECT_THAT(stored.job.ranks(0).dataloader_ids(), ElementsAre(kept));
  ASSERT_EQ(stored.attempts.size(), 1u);
  EXPECT_THAT(stored.attempts[0].ranks(0).dataloader_ids(), ElementsAre(kept));
  ASSERT_FALSE(stored.events.empty());
  EXPECT_EQ(stored.events.back().type(), "worker_lost");
  EXPECT_THAT(stored.events.back().reason(), HasSubstr("dataloader " + lost));
  EXPECT_THAT(stored.events.back().reason(), HasSubstr("goes on with 1 dataloader(s), no restart"));

  // The trainer still streams from version 0: it is told the new list until it reports it.
  tecl::v1::HeartbeatRequest beat;
  auto running = [&](int version) {
    beat.set_worker_id(t);
    beat.set_status(tecl::v1::TRAINER_STATUS_RUNNING);
    beat.set_job_id(id);
    beat.set_attempt(1);
    beat.set_rank(0);
    beat.set_dataloaders_version(version);
    std::optional<absl::StatusOr<HeartbeatResponse>> result;
    coordinator_->membership().Heartbeat(beat, sessions_[t],
                                         [&](auto r) { result = std::move(r); });
    EXPECT_TRUE(result.has_value() && result->ok());
    return result.has_value() && result->ok() ? **result : HeartbeatResponse();
  };
  HeartbeatResponse response = running(0);
  EXPECT_EQ(response.action(), HeartbeatResponse::ACTION_NONE);
  ASSERT_TRUE(response.has_dataloaders());
  EXPECT_EQ(response.dataloaders().job_id(), id);
  EXPECT_EQ(response.dataloaders().attempt(), 1);
  EXPECT_EQ(response.dataloaders().rank(), 0);
  EXPECT_EQ(response.dataloaders().version(), 1);
  EXPECT_THAT(response.dataloaders().addresses(), ElementsAre(Worker(kept).address()));
  EXPECT_FALSE(running(1).has_dataloaders());

  // A coordinator restart keeps the placement; a pending job waits while the running rank gets
  // the next free dataloader.
  Start();
  ASSERT_TRUE(Beat(kept).ok());
  const std::string waiting = SubmitOk(Spec(1, 1));
  Trainer();
  const std::string l3 = Loader("h2");
  coordinator_->Tick();
  job = Get(id);
  EXPECT_EQ(job.state(), kRunning);
  EXPECT_THAT(job.ranks(0).dataloader_ids(), ElementsAre(kept, l3));
  EXPECT_EQ(job.ranks(0).dataloaders_version(), 2);
  EXPECT_EQ(Get(waiting).state(), kPending);
  EXPECT_EQ(Worker(l3).state(), tecl::v1::WORKER_STATE_BUSY);
  EXPECT_EQ(Worker(l3).job_id(), id);
  EXPECT_EQ(Worker(l3).rank(), 0);
  EXPECT_THAT(Stored(id).job.ranks(0).dataloader_ids(), ElementsAre(kept, l3));
  EXPECT_EQ(Stored(id).events.back().type(), "dataloader_replaced");
  EXPECT_THAT(Stored(id).events.back().reason(), HasSubstr("rank 0: dataloader " + l3));
  response = running(1);
  ASSERT_TRUE(response.has_dataloaders());
  EXPECT_EQ(response.dataloaders().version(), 2);
  EXPECT_THAT(response.dataloaders().addresses(),
              ElementsAre(Worker(kept).address(), Worker(l3).address()));
  // The replacement is freed with the rest of the attempt.
  ASSERT_TRUE(Report(t, id, 1, 0, tecl::v1::OUTCOME_SUCCEEDED, "", 1000).ok());
  EXPECT_EQ(Worker(l3).state(), tecl::v1::WORKER_STATE_IDLE);
  const std::string text = registry_->Serialize();
  EXPECT_THAT(text, HasSubstr("tecl_coordinator_dataloader_replacements_total 1"));
  EXPECT_EQ(Get(id).restarts(), 0);
}

// Losing its dataloaders one by one, a rank goes on while it has one; the last loss recovers.
TEST_F(CoordinatorTest, ARankThatLosesAllItsDataloadersRecovers) {
  const std::string id = SubmitOk(Spec(2, 2));
  const std::string t1 = Trainer();
  const std::string t2 = Trainer();
  std::vector<std::string> loaders;
  for (int i = 0; i < 4; ++i) loaders.push_back(Loader());
  coordinator_->Tick();
  const std::string r0 = Get(id).ranks(0).worker_id();
  const std::string r1 = Get(id).ranks(1).worker_id();
  StartRank(r0);
  StartRank(r1);
  const auto rank0 = Get(id).ranks(0).dataloader_ids();
  const auto rank1 = Get(id).ranks(1).dataloader_ids();
  // One of rank 0's loaders goes silent first, then rank 1 loses one: both ranks go on.
  PassTime(absl::Seconds(11), {r0, r1, rank0[1], rank1[0], rank1[1]});
  EXPECT_EQ(Get(id).state(), kRunning);
  PassTime(absl::Seconds(11), {r0, r1, rank0[1], rank1[0]});
  EXPECT_EQ(Get(id).state(), kRunning);
  EXPECT_EQ(Get(id).restarts(), 0);
  EXPECT_THAT(Get(id).ranks(0).dataloader_ids(), ElementsAre(rank0[1]));
  EXPECT_THAT(Get(id).ranks(1).dataloader_ids(), ElementsAre(rank1[0]));
  EXPECT_THAT(registry_->Serialize(), HasSubstr("tecl_coordinator_dataloaders_dropped_total 2"));
  // Rank 0's last one: recovery.
  PassTime(absl::Seconds(11), {r0, r1, rank1[0]});
  const Job job = Get(id);
  EXPECT_EQ(job.state(), kRecovering);
  EXPECT_EQ(job.restarts(), 1);
  EXPECT_THAT(job.reason(), HasSubstr("rank 0 has no dataloader left"));
  EXPECT_THAT(job.reason(), HasSubstr("dataloader " + rank0[1]));
  EXPECT_EQ(Worker(rank1[0]).state(), tecl::v1::WORKER_STATE_IDLE);  // Freed with the attempt.
}

TEST_F(CoordinatorTest, FailedRanksRestartUntilMaxRestartsThenTheJobFails) {
  JobSpec spec = Spec(1, 1);
  spec.mutable_restart()->set_max_restarts(1);
  const std::string id = SubmitOk(spec);
  const std::string t = Trainer();
  Loader();
  coordinator_->Tick();
  StartRank(t);
  ASSERT_TRUE(Report(t, id, 1, 0, tecl::v1::OUTCOME_FAILED, "allreduce timed out").ok());
  EXPECT_EQ(Get(id).state(), kRecovering);
  EXPECT_THAT(Get(id).reason(), HasSubstr("failed: allreduce timed out"));
  coordinator_->Tick();
  tecl::v1::Assignment a = StartRank(t);
  EXPECT_EQ(a.attempt(), 2);
  ASSERT_TRUE(Report(t, id, 2, 0, tecl::v1::OUTCOME_FAILED, "allreduce timed out again").ok());
  Job job = Get(id);
  EXPECT_EQ(job.state(), kFailed);
  EXPECT_THAT(job.reason(), HasSubstr("no restarts left (restart.max_restarts = 1)"));
  EXPECT_EQ(job.restarts(), 1);
  EXPECT_EQ(Stored(id).job.state(), kFailed);
  EXPECT_EQ(Worker(t).state(), tecl::v1::WORKER_STATE_IDLE);
}

TEST_F(CoordinatorTest, AFatalOutcomeFailsAtOnce) {
  const std::string id = SubmitOk(Spec(1, 1));
  const std::string t = Trainer();
  Loader();
  coordinator_->Tick();
  StartRank(t);
  ASSERT_TRUE(Report(t, id, 1, 0, tecl::v1::OUTCOME_FATAL, "dataset has no usable video").ok());
  EXPECT_EQ(Get(id).state(), kFailed);
  EXPECT_EQ(Get(id).restarts(), 0);
  EXPECT_THAT(Get(id).reason(), HasSubstr("fatally"));
}

TEST_F(CoordinatorTest, ATrainerThatDropsItsAssignmentFailsTheAttempt) {
  const std::string id = SubmitOk(Spec(1, 1));
  const std::string t = Trainer();
  Loader();
  coordinator_->Tick();
  StartRank(t);
  EXPECT_EQ(Beat(t)->action(), HeartbeatResponse::ACTION_NONE);  // Idle, no outcome.
  EXPECT_EQ(Get(id).state(), kRecovering);
  EXPECT_THAT(Get(id).reason(), HasSubstr("went idle without reporting an outcome"));
}

TEST_F(CoordinatorTest, AnIdleWorkerStillRunningAnOldAttemptIsStopped) {
  const std::string t = Trainer();
  absl::StatusOr<HeartbeatResponse> r =
      Beat(t, tecl::v1::TRAINER_STATUS_RUNNING, "job-000042", 3, 0);
  EXPECT_EQ(r->action(), HeartbeatResponse::ACTION_STOP);
  EXPECT_THAT(r->stop_reason(), HasSubstr("not current"));
}

TEST_F(CoordinatorTest, StaleAttemptsAreAbortedEverywhere) {
  const std::string id = SubmitOk(Spec(1, 1));
  const std::string t = Trainer();
  Loader();
  coordinator_->Tick();
  StartRank(t);
  ASSERT_TRUE(rendezvous_->Set({id, 1}, "master", "a").ok());
  ASSERT_TRUE(Report(t, id, 1, 0, tecl::v1::OUTCOME_FAILED, "boom").ok());
  // Attempt 1 is gone: its keys, its reports and its checkpoints.
  EXPECT_EQ(rendezvous_->Set({id, 1}, "master", "b").code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Report(t, id, 1, 0, tecl::v1::OUTCOME_FAILED).code(), absl::StatusCode::kAborted);
  coordinator_->Tick();
  StartRank(t);
  EXPECT_EQ(Checkpoint(t, id, 1, 10).code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(Checkpoint(t, id, 2, 10).ok());
  EXPECT_TRUE(rendezvous_->Check({id, 2}, {"master"}).ok());
  EXPECT_FALSE(rendezvous_->Check({id, 2}, {"master"})->all_present);
  EXPECT_EQ(rendezvous_->Set({id, 1}, "master", "c").code(), absl::StatusCode::kAborted);
}

TEST_F(CoordinatorTest, RendezvousCallsForJobsWithoutARunningAttemptAreAborted) {
  const std::string id = SubmitOk(Spec(1, 1));
  EXPECT_EQ(rendezvous_->Set({id, 1}, "k", "v").code(), absl::StatusCode::kAborted);
  EXPECT_EQ(rendezvous_->Set({"job-404", 1}, "k", "v").code(), absl::StatusCode::kNotFound);
  Start();  // After a restart too.
  EXPECT_EQ(rendezvous_->Set({id, 1}, "k", "v").code(), absl::StatusCode::kAborted);
}

TEST_F(CoordinatorTest, UnknownWorkersAndJobsAreNotFound) {
  EXPECT_EQ(Beat("trainer-nobody").status().code(), absl::StatusCode::kNotFound);
  const std::string t = Trainer();
  EXPECT_EQ(Report("trainer-nobody", "job-1", 1, 0, tecl::v1::OUTCOME_FAILED).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Report(t, "job-404", 1, 0, tecl::v1::OUTCOME_FAILED).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Checkpoint(t, "job-404", 1, 1).code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, LostWorkersReRegisterWithANewIdAndAreForgottenLater) {
  const std::string t = Trainer();
  clock_.Advance(absl::Seconds(31));
  coordinator_->Tick();
  EXPECT_EQ(Worker(t).state(), tecl::v1::WORKER_STATE_LOST);
  EXPECT_EQ(Beat(t).status().code(), absl::StatusCode::kNotFound);
  const std::string again = Trainer();
  EXPECT_NE(again, t);
  clock_.Advance(absl::Hours(2));
  EXPECT_TRUE(Beat(again).ok());
  coordinator_->Tick();
  EXPECT_EQ(coordinator_->membership().List(tecl::v1::WORKER_KIND_UNSPECIFIED).size(), 1u);
  EXPECT_EQ(store_.Load()->workers.size(), 1u);
}

TEST_F(CoordinatorTest, RegistrationNeedsAKindAndDataloadersAnAddress) {
  tecl::v1::WorkerInfo info;
  std::optional<absl::StatusOr<tecl::v1::RegisterWorkerResponse>> result;
  coordinator_->membership().Register(info, [&](auto r) { result = r; });
  EXPECT_EQ(result->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result->status().message()), HasSubstr("kind"));
  info.set_kind(tecl::v1::WORKER_KIND_DATALOADER);
  coordinator_->membership().Register(info, [&](auto r) { result = r; });
  EXPECT_EQ(result->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result->status().message()), HasSubstr("address"));
}

// ---- Cancellation ----

TEST_F(CoordinatorTest, CancelStopsTheWorkersAndFreesThem) {
  const std::string pending = SubmitOk(Spec(4, 1));
  ASSERT_TRUE(Cancel(pending).ok());
  EXPECT_EQ(Get(pending).state(), kCancelled);

  const std::string id = SubmitOk(Spec(1, 1));
  const std::string t = Trainer();
  const std::string l = Loader();
  coordinator_->Tick();
  StartRank(t);
  absl::StatusOr<Job> cancelled = Cancel(id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), kCancelled);
  EXPECT_EQ(Stored(id).job.state(), kCancelled);
  EXPECT_EQ(Worker(l).state(), tecl::v1::WORKER_STATE_IDLE);
  absl::StatusOr<HeartbeatResponse> r = Beat(t, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0);
  EXPECT_EQ(r->action(), HeartbeatResponse::ACTION_STOP);
  EXPECT_THAT(r->stop_reason(), HasSubstr("cancelled"));
  EXPECT_TRUE(Report(t, id, 1, 0, tecl::v1::OUTCOME_STOPPED).ok());
  EXPECT_EQ(Worker(t).state(), tecl::v1::WORKER_STATE_IDLE);
  EXPECT_EQ(Get(id).state(), kCancelled);

  absl::StatusOr<Job> again = Cancel(id);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("already finished (cancelled)"));
  EXPECT_EQ(Cancel("job-404").status().code(), absl::StatusCode::kNotFound);
}

// ---- Checkpoints ----

TEST_F(CoordinatorTest, CheckpointsAreValidatedAndTheNewestIsTheJobs) {
  const std::string id = SubmitOk(Spec(1, 1));
  const std::string t = Trainer();
  Loader();
  coordinator_->Tick();
  StartRank(t);
  EXPECT_EQ(Checkpoint(t, id, 1, 10, "").code(), absl::StatusCode::kOk);
  tecl::v1::RegisterCheckpointRequest empty;
  empty.set_worker_id(t);
  empty.set_job_id(id);
  empty.mutable_checkpoint()->set_attempt(1);
  std::optional<absl::Status> status;
  coordinator_->checkpoints().Register(empty, sessions_[t], [&](absl::Status s) { status = s; });
  EXPECT_EQ(status->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Checkpoint(t, id, 1, 1001).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Checkpoint(t, id, 1, 30).ok());
  EXPECT_TRUE(Checkpoint(t, id, 1, 20).ok());
  EXPECT_TRUE(Checkpoint(t, id, 1, 30).ok());  // A retried registration.
  EXPECT_EQ(Get(id).latest_checkpoint().step(), 30);
  EXPECT_EQ(Stored(id).checkpoints.size(), 3u);
  EXPECT_EQ(Stored(id).job.latest_checkpoint().step(), 30);
}

absl::Status Reject(Coordinator& coordinator, const std::string& worker, const std::string& session,
                    const std::string& job, int attempt, const tecl::v1::Checkpoint& checkpoint) {
  tecl::v1::RejectCheckpointRequest request;
  request.set_worker_id(worker);
  request.set_job_id(job);
  request.set_attempt(attempt);
  *request.mutable_checkpoint() = checkpoint;
  request.set_reason("SHA-256 differs from the registered one");
  std::optional<absl::Status> status;
  coordinator.checkpoints().Reject(request, session, [&](absl::Status s) { status = s; });
  EXPECT_TRUE(status.has_value());
  return *status;
}

// A corrupt newest checkpoint: the rank that finds it rejects it, the job falls back to the one
// before (with an event), the next attempt resumes from that one, and a restart remembers.
TEST_F(CoordinatorTest, ARejectedCheckpointIsNeverOfferedAgain) {
  const std::string id = SubmitOk(Spec(1, 1));
  const std::string t = Trainer();
  const std::string l = Loader();
  coordinator_->Tick();
  StartRank(t);
  ASSERT_TRUE(Checkpoint(t, id, 1, 100).ok());
  ASSERT_TRUE(Checkpoint(t, id, 1, 200).ok());
  ASSERT_TRUE(Report(t, id, 1, 0, tecl::v1::OUTCOME_FAILED, "peer died").ok());
  coordinator_->Tick();
  tecl::v1::Assignment a = TakeAssignment(t);
  ASSERT_EQ(a.resume_candidates_size(), 2);
  EXPECT_EQ(a.resume_candidates(0).step(), 200);
  EXPECT_EQ(a.resume_candidates(1).step(), 100);
  EXPECT_EQ(a.resume_from().step(), 200);
  // The trainer of attempt 2 finds step 200 corrupt.
  ASSERT_TRUE(Reject(*coordinator_, t, sessions_[t], id, 2, a.resume_candidates(0)).ok());
  EXPECT_TRUE(Reject(*coordinator_, t, sessions_[t], id, 2, a.resume_candidates(0)).ok())
      << "a second rank saying so too";
  EXPECT_EQ(Get(id).latest_checkpoint().step(), 100);
  bool event = false;
  const auto events = coordinator_->jobs().ListEvents(id, 0, 0);
  for (const auto& e : *events) {
    if (e.type() != "checkpoint_rejected") continue;
    event = true;
    EXPECT_EQ(e.step(), 200);
    EXPECT_THAT(e.reason(), HasSubstr("/state/checkpoints/job-000001/step-200: SHA-256 differs"));
  }
  EXPECT_TRUE(event);
  // Refused: a checkpoint the job does not have; a worker of no attempt of the job.
  tecl::v1::Checkpoint unknown;
  unknown.set_step(300);
  unknown.set_attempt(1);
  EXPECT_EQ(Reject(*coordinator_, t, sessions_[t], id, 2, unknown).code(),
            absl::StatusCode::kNotFound);
  const std::string stranger = Trainer();
  EXPECT_EQ(Reject(*coordinator_, stranger, sessions_[stranger], id, 2, a.resume_candidates(1))
                .code(),
            absl::StatusCode::kPermissionDenied);
  // The next attempt starts from step 100, also after a coordinator restart.
  StartRank(t);
  ASSERT_TRUE(Report(t, id, 2, 0, tecl::v1::OUTCOME_FAILED, "again").ok());
  Start();
  EXPECT_EQ(Get(id).latest_checkpoint().step(), 100);
  EXPECT_TRUE(Beat(t).ok());
  EXPECT_TRUE(Beat(l).ok());
  coordinator_->Tick();
  a = TakeAssignment(t);
  EXPECT_EQ(a.attempt(), 3);
  ASSERT_EQ(a.resume_candidates_size(), 1);
  EXPECT_EQ(a.resume_from().step(), 100);
}

TEST_F(CoordinatorTest, CheckpointFoldersAreConfined) {
  CoordinatorOptions options = Options();
  options.jobs.limits.checkpoints.emplace();
  options.jobs.limits.checkpoints->roots = {"/shared/ckpt"};
  options.jobs.limits.checkpoints->default_root = "/state/checkpoints";
  Start(options);
  JobSpec spec = Spec();
  spec.mutable_checkpoint()->set_dir("/home/other-team/ckpt");
  absl::StatusOr<Job> outside = Submit(spec);
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(outside.status().message()),
              HasSubstr("checkpoint.dir: \"/home/other-team/ckpt\" is outside the checkpoint roots"));
  spec.mutable_checkpoint()->set_dir("/state/checkpoints/job-000001");
  EXPECT_THAT(std::string(Submit(spec).status().message()),
              HasSubstr("lies in the coordinator's own checkpoint folder"));
  spec.mutable_checkpoint()->set_dir("/shared/ckpt/team-a");
  ASSERT_TRUE(Submit(spec).ok());
  // Another job may not take the same folder, one inside it, or one around it.
  for (const char* dir : {"/shared/ckpt/team-a", "/shared/ckpt/team-a/run2", "/shared/ckpt"}) {
    spec.mutable_checkpoint()->set_dir(dir);
    absl::StatusOr<Job> overlapping = Submit(spec);
    EXPECT_EQ(overlapping.status().code(), absl::StatusCode::kInvalidArgument) << dir;
    EXPECT_THAT(std::string(overlapping.status().message()),
                HasSubstr("overlaps the checkpoint folder of job job-000001"));
  }
  spec.mutable_checkpoint()->set_dir("/shared/ckpt/team-b");
  EXPECT_TRUE(Submit(spec).ok());
  // Evaluations read checkpoints under the roots or the coordinator's own folder only.
  JobSpec eval = DefaultJobSpec(tecl::v1::JOB_KIND_EVAL, "tiny3d");
  eval.set_name("eval");
  eval.mutable_dataset()->set_root("/data/synth");
  eval.mutable_dataset()->set_train_list("trainlist.txt");
  eval.mutable_dataset()->set_test_list("testlist.txt");
  eval.mutable_eval()->set_checkpoint("/home/other-team/model.tecl");
  EXPECT_THAT(std::string(Submit(eval).status().message()),
              HasSubstr("eval.checkpoint: \"/home/other-team/model.tecl\" is outside"));
  eval.mutable_eval()->set_checkpoint("/state/checkpoints/job-000001/ckpt-000000000100.tecl");
  const absl::StatusOr<Job> inside = Submit(eval);
  EXPECT_TRUE(inside.ok()) << inside.status();
  EXPECT_EQ(store_.Load()->jobs.size(), 3u) << "refused specs stored nothing";
}

// ---- Evaluation jobs ----

TEST_F(CoordinatorTest, AnEvalJobWaitsForItsSourceAndEvaluatesItsNewestCheckpoint) {
  const std::string pretrain = SubmitOk(Spec(1, 1));
  JobSpec eval = DefaultJobSpec(tecl::v1::JOB_KIND_EVAL, "tiny3d");
  eval.mutable_dataset()->set_root("/data/synth");
  eval.mutable_dataset()->set_train_list("train.txt");
  eval.mutable_dataset()->set_test_list("test.txt");
  eval.mutable_eval()->set_source_job_id("job-404");
  EXPECT_THAT(std::string(Submit(eval).status().message()), HasSubstr("eval.source_job_id"));
  eval.mutable_eval()->set_source_job_id(pretrain);
  const std::string evaluation = SubmitOk(eval);
  EXPECT_THAT(Get(evaluation).reason(), HasSubstr("waiting for job " + pretrain + " to finish"));
  const std::string t = Trainer();
  Loader();
  coordinator_->Tick();
  EXPECT_EQ(Get(pretrain).state(), kScheduled);
  StartRank(t);
  ASSERT_TRUE(Checkpoint(t, pretrain, 1, 1000).ok());
  ASSERT_TRUE(Report(t, pretrain, 1, 0, tecl::v1::OUTCOME_SUCCEEDED).ok());
  coordinator_->Tick();
  ASSERT_EQ(Get(evaluation).state(), kScheduled);
  tecl::v1::Assignment a = StartRank(t);
  EXPECT_EQ(a.resume_from().path(), "/state/checkpoints/job-000001/step-1000");
  tecl::v1::ReportOutcomeRequest done;
  done.set_worker_id(t);
  done.set_job_id(evaluation);
  done.set_attempt(1);
  done.set_outcome(tecl::v1::OUTCOME_SUCCEEDED);
  done.mutable_eval_result()->set_encoder("job " + pretrain + " step 1000");
  auto* r1 = done.mutable_eval_result()->add_retrieval();
  r1->set_k(1);
  r1->set_recall(0.42);
  std::optional<absl::Status> status;
  coordinator_->attempts().ReportOutcome(done, sessions_[t], [&](absl::Status s) { status = s; });
  ASSERT_TRUE(status->ok());
  EXPECT_EQ(Get(evaluation).state(), kSucceeded);
  EXPECT_DOUBLE_EQ(Stored(evaluation).job.eval_result().retrieval(0).recall(), 0.42);
}

TEST_F(CoordinatorTest, AnEvalJobFailsWhenItsSourceEndsWithoutACheckpoint) {
  const std::string pretrain = SubmitOk(Spec(1, 1));
  JobSpec eval = DefaultJobSpec(tecl::v1::JOB_KIND_EVAL, "tiny3d");
  eval.mutable_dataset()->set_root("/data/synth");
  eval.mutable_dataset()->set_train_list("train.txt");
  eval.mutable_dataset()->set_test_list("test.txt");
  eval.mutable_eval()->set_source_job_id(pretrain);
  const std::string evaluation = SubmitOk(eval);
  ASSERT_TRUE(Cancel(pretrain).ok());
  coordinator_->Tick();
  EXPECT_EQ(Get(evaluation).state(), kFailed);
  EXPECT_THAT(Get(evaluation).reason(), HasSubstr("without a checkpoint"));
}

// ---- Reads ----

TEST_F(CoordinatorTest, ListJobsIsNewestFirstWithFiltersAndPages) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(SubmitOk(Spec()));
  ASSERT_TRUE(Cancel(ids[1]).ok());
  auto page = coordinator_->jobs().List({}, 2, "");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 2u);
  EXPECT_EQ(page->jobs[0].id(), ids[4]);
  EXPECT_EQ(page->jobs[1].id(), ids[3]);
  page = coordinator_->jobs().List({}, 2, page->next_page_token);
  EXPECT_EQ(page->jobs[0].id(), ids[2]);
  page = coordinator_->jobs().List({}, 2, page->next_page_token);
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_EQ(page->jobs[0].id(), ids[0]);
  EXPECT_TRUE(page->next_page_token.empty());
  auto cancelled = coordinator_->jobs().List({kCancelled}, 0, "");
  ASSERT_EQ(cancelled->jobs.size(), 1u);
  EXPECT_EQ(cancelled->jobs[0].id(), ids[1]);
  EXPECT_EQ(coordinator_->jobs().List({}, 1001, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(coordinator_->jobs().List({}, -1, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(coordinator_->jobs().List({}, 0, "bogus").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CoordinatorTest, ListEventsAfterASeqWithALimit) {
  const std::string id = SubmitOk(Spec());
  ASSERT_TRUE(Cancel(id).ok());
  auto events = coordinator_->jobs().ListEvents(id, 0, 0);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1].to_state(), kCancelled);
  EXPECT_EQ(coordinator_->jobs().ListEvents(id, 1, 0)->size(), 1u);
  EXPECT_EQ(coordinator_->jobs().ListEvents(id, 0, 1)->size(), 1u);
  EXPECT_EQ(coordinator_->jobs().ListEvents("job-404", 0, 0).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, WatchersHearOfChanges) {
  const std::string id = SubmitOk(Spec());
  int calls = 0;
  const auto watch = coordinator_->host().Watch(id, [&] {
    ++calls;
    EXPECT_TRUE(coordinator_->jobs().Get(id).ok());  // Watchers may read.
  });
  ASSERT_TRUE(Cancel(id).ok());
  EXPECT_EQ(calls, 1);
  coordinator_->host().Unwatch(watch);
  SubmitOk(Spec());
  EXPECT_EQ(calls, 1);
}

// ---- Restart of the coordinator ----

TEST_F(CoordinatorTest, RestoreRebuildsJobsWorkersAndAttempts) {
  const std::string id = SubmitOk(Spec(1, 1));
  const std::string t = Trainer();
  const std::string l = Loader();
  coordinator_->Tick();
  StartRank(t);
  ASSERT_TRUE(Checkpoint(t, id, 1, 100).ok());
  const std::string queued = SubmitOk(Spec(1, 1));
  const Job before = Get(id);

  Start();  // A new manager on the same store.
  Job after = Get(id);
  EXPECT_EQ(after.state(), kRunning);
  EXPECT_EQ(after.attempt(), 1);
  EXPECT_EQ(after.latest_checkpoint().step(), 100);
  EXPECT_EQ(Get(queued).state(), kPending);
  EXPECT_EQ(Worker(t).state(), tecl::v1::WORKER_STATE_BUSY);
  // The running rank carries on: its heartbeats are recognised, the rendezvous scope is open.
  EXPECT_EQ(Beat(t, tecl::v1::TRAINER_STATUS_RUNNING, id, 1, 0)->action(),
            HeartbeatResponse::ACTION_NONE);
  EXPECT_TRUE(rendezvous_->Set({id, 1}, "k", "v").ok());
  // New jobs get new ids.
  EXPECT_EQ(SubmitOk(Spec()), "job-000003");
  ASSERT_TRUE(Report(t, id, 1, 0, tecl::v1::OUTCOME_SUCCEEDED).ok());
  EXPECT_EQ(Get(id).state(), kSucceeded);
}

// Idle workers known only from the store after a restart may be gone (a local cluster restarted
// with new processes): a job is not placed on them until they show up again.
TEST_F(CoordinatorTest, RestoredIdleWorkersGetWorkOnlyAfterTheyShowUp) {
  const std::string t = Trainer();
  const std::string l = Loader();
  Start();  // A coordinator restart: t and l are restored, not heard from.
  const std::string id = SubmitOk(Spec(1, 1));
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kPending) << "placed on workers that have not shown up";
  ASSERT_TRUE(Beat(t).ok());
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kPending) << "the dataloader has not shown up yet";
  ASSERT_TRUE(Beat(l).ok());
  coordinator_->Tick();
  EXPECT_EQ(Get(id).state(), kScheduled);
}

TEST_F(CoordinatorTest, MetricsCountJobsAndWorkers) {
  SubmitOk(Spec(2, 1));
  Trainer();
  const std::string text = registry_->Serialize();
  EXPECT_THAT(text, HasSubstr("tecl_coordinator_jobs{state=\"pending\"} 1"));
  EXPECT_THAT(text, HasSubstr("tecl_coordinator_workers{kind=\"trainer\",state=\"idle\"} 1"));
  EXPECT_THAT(text, HasSubstr("tecl_coordinator_worker_heartbeat_age_seconds{"));
}

}  // namespace
}  // namespace tecl::coordinator
