// The real coordinator server on 127.0.0.1:0 (SQLite store in a temporary folder), driven through
// its gRPC API with fake workers: job lifecycle, recovery, rendezvous, WatchJob, authentication
// of every rpc, malformed and oversized requests, restart on the same state folder, metrics.
#include "services/coordinator/service/coordinator_server.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/coordinator/fake_worker.h"
#include "tests/integration/coordinator/test_util.h"
#include "tests/testing/http_get.h"

namespace tecl::coordinator {
namespace {

using ::tecl::testing::FakeWorker;
using ::tecl::testing::FakeWorkerOptions;
using tecl::v1::Coordinator;
using ::testing::HasSubstr;

class CoordinatorServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tecl::testing::MakeTempDir("tecl_coordinator_server");
    root_ = tecl::testing::MakeDataset(dir_);
    StartServer();
  }
  void TearDown() override {
    workers_.clear();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Without a metrics endpoint unless asked: stopping it takes civetweb ~2 s.
  void StartServer(std::vector<std::string> tokens = {}, bool metrics = false) {
    workers_.clear();
    server_.reset();
    CoordinatorConfig config;
    config.server.address = "127.0.0.1:0";
    config.server.metrics_address = metrics ? "127.0.0.1:0" : "";
    config.tokens = tokens;
    config.state_dir = dir_ + "/state";
    config.tick_interval = absl::Milliseconds(20);
    config.max_trainers = 8;
    config.data_roots = {dir_ + "/data"};
    auto server = CoordinatorServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = tecl::testing::MakeStub(server_->address(), tokens.empty() ? "" : tokens[0]);
  }

  static std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return context;
  }

  absl::StatusOr<tecl::v1::Job> Submit(const tecl::v1::JobSpec& spec,
                                       const std::string& request_id = "") {
    tecl::v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    request.set_request_id(request_id);
    tecl::v1::SubmitJobResponse response;
    grpc::Status status = stub_->SubmitJob(Context().get(), request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return response.job();
  }

  FakeWorker& AddWorker(tecl::v1::WorkerKind kind,
                        tecl::v1::Outcome outcome = tecl::v1::OUTCOME_SUCCEEDED) {
    FakeWorkerOptions options;
    options.kind = kind;
    options.outcome = outcome;
    workers_.push_back(std::make_unique<FakeWorker>(stub_, options));
    workers_.back()->Start();
    return *workers_.back();
  }

  int JobCount() {
    tecl::v1::ListJobsRequest request;
    tecl::v1::ListJobsResponse response;
    EXPECT_TRUE(stub_->ListJobs(Context().get(), request, &response).ok());
    return response.jobs_size();
  }

  std::string dir_;
  std::string root_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<Coordinator::Stub> stub_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
};

TEST_F(CoordinatorServerTest, AJobRunsToSuccessOnFakeWorkers) {
  absl::StatusOr<tecl::v1::Job> job = Submit(tecl::testing::SmallSpec(root_, 2, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), tecl::v1::JOB_STATE_PENDING);
  for (int i = 0; i < 2; ++i) AddWorker(tecl::v1::WORKER_KIND_TRAINER);
  for (int i = 0; i < 2; ++i) AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  absl::StatusOr<tecl::v1::Job> done =
      tecl::testing::WaitForState(stub_.get(), job->id(), tecl::v1::JOB_STATE_SUCCEEDED);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->progress().step(), 100);
  EXPECT_EQ(done->latest_checkpoint().step(), 100);
  EXPECT_THAT(done->latest_checkpoint().path(), HasSubstr("/state/checkpoints/" + job->id()));

  tecl::v1::ListEventsRequest request;
  request.set_job_id(job->id());
  tecl::v1::ListEventsResponse events;
  ASSERT_TRUE(stub_->ListEvents(Context().get(), request, &events).ok());
  std::vector<tecl::v1::JobState> states;
  for (const auto& e : events.events()) {
    if (e.type() == "state") states.push_back(e.to_state());
  }
  EXPECT_THAT(states,
              ::testing::ElementsAre(tecl::v1::JOB_STATE_PENDING, tecl::v1::JOB_STATE_SCHEDULED,
                                     tecl::v1::JOB_STATE_RUNNING, tecl::v1::JOB_STATE_SUCCEEDED));
}

TEST_F(CoordinatorServerTest, ALostTrainerIsReplacedAndTheJobResumes) {
  tecl::v1::JobSpec spec = tecl::testing::SmallSpec(root_, 2, 1);
  spec.mutable_restart()->set_heartbeat_timeout_s(1);
  spec.mutable_schedule()->set_total_steps(100000);  // Runs until we intervene.
  absl::StatusOr<tecl::v1::Job> job = Submit(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  FakeWorker& doomed = AddWorker(tecl::v1::WORKER_KIND_TRAINER);
  AddWorker(tecl::v1::WORKER_KIND_TRAINER);
  AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  ASSERT_TRUE(
      tecl::testing::WaitForState(stub_.get(), job->id(), tecl::v1::JOB_STATE_RUNNING).ok());
  doomed.Stop();  // Goes silent.
  absl::StatusOr<tecl::v1::Job> recovering =
      tecl::testing::WaitForState(stub_.get(), job->id(), tecl::v1::JOB_STATE_RECOVERING);
  ASSERT_TRUE(recovering.ok()) << recovering.status();
  EXPECT_THAT(recovering->reason(), HasSubstr("missed heartbeats"));
  EXPECT_EQ(recovering->attempt(), 2);
  AddWorker(tecl::v1::WORKER_KIND_TRAINER);  // The replacement.
  absl::StatusOr<tecl::v1::Job> running =
      tecl::testing::WaitForJob(stub_.get(), job->id(), [](const tecl::v1::Job& j) {
        return j.state() == tecl::v1::JOB_STATE_RUNNING && j.attempt() == 2;
      });
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(running->restarts(), 1);
}

TEST_F(CoordinatorServerTest, RendezvousOverGrpc) {
  tecl::v1::JobSpec spec = tecl::testing::SmallSpec(root_);
  absl::StatusOr<tecl::v1::Job> job = Submit(spec);
  ASSERT_TRUE(job.ok());
  AddWorker(tecl::v1::WORKER_KIND_TRAINER, tecl::v1::OUTCOME_UNSPECIFIED);
  AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  ASSERT_TRUE(
      tecl::testing::WaitForState(stub_.get(), job->id(), tecl::v1::JOB_STATE_RUNNING).ok());
  tecl::v1::RendezvousScope scope;
  scope.set_job_id(job->id());
  scope.set_attempt(1);

  // A waiting get completes when another call sets the key.
  tecl::v1::StoreGetResponse got;
  grpc::Status get_status;
  std::thread waiter([&] {
    tecl::v1::StoreGetRequest request;
    *request.mutable_scope() = scope;
    request.set_key("master_addr");
    request.set_wait_timeout_ms(10000);
    get_status = stub_->StoreGet(Context().get(), request, &got);
  });
  tecl::v1::StoreSetRequest set;
  *set.mutable_scope() = scope;
  set.set_key("master_addr");
  set.set_value("10.0.0.7:29500");
  tecl::v1::StoreSetResponse set_response;
  ASSERT_TRUE(stub_->StoreSet(Context().get(), set, &set_response).ok());
  waiter.join();
  ASSERT_TRUE(get_status.ok()) << get_status.error_message();
  EXPECT_EQ(got.value(), "10.0.0.7:29500");

  tecl::v1::StoreAddRequest add;
  *add.mutable_scope() = scope;
  add.set_key("arrived");
  add.set_delta(1);
  tecl::v1::StoreAddResponse added;
  ASSERT_TRUE(stub_->StoreAdd(Context().get(), add, &added).ok());
  ASSERT_TRUE(stub_->StoreAdd(Context().get(), add, &added).ok());
  EXPECT_EQ(added.value(), 2);

  tecl::v1::StoreWaitRequest wait;
  *wait.mutable_scope() = scope;
  wait.add_keys("master_addr");
  wait.add_keys("never");
  wait.set_wait_timeout_ms(100);
  tecl::v1::StoreWaitResponse waited;
  EXPECT_EQ(stub_->StoreWait(Context().get(), wait, &waited).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);

  tecl::v1::StoreCheckRequest check;
  *check.mutable_scope() = scope;
  check.add_keys("master_addr");
  tecl::v1::StoreCheckResponse checked;
  ASSERT_TRUE(stub_->StoreCheck(Context().get(), check, &checked).ok());
  EXPECT_TRUE(checked.all_present());
  EXPECT_EQ(checked.num_keys(), 2);

  tecl::v1::StoreCompareSetRequest cas;
  *cas.mutable_scope() = scope;
  cas.set_key("leader");
  cas.set_expect_absent(true);
  cas.set_desired("rank0");
  tecl::v1::StoreCompareSetResponse cas_response;
  ASSERT_TRUE(stub_->StoreCompareSet(Context().get(), cas, &cas_response).ok());
  EXPECT_EQ(cas_response.value(), "rank0");

  tecl::v1::StoreDeleteRequest del;
  *del.mutable_scope() = scope;
  del.set_key("leader");
  tecl::v1::StoreDeleteResponse deleted;
  ASSERT_TRUE(stub_->StoreDelete(Context().get(), del, &deleted).ok());
  EXPECT_TRUE(deleted.deleted());

  // A stale attempt and an unknown job.
  tecl::v1::StoreSetRequest stale = set;
  stale.mutable_scope()->set_attempt(2);
  EXPECT_EQ(stub_->StoreSet(Context().get(), stale, &set_response).error_code(),
            grpc::StatusCode::ABORTED);
  tecl::v1::StoreSetRequest unknown = set;
  unknown.mutable_scope()->set_job_id("job-999999");
  EXPECT_EQ(stub_->StoreSet(Context().get(), unknown, &set_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // Values are limited to 1 MiB.
  tecl::v1::StoreSetRequest big = set;
  big.set_value(std::string((1 << 20) + 1, 'x'));
  EXPECT_EQ(stub_->StoreSet(Context().get(), big, &set_response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A client that gives up on a wait gets its deadline; the server is not stuck with it.
  tecl::v1::StoreGetRequest forever;
  *forever.mutable_scope() = scope;
  forever.set_key("never");
  forever.set_wait_timeout_ms(60000);
  grpc::ClientContext short_context;
  short_context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  EXPECT_EQ(stub_->StoreGet(&short_context, forever, &got).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);

  // Cancelling the job ends the attempt: its keys are gone.
  tecl::v1::CancelJobRequest cancel;
  cancel.set_job_id(job->id());
  tecl::v1::Job cancelled;
  ASSERT_TRUE(stub_->CancelJob(Context().get(), cancel, &cancelled).ok());
  EXPECT_EQ(stub_->StoreCheck(Context().get(), check, &checked).error_code(),
            grpc::StatusCode::ABORTED);
}

TEST_F(CoordinatorServerTest, EveryRpcRefusesACallWithoutTheToken) {
  StartServer({"s3cret"});
  auto anonymous = tecl::testing::MakeStub(server_->address());
  std::vector<std::pair<std::string, std::function<grpc::Status(grpc::ClientContext*)>>> calls = {
      {"SubmitJob",
       [&](auto* c) {
         tecl::v1::SubmitJobResponse r;
         return anonymous->SubmitJob(c, {}, &r);
       }},
      {"GetJob",
       [&](auto* c) {
         tecl::v1::Job r;
         return anonymous->GetJob(c, {}, &r);
       }},
      {"ListJobs",
       [&](auto* c) {
         tecl::v1::ListJobsResponse r;
         return anonymous->ListJobs(c, {}, &r);
       }},
      {"CancelJob",
       [&](auto* c) {
         tecl::v1::Job r;
         return anonymous->CancelJob(c, {}, &r);
       }},
      {"ListEvents",
       [&](auto* c) {
         tecl::v1::ListEventsResponse r;
         return anonymous->ListEvents(c, {}, &r);
       }},
      {"WatchJob",
       [&](auto* c) {
         auto reader = anonymous->WatchJob(c, {});
         tecl::v1::WatchJobResponse r;
         while (reader->Read(&r)) {
         }
         return reader->Finish();
       }},
      {"RegisterWorker",
       [&](auto* c) {
         tecl::v1::RegisterWorkerResponse r;
         return anonymous->RegisterWorker(c, {}, &r);
       }},
      {"Heartbeat",
       [&](auto* c) {
         tecl::v1::HeartbeatResponse r;
         return anonymous->Heartbeat(c, {}, &r);
       }},
      {"ReportOutcome",
       [&](auto* c) {
         tecl::v1::ReportOutcomeResponse r;
         return anonymous->ReportOutcome(c, {}, &r);
       }},
      {"RegisterCheckpoint",
       [&](auto* c) {
         tecl::v1::RegisterCheckpointResponse r;
         return anonymous->RegisterCheckpoint(c, {}, &r);
       }},
      {"ListWorkers",
       [&](auto* c) {
         tecl::v1::ListWorkersResponse r;
         return anonymous->ListWorkers(c, {}, &r);
       }},
      {"StoreSet",
       [&](auto* c) {
         tecl::v1::StoreSetResponse r;
         return anonymous->StoreSet(c, {}, &r);
       }},
      {"StoreGet",
       [&](auto* c) {
         tecl::v1::StoreGetResponse r;
         return anonymous->StoreGet(c, {}, &r);
       }},
      {"StoreAdd",
       [&](auto* c) {
         tecl::v1::StoreAddResponse r;
         return anonymous->StoreAdd(c, {}, &r);
       }},
      {"StoreCompareSet",
       [&](auto* c) {
         tecl::v1::StoreCompareSetResponse r;
         return anonymous->StoreCompareSet(c, {}, &r);
       }},
      {"StoreWait",
       [&](auto* c) {
         tecl::v1::StoreWaitResponse r;
         return anonymous->StoreWait(c, {}, &r);
       }},
      {"StoreDelete",
       [&](auto* c) {
         tecl::v1::StoreDeleteResponse r;
         return anonymous->StoreDelete(c, {}, &r);
       }},
      {"StoreCheck",
       [&](auto* c) {
         tecl::v1::StoreCheckResponse r;
         return anonymous->StoreCheck(c, {}, &r);
       }},
  };
  EXPECT_EQ(calls.size(), static_cast<size_t>(google::protobuf::DescriptorPool::generated_pool()
                                                  ->FindServiceByName("tecl.v1.Coordinator")
                                                  ->method_count()));
  for (auto& [name, call] : calls) {
    grpc::Status status = call(Context().get());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
  }
  // With the token, calls go through.
  tecl::v1::ListJobsResponse listed;
  EXPECT_TRUE(stub_->ListJobs(Context().get(), {}, &listed).ok());
}

TEST_F(CoordinatorServerTest, MalformedRequestsAreInvalidArgumentAndStoreNothing) {
  std::vector<std::pair<std::string, std::function<grpc::Status()>>> calls;
  auto add = [&](std::string name, std::function<grpc::Status()> call) {
    calls.emplace_back(std::move(name), std::move(call));
  };
  add("submit without spec", [&] {
    tecl::v1::SubmitJobResponse r;
    return stub_->SubmitJob(Context().get(), {}, &r);
  });
  add("submit with a bad spec", [&] {
    tecl::v1::SubmitJobRequest q;
    *q.mutable_spec() = tecl::testing::SmallSpec(root_);
    q.mutable_spec()->mutable_model()->set_backbone("r50");
    tecl::v1::SubmitJobResponse r;
    return stub_->SubmitJob(Context().get(), q, &r);
  });
  add("submit with a dataset outside the data roots", [&] {
    tecl::v1::SubmitJobRequest q;
    *q.mutable_spec() = tecl::testing::SmallSpec("/etc");
    tecl::v1::SubmitJobResponse r;
    return stub_->SubmitJob(Context().get(), q, &r);
  });
  add("submit with an oversized spec", [&] {
    tecl::v1::SubmitJobRequest q;
    *q.mutable_spec() = tecl::testing::SmallSpec(root_);
    q.mutable_spec()->mutable_dataset()->set_manifest(std::string((1 << 20) + 10, 'm'));
    tecl::v1::SubmitJobResponse r;
    return stub_->SubmitJob(Context().get(), q, &r);
  });
  add("submit with an oversized request id", [&] {
    tecl::v1::SubmitJobRequest q;
    *q.mutable_spec() = tecl::testing::SmallSpec(root_);
    q.set_request_id(std::string(1000, 'r'));
    tecl::v1::SubmitJobResponse r;
    return stub_->SubmitJob(Context().get(), q, &r);
  });
  add("get without id", [&] {
    tecl::v1::Job r;
    return stub_->GetJob(Context().get(), {}, &r);
  });
  add("list with a bad page size", [&] {
    tecl::v1::ListJobsRequest q;
    q.set_page_size(5000);
    tecl::v1::ListJobsResponse r;
    return stub_->ListJobs(Context().get(), q, &r);
  });
  add("list with a bad page token", [&] {
    tecl::v1::ListJobsRequest q;
    q.set_page_token("garbage");
    tecl::v1::ListJobsResponse r;
    return stub_->ListJobs(Context().get(), q, &r);
  });
  add("list with an unknown state", [&] {
    tecl::v1::ListJobsRequest q;
    q.add_states(static_cast<tecl::v1::JobState>(42));
    tecl::v1::ListJobsResponse r;
    return stub_->ListJobs(Context().get(), q, &r);
  });
  add("cancel without id", [&] {
    tecl::v1::Job r;
    return stub_->CancelJob(Context().get(), {}, &r);
  });
  add("events with a negative limit", [&] {
    tecl::v1::ListEventsRequest q;
    q.set_job_id("job-000001");
    q.set_limit(-1);
    tecl::v1::ListEventsResponse r;
    return stub_->ListEvents(Context().get(), q, &r);
  });
  add("watch without id", [&] {
    grpc::ClientContext c;
    auto reader = stub_->WatchJob(&c, {});
    tecl::v1::WatchJobResponse r;
    while (reader->Read(&r)) {
    }
    return reader->Finish();
  });
  add("register without kind", [&] {
    tecl::v1::RegisterWorkerResponse r;
    return stub_->RegisterWorker(Context().get(), {}, &r);
  });
  add("register a dataloader without address", [&] {
    tecl::v1::RegisterWorkerRequest q;
    q.mutable_worker()->set_kind(tecl::v1::WORKER_KIND_DATALOADER);
    tecl::v1::RegisterWorkerResponse r;
    return stub_->RegisterWorker(Context().get(), q, &r);
  });
  add("heartbeat without worker id", [&] {
    tecl::v1::HeartbeatResponse r;
    return stub_->Heartbeat(Context().get(), {}, &r);
  });
  add("heartbeat with a job but no attempt", [&] {
    tecl::v1::HeartbeatRequest q;
    q.set_worker_id("trainer-1");
    q.set_job_id("job-000001");
    tecl::v1::HeartbeatResponse r;
    return stub_->Heartbeat(Context().get(), q, &r);
  });
  add("outcome without outcome", [&] {
    tecl::v1::ReportOutcomeRequest q;
    q.set_worker_id("trainer-1");
    q.set_job_id("job-000001");
    q.set_attempt(1);
    tecl::v1::ReportOutcomeResponse r;
    return stub_->ReportOutcome(Context().get(), q, &r);
  });
  add("checkpoint without job", [&] {
    tecl::v1::RegisterCheckpointRequest q;
    q.set_worker_id("trainer-1");
    tecl::v1::RegisterCheckpointResponse r;
    return stub_->RegisterCheckpoint(Context().get(), q, &r);
  });
  add("store set without scope", [&] {
    tecl::v1::StoreSetRequest q;
    q.set_key("k");
    tecl::v1::StoreSetResponse r;
    return stub_->StoreSet(Context().get(), q, &r);
  });
  add("store get with a negative wait", [&] {
    tecl::v1::StoreGetRequest q;
    q.mutable_scope()->set_job_id("job-000001");
    q.mutable_scope()->set_attempt(1);
    q.set_key("k");
    q.set_wait_timeout_ms(-5);
    tecl::v1::StoreGetResponse r;
    return stub_->StoreGet(Context().get(), q, &r);
  });
  add("store set with an oversized key", [&] {
    tecl::v1::StoreSetRequest q;
    q.mutable_scope()->set_job_id("job-000001");
    q.mutable_scope()->set_attempt(1);
    q.set_key(std::string(5000, 'k'));
    tecl::v1::StoreSetResponse r;
    return stub_->StoreSet(Context().get(), q, &r);
  });
  add("store wait without keys", [&] {
    tecl::v1::StoreWaitRequest q;
    q.mutable_scope()->set_job_id("job-000001");
    q.mutable_scope()->set_attempt(1);
    tecl::v1::StoreWaitResponse r;
    return stub_->StoreWait(Context().get(), q, &r);
  });
  for (auto& [name, call] : calls) {
    grpc::Status status = call();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << name << ": " << status.error_message();
    EXPECT_FALSE(status.error_message().empty()) << name;
  }
  EXPECT_EQ(JobCount(), 0);
  // Restarting on the same folder shows the same: nothing was stored.
  StartServer();
  EXPECT_EQ(JobCount(), 0);
}

TEST_F(CoordinatorServerTest, AcknowledgedJobsSurviveARestart) {
  absl::StatusOr<tecl::v1::Job> a = Submit(tecl::testing::SmallSpec(root_), "req-a");
  absl::StatusOr<tecl::v1::Job> b = Submit(tecl::testing::SmallSpec(root_, 4, 2));
  ASSERT_TRUE(a.ok() && b.ok());
  tecl::v1::CancelJobRequest cancel;
  cancel.set_job_id(b->id());
  cancel.set_reason("not needed");
  tecl::v1::Job cancelled;
  ASSERT_TRUE(stub_->CancelJob(Context().get(), cancel, &cancelled).ok());
  StartServer();
  tecl::v1::GetJobRequest get;
  get.set_job_id(a->id());
  tecl::v1::Job job;
  ASSERT_TRUE(stub_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.state(), tecl::v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.spec().dataset().root(), root_);
  get.set_job_id(b->id());
  ASSERT_TRUE(stub_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.state(), tecl::v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(job.reason(), "cancelled: not needed");
  // The same request id returns the same job after the restart.
  absl::StatusOr<tecl::v1::Job> again = Submit(tecl::testing::SmallSpec(root_), "req-a");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), a->id());
}

TEST_F(CoordinatorServerTest, MetricsAreServed) {
  StartServer({}, /*metrics=*/true);
  ASSERT_TRUE(Submit(tecl::testing::SmallSpec(root_)).ok());
  auto response = tecl::testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  for (const char* name :
       {"tecl_coordinator_jobs{state=\"pending\"} 1",
        "tecl_coordinator_store_commit_seconds_bucket", "tecl_coordinator_workers{",
        "tecl_coordinator_restarts_total 0", "tecl_coordinator_scheduling_latency_seconds_count",
        "tecl_grpc_server_handled_total{code=\"OK\",method=\"/tecl.v1.Coordinator/SubmitJob\"}"}) {
    EXPECT_THAT(response->body, HasSubstr(name));
  }
}

}  // namespace
}  // namespace tecl::coordinator
