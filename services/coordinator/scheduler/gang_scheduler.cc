#include "services/coordinator/scheduler/gang_scheduler.h"

#include <algorithm>
#include <set>
#include <tuple>

namespace tecl::coordinator {
namespace {

bool IsDataloader(const WorkerSlot& w) { return w.kind == tecl::v1::WORKER_KIND_DATALOADER; }

// Removes the workers with the given ids from `pool`.
void Remove(std::vector<WorkerSlot>& pool, const std::set<std::string>& ids) {
  pool.erase(std::remove_if(pool.begin(), pool.end(),
                            [&](const WorkerSlot& w) { return ids.count(w.id) > 0; }),
             pool.end());
}

std::set<std::string> IdsOf(const Placement& placement) {
  std::set<std::string> ids;
  for (const RankPlacement& rank : placement.ranks) {
    ids.insert(rank.trainer_id);
    ids.insert(rank.dataloader_ids.begin(), rank.dataloader_ids.end());
  }
  return ids;
}

// The workers of `pool` that `request` could use, up to what it needs.
std::set<std::string> Claimable(const GangRequest& request, const std::vector<WorkerSlot>& pool) {
  std::set<std::string> ids;
  int trainers = 0;
  int dataloaders = 0;
  const int64_t want_loaders =
      request.loader_ranks > 0
          ? request.loader_ranks
          : static_cast<int64_t>(request.trainers) * request.dataloaders_per_trainer;
  for (const WorkerSlot& w : pool) {
    if (IsDataloader(w)) {
      if (dataloaders < want_loaders) {
        ids.insert(w.id);
        ++dataloaders;
      }
    } else if (TrainerMatches(w, request.device) && trainers < request.trainers) {
      ids.insert(w.id);
      ++trainers;
    }
  }
  return ids;
}

// How many workers of each kind a pool holds: whether a gang can be placed on it is a question
// of counts alone (PlaceGang succeeds exactly when there are enough matching trainers and enough
// dataloaders), so a job that does not fit is turned away in O(1) instead of by building the
// pool's host maps.
struct Capacity {
  int64_t dataloaders = 0;
  int64_t cpu_trainers = 0;
  int64_t cuda_trainers = 0;

  explicit Capacity(const std::vector<WorkerSlot>& pool) {
    for (const WorkerSlot& w : pool) {
      if (IsDataloader(w)) {
        ++dataloaders;
      } else if (TrainerMatches(w, tecl::v1::DEVICE_CUDA)) {
        ++cuda_trainers;
      } else if (TrainerMatches(w, tecl::v1::DEVICE_CPU)) {
        ++cpu_trainers;
      }
    }
  }
  bool Fits(const GangRequest& request) const {
    if (request.loader_ranks > 0) return dataloaders >= 1;
    if (request.trainers < 1 || request.dataloaders_per_trainer < 0) return false;
    const int64_t trainers =
        request.device == tecl::v1::DEVICE_CUDA ? cuda_trainers : cpu_trainers;
    return trainers >= request.trainers &&
           dataloaders >= static_cast<int64_t>(request.trainers) * request.dataloaders_per_trainer;
  }
};

}  // namespace

GangRequest GangRequestFor(const tecl::v1::JobSpec& spec) {
  GangRequest request;
  request.trainers = spec.resources().trainers();
  request.dataloaders_per_trainer = spec.resources().dataloaders_per_trainer();
  request.device = spec.resources().device();
  if (spec.kind() == tecl::v1::JOB_KIND_PREPARE) {
    request.trainers = 0;
    request.dataloaders_per_trainer = 0;
    request.loader_ranks = std::max(1, spec.resources().dataloaders());
  }
  return request;
}

bool TrainerMatches(const WorkerSlot& trainer, tecl::v1::Device device) {
  if (trainer.kind != tecl::v1::WORKER_KIND_TRAINER) return false;
  if (device == tecl::v1::DEVICE_CUDA) {
    return trainer.device == tecl::v1::DEVICE_CUDA && trainer.gpus >= 1;
  }
  return trainer.device == tecl::v1::DEVICE_CPU || trainer.device == tecl::v1::DEVICE_UNSPECIFIED;
}

namespace {

std::optional<Placement> PlaceLoaderRanks(const GangRequest& request,
                                          const std::vector<WorkerSlot>& free) {
  std::vector<const WorkerSlot*> loaders;
  for (const WorkerSlot& w : free) {
    if (IsDataloader(w)) loaders.push_back(&w);
  }
  if (loaders.empty()) return std::nullopt;
  std::sort(loaders.begin(), loaders.end(), [](const WorkerSlot* a, const WorkerSlot* b) {
    return std::tie(a->hostname, a->id) < std::tie(b->hostname, b->id);
  });
  loaders.resize(std::min<size_t>(loaders.size(), static_cast<size_t>(request.loader_ranks)));
  Placement placement;
  for (const WorkerSlot* loader : loaders) placement.ranks.push_back({loader->id, {}});
  return placement;
}

}  // namespace

std::optional<Placement> PlaceGang(const GangRequest& request,
                                   const std::vector<WorkerSlot>& free) {
  if (request.loader_ranks > 0) return PlaceLoaderRanks(request, free);
  if (request.trainers < 1 || request.dataloaders_per_trainer < 0) return std::nullopt;
  // Trainers grouped by host, hosts with the most matching trainers first.
  std::map<std::string, std::vector<const WorkerSlot*>> by_host;
  std::map<std::string, std::vector<const WorkerSlot*>> loaders_by_host;
  size_t loader_count = 0;
  for (const WorkerSlot& w : free) {
    if (IsDataloader(w)) {
      loaders_by_host[w.hostname].push_back(&w);
      ++loader_count;
    } else if (TrainerMatches(w, request.device)) {
      by_host[w.hostname].push_back(&w);
    }
  }
  const size_t need_loaders =
      static_cast<size_t>(request.trainers) * static_cast<size_t>(request.dataloaders_per_trainer);
  if (loader_count < need_loaders) return std::nullopt;
  std::vector<std::pair<std::string, std::vector<const WorkerSlot*>>> hosts(by_host.begin(),
                                                                            by_host.end());
  std::stable_sort(hosts.begin(), hosts.end(),
                   [](const auto& a, const auto& b) { return a.second.size() > b.second.size(); });
  std::vector<const WorkerSlot*> trainers;
  for (auto& [host, list] : hosts) {
    std::sort(list.begin(), list.end(),
              [](const WorkerSlot* a, const WorkerSlot* b) { return a->id < b->id; });
    for (const WorkerSlot* w : list) {
      if (static_cast<int>(trainers.size()) < request.trainers) trainers.push_back(w);
    }
  }
  if (static_cast<int>(trainers.size()) < request.trainers) return std::nullopt;

  Placement placement;
  placement.ranks.resize(trainers.size());
  for (auto& [host, list] : loaders_by_host) {
    std::sort(list.begin(), list.end(),
              [](const WorkerSlot* a, const WorkerSlot* b) { return a->id < b->id; });
  }
  std::set<std::string> used;
  auto take_loader = [&](const std::string& host) -> const WorkerSlot* {
    auto it = loaders_by_host.find(host);
    if (it == loaders_by_host.end()) return nullptr;
    for (const WorkerSlot* w : it->second) {
      if (!used.count(w->id)) return w;
    }
    return nullptr;
  };
  // First pass: local loaders; second pass: any host.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t r = 0; r < trainers.size(); ++r) {
      RankPlacement& rank = placement.ranks[r];
      rank.trainer_id = trainers[r]->id;
      while (static_cast<int>(rank.dataloader_ids.size()) < request.dataloaders_per_trainer) {
        const WorkerSlot* loader = nullptr;
        if (pass == 0) {
          loader = take_loader(trainers[r]->hostname);
        } else {
          for (auto& [host, list] : loaders_by_host) {
            if ((loader = take_loader(host)) != nullptr) break;
          }
        }
        if (loader == nullptr) break;
        used.insert(loader->id);
        rank.dataloader_ids.push_back(loader->id);
      }
    }
  }
  return placement;
}

std::optional<WorkerSlot> TakeDataloader(std::vector<WorkerSlot>* free, const std::string& host) {
  auto best = free->end();
  for (auto it = free->begin(); it != free->end(); ++it) {
    if (!IsDataloader(*it)) continue;
    if (best == free->end()) {
      best = it;
      continue;
    }
    const bool local = it->hostname == host;
    const bool best_local = best->hostname == host;
    if ((local != best_local) ? local : (it->id < best->id)) best = it;
  }
  if (best == free->end()) return std::nullopt;
  WorkerSlot taken = std::move(*best);
  free->erase(best);
  return taken;
}

ScheduleDecision ScheduleQueue(std::vector<QueuedJob> queue, const std::vector<WorkerSlot>& free,
                               const std::vector<WorkerSlot>& live,
                               const SchedulerOptions& options) {
  std::stable_sort(queue.begin(), queue.end(), [](const QueuedJob& a, const QueuedJob& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.seq < b.seq;
  });
  ScheduleDecision decision;
  std::vector<WorkerSlot> available = free;
  Capacity available_capacity(available);
  const Capacity cluster(live);
  std::vector<QueuedJob*> blocked;  // Passed over, without a reservation.
  // O(queue) count checks; the host maps of PlaceGang are built only for jobs that start.
  for (QueuedJob& job : queue) {
    if (available_capacity.Fits(job.request)) {
      std::optional<Placement> placement = PlaceGang(job.request, available);
      if (placement.has_value()) {
        Remove(available, IdsOf(*placement));
        available_capacity = Capacity(available);
        decision.start.emplace_back(job.job_id, *std::move(placement));
        for (QueuedJob* b : blocked) decision.bypassed[b->job_id] = ++b->bypassed;
        continue;
      }
    }
    if (!cluster.Fits(job.request)) continue;  // Cannot fit in the whole cluster.
    if (job.bypassed >= options.max_bypasses) {
      Remove(available, Claimable(job.request, available));
      available_capacity = Capacity(available);
      decision.reserving.push_back(job.job_id);
    } else {
      blocked.push_back(&job);
    }
  }
  return decision;
}

}  // namespace tecl::coordinator
