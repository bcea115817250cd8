// WorkerServer: config validation, serving health on 127.0.0.1:0 while the coordinator is
// unreachable, what the trainer registers as, start-up errors, prompt shutdown.
#include "services/worker/service/worker_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/common/auth.h"

namespace tecl::worker {
namespace {

using ::testing::HasSubstr;

// A trainer on 127.0.0.1:0 whose coordinator (port 1) never answers; no /metrics endpoint (its
// HTTP server takes seconds to stop) unless a test asks for one.
WorkerConfig LocalConfig() {
  WorkerConfig config;
  config.server.address = "127.0.0.1:0";
  config.server.metrics_address = "";
  config.coordinator = "127.0.0.1:1";
  config.threads = 2;
  config.host_cache = false;
  return config;
}

void ExpectInvalid(const WorkerConfig& config, const std::string& text) {
  const absl::Status status = config.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(text));
  const auto server = WorkerServer::Start(config);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WorkerConfigTest, ValidateNamesTheBadSetting) {
  EXPECT_TRUE(LocalConfig().Validate().ok());
  WorkerConfig config = LocalConfig();
  config.coordinator = "";
  ExpectInvalid(config, "--coordinator: empty");
  config = LocalConfig();
  config.threads = -1;
  ExpectInvalid(config, "--threads: -1 is outside [0, 1024]");
  config = LocalConfig();
  config.cuda_device = -2;
  ExpectInvalid(config, "--cuda_device: -2 must be >= 0");
  config = LocalConfig();
  config.host_cache_max_bytes = -5;
  ExpectInvalid(config, "--host_cache_max_bytes: -5 must be >= 0");
  config = LocalConfig();
  config.default_heartbeat_interval = absl::ZeroDuration();
  ExpectInvalid(config, "heartbeat interval: must be positive");
}

TEST(WorkerServerTest, ServesHealthAndDescribesItselfWhileTheCoordinatorIsAway) {
  WorkerConfig config = LocalConfig();
  config.server.metrics_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<WorkerServer>> server = WorkerServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_GT((*server)->metrics_port(), 0);
  EXPECT_EQ((*server)->address(), "127.0.0.1:" + std::to_string((*server)->port()));
  const tecl::v1::WorkerInfo& info = (*server)->info();
  EXPECT_EQ(info.kind(), tecl::v1::WORKER_KIND_TRAINER);
  EXPECT_EQ(info.address(), (*server)->address());
  EXPECT_EQ(info.metrics_address(), "127.0.0.1:" + std::to_string((*server)->metrics_port()));
  EXPECT_EQ(info.threads(), 2);
  EXPECT_FALSE(info.version().empty());

  auto channel = MakeChannel((*server)->address(), {});
  ASSERT_TRUE(channel.ok());
  auto health = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, {}, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  EXPECT_EQ((*server)->agent().worker_id(), "");  // Never registered: nobody answers.
  (*server)->Shutdown(absl::ZeroDuration());      // Returns although registration is retrying.
  (*server)->Shutdown(absl::ZeroDuration());      // Idempotent.
}

TEST(WorkerServerTest, AdvertisedAddressIsWhatItRegistersAs) {
  WorkerConfig config = LocalConfig();
  config.advertise_address = "trainer-0.example:7090";
  auto server = WorkerServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->info().address(), "trainer-0.example:7090");
}

TEST(WorkerServerTest, StartErrorsNameWhatFailed) {
  WorkerConfig config = LocalConfig();
  config.channel.tls_ca_file = "/nonexistent/ca.pem";
  auto bad_ca = WorkerServer::Start(config);
  ASSERT_FALSE(bad_ca.ok());
  EXPECT_THAT(bad_ca.status().message(), HasSubstr("--coordinator 127.0.0.1:1"));
  EXPECT_THAT(bad_ca.status().message(), HasSubstr("/nonexistent/ca.pem"));

  auto first = WorkerServer::Start(LocalConfig());
  ASSERT_TRUE(first.ok()) << first.status();
  config = LocalConfig();
  config.server.address = (*first)->address();  // Taken.
  auto second = WorkerServer::Start(config);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace tecl::worker
