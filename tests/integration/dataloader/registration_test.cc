// tecl-dataloader and the coordinator: registration and heartbeats against a real coordinator,
// a coordinator that is not there (the loader serves anyway), and the binary's --help.
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/auth.h"
#include "services/coordinator/service/coordinator_server.h"
#include "tests/integration/dataloader/fixtures.h"
#include "tests/testing/http_get.h"

namespace tecl::dataloader {
namespace {

using ::testing::HasSubstr;
using testing::TestConfig;
using testing::TestData;

TEST(RegistrationTest, RegistersWithTheCoordinatorAndHeartbeats) {
  std::string pattern = ::testing::TempDir() + "/dataloader_coord_XXXXXX";
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  coordinator::CoordinatorConfig coordinator_config;
  coordinator_config.server.address = "127.0.0.1:0";
  coordinator_config.server.metrics_address = "";
  coordinator_config.state_dir = pattern;
  coordinator_config.coordinator.membership.heartbeat_interval = absl::Milliseconds(50);
  const Credential loaders{Role::kDataloader, "loaders", "dataloader-token-0123456789"};
  const Credential trainers{Role::kTrainer, "trainers", "trainer-token-0123456789"};
  coordinator_config.server.tokens = {loaders, trainers};
  auto coordinator = coordinator::CoordinatorServer::Start(coordinator_config);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();

  // A trainer's token is refused for a dataloader's registration: the loader keeps retrying.
  DataLoaderConfig wrong = TestConfig();
  wrong.coordinator = (*coordinator)->address();
  wrong.coordinator_channel.token = trainers.token;
  auto impostor = DataLoaderServer::Start(wrong);
  ASSERT_TRUE(impostor.ok()) << impostor.status();
  EXPECT_FALSE((*impostor)->membership()->WaitUntilRegistered(absl::Milliseconds(500)));
  EXPECT_TRUE((*coordinator)->coordinator()->membership().List(tecl::v1::WORKER_KIND_DATALOADER).empty());
  (*impostor)->Shutdown(absl::Seconds(1));

  DataLoaderConfig config = TestConfig();
  config.coordinator = (*coordinator)->address();
  config.coordinator_channel.token = loaders.token;
  auto server = DataLoaderServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  MembershipLoop* registration = (*server)->membership();
  ASSERT_NE(registration, nullptr);
  ASSERT_TRUE(registration->WaitUntilRegistered(absl::Seconds(60)));

  std::vector<tecl::v1::WorkerInfo> workers =
      (*coordinator)->coordinator()->membership().List(tecl::v1::WORKER_KIND_DATALOADER);
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].id(), registration->worker_id());
  EXPECT_EQ(workers[0].address(), (*server)->address());
  EXPECT_EQ(workers[0].kind(), tecl::v1::WORKER_KIND_DATALOADER);
  EXPECT_EQ(workers[0].threads(), 2);
  // Heartbeats keep arriving (the coordinator asked for one every 50 ms).
  const int64_t first = workers[0].last_heartbeat_unix_ms();
  const absl::Time end = absl::Now() + absl::Seconds(60);
  int64_t latest = first;
  while (latest <= first && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(20));
    latest = (*coordinator)->coordinator()->membership().List(tecl::v1::WORKER_KIND_DATALOADER)[0].last_heartbeat_unix_ms();
  }
  EXPECT_GT(latest, first);
  (*server)->Shutdown(absl::Seconds(1));
  (*coordinator)->Shutdown(absl::Seconds(1));
  std::filesystem::remove_all(pattern);
}

TEST(RegistrationTest, AnUnreachableCoordinatorIsRetriedWhileTheLoaderServes) {
  DataLoaderConfig config = TestConfig();
  config.server.metrics_address = "127.0.0.1:0";
  config.coordinator = "127.0.0.1:1";  // Nothing listens there.
  auto server = DataLoaderServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_FALSE((*server)->membership()->WaitUntilRegistered(absl::Milliseconds(300)));
  const absl::Time end = absl::Now() + absl::Seconds(60);
  metrics::Registry& registry = (*server)->registry();
  while (registry.Serialize().find("tecl_dataloader_heartbeat_failures_total 1") == std::string::npos &&
         registry.Serialize().find("tecl_dataloader_heartbeat_failures_total 2") == std::string::npos &&
         absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(registry.Serialize(), HasSubstr("tecl_dataloader_registered 0"));
  // Serving works meanwhile.
  tecl::v1::StreamBatchesRequest request = testing::TrainRequest(TestData().good_csv);
  request.set_max_steps(1);
  auto stub = tecl::v1::DataLoader::NewStub(testing::Channel((*server)->address()));
  grpc::ClientContext context;
  auto reader = stub->StreamBatches(&context, request);
  tecl::v1::ClipBatch batch;
  EXPECT_TRUE(reader->Read(&batch));
  EXPECT_FALSE(reader->Read(&batch));
  EXPECT_TRUE(reader->Finish().ok());
  // /metrics is served over HTTP.
  absl::StatusOr<tecl::testing::HttpResponse> scrape =
      tecl::testing::HttpGet("127.0.0.1", (*server)->metrics_port(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_THAT(scrape->body, HasSubstr("tecl_dataloader_clips_total 8"));
  EXPECT_THAT(scrape->body, HasSubstr("tecl_dataloader_active_streams"));
}

TEST(BinaryTest, HelpListsTheFlags) {
  const char* bin_dir = std::getenv("TECL_BIN_DIR");
  ASSERT_NE(bin_dir, nullptr);
  tecl::testing::CommandResult result =
      tecl::testing::RunCommand(absl::StrCat(bin_dir, "/tecl-dataloader --help"));
  // Abseil's --help prints the usage and exits with 1 (as tecl-coordinator does).
  EXPECT_THAT(result.exit_code, ::testing::AnyOf(0, 1)) << result.output;
  EXPECT_THAT(result.output, HasSubstr("decodes, samples and augments clip batches"));
  for (const char* flag : {"--data_root", "--decode_threads", "--max_streams", "--manifest",
                           "--register", "--listen", "--coordinator"}) {
    EXPECT_THAT(result.output, HasSubstr(flag));
  }
  tecl::testing::CommandResult bad =
      tecl::testing::RunCommand(absl::StrCat(bin_dir, "/tecl-dataloader --manifest=/nonexistent --listen=127.0.0.1:0 --register=false"));
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("--manifest: \"/nonexistent\" is neither a folder"));
  // Without credentials the loader refuses to start and says how to give them.
  tecl::testing::CommandResult bare = tecl::testing::RunCommand(
      absl::StrCat("env -u TECL_INSECURE -u TECL_AUTH_FILE -u TECL_TOKEN_FILE ", bin_dir,
                   "/tecl-dataloader --listen=127.0.0.1:0 --metrics_listen= --register=false"));
  EXPECT_EQ(bare.exit_code, 1) << bare.output;
  EXPECT_THAT(bare.output, HasSubstr("--insecure"));
}

}  // namespace
}  // namespace tecl::dataloader
