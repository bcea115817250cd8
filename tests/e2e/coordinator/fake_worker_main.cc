// A stand-in for tecl-worker / tecl-dataloader in end-to-end tests of the control plane: the kind
// comes from the name it is started under (…dataloader = dataloader), the coordinator from
// $TECL_COORDINATOR, its credentials from $TECL_TOKEN_FILE, $TECL_TLS_CERT, $TECL_TLS_KEY and
// $TECL_TLS_CA (as `teclctl local up` gives them); it runs until SIGTERM. See tests/integration/coordinator/fake_worker.h.
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "services/client/grpc_coordinator_client.h"
#include "services/common/auth.h"
#include "services/common/server.h"
#include "tests/integration/coordinator/fake_worker.h"

int main(int argc, char** argv) {
  tecl::BlockTerminationSignals();
  const char* address = std::getenv("TECL_COORDINATOR");
  if (address == nullptr) {
    std::cerr << "fake worker: set TECL_COORDINATOR\n";
    return 2;
  }
  tecl::testing::FakeWorkerOptions options;
  options.kind = absl::EndsWith(argv[0], "dataloader") ? tecl::v1::WORKER_KIND_DATALOADER
                                                       : tecl::v1::WORKER_KIND_TRAINER;
  options.interval = absl::Milliseconds(50);
  options.steps_per_beat = 20;
  auto env = [](const char* name) {
    const char* value = std::getenv(name);
    return std::string(value == nullptr ? "" : value);
  };
  tecl::ChannelOptions channel_options;
  absl::StatusOr<std::string> token = tecl::LoadToken(env("TECL_TOKEN_FILE"));
  if (!token.ok()) {
    std::cerr << "fake worker: " << token.status() << "\n";
    return 1;
  }
  channel_options.token = *token;
  channel_options.tls_cert_file = env("TECL_TLS_CERT");
  channel_options.tls_key_file = env("TECL_TLS_KEY");
  channel_options.tls_ca_file = env("TECL_TLS_CA");
  auto channel = tecl::MakeChannel(address, channel_options);
  if (!channel.ok()) {
    std::cerr << "fake worker: " << channel.status() << "\n";
    return 1;
  }
  tecl::testing::FakeWorker worker(tecl::NewCoordinatorClient(*channel), options);
  worker.Start();
  std::cerr << "fake " << argv[0] << " talking to " << address << "\n";
  tecl::WaitForTerminationSignal();
  worker.Stop();
  return 0;
}
