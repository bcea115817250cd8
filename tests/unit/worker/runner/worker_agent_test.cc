// WorkerAgent against a scripted coordinator served on 127.0.0.1:0.
#include "services/worker/runner/worker_agent.h"

#include <deque>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/auth.h"
#include "services/common/server.h"

namespace tecl::worker {
namespace {

using ::testing::HasSubstr;

// Answers heartbeats from a script; records everything it is told.
class ScriptedCoordinator final : public tecl::v1::Coordinator::CallbackService {
 public:
  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* context,
                                           const tecl::v1::RegisterWorkerRequest* request,
                                           tecl::v1::RegisterWorkerResponse* response) override {
    absl::MutexLock lock(&mu_);
    registrations_.push_back(request->worker());
    response->set_worker_id(absl::StrCat("w", registrations_.size()));
    response->set_heartbeat_interval_ms(20);
    return Done(context);
  }

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const tecl::v1::HeartbeatRequest* request,
                                      tecl::v1::HeartbeatResponse* response) override {
    absl::MutexLock lock(&mu_);
    heartbeats_.push_back(*request);
    if (!known_.empty() && request->worker_id() != known_) {
      auto* reactor = context->DefaultReactor();
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown worker"));
      return reactor;
    }
    response->set_heartbeat_interval_ms(20);
    if (!script_.empty()) {
      *response = script_.front();
      script_.pop_front();
    }
    return Done(context);
  }

  grpc::ServerUnaryReactor* ReportOutcome(grpc::CallbackServerContext* context,
                                          const tecl::v1::ReportOutcomeRequest* request,
                                          tecl::v1::ReportOutcomeResponse*) override {
    absl::MutexLock lock(&mu_);
    outcomes_.push_back(*request);
    return Done(context);
  }

  grpc::ServerUnaryReactor* RegisterCheckpoint(grpc::CallbackServerContext* context,
                                               const tecl::v1::RegisterCheckpointRequest* request,
                                               tecl::v1::RegisterCheckpointResponse*) override {
    absl::MutexLock lock(&mu_);
    checkpoints_.push_back(*request);
    return Done(context);
  }

  void Push(tecl::v1::HeartbeatResponse response) {
    absl::MutexLock lock(&mu_);
    script_.push_back(std::move(response));
  }
  void SetKnownWorker(std::string id) {
    absl::MutexLock lock(&mu_);
    known_ = std::move(id);
  }
  template <typename Predicate>
  void AwaitState(Predicate predicate) {
    absl::MutexLock lock(&mu_);
    auto condition = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return predicate(*this); };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&condition), absl::Seconds(30)));
  }

  std::vector<tecl::v1::WorkerInfo> registrations_;
  std::vector<tecl::v1::HeartbeatRequest> heartbeats_;
  std::vector<tecl::v1::ReportOutcomeRequest> outcomes_;
  std::vector<tecl::v1::RegisterCheckpointRequest> checkpoints_;
  absl::Mutex mu_;

 private:
  static grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  std::deque<tecl::v1::HeartbeatResponse> script_;
  std::string known_;
};

tecl::v1::HeartbeatResponse RunOrder(const std::string& job, int attempt) {
  tecl::v1::HeartbeatResponse response;
  response.set_action(tecl::v1::HeartbeatResponse::ACTION_RUN);
  response.set_heartbeat_interval_ms(20);
  response.mutable_assignment()->set_job_id(job);
  response.mutable_assignment()->set_attempt(attempt);
  response.mutable_assignment()->set_rank(0);
  response.mutable_assignment()->set_world_size(1);
  return response;
}

class WorkerAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.metrics_address = "";
    auto server = GrpcServer::Start(options, {&coordinator_}, nullptr);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = MakeChannel(server_->local_address(), {});
    stub_ = tecl::v1::Coordinator::NewStub(*channel);
  }

  std::unique_ptr<WorkerAgent> MakeAgent(JobExecutor executor) {
    WorkerAgentOptions options;
    options.worker.set_kind(tecl::v1::WORKER_KIND_TRAINER);
    options.worker.set_threads(1);
    options.retry_backoff = absl::Milliseconds(20);
    return std::make_unique<WorkerAgent>(options, stub_, std::move(executor), &registry_);
  }

  ScriptedCoordinator coordinator_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<tecl::v1::Coordinator::StubInterface> stub_;
  metrics::Registry registry_;
};

TEST_F(WorkerAgentTest, RunsAnAssignmentReportsItAndGoesIdle) {
  coordinator_.Push(RunOrder("job-1", 1));
  auto agent = MakeAgent([](const tecl::v1::Assignment& a, RunContext* context) {
    tecl::v1::JobProgress progress;
    progress.set_step(7);
    context->ReportProgress(tecl::v1::TRAINER_STATUS_RUNNING, progress, 0.1, 0.01, 0.02);
    tecl::v1::Checkpoint checkpoint;
    checkpoint.set_step(7);
    checkpoint.set_path("/tmp/ckpt-7");
    EXPECT_TRUE(context->RegisterCheckpoint(checkpoint).ok());
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_SUCCEEDED;
    outcome.step = 7;
    return outcome;
  });
  agent->Start();
  coordinator_.AwaitState([](ScriptedCoordinator& c) {
    return !c.outcomes_.empty() && c.heartbeats_.size() > 3 &&
           c.heartbeats_.back().status() == tecl::v1::TRAINER_STATUS_IDLE;
  });
  agent->Shutdown();
  absl::MutexLock lock(&coordinator_.mu_);
  ASSERT_EQ(coordinator_.outcomes_.size(), 1u);
  EXPECT_EQ(coordinator_.outcomes_[0].job_id(), "job-1");
  EXPECT_EQ(coordinator_.outcomes_[0].worker_id(), "w1");
  EXPECT_EQ(coordinator_.outcomes_[0].outcome(), tecl::v1::OUTCOME_SUCCEEDED);
  EXPECT_EQ(coordinator_.outcomes_[0].step(), 7);
  ASSERT_EQ(coordinator_.checkpoints_.size(), 1u);
  EXPECT_EQ(coordinator_.checkpoints_[0].checkpoint().path(), "/tmp/ckpt-7");
  EXPECT_EQ(coordinator_.registrations_.size(), 1u);
  EXPECT_EQ(agent->jobs_run(), 1);
}

TEST_F(WorkerAgentTest, StopOrderStopsTheRunAndItIsReportedStopped) {
  coordinator_.Push(RunOrder("job-2", 3));
  absl::Notification running;
  auto agent = MakeAgent([&](const tecl::v1::Assignment&, RunContext* context) {
    context->ReportProgress(tecl::v1::TRAINER_STATUS_RUNNING, {}, 0, 0, 0);
    running.Notify();
    while (!context->StopRequested()) absl::SleepFor(absl::Milliseconds(5));
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_STOPPED;
    outcome.reason = context->StopReason();
    return outcome;
  });
  agent->Start();
  running.WaitForNotification();
  coordinator_.AwaitState([](ScriptedCoordinator& c) {
    return !c.heartbeats_.empty() && c.heartbeats_.back().status() == tecl::v1::TRAINER_STATUS_RUNNING;
  });
  tecl::v1::HeartbeatResponse stop;
  stop.set_action(tecl::v1::HeartbeatResponse::ACTION_STOP);
  stop.set_stop_reason("job cancelled by user");
  coordinator_.Push(stop);
  coordinator_.AwaitState([](ScriptedCoordinator& c) { return !c.outcomes_.empty(); });
  agent->Shutdown();
  absl::MutexLock lock(&coordinator_.mu_);
  EXPECT_EQ(coordinator_.outcomes_[0].outcome(), tecl::v1::OUTCOME_STOPPED);
  EXPECT_EQ(coordinator_.outcomes_[0].reason(), "job cancelled by user");
  EXPECT_EQ(coordinator_.outcomes_[0].attempt(), 3);
}

TEST_F(WorkerAgentTest, ForgottenWorkerStopsItsRunAndRegistersAgain) {
  coordinator_.Push(RunOrder("job-3", 1));
  auto agent = MakeAgent([&](const tecl::v1::Assignment&, RunContext* context) {
    while (!context->StopRequested()) absl::SleepFor(absl::Milliseconds(5));
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_STOPPED;
    outcome.reason = context->StopReason();
    return outcome;
  });
  agent->Start();
  coordinator_.AwaitState([](ScriptedCoordinator& c) {
    return !c.heartbeats_.empty() && c.heartbeats_.back().job_id() == "job-3";
  });
  coordinator_.SetKnownWorker("w2");  // w1 is now unknown: NOT_FOUND.
  coordinator_.AwaitState([](ScriptedCoordinator& c) {
    return c.registrations_.size() == 2 && !c.outcomes_.empty();
  });
  agent->Shutdown();
  absl::MutexLock lock(&coordinator_.mu_);
  EXPECT_THAT(coordinator_.outcomes_[0].reason(), HasSubstr("declared this worker lost"));
  EXPECT_EQ(agent->worker_id(), "w2");
}

TEST_F(WorkerAgentTest, ShutdownDuringARunReportsStopped) {
  coordinator_.Push(RunOrder("job-4", 1));
  absl::Notification running;
  auto agent = MakeAgent([&](const tecl::v1::Assignment&, RunContext* context) {
    running.Notify();
    while (!context->StopRequested()) absl::SleepFor(absl::Milliseconds(5));
    JobOutcome outcome;
    outcome.outcome = tecl::v1::OUTCOME_STOPPED;
    outcome.reason = context->StopReason();
    return outcome;
  });
  agent->Start();
  running.WaitForNotification();
  agent->Shutdown();
  absl::MutexLock lock(&coordinator_.mu_);
  ASSERT_EQ(coordinator_.outcomes_.size(), 1u);
  EXPECT_THAT(coordinator_.outcomes_[0].reason(), HasSubstr("shutting down"));
}

}  // namespace
}  // namespace tecl::worker
