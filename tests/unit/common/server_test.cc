// GrpcServer, authentication and the metrics endpoint on real servers bound to 127.0.0.1:0.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "services/common/auth.h"
#include "services/common/metrics.h"
#include "services/common/server.h"
#include "tecl/v1/coordinator_service.grpc.pb.h"
#include "tests/testing/http_get.h"

namespace tecl {
namespace {

using ::testing::HasSubstr;

// A service with one rpc, guarded the way every TECL adapter is.
class GuardedService final : public tecl::v1::JobService::CallbackService {
 public:
  explicit GuardedService(TokenAuthenticator auth) : auth_(std::move(auth)) {}
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const tecl::v1::GetJobRequest* request,
                                   tecl::v1::Job* response) override {
    if (auto* refused = RejectUnauthenticated(context, auth_)) return refused;
    ++handled_;
    response->set_id(request->job_id());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  int handled() const { return handled_; }

 private:
  TokenAuthenticator auth_;
  std::atomic<int> handled_{0};
};

std::string TempDir() {
  char pattern[] = "/tmp/tecl_server_test_XXXXXX";
  return mkdtemp(pattern);
}

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> tokens, ServerOptions options = {}) {
    service_ = std::make_unique<GuardedService>(TokenAuthenticator(std::move(tokens)));
    options.address = options.address == "0.0.0.0:0" ? "127.0.0.1:0" : options.address;
    options.metrics_address = "127.0.0.1:0";
    metrics::RegisterProcessMetrics(registry_);
    auto server = GrpcServer::Start(options, {service_.get()}, &registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    ASSERT_GT(server_->metrics_port(), 0);
  }

  grpc::Status CallGetJob(const ChannelOptions& options, tecl::v1::Job* job) {
    auto channel = MakeChannel(server_->local_address(), options);
    EXPECT_TRUE(channel.ok());
    auto stub = tecl::v1::JobService::NewStub(*channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    tecl::v1::GetJobRequest request;
    request.set_job_id("job-1");
    return stub->GetJob(&context, request, job);
  }

  metrics::Registry registry_;
  std::unique_ptr<GuardedService> service_;
  std::unique_ptr<GrpcServer> server_;
};

TEST_F(ServerTest, BindsPortZeroAndReportsTheBoundPort) {
  StartServer({});
  EXPECT_EQ(server_->address(), absl::StrCat("127.0.0.1:", server_->port()));
  EXPECT_EQ(server_->local_address(), server_->address());
  EXPECT_EQ(DialableAddress("0.0.0.0:0", 81), "127.0.0.1:81");
  EXPECT_EQ(DialableAddress("10.1.2.3:0", 81), "10.1.2.3:81");
}

TEST_F(ServerTest, AuthOffAcceptsCallsWithoutToken) {
  StartServer({});
  tecl::v1::Job job;
  ASSERT_TRUE(CallGetJob({}, &job).ok());
  EXPECT_EQ(job.id(), "job-1");
}

TEST_F(ServerTest, AuthAcceptsTheRightTokenAndRefusesMissingOrWrong) {
  StartServer({"s3cret", "worker-token"});
  tecl::v1::Job job;
  ChannelOptions right;
  right.token = "s3cret";
  EXPECT_TRUE(CallGetJob(right, &job).ok());
  right.token = "worker-token";
  EXPECT_TRUE(CallGetJob(right, &job).ok());
  EXPECT_EQ(service_->handled(), 2);

  grpc::Status missing = CallGetJob({}, &job);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("missing bearer token"));

  ChannelOptions wrong;
  wrong.token = "s3cre";
  grpc::Status refused = CallGetJob(wrong, &job);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused.error_message(), HasSubstr("wrong bearer token"));
  // Refused calls never reach the logic.
  EXPECT_EQ(service_->handled(), 2);
}

TEST_F(ServerTest, HealthServiceAnswersAndGoesNotServingOnShutdown) {
  StartServer({"s3cret"});  // Health stays open without a token (probes).
  auto channel = MakeChannel(server_->local_address(), {});
  ASSERT_TRUE(channel.ok());
  auto health = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  server_->Shutdown(absl::Seconds(1));
  grpc::ClientContext after;
  after.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  EXPECT_FALSE(health->Check(&after, request, &response).ok());
}

// A process that serves nothing but health (a trainer) still starts, answers health checks and
// refuses other methods with UNIMPLEMENTED.
TEST(HealthOnlyServerTest, ServesHealthAndRefusesEverythingElse) {
  metrics::Registry registry;
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.metrics_address = "";
  auto server = GrpcServer::Start(options, {}, &registry);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = MakeChannel((*server)->local_address(), {});
  ASSERT_TRUE(channel.ok());
  auto health = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  auto stub = tecl::v1::JobService::NewStub(*channel);
  grpc::ClientContext call;
  tecl::v1::GetJobRequest get;
  tecl::v1::Job job;
  EXPECT_EQ(stub->GetJob(&call, get, &job).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  (*server)->Shutdown(absl::Seconds(1));
}

TEST_F(ServerTest, MetricsEndpointPassesPromtoolAndCountsRpcs) {
  StartServer({"s3cret"});
  tecl::v1::Job job;
  ChannelOptions right;
  right.token = "s3cret";
  ASSERT_TRUE(CallGetJob(right, &job).ok());
  ASSERT_FALSE(CallGetJob({}, &job).ok());
  auto& histogram = metrics::BuildHistogram().Name("tecl_test_step_seconds").Help("Step time.").Register(registry_);
  histogram.Add({{"rank", "0"}}, metrics::Histogram::ExponentialBuckets(0.01, 2, 8)).Observe(0.3);
  metrics::BuildGauge().Name("tecl_test_queue_depth").Help("Queue \"depth\" \\ now.").Register(registry_)
      .Add({{"job", "a\"b"}}).Set(3);

  auto response = testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_THAT(response->headers, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(response->body, HasSubstr("tecl_grpc_server_handled_total{code=\"OK\",method=\"/tecl.v1.JobService/GetJob\"} 1"));
  EXPECT_THAT(response->body, HasSubstr("tecl_grpc_server_handled_total{code=\"UNAUTHENTICATED\",method=\"/tecl.v1.JobService/GetJob\"} 1"));
  EXPECT_THAT(response->body, HasSubstr("process_resident_memory_bytes "));
  EXPECT_THAT(response->body, HasSubstr("tecl_build_info{version="));

  const testing::CommandResult promtool = testing::RunCommand("promtool check metrics", response->body);
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output << "\n---\n" << response->body;

  auto health = testing::HttpGet("127.0.0.1", server_->metrics_port(), "/healthz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->body, "ok\n");
}

TEST_F(ServerTest, PromtoolRejectsBrokenExposition) {
  // Guards the check above: promtool must fail on a counter without _total.
  const testing::CommandResult promtool = testing::RunCommand(
      "promtool check metrics", "# HELP x_seconds x\n# TYPE x_seconds counter\nx_seconds 1\n");
  EXPECT_NE(promtool.exit_code, 0);
}

TEST_F(ServerTest, BusyAddressIsUnavailable) {
  StartServer({});
  ServerOptions options;
  options.address = server_->address();
  options.metrics_address = "";
  auto second = GrpcServer::Start(options, {}, nullptr);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("cannot listen on"));
}

TEST(AuthTokensTest, LoadsTokensFromFileAndEnvironment) {
  const std::string dir = TempDir();
  const std::string file = dir + "/tokens";
  std::ofstream(file) << "# comment\n  tok-a  \n\ntok-b\n";
  auto tokens = LoadTokens(file);
  ASSERT_TRUE(tokens.ok());
  EXPECT_THAT(*tokens, ::testing::ElementsAre("tok-a", "tok-b"));

  std::ofstream(dir + "/empty") << "\n# nothing\n";
  EXPECT_EQ(LoadTokens(dir + "/empty").status().code(), absl::StatusCode::kInvalidArgument);
  auto missing = LoadTokens(dir + "/absent");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/absent"));

  unsetenv(kAuthTokenEnv);
  EXPECT_TRUE(LoadTokens("")->empty());
  setenv(kAuthTokenEnv, "from-env", 1);
  EXPECT_THAT(*LoadTokens(""), ::testing::ElementsAre("from-env"));
  unsetenv(kAuthTokenEnv);
}

TEST(TlsTest, ServesOverTlsWithTokenAndRefusesPlaintext) {
  const std::string dir = TempDir();
  const std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ", dir, "/key.pem -out ", dir,
      "/cert.pem");
  ASSERT_EQ(testing::RunCommand(cmd).exit_code, 0);
  GuardedService service(TokenAuthenticator({"tls-token"}));
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.metrics_address = "";
  options.tls_cert_file = dir + "/cert.pem";
  options.tls_key_file = dir + "/key.pem";
  auto server = GrpcServer::Start(options, {&service}, nullptr);
  ASSERT_TRUE(server.ok()) << server.status();

  ChannelOptions client;
  client.token = "tls-token";
  client.tls_ca_file = dir + "/cert.pem";
  auto channel = MakeChannel((*server)->local_address(), client);
  ASSERT_TRUE(channel.ok());
  auto stub = tecl::v1::JobService::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  tecl::v1::GetJobRequest request;
  tecl::v1::Job job;
  EXPECT_TRUE(stub->GetJob(&context, request, &job).ok());

  client.tls_ca_file.clear();  // Plaintext client against a TLS port.
  auto plain = tecl::v1::JobService::NewStub(*MakeChannel((*server)->local_address(), client));
  grpc::ClientContext plain_context;
  plain_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  EXPECT_FALSE(plain->GetJob(&plain_context, request, &job).ok());

  options.tls_key_file = dir + "/absent.pem";
  EXPECT_EQ(GrpcServer::Start(options, {}, nullptr).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tecl
