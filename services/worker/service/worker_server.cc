#include "services/worker/service/worker_server.h"

#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/client/grpc_coordinator_client.h"
#include "services/client/grpc_loader_client.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/worker/runner/batch_stream.h"
#include "services/worker/runner/job_runner.h"
#include "services/worker/runner/rendezvous_store.h"
#include "services/worker/runner/trainer_metrics.h"
#include "services/worker/train/host_allocator.h"

namespace tecl::worker {
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

absl::Status WorkerConfig::Validate() const {
  if (coordinator.empty()) {
    return absl::InvalidArgumentError(
        "--coordinator: empty; give the coordinator's host:port (e.g. 127.0.0.1:7070)");
  }
  if (threads < 0 || threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads: ", threads, " is outside [0, 1024] (0 = one per core)"));
  }
  if (cuda_device < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cuda_device: ", cuda_device, " must be >= 0"));
  }
  if (host_cache_max_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--host_cache_max_bytes: ", host_cache_max_bytes,
                     " must be >= 0 (0 = a quarter of physical memory)"));
  }
  if (default_heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("heartbeat interval: must be positive (e.g. 1s)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::Start(WorkerConfig config) {
  TECL_RETURN_IF_ERROR(config.Validate());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      MakeChannel(config.coordinator, config.channel);
  if (!channel.ok()) {
    return Annotate(channel.status(), absl::StrCat("--coordinator ", config.coordinator));
  }
  if (config.host_cache) {
    core::HostAllocatorOptions host_cache;
    host_cache.max_cached_bytes = static_cast<size_t>(config.host_cache_max_bytes);
    core::InstallHostCachingAllocator(host_cache);
  }

  std::unique_ptr<WorkerServer> server(new WorkerServer());
  metrics::RegisterProcessMetrics(server->registry_);
  RegisterHostCacheMetrics(server->registry_);
  TECL_ASSIGN_OR_RETURN(server->grpc_, GrpcServer::Start(config.server, {}, &server->registry_));

  const int cores = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  const int threads = config.threads > 0 ? config.threads : cores;
  GlooOptions gloo{config.gloo_interface, config.gloo_hostname};
  if (gloo.interface.empty() && gloo.hostname.empty() &&
      std::getenv("GLOO_SOCKET_IFNAME") == nullptr && IsLoopback(config.coordinator)) {
    gloo.hostname = "127.0.0.1";
  }
  std::shared_ptr<CoordinatorClient> coordinator = NewCoordinatorClient(*channel);
  JobRunnerOptions runner;
  runner.registry = &server->registry_;
  runner.default_threads = threads;
  runner.cuda_device = config.cuda_device;
  ChannelOptions loader_channel = config.channel;
  if (!loader_channel.tls_cert_file.empty()) loader_channel.token.clear();
  runner.loader_clients = [options = std::move(loader_channel)](
                              const std::string& address) -> std::shared_ptr<LoaderClient> {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> c = MakeChannel(address, options);
    return c.ok() ? NewLoaderClient(*c) : nullptr;
  };
  runner.batch_sources = LoaderBatchSources(runner.loader_clients);
  runner.communicators = RendezvousCommunicators(coordinator, gloo);

  WorkerAgentOptions agent_options;
  agent_options.coordinator_address = config.coordinator;
  agent_options.default_heartbeat_interval = config.default_heartbeat_interval;
  tecl::v1::WorkerInfo& info = agent_options.worker;
  info.set_kind(tecl::v1::WORKER_KIND_TRAINER);
  info.set_address(config.advertise_address.empty() ? server->address() : config.advertise_address);
  if (server->grpc_->metrics_port() > 0) {
    info.set_metrics_address(
        DialableAddress(config.server.metrics_address, server->grpc_->metrics_port()));
  }
  info.set_hostname(Hostname());
  const bool cuda = torch::cuda::is_available();
  info.set_device(cuda ? tecl::v1::DEVICE_CUDA : tecl::v1::DEVICE_CPU);
  info.set_gpus(cuda ? static_cast<int>(torch::cuda::device_count()) : 0);
  info.set_threads(threads);
  info.set_version(TECL_VERSION);
  server->info_ = info;
  server->agent_ =
      std::make_unique<WorkerAgent>(std::move(agent_options), std::move(coordinator),
                                    MakeJobExecutor(std::move(runner)), &server->registry_);
  server->agent_->Start();
  TECL_LOG(INFO) << "trainer serving health on " << server->grpc_->address() << ", metrics on port "
                 << server->grpc_->metrics_port() << ", coordinator " << config.coordinator << ", "
                 << (cuda ? absl::StrCat(info.gpus(), " GPUs") : std::string("CPU")) << ", "
                 << threads << " threads, host cache "
                 << (config.host_cache
                         ? absl::StrCat("up to ",
                                        core::GetHostAllocatorStats().max_cached_bytes >> 20,
                                        " MiB")
                         : std::string("off"));
  return server;
}

WorkerServer::~WorkerServer() { Shutdown(absl::ZeroDuration()); }

void WorkerServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (agent_ != nullptr) agent_->Shutdown();
  if (grpc_ != nullptr) grpc_->Shutdown(grace);
}

}  // namespace tecl::worker
