// CommunicatorFactory: how a pretraining rank gets its process group. The runner describes the
// group it needs (CommunicatorRequest); the factory forms it. tecl-worker's factory forms a Gloo
// or NCCL group through the coordinator's rendezvous (RendezvousCommunicators in
// rendezvous_store.h); tests return a rank of an in-process dist::FakeWorld.
//
// Thread-safety: a factory may be called from several threads (one per rank in tests).
// Ownership: the caller shares the returned communicator (the gradient reducer holds it too) and
// drops it when the run ends; dropping it closes this rank's side of the group.
#ifndef TECL_SERVICES_WORKER_RUNNER_COMMUNICATOR_FACTORY_H_
#define TECL_SERVICES_WORKER_RUNNER_COMMUNICATOR_FACTORY_H_

#include <c10/core/Device.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "services/worker/dist/communicator.h"
#include "services/worker/dist/process_group_factory.h"

namespace tecl::worker {

// The group one rank of one attempt joins.
struct CommunicatorRequest {
  std::string job_id;
  int attempt = 0;
  int rank = 0;
  int world_size = 1;
  // Bound on forming the group and on every collective (restart.collective_timeout_s).
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
  // The rank's device (CUDA: the NCCL device).
  c10::Device device = c10::Device(c10::kCPU);
  // distributed.backend, or the device's default (Gloo on CPU, NCCL on CUDA).
  dist::Backend backend = dist::Backend::kGloo;
  // The trainer's session (RunContext::session): its credential for the rendezvous.
  std::string session;
};

// Forms the group; blocks until every rank joined (at most request.timeout). Throws like
// dist::CreateCommunicator: CollectiveError when the group cannot be formed (a rank never came,
// the rendezvous failed or is stale), std::invalid_argument for an unusable request. The runner
// catches at its seam (StatusFromCurrentException).
using CommunicatorFactory =
    std::function<std::shared_ptr<dist::Communicator>(const CommunicatorRequest& request)>;

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_COMMUNICATOR_FACTORY_H_
