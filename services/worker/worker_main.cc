// tecl-worker: a trainer. Registers with the coordinator, runs the pretraining ranks and evaluation
// jobs it is assigned (LibTorch; gradients averaged with Gloo or NCCL), reports progress in its
// heartbeats, serves gRPC health on --listen and Prometheus metrics on --metrics_listen.
#include <torch/cuda.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/client/grpc_coordinator_client.h"
#include "services/common/auth.h"
#include "services/common/flags.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/server.h"
#include "services/common/client_flags.h"
#include "services/common/server_flags.h"
#include "services/worker/runner/job_runner.h"
#include "services/worker/runner/trainer_metrics.h"
#include "services/worker/runner/worker_agent.h"
#include "services/worker/train/host_allocator.h"

ABSL_FLAG(int, threads, 0,
          "Intra-op threads for jobs that leave resources.threads_per_trainer unset "
          "(0 = one per core; teclctl local sets TECL_THREADS)");
ABSL_FLAG(std::string, gloo_interface, "",
          "Network interface Gloo binds (e.g. eth0); empty = $GLOO_SOCKET_IFNAME");
ABSL_FLAG(std::string, gloo_hostname, "",
          "Address Gloo binds when no interface is named (empty = 127.0.0.1 when the coordinator "
          "is on loopback, else this host's name)");
ABSL_FLAG(int, cuda_device, 0, "CUDA device of this trainer (jobs with resources.device: cuda)");
ABSL_FLAG(std::string, advertise_address, "",
          "host:port the cluster reaches this trainer at (default: the listen address)");
ABSL_FLAG(
    bool, host_cache, true,
    "Keep freed large host tensors for reuse (the host caching allocator; a CPU training step "
    "runs several times faster); false = LibTorch's default allocator");
ABSL_FLAG(int64_t, host_cache_max_bytes, 0,
          "Most bytes the host cache keeps free for reuse (0 = a quarter of physical memory)");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound gRPC host:port here once serving (for --listen with port 0)");

namespace {

bool IsLoopback(const std::string& address) {
  return absl::StartsWith(address, "127.") || absl::StartsWith(address, "localhost") ||
         absl::StartsWith(address, "[::1]");
}

std::string Hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  tecl::BlockTerminationSignals();
  tecl::ParseFlags(argc, argv,
                   "runs TECL pretraining ranks and evaluation jobs assigned by the coordinator.\n"
                   "Usage: tecl-worker [flags]");
  tecl::SetLogTag("worker");
  absl::StatusOr<tecl::ChannelOptions> channel_options = tecl::ChannelOptionsFromFlags();
  if (!channel_options.ok()) {
    TECL_LOG(ERROR) << channel_options.status().message();
    return 2;
  }
  const std::string coordinator_address = absl::GetFlag(FLAGS_coordinator);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      tecl::MakeChannel(coordinator_address, *channel_options);
  if (!channel.ok()) {
    TECL_LOG(ERROR) << "--coordinator " << coordinator_address << ": "
                    << channel.status().message();
    return 2;
  }

  if (absl::GetFlag(FLAGS_host_cache_max_bytes) < 0) {
    TECL_LOG(ERROR) << "--host_cache_max_bytes " << absl::GetFlag(FLAGS_host_cache_max_bytes)
                    << ": must be >= 0 (0 = a quarter of physical memory)";
    return 2;
  }
  if (absl::GetFlag(FLAGS_host_cache)) {
    tecl::worker::core::HostAllocatorOptions host_cache;
    host_cache.max_cached_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_host_cache_max_bytes));
    tecl::worker::core::InstallHostCachingAllocator(host_cache);
  }

  tecl::metrics::Registry registry;
  tecl::metrics::RegisterProcessMetrics(registry);
  tecl::worker::RegisterHostCacheMetrics(registry);
  absl::StatusOr<std::unique_ptr<tecl::GrpcServer>> server =
      tecl::GrpcServer::Start(tecl::ServerOptionsFromFlags("0.0.0.0:7090"), {}, &registry);
  if (!server.ok()) {
    TECL_LOG(ERROR) << "cannot start: " << server.status().message();
    return 1;
  }
  if (const std::string port_file = absl::GetFlag(FLAGS_port_file); !port_file.empty()) {
    std::ofstream(port_file + ".tmp") << (*server)->local_address() << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }

  const int cores = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  const int threads = absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads) : cores;
  tecl::worker::JobRunnerOptions runner;
  runner.registry = &registry;
  runner.default_threads = threads;
  runner.cuda_device = absl::GetFlag(FLAGS_cuda_device);
  runner.gloo_interface = absl::GetFlag(FLAGS_gloo_interface);
  runner.gloo_hostname = absl::GetFlag(FLAGS_gloo_hostname);
  if (runner.gloo_interface.empty() && runner.gloo_hostname.empty() &&
      std::getenv("GLOO_SOCKET_IFNAME") == nullptr && IsLoopback(coordinator_address)) {
    runner.gloo_hostname = "127.0.0.1";
  }
  runner.loader_channels = [options = *channel_options](const std::string& address) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> c = tecl::MakeChannel(address, options);
    return c.ok() ? *c : nullptr;
  };

  tecl::worker::WorkerAgentOptions agent_options;
  tecl::v1::WorkerInfo& info = agent_options.worker;
  info.set_kind(tecl::v1::WORKER_KIND_TRAINER);
  info.set_address(absl::GetFlag(FLAGS_advertise_address).empty()
                       ? (*server)->local_address()
                       : absl::GetFlag(FLAGS_advertise_address));
  info.set_metrics_address(
      tecl::DialableAddress(absl::GetFlag(FLAGS_metrics_listen), (*server)->metrics_port()));
  info.set_hostname(Hostname());
  const bool cuda = torch::cuda::is_available();
  info.set_device(cuda ? tecl::v1::DEVICE_CUDA : tecl::v1::DEVICE_CPU);
  info.set_gpus(cuda ? static_cast<int>(torch::cuda::device_count()) : 0);
  info.set_threads(threads);
  info.set_version(TECL_VERSION);

  agent_options.coordinator_address = coordinator_address;
  tecl::worker::WorkerAgent agent(agent_options, tecl::NewCoordinatorClient(*channel),
                                  tecl::worker::MakeJobExecutor(runner), &registry);
  agent.Start();
  TECL_LOG(INFO) << "trainer serving health on " << (*server)->address() << ", metrics on port "
                 << (*server)->metrics_port() << ", coordinator " << coordinator_address << ", "
                 << (cuda ? absl::StrCat(info.gpus(), " GPUs") : std::string("CPU")) << ", "
                 << threads << " threads, host cache "
                 << (absl::GetFlag(FLAGS_host_cache)
                         ? absl::StrCat(
                               "up to ",
                               tecl::worker::core::GetHostAllocatorStats().max_cached_bytes >> 20,
                               " MiB")
                         : std::string("off"));
  const int signal = tecl::WaitForTerminationSignal();
  TECL_LOG(INFO) << "signal " << signal << ": stopping the current job and shutting down";
  agent.Shutdown();
  (*server)->Shutdown(absl::Seconds(5));
  return 0;
}
