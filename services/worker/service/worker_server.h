// WorkerServer: a running tecl-worker (the gRPC health server with /metrics, the worker agent
// that registers with the coordinator and runs assignments, and the job runner's production
// factories: dataloader streams over gRPC, process groups through the coordinator's rendezvous),
// built from a WorkerConfig. tecl-worker's main and the tests start it the same way.
//
//   auto server = WorkerServer::Start(config);
//   ... (*server)->address() ...
//   (*server)->Shutdown(absl::Seconds(5));
//
// Process-wide effects: with host_cache it installs the host caching allocator (kept after
// Shutdown: tensors may still use it); a job sets LibTorch's intra-op thread count.
// Start, Shutdown and the destructor are called from one thread; the accessors from any.
// Shutdown is idempotent and the destructor calls it.
#ifndef TECL_SERVICES_WORKER_SERVICE_WORKER_SERVER_H_
#define TECL_SERVICES_WORKER_SERVICE_WORKER_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/auth.h"
#include "services/common/metrics.h"
#include "services/common/server.h"
#include "services/worker/runner/worker_agent.h"
#include "tecl/v1/job.pb.h"

namespace tecl::worker {

struct WorkerConfig {
  // gRPC (health) and /metrics listen addresses, TLS files, accepted tokens, --insecure (a trainer
  // without credentials does not start unless insecure).
  ServerOptions server;
  // The coordinator (host:port) this trainer registers with and forms process groups through.
  std::string coordinator = "127.0.0.1:7070";
  // Token, TLS roots and certificate for calls to the coordinator; the dataloaders get the same
  // TLS, and the token only when there is no client certificate to identify this trainer (the
  // token of a trainer stays with the coordinator when mutual TLS can carry the identity).
  ChannelOptions channel;
  // host:port the cluster reaches this trainer at; empty = the dialable listen address.
  std::string advertise_address;
  // Intra-op threads for jobs that leave resources.threads_per_trainer unset; 0 = one per core.
  int threads = 0;
  // CUDA device of this trainer (jobs with resources.device: cuda).
  int cuda_device = 0;
  // Network interface Gloo binds (e.g. eth0); empty = $GLOO_SOCKET_IFNAME.
  std::string gloo_interface;
  // Address Gloo binds when no interface is named; empty = 127.0.0.1 when the coordinator is on
  // loopback (and $GLOO_SOCKET_IFNAME is unset), else this host's name.
  std::string gloo_hostname;
  // Keep freed large host tensors for reuse (the host caching allocator); false = LibTorch's
  // default allocator.
  bool host_cache = true;
  // Most bytes the host cache keeps free for reuse; 0 = a quarter of physical memory.
  int64_t host_cache_max_bytes = 0;
  // Heartbeat interval until the coordinator names one.
  absl::Duration default_heartbeat_interval = absl::Seconds(1);

  // INVALID_ARGUMENT naming the bad setting (as its flag).
  absl::Status Validate() const;
};

class WorkerServer {
 public:
  // Validates the config, starts serving and starts the agent (which registers in the background
  // and retries while the coordinator is unreachable). Errors name what failed (a setting, the
  // coordinator address or TLS files, the listen address).
  static absl::StatusOr<std::unique_ptr<WorkerServer>> Start(WorkerConfig config);
  ~WorkerServer();

  // Stops the current job (reported as OUTCOME_STOPPED) and the heartbeats, then the gRPC server
  // (calls drained for up to `grace`). Blocks until done.
  void Shutdown(absl::Duration grace);

  int port() const { return grpc_->port(); }
  // Dialable host:port.
  std::string address() const { return grpc_->local_address(); }
  int metrics_port() const { return grpc_->metrics_port(); }
  // What this trainer registers as (kind, address, device, threads, version).
  const tecl::v1::WorkerInfo& info() const { return info_; }
  WorkerAgent& agent() { return *agent_; }
  metrics::Registry& registry() { return registry_; }

 private:
  WorkerServer() = default;

  metrics::Registry registry_;
  std::unique_ptr<GrpcServer> grpc_;
  tecl::v1::WorkerInfo info_;
  std::unique_ptr<WorkerAgent> agent_;
  bool shut_down_ = false;
};

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_SERVICE_WORKER_SERVER_H_
