// The gRPC CoordinatorClient against scripted services on 127.0.0.1:0: reports are retried on
// UNAVAILABLE (and only then, and at most max_attempts times), a submit is retried only when it
// carries a request id, every call has a deadline, and errors keep their code and message.
#include "services/client/grpc_coordinator_client.h"

#include <deque>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/auth.h"
#include "services/common/server.h"

namespace tecl {
namespace {

using ::testing::HasSubstr;

// Answers every call with the next scripted status (OK once the script is empty) and counts calls.
class Script {
 public:
  void Push(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    statuses_.push_back(std::move(status));
  }
  grpc::Status Next() {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (statuses_.empty()) return grpc::Status::OK;
    grpc::Status status = statuses_.front();
    statuses_.pop_front();
    return status;
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<grpc::Status> statuses_;
  int calls_ = 0;
};

class ScriptedMembership final : public tecl::v1::MembershipService::CallbackService {
 public:
  grpc::ServerUnaryReactor* ReportOutcome(grpc::CallbackServerContext* context,
                                          const tecl::v1::ReportOutcomeRequest*,
                                          tecl::v1::ReportOutcomeResponse*) override {
    {
      absl::MutexLock lock(&mu_);
      last_session_ = SessionOf(*context);
    }
    auto* reactor = context->DefaultReactor();
    reactor->Finish(script.Next());
    return reactor;
  }
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const tecl::v1::HeartbeatRequest*,
                                      tecl::v1::HeartbeatResponse*) override {
    // Never answers until the client gives up (the call is cancelled).
    auto* reactor = context->DefaultReactor();
    absl::MutexLock lock(&mu_);
    hanging_.push_back(reactor);
    return reactor;
  }
  std::string last_session() {
    absl::MutexLock lock(&mu_);
    return last_session_;
  }
  void FinishHanging() {
    absl::MutexLock lock(&mu_);
    for (auto* reactor : hanging_) reactor->Finish(grpc::Status::CANCELLED);
    hanging_.clear();
  }
  Script script;

 private:
  absl::Mutex mu_;
  std::vector<grpc::ServerUnaryReactor*> hanging_;
  std::string last_session_;
};

class ScriptedJobs final : public tecl::v1::JobService::CallbackService {
 public:
  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const tecl::v1::SubmitJobRequest* request,
                                      tecl::v1::SubmitJobResponse* response) override {
    response->mutable_job()->set_id("job-000001");
    auto* reactor = context->DefaultReactor();
    reactor->Finish(script.Next());
    return reactor;
  }
  Script script;
};

class GrpcCoordinatorClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.metrics_address = "";
    options.insecure = true;  // The scripted services check nothing; the client is under test.
    auto server = GrpcServer::Start(options, {&membership_, &jobs_}, nullptr);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ClientOptions client_options;
    client_options.rpc_timeout = absl::Milliseconds(300);
    client_options.backoff = {absl::Milliseconds(1), absl::Milliseconds(4), 2.0, 0.2};
    client_options.max_attempts = 4;
    client_ = NewCoordinatorClient(*MakeChannel(server_->local_address(), {}), client_options);
  }
  void TearDown() override {
    membership_.FinishHanging();
    server_->Shutdown(absl::Seconds(1));
  }

  ScriptedMembership membership_;
  ScriptedJobs jobs_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<CoordinatorClient> client_;
};

TEST_F(GrpcCoordinatorClientTest, ReportsAreRetriedWhileUnavailable) {
  membership_.script.Push(grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"));
  membership_.script.Push(grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"));
  EXPECT_TRUE(client_->ReportOutcome({}, "session").ok());
  EXPECT_EQ(membership_.script.calls(), 3);
  EXPECT_EQ(membership_.last_session(), "session") << "the worker's session travels as metadata";
}

TEST_F(GrpcCoordinatorClientTest, RetriesStopAfterMaxAttemptsWithTheLastError) {
  for (int i = 0; i < 10; ++i) {
    membership_.script.Push(grpc::Status(grpc::StatusCode::UNAVAILABLE, "still down"));
  }
  absl::Status status = client_->ReportOutcome({}, "session");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()), HasSubstr("still down"));
  EXPECT_EQ(membership_.script.calls(), 4);
}

TEST_F(GrpcCoordinatorClientTest, OtherErrorsAreNotRetried) {
  membership_.script.Push(grpc::Status(grpc::StatusCode::ABORTED, "attempt 1 is no longer current"));
  absl::Status status = client_->ReportOutcome({}, "session");
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("no longer current"));
  EXPECT_EQ(membership_.script.calls(), 1);
}

TEST_F(GrpcCoordinatorClientTest, ASubmitIsRetriedOnlyWithARequestId) {
  jobs_.script.Push(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  EXPECT_EQ(client_->SubmitJob({}, "").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(jobs_.script.calls(), 1);
  jobs_.script.Push(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  absl::StatusOr<tecl::v1::Job> job = client_->SubmitJob({}, "request-1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->id(), "job-000001");
  EXPECT_EQ(jobs_.script.calls(), 3);
}

TEST_F(GrpcCoordinatorClientTest, EveryCallHasADeadline) {
  // The server never answers: without a deadline this call would block forever.
  absl::StatusOr<tecl::v1::HeartbeatResponse> response = client_->Heartbeat({}, "session");
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(GrpcCoordinatorClientTest, ACallOfAServiceWithoutAStubSaysSo) {
  auto client = NewCoordinatorClient(nullptr, nullptr, nullptr);
  absl::StatusOr<tecl::v1::Job> job = client->GetJob("job-000001");
  EXPECT_EQ(job.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(job.status().message()), HasSubstr("JobService"));
}

}  // namespace
}  // namespace tecl
