// teclctl (the binary, as a subprocess) against a real coordinator on 127.0.0.1:0: every command,
// --output json, exit codes, broken job specs, --wait with fake workers.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "services/coordinator/service/coordinator_server.h"
#include "services/coordinator/spec/job_spec.h"
#include "tests/integration/coordinator/fake_worker.h"
#include "tests/integration/coordinator/test_util.h"
#include "tests/testing/http_get.h"

namespace tecl::coordinator {
namespace {

using ::tecl::testing::FakeWorker;
using ::tecl::testing::FakeWorkerOptions;
using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

constexpr char kSpec[] = R"(# A small CPU job over the test data set (named after its file).
dataset:
  root: data/synth
  train_list: trainlist.txt
  test_list: testlist.txt
model: {backbone: tiny3d}
resources: {trainers: 1, dataloaders_per_trainer: 1}
schedule: {total_steps: 100}
)";

class TeclctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = getenv("TECL_BIN_DIR");
    ASSERT_NE(bin, nullptr) << "run through ctest";
    teclctl_ = std::string(bin) + "/teclctl";
    dir_ = tecl::testing::MakeTempDir("tecl_teclctl");
    tecl::testing::MakeDataset(dir_);
    WriteSpec("spec.yaml", kSpec);
    StartServer();
  }
  void TearDown() override {
    workers_.clear();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartServer() {
    workers_.clear();
    server_.reset();
    CoordinatorConfig config;
    config.server.address = "127.0.0.1:0";
    config.server.metrics_address = "";
    config.server.tokens = tokens_.all();
    config.state_dir = dir_ + "/state";
    config.tick_interval = absl::Milliseconds(20);
    config.coordinator.jobs.limits.max_trainers = 8;
    config.coordinator.jobs.limits.data_roots = {dir_ + "/data"};
    auto server = CoordinatorServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = tecl::testing::MakeClient(server_->address(), tokens_.user.token);
    std::ofstream(dir_ + "/user.token") << tokens_.user.token << "\n";
  }

  void WriteSpec(const std::string& name, const std::string& yaml) {
    std::ofstream(dir_ + "/" + name) << yaml;
  }

  // Runs teclctl in the test folder against the server (unless the args name another).
  Result Run(const std::string& args, const std::string& env = "") {
    const std::string out = dir_ + "/out.txt";
    const std::string err = dir_ + "/err.txt";
    const std::string command = absl::StrCat(
        "(cd ", dir_, " && env -u TECL_COORDINATOR -u TECL_AUTH_TOKEN TECL_HOME=", dir_, "/home ",
        "TECL_TOKEN_FILE=", dir_, "/user.token ", env, " ", teclctl_,
        " --coordinator=", server_->address(), " ", args, " >", out, " 2>", err, ")");
    Result result;
    result.exit_code = tecl::testing::RunCommand(command).exit_code;
    result.out = ReadFile(out);
    result.err = ReadFile(err);
    return result;
  }
  // The same, without --coordinator.
  Result RunRaw(const std::string& args, const std::string& env = "") {
    const std::string out = dir_ + "/out.txt";
    const std::string err = dir_ + "/err.txt";
    const std::string command =
        absl::StrCat("(cd ", dir_, " && env -u TECL_COORDINATOR -u TECL_AUTH_TOKEN TECL_HOME=", dir_,
                     "/home TECL_TOKEN_FILE=", dir_, "/user.token ", env, " ", teclctl_, " ", args, " >", out, " 2>", err, ")");
    Result result;
    result.exit_code = tecl::testing::RunCommand(command).exit_code;
    result.out = ReadFile(out);
    result.err = ReadFile(err);
    return result;
  }

  std::string SubmitOk(const std::string& file = "spec.yaml") {
    Result r = Run("submit " + file);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string id = r.out;
    while (!id.empty() && id.back() == '\n') id.pop_back();
    return id;
  }

  int JobCount() {
    absl::StatusOr<tecl::v1::ListJobsResponse> response = client_->ListJobs({});
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->jobs_size() : -1;
  }

  // The spec teclctl builds from `file`, submitted by the test with `request_id`.
  std::string SubmitLikeTeclctl(const std::string& file, const std::string& request_id) {
    ParseOptions options;
    options.default_name = std::filesystem::path(file).stem().string();
    options.base_dir = dir_;
    absl::StatusOr<tecl::v1::JobSpec> spec = ParseJobSpecYaml(ReadFile(dir_ + "/" + file), options);
    EXPECT_TRUE(spec.ok()) << spec.status();
    absl::StatusOr<tecl::v1::Job> job = client_->SubmitJob(*spec, request_id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }

  FakeWorker& AddWorker(tecl::v1::WorkerKind kind,
                        tecl::v1::Outcome outcome = tecl::v1::OUTCOME_SUCCEEDED) {
    FakeWorkerOptions options;
    options.kind = kind;
    options.outcome = outcome;
    options.steps_per_beat = 10;
    workers_.push_back(std::make_unique<FakeWorker>(
        tecl::testing::MakeClient(server_->address(), tokens_.worker(kind).token), options));
    workers_.back()->Start();
    return *workers_.back();
  }

  tecl::testing::TestTokens tokens_;
  std::string teclctl_;
  std::string dir_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<CoordinatorClient> client_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
};

TEST_F(TeclctlTest, SubmitListStatusEventsCancel) {
  const std::string id = SubmitOk();
  EXPECT_EQ(id, "job-000001");
  Result list = Run("list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("job-000001"));
  EXPECT_THAT(list.out, HasSubstr("spec"));  // The name defaults to the file's stem.
  EXPECT_THAT(list.out, HasSubstr("pending"));

  Result status = Run("status " + id);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("pending: waiting for 1 cpu trainer(s) and 1 dataloader(s)"));
  EXPECT_THAT(status.out, HasSubstr("Spec:"));
  EXPECT_THAT(status.out, HasSubstr("backbone: \"tiny3d\""));
  EXPECT_THAT(status.out, HasSubstr("root: \"" + dir_ + "/data/synth\""));  // Resolved.

  Result events = Run("events " + id);
  ASSERT_EQ(events.exit_code, 0) << events.err;
  EXPECT_THAT(events.out, HasSubstr("submitted"));

  // A job no trainer ran yet has no log lines, and says so.
  Result logs = Run("logs " + id);
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "");
  EXPECT_THAT(logs.err, HasSubstr("no log lines of job-000001 yet"));

  Result cancel = Run("cancel " + id + " --reason=\"changed my mind\"");
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_THAT(cancel.out, HasSubstr("cancelled job-000001"));
  EXPECT_THAT(Run("events " + id).out, HasSubstr("cancelled: changed my mind"));
  Result again = Run("cancel " + id);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already finished (cancelled)"));
  Result missing = Run("status job-424242");
  EXPECT_EQ(missing.exit_code, 5);
  EXPECT_THAT(missing.err, HasSubstr("no job \"job-424242\""));
  Result filtered = Run("list --state=running");
  EXPECT_EQ(filtered.exit_code, 0);
  EXPECT_THAT(filtered.out, HasSubstr("no jobs"));
}

TEST_F(TeclctlTest, JsonOutputIsProtobufJson) {
  const std::string id = SubmitOk();
  {
    tecl::v1::WorkerInfo worker;
    worker.set_kind(tecl::v1::WORKER_KIND_DATALOADER);
    worker.set_address("127.0.0.1:5555");
    worker.set_hostname("box");
    auto loader = tecl::testing::MakeClient(server_->address(), tokens_.dataloader.token);
    ASSERT_TRUE(loader->RegisterWorker(worker).ok());
  }
  Result status = Run("--output json status " + id);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  tecl::v1::Job from_cli;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(status.out, &from_cli).ok())
      << status.out;
  absl::StatusOr<tecl::v1::Job> from_rpc = client_->GetJob(id);
  ASSERT_TRUE(from_rpc.ok()) << from_rpc.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(from_cli, *from_rpc));

  Result list = Run("list --output=json");
  tecl::v1::ListJobsResponse jobs;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(list.out, &jobs).ok()) << list.out;
  ASSERT_EQ(jobs.jobs_size(), 1);
  EXPECT_EQ(jobs.jobs(0).id(), id);

  Result submitted = Run("submit spec.yaml --output json");
  tecl::v1::Job job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(submitted.out, &job).ok())
      << submitted.out;
  EXPECT_EQ(job.id(), "job-000002");

  const std::string workers_json = Run("workers --output json").out;
  tecl::v1::ListWorkersResponse workers;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(workers_json, &workers).ok())
      << workers_json;
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).kind(), tecl::v1::WORKER_KIND_DATALOADER);

  Result workers_text = Run("workers");
  EXPECT_THAT(workers_text.out, HasSubstr(workers.workers(0).id()));
  EXPECT_THAT(workers_text.out, HasSubstr("dataloader"));
  EXPECT_THAT(workers_text.out, HasSubstr("127.0.0.1:5555"));
  EXPECT_THAT(workers_text.out, HasSubstr("idle"));
}

struct BrokenSpec {
  const char* label;
  const char* yaml;
  const char* message;  // The field path and what the message says about it.
};

TEST_F(TeclctlTest, BrokenSpecsAreRefusedNamingTheFieldAndNothingIsStored) {
  const BrokenSpec cases[] = {
      {"unknown key", "name: x\ndataset: {root: data/synth}\nsampling: {clip_lenght: 8}\n",
       "sampling.clip_lenght: unknown field; did you mean clip_length?"},
      {"wrong type", "name: x\ndataset: {root: data/synth}\nresources: {trainers: two}\n",
       "resources.trainers: expected an integer"},
      {"unknown backbone", "name: x\ndataset: {root: data/synth}\nmodel: {backbone: r50}\n",
       "model.backbone: \"r50\" is not one of r2plus1d_18, r3d_18, tiny3d"},
      {"no trainers", "name: x\ndataset: {root: data/synth}\nresources: {trainers: 0}\n",
       "resources.trainers: 0 trainers cannot run a job"},
      {"speeds", "name: x\ndataset: {root: data/synth}\nsampling: {speeds: [4, 2]}\n",
       "sampling.speeds: [4, 2] must be strictly ascending"},
      {"missing root", "name: x\n", "dataset.root: missing"},
      {"all weights zero",
       "name: x\ndataset: {root: data/synth}\nmethod: {weights: {equivariance: 0, speed: 0, "
       "direction: 0, order: 0, instance: 0}}\n",
       "method.weights: every loss weight is 0"},
      {"eval without source",
       "name: x\nkind: eval\ndataset: {root: data/synth, train_list: a, test_list: b}\n",
       "eval: nothing to evaluate"},
      {"not yaml", "name: [unclosed\n", "not valid YAML at line"},
      // Only the coordinator knows these: its cluster size, its data roots and its filesystem.
      {"more trainers than the cluster",
       "name: x\ndataset: {root: data/synth}\nresources: {trainers: 9}\n",
       "resources.trainers: 9 is more than this cluster's maximum of 8"},
      {"outside the data roots", "name: x\ndataset: {root: /etc}\n",
       "dataset.root: \"/etc\" is outside the data roots"},
      {"missing dataset", "name: x\ndataset: {root: data/nothing-here}\n",
       "does not exist; check the path"},
  };
  for (const BrokenSpec& c : cases) {
    WriteSpec("broken.yaml", c.yaml);
    Result r = Run("submit broken.yaml");
    EXPECT_EQ(r.exit_code, 4) << c.label << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << c.label;
    EXPECT_TRUE(r.out.empty()) << c.label << ": " << r.out;
  }
  // Several problems are named in one message.
  WriteSpec("broken.yaml", "name: x\nsampling: {clip_lenght: 8}\nmodel: {backbone: r50}\n");
  Result several = Run("submit broken.yaml");
  EXPECT_EQ(several.exit_code, 4);
  EXPECT_THAT(several.err, HasSubstr("3 problems"));
  EXPECT_THAT(several.err, HasSubstr("dataset.root"));
  EXPECT_THAT(several.err, HasSubstr("model.backbone"));
  EXPECT_THAT(several.err, HasSubstr("sampling.clip_lenght"));
  EXPECT_EQ(JobCount(), 0);
  EXPECT_THAT(Run("list").out, HasSubstr("no jobs"));
}

TEST_F(TeclctlTest, SetOverridesFields) {
  Result r = Run(
      "submit spec.yaml --set resources.trainers=3 --set=priority=7 --set sampling.speeds=[1,2]");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Result status = Run("--output=json status job-000001");
  tecl::v1::Job job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(status.out, &job).ok());
  EXPECT_EQ(job.spec().resources().trainers(), 3);
  EXPECT_EQ(job.spec().priority(), 7);
  EXPECT_THAT(job.spec().sampling().speeds(), ::testing::ElementsAre(1, 2));
}

TEST_F(TeclctlTest, SubmitWaitShowsProgressAndSucceeds) {
  AddWorker(tecl::v1::WORKER_KIND_TRAINER);
  AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  Result r = Run("submit spec.yaml --wait");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("job-000001"));
  EXPECT_THAT(r.err, HasSubstr("pending -> scheduled"));
  EXPECT_THAT(r.err, HasSubstr("job-000001 succeeded: rank 0 finished at step 100"));
  Result events = Run("events job-000001");
  EXPECT_THAT(events.out, HasSubstr("checkpoint at step 100"));
}

TEST_F(TeclctlTest, StatusShowsTheResultsOfAnEvaluation) {
  WriteSpec("eval.yaml", R"(kind: eval
dataset: {root: data/synth, train_list: trainlist.txt, test_list: testlist.txt}
model: {backbone: tiny3d}
eval: {random_init: true, recall_at: [1, 5]}
)");
  AddWorker(tecl::v1::WORKER_KIND_TRAINER);
  AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  Result r = Run("submit eval.yaml --wait");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("evaluation finished"));
  Result status = Run("status job-000001");
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("Evaluation of random init (10 queries, 40 gallery videos"));
  EXPECT_THAT(status.out, HasSubstr("recall@1"));
  EXPECT_THAT(status.out, HasSubstr("recall@5"));
  EXPECT_THAT(status.out, HasSubstr("linear probe top-1  0.5000"));
  EXPECT_THAT(status.out, HasSubstr("random_init: true"));
}

TEST_F(TeclctlTest, EvalSubmitsAnEvaluationOfAPretrainingJobOrItsRandomInit) {
  const std::string source = SubmitOk();
  Result r = Run("eval " + source + " --set eval.clips_per_video=3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Result status = Run("--output=json status job-000002");
  tecl::v1::Job job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(status.out, &job).ok()) << status.out;
  Result source_status = Run("--output=json status " + source);
  tecl::v1::Job pretrain;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(source_status.out, &pretrain).ok());
  EXPECT_EQ(job.spec().kind(), tecl::v1::JOB_KIND_EVAL);
  EXPECT_EQ(job.spec().eval().source_job_id(), source);
  EXPECT_EQ(job.spec().eval().clips_per_video(), 3);
  EXPECT_EQ(job.spec().dataset().root(), pretrain.spec().dataset().root());
  EXPECT_EQ(job.spec().model().backbone(), pretrain.spec().model().backbone());
  EXPECT_EQ(job.spec().resources().trainers(), 1);
  EXPECT_EQ(job.spec().name(), pretrain.spec().name() + "-eval");

  ASSERT_EQ(Run("eval " + source + " --random_init").exit_code, 0);
  Result random = Run("--output=json status job-000003");
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(random.out, &job).ok());
  EXPECT_TRUE(job.spec().eval().random_init());
  EXPECT_TRUE(job.spec().eval().source_job_id().empty());
  EXPECT_EQ(job.spec().seed(), pretrain.spec().seed());

  Result of_eval = Run("eval job-000002");
  EXPECT_EQ(of_eval.exit_code, 4) << of_eval.err;
  EXPECT_THAT(of_eval.err, HasSubstr("not a pretraining job"));
  EXPECT_EQ(Run("eval job-424242").exit_code, 5);
  EXPECT_EQ(Run("eval").exit_code, 2);
}

TEST_F(TeclctlTest, SubmitWaitExitCodesForAFailedAndACancelledJob) {
  AddWorker(tecl::v1::WORKER_KIND_TRAINER, tecl::v1::OUTCOME_FATAL);
  AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  Result failed = Run("submit spec.yaml --wait");
  EXPECT_EQ(failed.exit_code, 6) << failed.err;
  EXPECT_THAT(failed.err, HasSubstr("failed fatally"));

  workers_.front()->set_outcome(tecl::v1::OUTCOME_UNSPECIFIED);  // Runs until stopped.
  // The test submits first with a request id; teclctl, given the same id, waits on that job.
  const std::string id = SubmitLikeTeclctl("spec.yaml", "fixed-request");
  Result cancelled;
  std::thread waiting(
      [&] { cancelled = Run("submit spec.yaml --wait --request_id=fixed-request"); });
  ASSERT_TRUE(tecl::testing::WaitForState(client_.get(), id, tecl::v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(client_->CancelJob(id, "").ok());
  waiting.join();
  EXPECT_EQ(cancelled.exit_code, 7) << cancelled.err;
  EXPECT_THAT(cancelled.err, HasSubstr(id + " cancelled"));
}

TEST_F(TeclctlTest, EventsFollowUntilTheJobFinishes) {
  const std::string id = SubmitOk();
  Result followed;
  std::thread follower([&] { followed = Run("events " + id + " -f"); });
  AddWorker(tecl::v1::WORKER_KIND_TRAINER);
  AddWorker(tecl::v1::WORKER_KIND_DATALOADER);
  follower.join();
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
  EXPECT_THAT(followed.out, HasSubstr("submitted"));
  EXPECT_THAT(followed.out, HasSubstr("running -> succeeded"));
}

TEST_F(TeclctlTest, UsageErrorsAndHelp) {
  EXPECT_EQ(Run("").exit_code, 2);
  Result unknown = Run("frobnicate");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command \"frobnicate\""));
  EXPECT_EQ(Run("status").exit_code, 2);
  EXPECT_EQ(Run("list --output=xml").exit_code, 2);
  EXPECT_EQ(Run("list --state=bogus").exit_code, 2);
  Result missing = Run("submit nowhere.yaml");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("cannot read the job spec \"nowhere.yaml\""));
  Result help = Run("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Exit codes"));
  EXPECT_EQ(Run("logs").exit_code, 2);
  Result bad_rank = Run("logs job-000001 --rank=-5");
  EXPECT_EQ(bad_rank.exit_code, 2);
  EXPECT_THAT(bad_rank.err, HasSubstr("--rank must be a rank"));
  Result no_job = Run("logs job-nope");
  EXPECT_EQ(no_job.exit_code, 5) << no_job.err;
  for (const char* command : {"submit", "eval", "list", "status", "cancel", "events", "logs",
                              "workers", "top", "export", "local"}) {
    Result r = Run(absl::StrCat(command, " --help"));
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("teclctl ", command))) << command;
  }
}

TEST_F(TeclctlTest, AnUnreachableCoordinatorIsExplained) {
  Result r = RunRaw("--coordinator=127.0.0.1:1 list");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the coordinator at 127.0.0.1:1"));
  EXPECT_THAT(r.err, HasSubstr("teclctl local up"));
  // TECL_COORDINATOR is honoured.
  Result env = RunRaw("list", "TECL_COORDINATOR=" + server_->address());
  EXPECT_EQ(env.exit_code, 0) << env.err;
}

TEST_F(TeclctlTest, TokensComeFromAFileAndRolesAreEnforced) {
  Result refused = Run("list", "TECL_TOKEN_FILE=");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("--token_file"));
  std::ofstream(dir_ + "/token") << tokens_.user.token << "\n";
  Result accepted = Run("list --token_file=" + dir_ + "/token");
  EXPECT_EQ(accepted.exit_code, 0) << accepted.err;
  Result from_env = Run("list", "TECL_TOKEN_FILE= TECL_AUTH_TOKEN=" + tokens_.reader.token);
  EXPECT_EQ(from_env.exit_code, 0) << from_env.err;

  // A reader may list but not submit; a worker's token may do neither; nothing is stored.
  std::ofstream(dir_ + "/reader.token") << tokens_.reader.token << "\n";
  Result reader_submit = Run("submit spec.yaml --token_file=" + dir_ + "/reader.token");
  EXPECT_NE(reader_submit.exit_code, 0);
  EXPECT_THAT(reader_submit.err,
              HasSubstr("reader dashboard may not make this call: it needs the credentials of a user"));
  std::ofstream(dir_ + "/trainer.token") << tokens_.trainer.token << "\n";
  Result trainer_list = Run("list --token_file=" + dir_ + "/trainer.token");
  EXPECT_NE(trainer_list.exit_code, 0);
  EXPECT_EQ(JobCount(), 0);
}

}  // namespace
}  // namespace tecl::coordinator
