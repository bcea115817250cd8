// tecl-worker: a trainer. Registers with the coordinator, runs the pretraining ranks and evaluation
// jobs it is assigned (LibTorch; gradients averaged with Gloo or NCCL), reports progress in its
// heartbeats, serves gRPC health on --listen and Prometheus metrics on --metrics_listen.
#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "services/common/client_flags.h"
#include "services/common/flags.h"
#include "services/common/logging.h"
#include "services/common/server_flags.h"
#include "services/worker/service/worker_server.h"

ABSL_FLAG(int, threads, 0, "Intra-op threads for jobs that leave resources.threads_per_trainer unset (0 = one per core; teclctl local sets TECL_THREADS)");
ABSL_FLAG(std::string, gloo_interface, "", "Network interface Gloo binds (e.g. eth0); empty = $GLOO_SOCKET_IFNAME");
ABSL_FLAG(std::string, gloo_hostname, "", "Address Gloo binds when no interface is named (empty = 127.0.0.1 when the coordinator is on loopback, else this host's name)");
ABSL_FLAG(int, cuda_device, 0, "CUDA device of this trainer (jobs with resources.device: cuda)");
ABSL_FLAG(std::string, advertise_address, "", "host:port the cluster reaches this trainer at (default: the listen address)");
ABSL_FLAG(bool, host_cache, true, "Keep freed large host tensors for reuse (the host caching allocator; a CPU training step runs several times faster); false = LibTorch's default allocator");
ABSL_FLAG(int64_t, host_cache_max_bytes, 0, "Most bytes the host cache keeps free for reuse (0 = a quarter of physical memory)");
ABSL_FLAG(std::string, port_file, "", "Write the bound gRPC host:port here once serving (for --listen with port 0)");

int main(int argc, char** argv) {
  tecl::BlockTerminationSignals();
  tecl::ParseFlags(argc, argv, "runs TECL pretraining ranks and evaluation jobs assigned by the coordinator.\nUsage: tecl-worker [flags]");
  tecl::SetLogTag("worker");
  tecl::worker::WorkerConfig config;
  absl::StatusOr<tecl::ServerOptions> server_options = tecl::ServerOptionsFromFlags("0.0.0.0:7090");
  absl::StatusOr<tecl::ChannelOptions> channel = tecl::ChannelOptionsFromFlags();
  if (!server_options.ok() || !channel.ok()) {
    TECL_LOG(ERROR) << (server_options.ok() ? channel.status() : server_options.status()).message();
    return 2;
  }
  config.server = *std::move(server_options);
  config.channel = *channel;
  config.coordinator = absl::GetFlag(FLAGS_coordinator);
  config.advertise_address = absl::GetFlag(FLAGS_advertise_address);
  config.threads = absl::GetFlag(FLAGS_threads);
  config.cuda_device = absl::GetFlag(FLAGS_cuda_device);
  config.gloo_interface = absl::GetFlag(FLAGS_gloo_interface);
  config.gloo_hostname = absl::GetFlag(FLAGS_gloo_hostname);
  config.host_cache = absl::GetFlag(FLAGS_host_cache);
  config.host_cache_max_bytes = absl::GetFlag(FLAGS_host_cache_max_bytes);
  auto server = tecl::worker::WorkerServer::Start(config);
  if (!server.ok()) {
    TECL_LOG(ERROR) << "cannot start: " << server.status().message();
    return absl::IsInvalidArgument(server.status()) ? 2 : 1;
  }
  if (const std::string port_file = absl::GetFlag(FLAGS_port_file); !port_file.empty()) {
    std::ofstream(port_file + ".tmp") << (*server)->address() << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
#include "services/common/client_flags.h"
#include "services/common/flags.h"
#include "services/common/logging.h"
#include "services/common/server_flags.h"
#include "services/worker/service/worker_server.h"
  const int signal = tecl::WaitForTerminationSignal();
  TECL_LOG(INFO) << "signal " << signal << ": stopping the current job and shutting down";
  (*server)->Shutdown(absl::Seconds(5));
  return 0;
}
