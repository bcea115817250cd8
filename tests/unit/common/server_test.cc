// GrpcServer, authentication and the metrics endpoint on real servers bound to 127.0.0.1:0.
#include <grpcpp/grpcpp.h>
#include <errno.h>
#include <signal.h>
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
#include "tests/testing/test_pki.h"

namespace tecl {
namespace {

using ::testing::HasSubstr;

// A service with one rpc, guarded the way every TECL adapter is: users and readers may call it.
class GuardedService final : public tecl::v1::JobService::CallbackService {
 public:
  explicit GuardedService(Authenticator auth) : auth_(std::move(auth)) {}
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const tecl::v1::GetJobRequest* request,
                                   tecl::v1::Job* response) override {
    if (auto* refused = Refuse(context, auth_, {Role::kUser, Role::kReader})) return refused;
    ++handled_;
    response->set_id(request->job_id());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  int handled() const { return handled_; }

 private:
  Authenticator auth_;
  std::atomic<int> handled_{0};
};

std::string TempDir() {
  char pattern[] = "/tmp/tecl_server_test_XXXXXX";
  return mkdtemp(pattern);
}

class ServerTest : public ::testing::Test {
 protected:
  // With these tokens; none = an --insecure server.
  void StartServer(std::vector<Credential> tokens, ServerOptions options = {}) {
    options.tokens = std::move(tokens);
    options.insecure = options.tokens.empty() && options.tls_ca_file.empty();
    absl::StatusOr<Authenticator> auth = MakeAuthenticator(options);
    ASSERT_TRUE(auth.ok()) << auth.status();
    service_ = std::make_unique<GuardedService>(*std::move(auth));
    options.address = options.address == "0.0.0.0:0" ? "127.0.0.1:0" : options.address;
    options.metrics_address = "127.0.0.1:0";
    metrics::RegisterProcessMetrics(registry_);
    auto server = GrpcServer::Start(options, {service_.get()}, &registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    ASSERT_GT(server_->metrics_port(), 0);
  }

  grpc::Status CallGetJob(const ChannelOptions& options, tecl::v1::Job* job,
                          const std::string& job_id = "job-1") {
    auto channel = MakeChannel(server_->local_address(), options);
    EXPECT_TRUE(channel.ok());
    auto stub = tecl::v1::JobService::NewStub(*channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    tecl::v1::GetJobRequest request;
    request.set_job_id(job_id);
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

const Credential kAlice{Role::kUser, "alice", "alice-token-0123456789"};
const Credential kGrafana{Role::kReader, "grafana", "grafana-token-0123456789"};
const Credential kWorkers{Role::kTrainer, "workers", "workers-token-0123456789"};

ChannelOptions WithToken(const Credential& credential) {
  ChannelOptions options;
  options.token = credential.token;
  return options;
}

TEST_F(ServerTest, AnInsecureServerAcceptsCallsWithoutTokenAndSaysSo) {
  StartServer({});
  tecl::v1::Job job;
  ASSERT_TRUE(CallGetJob({}, &job).ok());
  EXPECT_EQ(job.id(), "job-1");
  auto metrics = testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_THAT(metrics->body, HasSubstr("tecl_insecure 1"));
}

TEST(ServerCredentialsTest, AServerWithoutCredentialsRefusesToStart) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.metrics_address = "";
  tecl::v1::JobService::Service service;  // Any rpcs of its own (here all UNIMPLEMENTED).
  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start(options, {&service}, nullptr);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--auth_file"));
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--insecure"));
  EXPECT_EQ(MakeAuthenticator(options).status().code(), absl::StatusCode::kFailedPrecondition);
  // A CA alone is no credential: the server has no certificate to do mutual TLS with.
  options.tls_ca_file = "/etc/ssl/certs/ca-certificates.crt";
  EXPECT_EQ(GrpcServer::Start(options, {&service}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, TokensCarryRolesAndEachRpcAdmitsOnlyItsRoles) {
  StartServer({kAlice, kGrafana, kWorkers});
  tecl::v1::Job job;
  EXPECT_TRUE(CallGetJob(WithToken(kAlice), &job).ok());
  EXPECT_TRUE(CallGetJob(WithToken(kGrafana), &job).ok());
  EXPECT_EQ(service_->handled(), 2);

  grpc::Status trainer = CallGetJob(WithToken(kWorkers), &job);
  EXPECT_EQ(trainer.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(trainer.error_message(), HasSubstr("trainer workers may not make this call"));
  EXPECT_THAT(trainer.error_message(), HasSubstr("it needs the credentials of a user or a reader"));

  grpc::Status missing = CallGetJob({}, &job);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("missing credentials"));

  // Neither a prefix nor an extension of a token is the token.
  for (const std::string& wrong : {kAlice.token.substr(0, 10), kAlice.token + "x", std::string("")}) {
    ChannelOptions options;
    options.token = wrong;
    grpc::Status refused = CallGetJob(options, &job);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong;
  }
  // Refused calls never reach the logic.
  EXPECT_EQ(service_->handled(), 2);
}

TEST(AuthFileTest, ReadsRolesNamesAndTokensAndRefusesBadLines) {
  const std::string dir = TempDir();
  const std::string file = dir + "/auth";
  std::ofstream(file) << "# role name token\n  user alice alice-token-0123456789  \n\n"
                         "trainer workers workers-token-0123456789\n";
  auto credentials = LoadAuthFile(file);
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  ASSERT_EQ(credentials->size(), 2u);
  EXPECT_EQ((*credentials)[0].role, Role::kUser);
  EXPECT_EQ((*credentials)[0].name, "alice");
  EXPECT_EQ((*credentials)[1].token, "workers-token-0123456789");

  std::ofstream(dir + "/bad-role") << "admin root root-token-0123456789\n";
  EXPECT_THAT(std::string(LoadAuthFile(dir + "/bad-role").status().message()),
              HasSubstr("line 1: \"admin\" is not a role"));
  std::ofstream(dir + "/two-fields") << "# ok\nuser alice-token-0123456789\n";
  EXPECT_THAT(std::string(LoadAuthFile(dir + "/two-fields").status().message()),
              HasSubstr("line 2: expected `<role> <name> <token>`"));
  std::ofstream(dir + "/short") << "user alice short\n";
  EXPECT_THAT(std::string(LoadAuthFile(dir + "/short").status().message()),
              HasSubstr("use at least 16"));
  std::ofstream(dir + "/empty") << "\n# nothing\n";
  EXPECT_EQ(LoadAuthFile(dir + "/empty").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadAuthFile(dir + "/absent").status().code(), absl::StatusCode::kNotFound);

  AuthOptions twice;
  twice.tokens = {kAlice, {Role::kTrainer, "copy", kAlice.token}};
  EXPECT_THAT(std::string(Authenticator::Create(twice).status().message()),
              HasSubstr("share one token"));
}

TEST(TokenFileTest, TheFirstLineOrTheEnvironment) {
  const std::string dir = TempDir();
  std::ofstream(dir + "/token") << "# comment\n  tok-a  \ntok-b\n";
  EXPECT_EQ(*LoadToken(dir + "/token"), "tok-a");
  std::ofstream(dir + "/empty") << "\n# nothing\n";
  EXPECT_EQ(LoadToken(dir + "/empty").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(LoadToken(dir + "/absent").status().message()), HasSubstr("/absent"));
  unsetenv(kAuthTokenEnv);
  EXPECT_EQ(*LoadToken(""), "");
  setenv(kAuthTokenEnv, "from-env", 1);
  EXPECT_EQ(*LoadToken(""), "from-env");
  unsetenv(kAuthTokenEnv);
}

TEST_F(ServerTest, HealthServiceAnswersAndGoesNotServingOnShutdown) {
  StartServer({kAlice});  // Health stays open without a token (probes).
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

TEST_F(ServerTest, SetServingFlipsHealthAndHealthzAndIsIgnoredAfterShutdown) {
  StartServer({kAlice});
  auto channel = MakeChannel(server_->local_address(), {});
  ASSERT_TRUE(channel.ok());
  auto health = grpc::health::v1::Health::NewStub(*channel);
  auto check = [&] {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_TRUE(health->Check(&context, {}, &response).ok());
    return response.status();
  };
  auto healthz = [&] { return *testing::HttpGet("127.0.0.1", server_->metrics_port(), "/healthz"); };
  EXPECT_EQ(check(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(healthz().status, 200);
  EXPECT_EQ(healthz().body, "ok\n");

  server_->SetServing(false, "the state store failed: disk I/O error");
  EXPECT_EQ(check(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(healthz().status, 503);
  EXPECT_THAT(healthz().body, HasSubstr("not serving: the state store failed: disk I/O error"));

  server_->SetServing(true);
  EXPECT_EQ(check(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(healthz().status, 200);
  server_->Shutdown(absl::Seconds(1));
  server_->SetServing(true);  // No effect, no crash.
}

// gRPC reads a whole request before the handler (and its credential check) runs: the receive limit
// is what an unauthenticated caller can make a server buffer, so it is small.
TEST_F(ServerTest, AnOversizedRequestIsResourceExhaustedBeforeTheHandler) {
  StartServer({kAlice});
  auto call = [&](const ChannelOptions& options, size_t id_bytes) {
    tecl::v1::Job job;
    return CallGetJob(options, &job, std::string(id_bytes, 'j'));
  };
  const size_t limit = ServerOptions().max_receive_message_bytes;
  EXPECT_EQ(limit, size_t{4} << 20);
  grpc::Status unauthenticated = call({}, limit + 1);
  EXPECT_EQ(unauthenticated.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << unauthenticated.error_message();
  EXPECT_EQ(call(WithToken(kAlice), limit + 1).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(service_->handled(), 0);
  EXPECT_TRUE(call(WithToken(kAlice), limit - 64).ok());  // Just below: served.
  EXPECT_EQ(call({}, 16).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(service_->handled(), 1);
}

// A process that serves nothing but health (a trainer) has nothing to guard: it starts without
// credentials, answers health checks and refuses other methods with UNIMPLEMENTED.
// A service whose client or peer went away must see EPIPE on its next write, not die of SIGPIPE.
TEST(ProcessSignalsDeathTest, BlockTerminationSignalsMakesABrokenPipeAnError) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  auto write_to_broken_pipe = [] {
    int fds[2];
    if (pipe(fds) != 0) _exit(2);
    close(fds[0]);
    const ssize_t n = write(fds[1], "x", 1);
    _exit(n == -1 && errno == EPIPE ? 0 : 1);
  };
  EXPECT_EXIT(
      {
        signal(SIGPIPE, SIG_DFL);
        write_to_broken_pipe();
      },
      ::testing::KilledBySignal(SIGPIPE), "");
  EXPECT_EXIT(
      {
        signal(SIGPIPE, SIG_DFL);
        BlockTerminationSignals();
        write_to_broken_pipe();
      },
      ::testing::ExitedWithCode(0), "");
}

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
  StartServer({kAlice});
  tecl::v1::Job job;
  ASSERT_TRUE(CallGetJob(WithToken(kAlice), &job).ok());
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
  EXPECT_THAT(response->body, HasSubstr("tecl_insecure 0"));

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
  options.insecure = true;
  options.address = server_->address();
  options.metrics_address = "";
  auto second = GrpcServer::Start(options, {}, nullptr);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("cannot listen on"));
}

class MutualTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::TestPki> pki = testing::TestPki::Create(TempDir());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *std::move(pki);
    server_cert_ = *pki_.Issue("server", "coordinator:test", {"coordinator.test"});
  }

  // A server that requires client certificates (and accepts `tokens` too).
  void Start(std::vector<Credential> tokens = {}) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.metrics_address = "";
    options.tls_cert_file = server_cert_.cert;
    options.tls_key_file = server_cert_.key;
    options.tls_ca_file = pki_.ca();
    options.tokens = std::move(tokens);
    absl::StatusOr<Authenticator> auth = MakeAuthenticator(options);
    ASSERT_TRUE(auth.ok()) << auth.status();
    service_ = std::make_unique<GuardedService>(*std::move(auth));
    auto server = GrpcServer::Start(options, {service_.get()}, nullptr);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // GetJob with `client`'s certificate (none when empty) over TLS verified by the CA.
  grpc::Status Call(const testing::TestCertificate* client, const std::string& token = "",
                    const std::string& address = "", const std::string& server_name = "") {
    ChannelOptions options;
    options.tls_ca_file = pki_.ca();
    if (client != nullptr) {
      options.tls_cert_file = client->cert;
      options.tls_key_file = client->key;
    }
    options.token = token;
    options.tls_server_name = server_name;
    auto channel = MakeChannel(address.empty() ? server_->local_address() : address, options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    auto stub = tecl::v1::JobService::NewStub(*channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    tecl::v1::GetJobRequest request;
    tecl::v1::Job job;
    return stub->GetJob(&context, request, &job);
  }

  testing::TestPki pki_;
  testing::TestCertificate server_cert_;
  std::unique_ptr<GuardedService> service_;
  std::unique_ptr<GrpcServer> server_;
};

TEST_F(MutualTlsTest, TheClientCertificateNamesThePrincipal) {
  Start();
  const testing::TestCertificate alice = *pki_.Issue("alice", "user:alice");
  const testing::TestCertificate worker = *pki_.Issue("worker", "trainer:node-7");
  const testing::TestCertificate nameless = *pki_.Issue("nameless", "alice");
  EXPECT_TRUE(Call(&alice).ok());
  grpc::Status trainer = Call(&worker);
  EXPECT_EQ(trainer.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(trainer.error_message(), HasSubstr("trainer node-7 may not make this call"));
  grpc::Status bad_name = Call(&nameless);
  EXPECT_EQ(bad_name.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(bad_name.error_message(), HasSubstr("<role>:<name>"));
  // No client certificate: the handshake itself is refused.
  EXPECT_FALSE(Call(nullptr).ok());
  EXPECT_EQ(service_->handled(), 1);
}

TEST_F(MutualTlsTest, ATokenAndACertificateMustAgree) {
  Start({kAlice, kWorkers});
  const testing::TestCertificate alice = *pki_.Issue("alice", "user:alice");
  EXPECT_TRUE(Call(&alice, kAlice.token).ok());
  grpc::Status mixed = Call(&alice, kWorkers.token);
  EXPECT_EQ(mixed.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(mixed.error_message(), HasSubstr("use the credentials of one principal"));
}

TEST_F(MutualTlsTest, CertificatesFromAnotherAuthorityAreRefused) {
  Start();
  absl::StatusOr<testing::TestPki> other = testing::TestPki::Create(TempDir());
  ASSERT_TRUE(other.ok());
  const testing::TestCertificate forged = *other->Issue("alice", "user:alice");
  EXPECT_FALSE(Call(&forged).ok());
  EXPECT_EQ(service_->handled(), 0);
}

TEST_F(MutualTlsTest, TheServerNameCanBeOverridden) {
  Start();
  const testing::TestCertificate alice = *pki_.Issue("alice", "user:alice");
  // --tls_server_name: the name to expect in the certificate instead of the dialled host.
  EXPECT_TRUE(Call(&alice, "", server_->local_address(), "coordinator.test").ok());
  EXPECT_FALSE(Call(&alice, "", server_->local_address(), "elsewhere.test").ok());
}

TEST_F(MutualTlsTest, PlaintextClientsAndMissingFilesAreRefused) {
  Start();
  ChannelOptions plain;
  auto stub = tecl::v1::JobService::NewStub(*MakeChannel(server_->local_address(), plain));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  tecl::v1::GetJobRequest request;
  tecl::v1::Job job;
  EXPECT_FALSE(stub->GetJob(&context, request, &job).ok());
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.metrics_address = "";
  options.tls_cert_file = server_cert_.cert;
  options.tls_key_file = pki_.ca() + ".absent";
  options.tls_ca_file = pki_.ca();
  EXPECT_EQ(GrpcServer::Start(options, {}, nullptr).status().code(), absl::StatusCode::kNotFound);
  ChannelOptions half;
  half.tls_ca_file = pki_.ca();
  half.tls_cert_file = server_cert_.cert;
  EXPECT_EQ(MakeChannel(server_->local_address(), half).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tecl
