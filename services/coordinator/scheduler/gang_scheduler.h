// Gang placement and the queue policy: which waiting jobs start now, on which workers.
//
// A job needs `trainers` trainer workers of its device (CUDA: device cuda with gpus >= 1; CPU:
// device cpu) and `trainers * dataloaders_per_trainer` dataloaders, all at once: a job is placed
// whole or not at all. Ranks are laid out host by host (hosts with the most free matching trainers
// first) so that ranks of one host are contiguous; each rank's dataloaders are taken from its
// trainer's host first.
//
// A prepare job (GangRequest::loader_ranks) needs dataloaders only, each one a rank, and is
// elastic: it starts on the free dataloaders up to its count, at least one.
//
// Queue policy (ScheduleQueue): jobs in priority order (higher first), FIFO (submission order)
// within a priority. A job that cannot be placed does not stop smaller jobs behind it from
// starting on the free workers (backfill), but each time one does, the blocked job's bypass count
// grows; once it reaches `max_bypasses`, the blocked job reserves the free workers it can use and
// later jobs only get the rest, so it starts as soon as enough workers free up. A job larger than
// every live worker together reserves nothing (it would block the queue forever) and waits for
// the cluster to grow.
//
// Pure functions on plain structs: thread-safe, no I/O.
#ifndef TECL_SERVICES_COORDINATOR_SCHEDULER_GANG_SCHEDULER_H_
#define TECL_SERVICES_COORDINATOR_SCHEDULER_GANG_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

// A worker as placement sees it.
struct WorkerSlot {
  std::string id;
  tecl::v1::WorkerKind kind = tecl::v1::WORKER_KIND_UNSPECIFIED;
  tecl::v1::Device device = tecl::v1::DEVICE_UNSPECIFIED;
  int gpus = 0;
  std::string hostname;
};

struct GangRequest {
  int trainers = 1;
  int dataloaders_per_trainer = 1;
  tecl::v1::Device device = tecl::v1::DEVICE_CPU;
  // A prepare job (trainers 0): dataloaders that are ranks themselves, one shard each; elastic:
  // placed on the free dataloaders up to this many, at least one.
  int loader_ranks = 0;
};

GangRequest GangRequestFor(const tecl::v1::JobSpec& spec);

struct RankPlacement {
  std::string trainer_id;  // The rank's worker: a trainer, or a prepare job's dataloader.
  std::vector<std::string> dataloader_ids;
};

struct Placement {
  std::vector<RankPlacement> ranks;  // Index = rank.
};

// Whether a trainer can run a rank of a job on `device`.
bool TrainerMatches(const WorkerSlot& trainer, tecl::v1::Device device);

// Places the whole gang on `free` workers (trainers and dataloaders mixed), or nullopt. A request
// with loader_ranks gets min(loader_ranks, free dataloaders) ranks, by host then id, so that
// consecutive ranks share a host; nullopt when no dataloader is free.
std::optional<Placement> PlaceGang(const GangRequest& request, const std::vector<WorkerSlot>& free);

// A replacement for a running rank's lost dataloader: removes from `free` and returns the free
// dataloader on `host` with the smallest id, else the one with the smallest id on any host;
// nullopt when `free` holds no dataloader.
std::optional<WorkerSlot> TakeDataloader(std::vector<WorkerSlot>* free, const std::string& host);

struct QueuedJob {
  std::string job_id;
  int priority = 0;
  int64_t seq = 0;  // Submission order.
  GangRequest request;
  int bypassed = 0;  // Times a job behind it started while it waited.
};

struct SchedulerOptions {
  // Bypasses a blocked job tolerates before it reserves workers (0 = strict head-of-line FIFO).
  int max_bypasses = 8;
};

struct ScheduleDecision {
  // Jobs to start now, in queue order, with disjoint placements.
  std::vector<std::pair<std::string, Placement>> start;
  // New bypass counts of jobs that were passed over.
  std::map<std::string, int> bypassed;
  // Jobs that hold a reservation.
  std::vector<std::string> reserving;
};

// Decides which of `queue` start on `free` workers. `live` is every live worker (free or busy),
// used to tell a job that will fit once workers free up from one that cannot fit at all.
ScheduleDecision ScheduleQueue(std::vector<QueuedJob> queue, const std::vector<WorkerSlot>& free,
                               const std::vector<WorkerSlot>& live,
                               const SchedulerOptions& options);

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SCHEDULER_GANG_SCHEDULER_H_
