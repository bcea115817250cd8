// Builds the trainer's Communicator for one (job, attempt) from a c10d::Store that every rank of
// the attempt shares (the runner's rendezvous store; TCPStore or FileStore in tests).
//
//   kGloo: c10d::ProcessGroupGloo over TCP, for CPU tensors. The transport device is chosen by
//          GroupOptions::gloo_interface, else $GLOO_SOCKET_IFNAME, else GroupOptions::gloo_hostname,
//          else this machine's hostname (Gloo's default device).
//   kNccl: for CUDA tensors. c10d::ProcessGroupNCCL when this LibTorch was built with it
//          (TECL_DIST_TORCH_NCCL, set at configure time from LibTorch's CUDA flag), otherwise
//          NcclCommunicator (NCCL called directly; TECL_HAVE_NCCL). Neither: std::invalid_argument.
//
// Functions block until every rank joined (bounded by the store's and the group's timeout) and
// throw CollectiveError when the group cannot be formed. Thread-safe (no shared state).
#ifndef TECL_SERVICES_WORKER_DIST_PROCESS_GROUP_FACTORY_H_
#define TECL_SERVICES_WORKER_DIST_PROCESS_GROUP_FACTORY_H_

#include <c10/core/Device.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "services/worker/dist/communicator.h"

namespace tecl::worker::dist {

enum class Backend { kGloo, kNccl };

// Which NCCL implementation kNccl uses.
enum class NcclImplementation {
  kAuto,    // c10d::ProcessGroupNCCL when compiled in, else the direct NcclCommunicator
  kTorch,   // c10d::ProcessGroupNCCL only
  kDirect,  // NcclCommunicator only
};

struct GroupOptions {
  int rank = 0;
  int world_size = 1;
  Backend backend = Backend::kGloo;
  // Bound on every collective and on forming the group. A peer that dies or hangs surfaces as
  // CollectiveError within about this long.
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
  // Gloo: network interface to bind ("eth0"); empty = $GLOO_SOCKET_IFNAME if set.
  std::string gloo_interface;
  // Gloo: address or hostname to bind when no interface is named ("127.0.0.1" for one machine);
  // empty = this machine's hostname.
  std::string gloo_hostname;
  // NCCL: the CUDA device of this rank.
  int cuda_device = 0;
  NcclImplementation nccl = NcclImplementation::kAuto;
};

// kNccl for CUDA devices, kGloo otherwise.
Backend BackendForDevice(const c10::Device& device);
// "gloo" / "nccl".
std::string BackendName(Backend backend);
// Parses "gloo" / "nccl"; throws std::invalid_argument naming the accepted values.
Backend ParseBackend(const std::string& name);

// Whether kNccl can be built in this binary, and with which implementation ("nccl (c10d)",
// "nccl", or "" when neither is compiled in).
std::string NcclImplementationCompiledIn();

// Makes writes to a closed socket or pipe fail with EPIPE instead of raising SIGPIPE, for the
// whole process. Idempotent; safe to call from any thread.
void IgnoreBrokenPipes();

// Throws std::invalid_argument naming the bad field (rank outside [0, world_size), world size < 1,
// non-positive timeout, NCCL requested without NCCL compiled in).
void ValidateGroupOptions(const GroupOptions& options);

// Forms the group. Blocks until all world_size ranks called it with the same store (at most the
// store's timeout and options.timeout). Throws std::invalid_argument for bad options and
// CollectiveError when forming fails (a rank never came, the store failed, NCCL init failed).
// Sets SIGPIPE to ignored for the whole process first (IgnoreBrokenPipes): Gloo and the store
// write to peers' sockets with plain write/writev, and a peer that died mid-step must fail the
// survivor's collective with CollectiveError, not kill the survivor with SIGPIPE.
std::shared_ptr<Communicator> CreateCommunicator(const c10::intrusive_ptr<c10d::Store>& store,
                                                 const GroupOptions& options);

// A view of `store` whose keys live under "tecl/<job_id>/<attempt>/", so that groups of different
// jobs or attempts sharing one store never see each other's keys.
c10::intrusive_ptr<c10d::Store> AttemptStore(const c10::intrusive_ptr<c10d::Store>& store,
                                             const std::string& job_id, int attempt);

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_PROCESS_GROUP_FACTORY_H_
