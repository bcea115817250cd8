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
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/common/auth.h"
#include "services/coordinator/store/fake_job_store.h"
#include "tecl/v1/coordinator_service.grpc.pb.h"
#include "tests/integration/coordinator/fake_worker.h"
#include "tests/integration/coordinator/test_util.h"
#include "tests/testing/http_get.h"

namespace tecl::coordinator {
namespace {

using ::tecl::testing::FakeWorker;
using ::tecl::testing::FakeWorkerOptions;

// Raw stubs of the coordinator's three services.
struct Stubs {
  std::unique_ptr<tecl::v1::JobService::Stub> jobs;
  std::unique_ptr<tecl::v1::MembershipService::Stub> membership;
  std::unique_ptr<tecl::v1::RendezvousService::Stub> rendezvous;

  // Jobs with `user_token`, membership and rendezvous with `worker_token`.
  static Stubs Make(const std::string& address, const std::string& user_token = "",
                    const std::string& worker_token = "") {
    auto channel = [&](const std::string& token) {
      ChannelOptions options;
      options.token = token;
      auto channel = MakeChannel(address, options);
      EXPECT_TRUE(channel.ok()) << channel.status();
      return *channel;
    };
    return {tecl::v1::JobService::NewStub(channel(user_token)),
            tecl::v1::MembershipService::NewStub(channel(worker_token)),
            tecl::v1::RendezvousService::NewStub(channel(worker_token))};
  }
};
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

  // With a token per role; without a metrics endpoint unless asked (stopping it takes civetweb
  // ~2 s); on SQLite in the state folder unless given a store.
  void StartServer(bool metrics = false, JobStore* store = nullptr) {
    workers_.clear();
    server_.reset();
    CoordinatorConfig config;
    config.server.address = "127.0.0.1:0";
    config.server.metrics_address = metrics ? "127.0.0.1:0" : "";
    config.server.tokens = tokens_.all();
    config.state_dir = dir_ + "/state";
    config.tick_interval = absl::Milliseconds(20);
    config.coordinator.jobs.limits.max_trainers = 8;
    config.coordinator.jobs.limits.data_roots = {dir_ + "/data"};
    auto server = CoordinatorServer::Start(config, RealClock::Get(), store);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stubs_ = Stubs::Make(server_->address(), tokens_.user.token, tokens_.trainer.token);
    client_ = tecl::testing::MakeClient(server_->address(), tokens_.user.token);
  }

  // A call context; with a worker's session when given.
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& session = "") {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!session.empty()) context->AddMetadata(kSessionMetadata, session);
    return context;
  }

  absl::StatusOr<tecl::v1::Job> Submit(const tecl::v1::JobSpec& spec,
                                       const std::string& request_id = "") {
    tecl::v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    request.set_request_id(request_id);
    tecl::v1::SubmitJobResponse response;
    grpc::Status status = stubs_.jobs->SubmitJob(Context().get(), request, &response);
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
    workers_.push_back(std::make_unique<FakeWorker>(
        tecl::testing::MakeClient(server_->address(), tokens_.worker(kind).token), options));
    workers_.back()->Start();
    return *workers_.back();
  }

  int JobCount() {
    tecl::v1::ListJobsRequest request;
    tecl::v1::ListJobsResponse response;
    EXPECT_TRUE(stubs_.jobs->ListJobs(Context().get(), request, &response).ok());
    return response.jobs_size();
  }

  std::string dir_;
  std::string root_;
  std::unique_ptr<CoordinatorServer> server_;
  // The wire, for malformed requests and per-rpc checks.
  Stubs stubs_;
  // Everything else goes through the client layer, as the workers and teclctl do.
  std::shared_ptr<CoordinatorClient> client_;  // A user's.
  const tecl::testing::TestTokens tokens_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
};

TEST_F(CoordinatorServerTest, AJobRunsToSuccessOnFakeWorkers) {
  absl::StatusOr<tecl::v1::Job> job = Submit(tecl::testing::SmallSpec(root_, 2, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), tecl::v1::JOB_STATE_PENDING);
  for (int i = 0; i < 2; ++i) AddWorker(tecl::v1::WORKER_KIND_TRAINER);
  for (int i = 0; i < 2; ++i) AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  absl::StatusOr<tecl::v1::Job> done =
      tecl::testing::WaitForState(client_.get(), job->id(), tecl::v1::JOB_STATE_SUCCEEDED);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->progress().step(), 100);
  EXPECT_EQ(done->latest_checkpoint().step(), 100);
  EXPECT_THAT(done->latest_checkpoint().path(), HasSubstr("/state/checkpoints/" + job->id()));

  tecl::v1::ListEventsRequest request;
  request.set_job_id(job->id());
  tecl::v1::ListEventsResponse events;
  ASSERT_TRUE(stubs_.jobs->ListEvents(Context().get(), request, &events).ok());
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
      tecl::testing::WaitForState(client_.get(), job->id(), tecl::v1::JOB_STATE_RUNNING).ok());
  doomed.Stop();  // Goes silent.
  absl::StatusOr<tecl::v1::Job> recovering =
      tecl::testing::WaitForState(client_.get(), job->id(), tecl::v1::JOB_STATE_RECOVERING);
  ASSERT_TRUE(recovering.ok()) << recovering.status();
  EXPECT_THAT(recovering->reason(), HasSubstr("missed heartbeats"));
  EXPECT_EQ(recovering->attempt(), 2);
  AddWorker(tecl::v1::WORKER_KIND_TRAINER);  // The replacement.
  absl::StatusOr<tecl::v1::Job> running =
      tecl::testing::WaitForJob(client_.get(), job->id(), [](const tecl::v1::Job& j) {
        return j.state() == tecl::v1::JOB_STATE_RUNNING && j.attempt() == 2;
      });
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(running->restarts(), 1);
}

TEST_F(CoordinatorServerTest, RendezvousOverGrpc) {
  tecl::v1::JobSpec spec = tecl::testing::SmallSpec(root_);
  absl::StatusOr<tecl::v1::Job> job = Submit(spec);
  ASSERT_TRUE(job.ok());
  FakeWorker& trainer = AddWorker(tecl::v1::WORKER_KIND_TRAINER, tecl::v1::OUTCOME_UNSPECIFIED);
  AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  ASSERT_TRUE(
      tecl::testing::WaitForState(client_.get(), job->id(), tecl::v1::JOB_STATE_RUNNING).ok());
  // The rendezvous is the trainer's: calls carry its session.
  const std::string session = trainer.session();
  auto Context = [&] { return CoordinatorServerTest::Context(session); };
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
    get_status = stubs_.rendezvous->StoreGet(Context().get(), request, &got);
  });
  tecl::v1::StoreSetRequest set;
  *set.mutable_scope() = scope;
  set.set_key("master_addr");
  set.set_value("10.0.0.7:29500");
  tecl::v1::StoreSetResponse set_response;
  ASSERT_TRUE(stubs_.rendezvous->StoreSet(Context().get(), set, &set_response).ok());
  waiter.join();
  ASSERT_TRUE(get_status.ok()) << get_status.error_message();
  EXPECT_EQ(got.value(), "10.0.0.7:29500");

  tecl::v1::StoreAddRequest add;
  *add.mutable_scope() = scope;
  add.set_key("arrived");
  add.set_delta(1);
  tecl::v1::StoreAddResponse added;
  ASSERT_TRUE(stubs_.rendezvous->StoreAdd(Context().get(), add, &added).ok());
  ASSERT_TRUE(stubs_.rendezvous->StoreAdd(Context().get(), add, &added).ok());
  EXPECT_EQ(added.value(), 2);

  tecl::v1::StoreWaitRequest wait;
  *wait.mutable_scope() = scope;
  wait.add_keys("master_addr");
  wait.add_keys("never");
  wait.set_wait_timeout_ms(100);
  tecl::v1::StoreWaitResponse waited;
  EXPECT_EQ(stubs_.rendezvous->StoreWait(Context().get(), wait, &waited).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);

  tecl::v1::StoreCheckRequest check;
  *check.mutable_scope() = scope;
  check.add_keys("master_addr");
  tecl::v1::StoreCheckResponse checked;
  ASSERT_TRUE(stubs_.rendezvous->StoreCheck(Context().get(), check, &checked).ok());
  EXPECT_TRUE(checked.all_present());
  EXPECT_EQ(checked.num_keys(), 2);

  tecl::v1::StoreCompareSetRequest cas;
  *cas.mutable_scope() = scope;
  cas.set_key("leader");
  cas.set_expect_absent(true);
  cas.set_desired("rank0");
  tecl::v1::StoreCompareSetResponse cas_response;
  ASSERT_TRUE(stubs_.rendezvous->StoreCompareSet(Context().get(), cas, &cas_response).ok());
  EXPECT_EQ(cas_response.value(), "rank0");

  tecl::v1::StoreDeleteRequest del;
  *del.mutable_scope() = scope;
  del.set_key("leader");
  tecl::v1::StoreDeleteResponse deleted;
  ASSERT_TRUE(stubs_.rendezvous->StoreDelete(Context().get(), del, &deleted).ok());
  EXPECT_TRUE(deleted.deleted());

  // Another attempt, another job, no session: not this trainer's rendezvous.
  tecl::v1::StoreSetRequest stale = set;
  stale.mutable_scope()->set_attempt(2);
  EXPECT_EQ(stubs_.rendezvous->StoreSet(Context().get(), stale, &set_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  tecl::v1::StoreSetRequest unknown = set;
  unknown.mutable_scope()->set_job_id("job-999999");
  EXPECT_EQ(stubs_.rendezvous->StoreSet(Context().get(), unknown, &set_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stubs_.rendezvous->StoreSet(CoordinatorServerTest::Context().get(), set,
                                        &set_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Values are limited to 1 MiB.
  tecl::v1::StoreSetRequest big = set;
  big.set_value(std::string((1 << 20) + 1, 'x'));
  EXPECT_EQ(stubs_.rendezvous->StoreSet(Context().get(), big, &set_response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A client that gives up on a wait gets its deadline; the server is not stuck with it.
  tecl::v1::StoreGetRequest forever;
  *forever.mutable_scope() = scope;
  forever.set_key("never");
  forever.set_wait_timeout_ms(60000);
  grpc::ClientContext short_context;
  short_context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  short_context.AddMetadata(kSessionMetadata, session);
  EXPECT_EQ(stubs_.rendezvous->StoreGet(&short_context, forever, &got).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);

  // Cancelling the job ends the attempt: its keys are gone. (The trainer stops heartbeating first,
  // so it is still the attempt's, told to stop, when it calls.)
  trainer.Stop();
  tecl::v1::CancelJobRequest cancel;
  cancel.set_job_id(job->id());
  tecl::v1::Job cancelled;
  ASSERT_TRUE(stubs_.jobs->CancelJob(Context().get(), cancel, &cancelled).ok());
  EXPECT_EQ(stubs_.rendezvous->StoreCheck(Context().get(), check, &checked).error_code(),
            grpc::StatusCode::ABORTED);
}

TEST_F(CoordinatorServerTest, EveryRpcRefusesACallWithoutTheToken) {
  Stubs anonymous = Stubs::Make(server_->address());
  std::vector<std::pair<std::string, std::function<grpc::Status(grpc::ClientContext*)>>> calls = {
      {"SubmitJob",
       [&](auto* c) {
         tecl::v1::SubmitJobResponse r;
         return anonymous.jobs->SubmitJob(c, {}, &r);
       }},
      {"GetJob",
       [&](auto* c) {
         tecl::v1::Job r;
         return anonymous.jobs->GetJob(c, {}, &r);
       }},
      {"ListJobs",
       [&](auto* c) {
         tecl::v1::ListJobsResponse r;
         return anonymous.jobs->ListJobs(c, {}, &r);
       }},
      {"CancelJob",
       [&](auto* c) {
         tecl::v1::Job r;
         return anonymous.jobs->CancelJob(c, {}, &r);
       }},
      {"ListEvents",
       [&](auto* c) {
         tecl::v1::ListEventsResponse r;
         return anonymous.jobs->ListEvents(c, {}, &r);
       }},
      {"GetJobLogs",
       [&](auto* c) {
         tecl::v1::GetJobLogsResponse r;
         return anonymous.jobs->GetJobLogs(c, {}, &r);
       }},
      {"WatchJob",
       [&](auto* c) {
         auto reader = anonymous.jobs->WatchJob(c, {});
         tecl::v1::WatchJobResponse r;
         while (reader->Read(&r)) {
         }
         return reader->Finish();
       }},
      {"RegisterWorker",
       [&](auto* c) {
         tecl::v1::RegisterWorkerResponse r;
         return anonymous.membership->RegisterWorker(c, {}, &r);
       }},
      {"Heartbeat",
       [&](auto* c) {
         tecl::v1::HeartbeatResponse r;
         return anonymous.membership->Heartbeat(c, {}, &r);
       }},
      {"ReportOutcome",
       [&](auto* c) {
         tecl::v1::ReportOutcomeResponse r;
         return anonymous.membership->ReportOutcome(c, {}, &r);
       }},
      {"RegisterCheckpoint",
       [&](auto* c) {
         tecl::v1::RegisterCheckpointResponse r;
         return anonymous.membership->RegisterCheckpoint(c, {}, &r);
       }},
      {"RejectCheckpoint",
       [&](auto* c) {
         tecl::v1::RejectCheckpointResponse r;
         return anonymous.membership->RejectCheckpoint(c, {}, &r);
       }},
      {"ListWorkers",
       [&](auto* c) {
         tecl::v1::ListWorkersResponse r;
         return anonymous.membership->ListWorkers(c, {}, &r);
       }},
      {"StoreSet",
       [&](auto* c) {
         tecl::v1::StoreSetResponse r;
         return anonymous.rendezvous->StoreSet(c, {}, &r);
       }},
      {"StoreGet",
       [&](auto* c) {
         tecl::v1::StoreGetResponse r;
         return anonymous.rendezvous->StoreGet(c, {}, &r);
       }},
      {"StoreAdd",
       [&](auto* c) {
         tecl::v1::StoreAddResponse r;
         return anonymous.rendezvous->StoreAdd(c, {}, &r);
       }},
      {"StoreCompareSet",
       [&](auto* c) {
         tecl::v1::StoreCompareSetResponse r;
         return anonymous.rendezvous->StoreCompareSet(c, {}, &r);
       }},
      {"StoreWait",
       [&](auto* c) {
         tecl::v1::StoreWaitResponse r;
         return anonymous.rendezvous->StoreWait(c, {}, &r);
       }},
      {"StoreDelete",
       [&](auto* c) {
         tecl::v1::StoreDeleteResponse r;
         return anonymous.rendezvous->StoreDelete(c, {}, &r);
       }},
      {"StoreCheck",
       [&](auto* c) {
         tecl::v1::StoreCheckResponse r;
         return anonymous.rendezvous->StoreCheck(c, {}, &r);
       }},
  };
  // Nothing else references the services' file descriptor: link it so the pool knows them.
  const void* volatile linked = &descriptor_table_tecl_2fv1_2fcoordinator_5fservice_2eproto;
  ASSERT_NE(linked, nullptr);
  int methods = 0;
  for (const char* service :
       {"tecl.v1.JobService", "tecl.v1.MembershipService", "tecl.v1.RendezvousService"}) {
    methods +=
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service)->method_count();
  }
  EXPECT_EQ(calls.size(), static_cast<size_t>(methods));
  for (auto& [name, call] : calls) {
    grpc::Status status = call(Context().get());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name;
  }
  // With a token, calls go through.
  tecl::v1::ListJobsResponse listed;
  EXPECT_TRUE(stubs_.jobs->ListJobs(Context().get(), {}, &listed).ok());
}

// Each role reaches only its own rpcs: a valid token of the wrong role is PERMISSION_DENIED
// (naming the role needed) and changes nothing.
TEST_F(CoordinatorServerTest, EachRoleReachesOnlyItsRpcs) {
  Stubs reader = Stubs::Make(server_->address(), tokens_.reader.token, tokens_.reader.token);
  Stubs loader =
      Stubs::Make(server_->address(), tokens_.dataloader.token, tokens_.dataloader.token);
  Stubs user = Stubs::Make(server_->address(), tokens_.user.token, tokens_.user.token);
  tecl::v1::SubmitJobRequest submit;
  *submit.mutable_spec() = tecl::testing::SmallSpec(root_);
  tecl::v1::SubmitJobResponse submitted;
  // Workers and readers may not submit.
  grpc::Status status = loader.jobs->SubmitJob(Context().get(), submit, &submitted);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("user"));
  status = reader.jobs->SubmitJob(Context().get(), submit, &submitted);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_EQ(JobCount(), 0);

  // A reader may list and watch but not cancel.
  absl::StatusOr<tecl::v1::Job> job = Submit(submit.spec());
  ASSERT_TRUE(job.ok()) << job.status();
  tecl::v1::ListJobsResponse listed;
  EXPECT_TRUE(reader.jobs->ListJobs(Context().get(), {}, &listed).ok());
  EXPECT_EQ(listed.jobs_size(), 1);
  tecl::v1::GetJobLogsRequest logs;
  logs.set_job_id(job->id());
  tecl::v1::GetJobLogsResponse logs_response;
  EXPECT_TRUE(reader.jobs->GetJobLogs(Context().get(), logs, &logs_response).ok());
  // A worker may not read jobs' logs.
  status = loader.jobs->GetJobLogs(Context().get(), logs, &logs_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  tecl::v1::CancelJobRequest cancel;
  cancel.set_job_id(job->id());
  tecl::v1::Job cancelled;
  status = reader.jobs->CancelJob(Context().get(), cancel, &cancelled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  // A worker may not list jobs (they hold other teams' specs).
  status = loader.jobs->ListJobs(Context().get(), {}, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();

  // Users and readers are not workers: they may not register or heartbeat.
  tecl::v1::RegisterWorkerRequest reg;
  reg.mutable_worker()->set_kind(tecl::v1::WORKER_KIND_TRAINER);
  reg.mutable_worker()->set_threads(1);
  tecl::v1::RegisterWorkerResponse registered;
  status = user.membership->RegisterWorker(Context().get(), reg, &registered);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  // A dataloader may not register as a trainer.
  status = loader.membership->RegisterWorker(Context().get(), reg, &registered);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  tecl::v1::HeartbeatRequest beat;
  beat.set_worker_id("trainer-000001");
  tecl::v1::HeartbeatResponse beat_response;
  status = user.membership->Heartbeat(Context().get(), beat, &beat_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  // A reader may list workers; a dataloader may not report checkpoints.
  tecl::v1::ListWorkersResponse workers;
  EXPECT_TRUE(reader.membership->ListWorkers(Context().get(), {}, &workers).ok());
  EXPECT_EQ(workers.workers_size(), 0);
  tecl::v1::RegisterCheckpointRequest checkpoint;
  checkpoint.set_job_id(job->id());
  tecl::v1::RegisterCheckpointResponse checkpoint_response;
  status = loader.membership->RegisterCheckpoint(Context().get(), checkpoint, &checkpoint_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  // Rendezvous is the trainers'.
  tecl::v1::StoreSetRequest set;
  set.mutable_scope()->set_job_id(job->id());
  set.mutable_scope()->set_attempt(1);
  set.set_key("k");
  tecl::v1::StoreSetResponse set_response;
  status = user.rendezvous->StoreSet(Context().get(), set, &set_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();

  // Nothing of this changed the job.
  absl::StatusOr<tecl::v1::Job> after = client_->GetJob(job->id());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->state(), tecl::v1::JOB_STATE_PENDING);
  EXPECT_EQ(JobCount(), 1);
}

TEST_F(CoordinatorServerTest, MalformedRequestsAreInvalidArgumentAndStoreNothing) {
  Stubs loaders =
      Stubs::Make(server_->address(), tokens_.user.token, tokens_.dataloader.token);
  std::vector<std::pair<std::string, std::function<grpc::Status()>>> calls;
  auto add = [&](std::string name, std::function<grpc::Status()> call) {
    calls.emplace_back(std::move(name), std::move(call));
  };
  add("submit without spec", [&] {
    tecl::v1::SubmitJobResponse r;
    return stubs_.jobs->SubmitJob(Context().get(), {}, &r);
  });
  add("submit with a bad spec", [&] {
    tecl::v1::SubmitJobRequest q;
    *q.mutable_spec() = tecl::testing::SmallSpec(root_);
    q.mutable_spec()->mutable_model()->set_backbone("r50");
    tecl::v1::SubmitJobResponse r;
    return stubs_.jobs->SubmitJob(Context().get(), q, &r);
  });
  add("submit with a dataset outside the data roots", [&] {
    tecl::v1::SubmitJobRequest q;
    *q.mutable_spec() = tecl::testing::SmallSpec("/etc");
    tecl::v1::SubmitJobResponse r;
    return stubs_.jobs->SubmitJob(Context().get(), q, &r);
  });
  add("submit with an oversized spec", [&] {
    tecl::v1::SubmitJobRequest q;
    *q.mutable_spec() = tecl::testing::SmallSpec(root_);
    q.mutable_spec()->mutable_dataset()->set_manifest(std::string((1 << 20) + 10, 'm'));
    tecl::v1::SubmitJobResponse r;
    return stubs_.jobs->SubmitJob(Context().get(), q, &r);
  });
  add("submit with an oversized request id", [&] {
    tecl::v1::SubmitJobRequest q;
    *q.mutable_spec() = tecl::testing::SmallSpec(root_);
    q.set_request_id(std::string(1000, 'r'));
    tecl::v1::SubmitJobResponse r;
    return stubs_.jobs->SubmitJob(Context().get(), q, &r);
  });
  add("get without id", [&] {
    tecl::v1::Job r;
    return stubs_.jobs->GetJob(Context().get(), {}, &r);
  });
  add("list with a bad page size", [&] {
    tecl::v1::ListJobsRequest q;
    q.set_page_size(5000);
    tecl::v1::ListJobsResponse r;
    return stubs_.jobs->ListJobs(Context().get(), q, &r);
  });
  add("list with a bad page token", [&] {
    tecl::v1::ListJobsRequest q;
    q.set_page_token("garbage");
    tecl::v1::ListJobsResponse r;
    return stubs_.jobs->ListJobs(Context().get(), q, &r);
  });
  add("list with an unknown state", [&] {
    tecl::v1::ListJobsRequest q;
    q.add_states(static_cast<tecl::v1::JobState>(42));
    tecl::v1::ListJobsResponse r;
    return stubs_.jobs->ListJobs(Context().get(), q, &r);
  });
  add("cancel without id", [&] {
    tecl::v1::Job r;
    return stubs_.jobs->CancelJob(Context().get(), {}, &r);
  });
  add("events with a negative limit", [&] {
    tecl::v1::ListEventsRequest q;
    q.set_job_id("job-000001");
    q.set_limit(-1);
    tecl::v1::ListEventsResponse r;
    return stubs_.jobs->ListEvents(Context().get(), q, &r);
  });
  add("logs without id", [&] {
    tecl::v1::GetJobLogsResponse r;
    return stubs_.jobs->GetJobLogs(Context().get(), {}, &r);
  });
  add("logs of a negative rank", [&] {
    tecl::v1::GetJobLogsRequest q;
    q.set_job_id("job-000001");
    q.set_rank(-1);
    tecl::v1::GetJobLogsResponse r;
    return stubs_.jobs->GetJobLogs(Context().get(), q, &r);
  });
  add("logs with too many lines", [&] {
    tecl::v1::GetJobLogsRequest q;
    q.set_job_id("job-000001");
    q.set_max_lines(100000);
    tecl::v1::GetJobLogsResponse r;
    return stubs_.jobs->GetJobLogs(Context().get(), q, &r);
  });
  add("heartbeat with a log line without a seq", [&] {
    tecl::v1::HeartbeatRequest q;
    q.set_worker_id("trainer-1");
    tecl::v1::LogLine* line = q.add_log_lines();
    line->set_job_id("job-000001");
    line->set_attempt(1);
    tecl::v1::HeartbeatResponse r;
    return stubs_.membership->Heartbeat(Context().get(), q, &r);
  });
  add("watch without id", [&] {
    grpc::ClientContext c;
    auto reader = stubs_.jobs->WatchJob(&c, {});
    tecl::v1::WatchJobResponse r;
    while (reader->Read(&r)) {
    }
    return reader->Finish();
  });
  add("register without kind", [&] {
    tecl::v1::RegisterWorkerResponse r;
    return stubs_.membership->RegisterWorker(Context().get(), {}, &r);
  });
  add("register a dataloader without address", [&] {
    tecl::v1::RegisterWorkerRequest q;
    q.mutable_worker()->set_kind(tecl::v1::WORKER_KIND_DATALOADER);
    tecl::v1::RegisterWorkerResponse r;
    return loaders.membership->RegisterWorker(Context().get(), q, &r);
  });
  add("heartbeat without worker id", [&] {
    tecl::v1::HeartbeatResponse r;
    return stubs_.membership->Heartbeat(Context().get(), {}, &r);
  });
  add("heartbeat with a job but no attempt", [&] {
    tecl::v1::HeartbeatRequest q;
    q.set_worker_id("trainer-1");
    q.set_job_id("job-000001");
    tecl::v1::HeartbeatResponse r;
    return stubs_.membership->Heartbeat(Context().get(), q, &r);
  });
  add("outcome without outcome", [&] {
    tecl::v1::ReportOutcomeRequest q;
    q.set_worker_id("trainer-1");
    q.set_job_id("job-000001");
    q.set_attempt(1);
    tecl::v1::ReportOutcomeResponse r;
    return stubs_.membership->ReportOutcome(Context().get(), q, &r);
  });
  add("checkpoint without job", [&] {
    tecl::v1::RegisterCheckpointRequest q;
    q.set_worker_id("trainer-1");
    tecl::v1::RegisterCheckpointResponse r;
    return stubs_.membership->RegisterCheckpoint(Context().get(), q, &r);
  });
  add("store set without scope", [&] {
    tecl::v1::StoreSetRequest q;
    q.set_key("k");
    tecl::v1::StoreSetResponse r;
    return stubs_.rendezvous->StoreSet(Context().get(), q, &r);
  });
  add("store get with a negative wait", [&] {
    tecl::v1::StoreGetRequest q;
    q.mutable_scope()->set_job_id("job-000001");
    q.mutable_scope()->set_attempt(1);
    q.set_key("k");
    q.set_wait_timeout_ms(-5);
    tecl::v1::StoreGetResponse r;
    return stubs_.rendezvous->StoreGet(Context().get(), q, &r);
  });
  add("store set with an oversized key", [&] {
    tecl::v1::StoreSetRequest q;
    q.mutable_scope()->set_job_id("job-000001");
    q.mutable_scope()->set_attempt(1);
    q.set_key(std::string(5000, 'k'));
    tecl::v1::StoreSetResponse r;
    return stubs_.rendezvous->StoreSet(Context().get(), q, &r);
  });
  add("store wait without keys", [&] {
    tecl::v1::StoreWaitRequest q;
    q.mutable_scope()->set_job_id("job-000001");
    q.mutable_scope()->set_attempt(1);
    tecl::v1::StoreWaitResponse r;
    return stubs_.rendezvous->StoreWait(Context().get(), q, &r);
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
  ASSERT_TRUE(stubs_.jobs->CancelJob(Context().get(), cancel, &cancelled).ok());
  StartServer();
  tecl::v1::GetJobRequest get;
  get.set_job_id(a->id());
  tecl::v1::Job job;
  ASSERT_TRUE(stubs_.jobs->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.state(), tecl::v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.spec().dataset().root(), root_);
  get.set_job_id(b->id());
  ASSERT_TRUE(stubs_.jobs->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.state(), tecl::v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(job.reason(), "cancelled: not needed");
  // The same request id returns the same job after the restart.
  absl::StatusOr<tecl::v1::Job> again = Submit(tecl::testing::SmallSpec(root_), "req-a");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), a->id());
}

TEST_F(CoordinatorServerTest, MetricsAreServed) {
  StartServer(/*metrics=*/true);
  ASSERT_TRUE(Submit(tecl::testing::SmallSpec(root_)).ok());
  auto response = tecl::testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  for (const char* name :
       {"tecl_coordinator_jobs{state=\"pending\"} 1",
        "tecl_coordinator_store_commit_seconds_bucket", "tecl_coordinator_workers{",
        "tecl_coordinator_restarts_total 0", "tecl_coordinator_scheduling_latency_seconds_count",
        "tecl_grpc_server_handled_total{code=\"OK\",method=\"/tecl.v1.JobService/SubmitJob\"}"}) {
    EXPECT_THAT(response->body, HasSubstr(name));
  }
}

// The coordinator refuses at submit what its dataloaders would refuse (the shared work limits of
// services/common/work_limits.h): a clip span of 1017 source frames (which loaders used to accept
// up to 4096), a batch past 240 MiB, a deeper prefetch. Nothing is stored.
TEST_F(CoordinatorServerTest, ASpecPastTheSharedWorkLimitsIsRefusedAtSubmit) {
  struct Case {
    std::function<void(tecl::v1::JobSpec*)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](tecl::v1::JobSpec* s) {
         s->mutable_sampling()->set_clip_length(128);
         s->mutable_sampling()->clear_speeds();
         s->mutable_sampling()->add_speeds(1);
         s->mutable_sampling()->add_speeds(8);
       },
       "sampling: clip_length 128 at speed 8 spans 1017 source frames"},
      {[](tecl::v1::JobSpec* s) {
         s->mutable_sampling()->set_groups_per_batch(64);
         s->mutable_sampling()->set_clip_length(32);
         s->mutable_sampling()->set_crop_size(512);
       },
       "sampling.groups_per_batch: a batch of 128 videos x 2 clips"},
      {[](tecl::v1::JobSpec* s) { s->mutable_resources()->set_prefetch_batches(65); },
       "resources.prefetch_batches: 65 is out of range; use a value in [1, 64]"},
      {[](tecl::v1::JobSpec* s) { s->mutable_schedule()->set_total_steps(int64_t{1} << 40); },
       "schedule.total_steps: 1099511627776 is out of range"},
  };
  for (const Case& c : cases) {
    tecl::v1::JobSpec spec = tecl::testing::SmallSpec(root_);
    c.mutate(&spec);
    absl::StatusOr<tecl::v1::Job> job = Submit(spec);
    EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(std::string(job.status().message()), HasSubstr(c.message));
  }
  EXPECT_EQ(JobCount(), 0);
}

// A store that fails leaves the coordinator refusing changes; health says so, so that Kubernetes
// restarts it from the file.
TEST_F(CoordinatorServerTest, AFailedStoreMakesHealthNotServing) {
  FakeJobStore store;
  StartServer(/*metrics=*/true, &store);
  auto channel = MakeChannel(server_->address(), {});
  ASSERT_TRUE(channel.ok());
  auto health = grpc::health::v1::Health::NewStub(*channel);
  auto check = [&] {
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_TRUE(health->Check(Context().get(), {}, &response).ok());
    return response.status();
  };
  auto get = [&](const std::string& path) {
    return *tecl::testing::HttpGet("127.0.0.1", server_->metrics_port(), path);
  };
  EXPECT_EQ(check(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(get("/healthz").status, 200);
  EXPECT_THAT(get("/metrics").body, HasSubstr("tecl_coordinator_store_healthy 1"));
  ASSERT_TRUE(Submit(tecl::testing::SmallSpec(root_)).ok());

  store.FailWrites(absl::DataLossError("disk I/O error"));
  absl::StatusOr<tecl::v1::Job> refused = Submit(tecl::testing::SmallSpec(root_));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(check(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  const tecl::testing::HttpResponse healthz = get("/healthz");
  EXPECT_EQ(healthz.status, 503);
  EXPECT_THAT(healthz.body, HasSubstr("the state store failed: disk I/O error"));
  EXPECT_THAT(get("/metrics").body, HasSubstr("tecl_coordinator_store_healthy 0"));
  // Still refusing (writes would succeed again, but the coordinator restarts from the file).
  store.FailWrites(absl::OkStatus());
  EXPECT_THAT(std::string(Submit(tecl::testing::SmallSpec(root_)).status().message()),
              HasSubstr("restart tecl-coordinator"));
  EXPECT_EQ(check(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  server_.reset();  // Before the store.
}

// gRPC reads a request whole before the handler's credential check: past the 4 MiB receive limit
// it is RESOURCE_EXHAUSTED, not UNAUTHENTICATED, so the handler never ran.
TEST_F(CoordinatorServerTest, AnOversizedRequestIsRefusedBeforeTheHandler) {
  Stubs anonymous = Stubs::Make(server_->address());
  tecl::v1::SubmitJobRequest big;
  *big.mutable_spec() = tecl::testing::SmallSpec(root_);
  big.set_request_id(std::string(5 << 20, 'r'));
  tecl::v1::SubmitJobResponse response;
  grpc::Status status = anonymous.jobs->SubmitJob(Context().get(), big, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  status = stubs_.jobs->SubmitJob(Context().get(), big, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  tecl::v1::StoreSetRequest set;
  set.mutable_scope()->set_job_id("job-000001");
  set.mutable_scope()->set_attempt(1);
  set.set_key("k");
  set.set_value(std::string(5 << 20, 'v'));
  tecl::v1::StoreSetResponse set_response;
  EXPECT_EQ(anonymous.rendezvous->StoreSet(Context().get(), set, &set_response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  tecl::v1::SubmitJobRequest unauthenticated;
  EXPECT_EQ(anonymous.jobs->SubmitJob(Context().get(), unauthenticated, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(JobCount(), 0);
}

}  // namespace
}  // namespace tecl::coordinator
