// A stand-in for tecl-worker / tecl-dataloader in end-to-end tests of the control plane: the kind
// comes from the name it is started under (…dataloader = dataloader), the coordinator from
// $TECL_COORDINATOR; it runs until SIGTERM. See tests/integration/coordinator/fake_worker.h.
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
  auto channel = tecl::MakeChannel(address, tecl::ChannelOptions());
  if (!channel.ok()) return 1;
  tecl::testing::FakeWorker worker(tecl::NewCoordinatorClient(*channel), options);
  worker.Start();
  std::cerr << "fake " << argv[0] << " talking to " << address << "\n";
  tecl::WaitForTerminationSignal();
  worker.Stop();
  return 0;
}
