// WorkerAgent against the coordinator's real logic run in process (FakeCoordinatorClient over the
// managers, a FakeJobStore and a FakeClock): assignments arrive through the membership protocol,
// outcomes and checkpoints land in the job, stop orders and lost registrations stop the run, new
// dataloader lists reach the run.
#include "services/worker/runner/worker_agent.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/logging.h"
#include "services/coordinator/manager/coordinator.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/coordinator/store/fake_job_store.h"
#include "tests/testing/fake_coordinator_client.h"

namespace tecl::worker {
namespace {

using ::testing::HasSubstr;

class WorkerAgentTest : public ::testing::Test {
 protected:
  WorkerAgentTest() {
    coordinator::CoordinatorOptions options;
    options.checkpoints.checkpoint_root = "/ckpt";
    options.membership.heartbeat_interval = absl::Milliseconds(10);
    coordinator_ = std::make_unique<coordinator::Coordinator>(options, &store_, &clock_, nullptr,
                                                              nullptr);
    EXPECT_TRUE(coordinator_->Restore().ok());
    client_ = std::make_shared<FakeCoordinatorClient>(coordinator_.get());
    tecl::v1::WorkerInfo loader;
    loader.set_kind(tecl::v1::WORKER_KIND_DATALOADER);
    loader.set_address("127.0.0.1:1");
    loader_ = client_->RegisterWorker(loader)->worker_id();
  }
  ~WorkerAgentTest() override {
    if (agent_ != nullptr) agent_->Shutdown();
  }

  // A one-trainer job; placed once the agent registered.
  std::string Submit() {
    tecl::v1::JobSpec spec =
        coordinator::DefaultJobSpec(tecl::v1::JOB_KIND_PRETRAIN, "tiny3d");
    spec.set_name("agent-test");
    spec.mutable_dataset()->set_root("/data");
    spec.mutable_schedule()->set_total_steps(10);
    spec.mutable_schedule()->set_warmup_steps(1);
    spec.mutable_restart()->set_heartbeat_timeout_s(10);
    absl::StatusOr<tecl::v1::Job> job = client_->SubmitJob(spec, "");
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }

  void StartAgent(JobExecutor executor) {
    WorkerAgentOptions options;
    options.worker.set_kind(tecl::v1::WORKER_KIND_TRAINER);
    options.worker.set_device(tecl::v1::DEVICE_CPU);
    options.worker.set_threads(1);
    options.backoff = {absl::Milliseconds(5), absl::Milliseconds(20), 2.0, 0.2};
    agent_ = std::make_unique<WorkerAgent>(options, client_, std::move(executor), &registry_);
    agent_->Start();
  }

  // Ticks the coordinator (scheduling, timeouts) until `done` holds; false after 30 s.
  template <typename Predicate>
  bool Eventually(Predicate done) {
    const absl::Time end = absl::Now() + absl::Seconds(30);
    while (!done()) {
      if (absl::Now() > end) return false;
      coordinator_->Tick();
      absl::SleepFor(absl::Milliseconds(2));
    }
    return true;
  }

  tecl::v1::Job Job(const std::string& id) { return *coordinator_->jobs().Get(id); }
  std::vector<tecl::v1::JobEvent> Outcomes(const std::string& id) {
    std::vector<tecl::v1::JobEvent> outcomes;
    auto events = coordinator_->jobs().ListEvents(id, 0, 0);
    for (auto& e : *events) {
      if (e.type() == "outcome") outcomes.push_back(std::move(e));
    }
    return outcomes;
  }

  FakeClock clock_;
  coordinator::FakeJobStore store_;
  std::unique_ptr<coordinator::Coordinator> coordinator_;
  std::shared_ptr<FakeCoordinatorClient> client_;
  std::string loader_;
  metrics::Registry registry_;
  std::unique_ptr<WorkerAgent> agent_;
};

TEST_F(WorkerAgentTest, RunsAnAssignmentReportsItAndGoesIdle) {
  const std::string id = Submit();
  StartAgent([](const tecl::v1::Assignment& a, RunContext* context) {
    tecl::v1::JobProgress progress;
    progress.set_step(7);
    context->ReportProgress(tecl::v1::TRAINER_STATUS_RUNNING, progress, 0.1, 0.01, 0.02);
    tecl::v1::Checkpoint checkpoint;
    checkpoint.set_step(7);
    checkpoint.set_attempt(a.attempt());
    checkpoint.set_path(a.checkpoint_dir() + "/ckpt-7");
    EXPECT_TRUE(context->RegisterCheckpoint(checkpoint).ok());
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_SUCCEEDED;
    outcome.step = 7;
    outcome.progress = progress;
    return outcome;
  });
  ASSERT_TRUE(Eventually([&] { return Job(id).state() == tecl::v1::JOB_STATE_SUCCEEDED; }))
      << Job(id).ShortDebugString();
  const tecl::v1::Job job = Job(id);
  EXPECT_EQ(job.latest_checkpoint().path(), "/ckpt/" + id + "/ckpt-7");
  EXPECT_EQ(job.progress().step(), 7);
  ASSERT_EQ(Outcomes(id).size(), 1u);
  EXPECT_EQ(Outcomes(id)[0].step(), 7);
  // It goes back to idle and stays registered once.
  ASSERT_TRUE(Eventually([&] {
    const auto workers = coordinator_->membership().List(tecl::v1::WORKER_KIND_TRAINER);
    for (const auto& w : workers) {
      if (w.id() == agent_->worker_id()) return w.state() == tecl::v1::WORKER_STATE_IDLE;
    }
    return false;
  }));
  EXPECT_EQ(agent_->jobs_run(), 1);
  EXPECT_EQ(client_->calls("RegisterWorker"), 2);  // The loader's and the agent's.
}

// What the process logs during a run reaches the coordinator's tail of the job (teclctl logs),
// through heartbeats, with the run's rank; lines logged while the coordinator was unreachable
// wait and arrive once it answers again; nothing logged outside a run is sent.
TEST_F(WorkerAgentTest, TheRunsLogLinesReachTheCoordinatorInHeartbeats) {
  const std::string id = Submit();
  absl::Notification logged_in_outage;
  absl::Notification coordinator_back;
  StartAgent([&](const tecl::v1::Assignment& a, RunContext*) {
    TECL_LOG(INFO) << "job " << a.job_id() << ": first line of the run";
    client_->SetUnreachable(true);
    TECL_LOG(WARNING) << "logged while the coordinator is down";
    logged_in_outage.Notify();
    coordinator_back.WaitForNotification();
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_SUCCEEDED;
    return outcome;
  });
  TECL_LOG(INFO) << "logged before any run";
  ASSERT_TRUE(Eventually([&] { return logged_in_outage.HasBeenNotified(); }));
  absl::SleepFor(absl::Milliseconds(100));  // Heartbeats fail meanwhile.
  client_->SetUnreachable(false);
  coordinator_back.Notify();
  std::vector<std::string> texts;
  ASSERT_TRUE(Eventually([&] {
    tecl::v1::GetJobLogsRequest request;
    request.set_job_id(id);
    request.set_rank(0);
    texts.clear();
    const absl::StatusOr<tecl::v1::GetJobLogsResponse> page = coordinator_->GetJobLogs(request);
    EXPECT_TRUE(page.ok()) << page.status();
    for (const auto& line : page->lines()) {
      EXPECT_EQ(line.attempt(), 1);
      EXPECT_EQ(line.worker_id(), agent_->worker_id());
      texts.push_back(line.text());
    }
    // (The coordinator runs in this process: its lines during the run are the run's too.)
    return absl::StrContains(absl::StrJoin(texts, "\n"), "ended: OUTCOME_SUCCEEDED");
  })) << absl::StrJoin(texts, "\n");
  const std::string all = absl::StrJoin(texts, "\n");
  EXPECT_THAT(all, HasSubstr("running job " + id + " attempt 1 as rank 0/1"));
  EXPECT_THAT(all, HasSubstr(": first line of the run"));
  EXPECT_THAT(all, HasSubstr("logged while the coordinator is down"));
  EXPECT_THAT(all, ::testing::Not(HasSubstr("logged before any run")));
  EXPECT_THAT(all, ::testing::Not(HasSubstr("were lost")));
}

TEST_F(WorkerAgentTest, AStopOrderStopsTheRunAndItIsReportedStopped) {
  const std::string id = Submit();
  absl::Notification running;
  StartAgent([&](const tecl::v1::Assignment&, RunContext* context) {
    context->ReportProgress(tecl::v1::TRAINER_STATUS_RUNNING, {}, 0, 0, 0);
    running.Notify();
    while (!context->StopRequested()) absl::SleepFor(absl::Milliseconds(2));
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_STOPPED;
    outcome.reason = context->StopReason();
    return outcome;
  });
  ASSERT_TRUE(Eventually([&] { return running.HasBeenNotified(); }));
  ASSERT_TRUE(client_->CancelJob(id, "no longer needed").ok());
  ASSERT_TRUE(Eventually([&] { return !Outcomes(id).empty(); }));
  EXPECT_THAT(Outcomes(id)[0].reason(), HasSubstr("stopped: cancelled: no longer needed"));
  EXPECT_EQ(Job(id).state(), tecl::v1::JOB_STATE_CANCELLED);
}

TEST_F(WorkerAgentTest, AForgottenWorkerStopsItsRunAndRegistersAgain) {
  const std::string id = Submit();
  absl::Notification running;
  absl::Mutex mu;
  std::string stop_reason;
  StartAgent([&](const tecl::v1::Assignment&, RunContext* context) {
    context->ReportProgress(tecl::v1::TRAINER_STATUS_RUNNING, {}, 0, 0, 0);
    running.Notify();
    while (!context->StopRequested()) absl::SleepFor(absl::Milliseconds(2));
    absl::MutexLock lock(&mu);
    stop_reason = context->StopReason();
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_STOPPED;
    outcome.reason = stop_reason;
    return outcome;
  });
  ASSERT_TRUE(Eventually([&] { return running.HasBeenNotified(); }));
  const std::string first_id = agent_->worker_id();
  // Silence past the job's 10 s heartbeat timeout: the coordinator declares the worker lost.
  ASSERT_TRUE(Eventually([&] {
    clock_.Advance(absl::Seconds(11));
    coordinator_->Tick();
    return Job(id).state() == tecl::v1::JOB_STATE_RECOVERING;
  }));
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return !stop_reason.empty() && !agent_->worker_id().empty() &&
           agent_->worker_id() != first_id;
  }));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(stop_reason, HasSubstr("declared this worker lost"));
}

// A rank with two dataloaders loses one, then gets a replacement: the run sees each new list
// through its RunContext, and the job goes on without a restart.
TEST_F(WorkerAgentTest, TheRunHearsOfItsNewDataloaders) {
  tecl::v1::WorkerInfo info;
  info.set_kind(tecl::v1::WORKER_KIND_DATALOADER);
  info.set_address("127.0.0.1:2");
  const tecl::v1::RegisterWorkerResponse kept = *client_->RegisterWorker(info);
  tecl::v1::JobSpec spec = coordinator::DefaultJobSpec(tecl::v1::JOB_KIND_PRETRAIN, "tiny3d");
  spec.set_name("agent-test");
  spec.mutable_dataset()->set_root("/data");
  spec.mutable_resources()->set_dataloaders_per_trainer(2);
  spec.mutable_restart()->set_heartbeat_timeout_s(10);
  const std::string id = client_->SubmitJob(spec, "")->id();
  absl::Mutex mu;
  std::vector<DataloaderList> seen;
  StartAgent([&](const tecl::v1::Assignment&, RunContext* context) {
    {
      absl::MutexLock lock(&mu);
      seen.push_back(context->Dataloaders());
    }
    context->ReportProgress(tecl::v1::TRAINER_STATUS_RUNNING, {}, 0, 0, 0);
    while (!context->StopRequested()) {
      DataloaderList now = context->Dataloaders();
      {
        absl::MutexLock lock(&mu);
        if (now.version != seen.back().version) seen.push_back(std::move(now));
        if (seen.back().version == 2) break;
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_SUCCEEDED;
    return outcome;
  });
  ASSERT_TRUE(Eventually([&] { return Job(id).state() == tecl::v1::JOB_STATE_RUNNING; }));
  // The first loader falls silent past the job's 10 s timeout; the trainer and the other loader
  // keep heartbeating.
  for (int i = 0; i < 11; ++i) {
    clock_.Advance(absl::Seconds(1));
    tecl::v1::HeartbeatRequest beat;
    beat.set_worker_id(kept.worker_id());
    ASSERT_TRUE(client_->Heartbeat(beat, kept.session_token()).ok());
    const int before = client_->calls("Heartbeat");
    ASSERT_TRUE(Eventually([&] { return client_->calls("Heartbeat") > before; }));
  }
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return seen.size() == 2;
  }));
  info.set_address("127.0.0.1:3");
  ASSERT_TRUE(client_->RegisterWorker(info).ok());
  ASSERT_TRUE(Eventually([&] { return Job(id).state() == tecl::v1::JOB_STATE_SUCCEEDED; }))
      << Job(id).ShortDebugString();
  EXPECT_EQ(Job(id).restarts(), 0);
  absl::MutexLock lock(&mu);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].version, 0);
  EXPECT_THAT(seen[0].addresses, ::testing::UnorderedElementsAre("127.0.0.1:1", "127.0.0.1:2"));
  EXPECT_EQ(seen[1].version, 1);
  EXPECT_THAT(seen[1].addresses, ::testing::ElementsAre("127.0.0.1:2"));
  EXPECT_EQ(seen[2].version, 2);
  EXPECT_THAT(seen[2].addresses, ::testing::ElementsAre("127.0.0.1:2", "127.0.0.1:3"));
}

TEST_F(WorkerAgentTest, ShutdownDuringARunReportsStopped) {
  const std::string id = Submit();
  absl::Notification running;
  StartAgent([&](const tecl::v1::Assignment&, RunContext* context) {
    running.Notify();
    while (!context->StopRequested()) absl::SleepFor(absl::Milliseconds(2));
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_STOPPED;
    outcome.reason = context->StopReason();
    return outcome;
  });
  ASSERT_TRUE(Eventually([&] { return running.HasBeenNotified(); }));
  agent_->Shutdown();
  ASSERT_EQ(Outcomes(id).size(), 1u);
  EXPECT_THAT(Outcomes(id)[0].reason(), HasSubstr("shutting down"));
  // Stopped without an order: the attempt failed and the job waits for a new gang.
  EXPECT_EQ(Job(id).state(), tecl::v1::JOB_STATE_RECOVERING);
}

}  // namespace
}  // namespace tecl::worker
