// Gang placement and the queue policy, on plain structs.
#include "services/coordinator/scheduler/gang_scheduler.h"

#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

WorkerSlot Trainer(const std::string& id, const std::string& host,
                   tecl::v1::Device device = tecl::v1::DEVICE_CPU, int gpus = 0) {
  return {id, tecl::v1::WORKER_KIND_TRAINER, device, gpus, host};
}
WorkerSlot Loader(const std::string& id, const std::string& host) {
  return {id, tecl::v1::WORKER_KIND_DATALOADER, tecl::v1::DEVICE_UNSPECIFIED, 0, host};
}
GangRequest Gang(int trainers, int loaders, tecl::v1::Device device = tecl::v1::DEVICE_CPU) {
  GangRequest r;
  r.trainers = trainers;
  r.dataloaders_per_trainer = loaders;
  r.device = device;
  return r;
}

TEST(PlaceGangTest, PlacesTheWholeGangOrNothing) {
  std::vector<WorkerSlot> free = {Trainer("t1", "a"), Loader("l1", "a"), Loader("l2", "a")};
  EXPECT_FALSE(PlaceGang(Gang(2, 1), free).has_value());  // One trainer short.
  EXPECT_FALSE(PlaceGang(Gang(1, 3), free).has_value());  // One loader short.
  auto placement = PlaceGang(Gang(1, 2), free);
  ASSERT_TRUE(placement.has_value());
  ASSERT_EQ(placement->ranks.size(), 1u);
  EXPECT_EQ(placement->ranks[0].trainer_id, "t1");
  EXPECT_THAT(placement->ranks[0].dataloader_ids, ElementsAre("l1", "l2"));
}

// A prepare job's ranks are dataloaders, elastic: up to its count, at least one.
TEST(PlaceGangTest, PrepareJobsTakeFreeDataloadersUpToTheirCount) {
  tecl::v1::JobSpec spec;
  spec.set_kind(tecl::v1::JOB_KIND_PREPARE);
  spec.mutable_resources()->set_dataloaders(3);
  const GangRequest request = GangRequestFor(spec);
  EXPECT_EQ(request.trainers, 0);
  EXPECT_EQ(request.loader_ranks, 3);
  EXPECT_FALSE(PlaceGang(request, {Trainer("t1", "a")}).has_value());
  auto two = PlaceGang(request, {Loader("l2", "b"), Trainer("t1", "a"), Loader("l1", "a")});
  ASSERT_TRUE(two.has_value());
  ASSERT_EQ(two->ranks.size(), 2u);
  EXPECT_EQ(two->ranks[0].trainer_id, "l1");  // By host, then id.
  EXPECT_EQ(two->ranks[1].trainer_id, "l2");
  EXPECT_THAT(two->ranks[0].dataloader_ids, IsEmpty());
  auto three = PlaceGang(request, {Loader("l4", "a"), Loader("l3", "a"), Loader("l2", "a"),
                                   Loader("l1", "a")});
  ASSERT_TRUE(three.has_value());
  EXPECT_EQ(three->ranks.size(), 3u);
  // In the queue it takes the free loaders it can use, in queue order: a training job behind it
  // waits for a loader; one ahead of it leaves it the rest.
  const std::vector<WorkerSlot> pool = {Trainer("t1", "a"), Loader("l1", "a"), Loader("l2", "a")};
  ScheduleDecision first = ScheduleQueue(
      {{"prep", 0, 1, request, 0}, {"train", 0, 2, Gang(1, 1), 0}}, pool, pool, SchedulerOptions());
  ASSERT_EQ(first.start.size(), 1u);
  EXPECT_EQ(first.start[0].first, "prep");
  EXPECT_EQ(first.start[0].second.ranks.size(), 2u);
  ScheduleDecision second = ScheduleQueue(
      {{"prep", 0, 2, request, 0}, {"train", 0, 1, Gang(1, 1), 0}}, pool, pool, SchedulerOptions());
  ASSERT_EQ(second.start.size(), 2u);
  EXPECT_EQ(second.start[0].first, "train");
  EXPECT_EQ(second.start[1].first, "prep");
  EXPECT_EQ(second.start[1].second.ranks.size(), 1u);
}

TEST(PlaceGangTest, CudaJobsNeedCudaTrainersWithGpus) {
  std::vector<WorkerSlot> free = {
      Trainer("cpu", "a"), Trainer("nogpu", "a", tecl::v1::DEVICE_CUDA, 0), Loader("l", "a")};
  EXPECT_FALSE(PlaceGang(Gang(1, 1, tecl::v1::DEVICE_CUDA), free).has_value());
  free.push_back(Trainer("gpu", "a", tecl::v1::DEVICE_CUDA, 8));
  auto placement = PlaceGang(Gang(1, 1, tecl::v1::DEVICE_CUDA), free);
  ASSERT_TRUE(placement.has_value());
  EXPECT_EQ(placement->ranks[0].trainer_id, "gpu");
  // And CPU jobs do not take GPU trainers.
  auto cpu = PlaceGang(Gang(1, 1), free);
  ASSERT_TRUE(cpu.has_value());
  EXPECT_EQ(cpu->ranks[0].trainer_id, "cpu");
}

TEST(PlaceGangTest, RanksArePackedByHostAndLoadersAreLocalFirst) {
  std::vector<WorkerSlot> free = {
      Trainer("a1", "a"), Trainer("b1", "b"), Trainer("b2", "b"), Trainer("b3", "b"),
      Loader("la", "a"),  Loader("lb1", "b"), Loader("lb2", "b"), Loader("lc", "c"),
  };
  auto placement = PlaceGang(Gang(4, 1), free);
  ASSERT_TRUE(placement.has_value());
  ASSERT_EQ(placement->ranks.size(), 4u);
  // Host b has the most trainers: ranks 0-2 there, rank 3 on a.
  EXPECT_EQ(placement->ranks[0].trainer_id, "b1");
  EXPECT_EQ(placement->ranks[1].trainer_id, "b2");
  EXPECT_EQ(placement->ranks[2].trainer_id, "b3");
  EXPECT_EQ(placement->ranks[3].trainer_id, "a1");
  EXPECT_THAT(placement->ranks[0].dataloader_ids, ElementsAre("lb1"));
  EXPECT_THAT(placement->ranks[1].dataloader_ids, ElementsAre("lb2"));
  EXPECT_THAT(placement->ranks[3].dataloader_ids, ElementsAre("la"));
  EXPECT_THAT(placement->ranks[2].dataloader_ids, ElementsAre("lc"));  // No local one left.
}

TEST(TakeDataloaderTest, TakesALocalLoaderFirstThenAnyOther) {
  std::vector<WorkerSlot> free = {Trainer("t1", "a"), Loader("lb2", "b"), Loader("la2", "a"),
                                  Loader("la1", "a"), Loader("lb1", "b")};
  EXPECT_EQ(TakeDataloader(&free, "a")->id, "la1");
  EXPECT_EQ(TakeDataloader(&free, "a")->id, "la2");
  EXPECT_EQ(TakeDataloader(&free, "a")->id, "lb1");  // No local one left: the smallest id.
  EXPECT_EQ(TakeDataloader(&free, "c")->id, "lb2");
  EXPECT_FALSE(TakeDataloader(&free, "a").has_value());
  ASSERT_EQ(free.size(), 1u);  // The trainer stays.
  EXPECT_EQ(free[0].id, "t1");
}

QueuedJob Job(const std::string& id, int priority, int64_t seq, GangRequest request,
              int bypassed = 0) {
  QueuedJob q;
  q.job_id = id;
  q.priority = priority;
  q.seq = seq;
  q.request = request;
  q.bypassed = bypassed;
  return q;
}

std::vector<std::string> Started(const ScheduleDecision& d) {
  std::vector<std::string> ids;
  for (const auto& [id, placement] : d.start) ids.push_back(id);
  return ids;
}

// ScheduleQueue turns a job away by counting (matching trainers, dataloaders) instead of trying
// PlaceGang: that is right only if PlaceGang succeeds exactly when the counts suffice, on any
// mix of hosts, devices and GPU counts. A complete placement uses each worker once.
TEST(PlaceGangTest, SucceedsExactlyWhenTheCountsSuffice) {
  std::mt19937 random(7);
  for (int round = 0; round < 2000; ++round) {
    std::vector<WorkerSlot> pool;
    const int hosts = 1 + static_cast<int>(random() % 4);
    const int workers = static_cast<int>(random() % 14);
    for (int i = 0; i < workers; ++i) {
      const std::string host = "h" + std::to_string(random() % hosts);
      const std::string id = "w" + std::to_string(i);
      switch (random() % 4) {
        case 0: pool.push_back(Loader(id, host)); break;
        case 1: pool.push_back(Trainer(id, host)); break;
        case 2: pool.push_back(Trainer(id, host, tecl::v1::DEVICE_CUDA, 1 + random() % 8)); break;
        default: pool.push_back(Trainer(id, host, tecl::v1::DEVICE_CUDA, 0)); break;  // No GPU.
      }
    }
    const GangRequest request =
        Gang(1 + static_cast<int>(random() % 4), static_cast<int>(random() % 3),
             random() % 2 ? tecl::v1::DEVICE_CUDA : tecl::v1::DEVICE_CPU);
    int trainers = 0;
    int loaders = 0;
    for (const WorkerSlot& w : pool) {
      trainers += TrainerMatches(w, request.device) ? 1 : 0;
      loaders += w.kind == tecl::v1::WORKER_KIND_DATALOADER ? 1 : 0;
    }
    const bool enough = trainers >= request.trainers &&
                        loaders >= request.trainers * request.dataloaders_per_trainer;
    std::optional<Placement> placement = PlaceGang(request, pool);
    ASSERT_EQ(placement.has_value(), enough) << "round " << round;
    if (!placement.has_value()) continue;
    std::set<std::string> used;
    ASSERT_EQ(static_cast<int>(placement->ranks.size()), request.trainers);
    for (const RankPlacement& rank : placement->ranks) {
      EXPECT_TRUE(used.insert(rank.trainer_id).second);
      ASSERT_EQ(static_cast<int>(rank.dataloader_ids.size()), request.dataloaders_per_trainer);
      for (const std::string& id : rank.dataloader_ids) EXPECT_TRUE(used.insert(id).second);
    }
  }
}

TEST(ScheduleQueueTest, HigherPriorityFirstThenSubmissionOrder) {
  std::vector<WorkerSlot> free = {Trainer("t1", "a"), Trainer("t2", "a"), Loader("l1", "a"),
                                  Loader("l2", "a")};
  auto d = ScheduleQueue({Job("late-low", 0, 3, Gang(1, 1)), Job("early-low", 0, 1, Gang(1, 1)),
                          Job("high", 5, 9, Gang(1, 1))},
                         free, free, {});
  EXPECT_THAT(Started(d), ElementsAre("high", "early-low"));
}

TEST(ScheduleQueueTest, PlacementsAreDisjoint) {
  std::vector<WorkerSlot> free = {Trainer("t1", "a"), Trainer("t2", "a"), Trainer("t3", "a"),
                                  Loader("l1", "a"),  Loader("l2", "a"),  Loader("l3", "a")};
  auto d = ScheduleQueue({Job("a", 0, 1, Gang(2, 1)), Job("b", 0, 2, Gang(1, 1))}, free, free, {});
  ASSERT_THAT(Started(d), ElementsAre("a", "b"));
  std::set<std::string> used;
  for (const auto& [id, placement] : d.start) {
    for (const auto& rank : placement.ranks) {
      EXPECT_TRUE(used.insert(rank.trainer_id).second);
      for (const auto& l : rank.dataloader_ids) EXPECT_TRUE(used.insert(l).second);
    }
  }
}

TEST(ScheduleQueueTest, SmallJobsBackfillUntilTheBlockedJobReservesWorkers) {
  SchedulerOptions options;
  options.max_bypasses = 2;
  std::vector<WorkerSlot> live = {Trainer("t1", "a"), Trainer("t2", "a"), Loader("l1", "a"),
                                  Loader("l2", "a")};
  std::vector<WorkerSlot> free = {Trainer("t1", "a"), Loader("l1", "a"), Loader("l2", "a")};
  // The big job needs both trainers; one is busy. The small job may pass it...
  auto d = ScheduleQueue({Job("big", 0, 1, Gang(2, 1), 1), Job("small", 0, 2, Gang(1, 1))}, free,
                         live, options);
  EXPECT_THAT(Started(d), ElementsAre("small"));
  EXPECT_EQ(d.bypassed.at("big"), 2);
  // ...but not once it has been passed max_bypasses times: it reserves the free trainer.
  d = ScheduleQueue({Job("big", 0, 1, Gang(2, 1), 2), Job("small", 0, 2, Gang(1, 1))}, free, live,
                    options);
  EXPECT_THAT(Started(d), IsEmpty());
  EXPECT_THAT(d.reserving, ElementsAre("big"));
}

TEST(ScheduleQueueTest, StrictFifoWithZeroBypasses) {
  SchedulerOptions options;
  options.max_bypasses = 0;
  std::vector<WorkerSlot> live = {Trainer("t1", "a"), Trainer("t2", "a"), Loader("l1", "a"),
                                  Loader("l2", "a")};
  std::vector<WorkerSlot> free = {Trainer("t1", "a"), Loader("l1", "a"), Loader("l2", "a")};
  auto d = ScheduleQueue({Job("big", 0, 1, Gang(2, 1)), Job("small", 0, 2, Gang(1, 1))}, free, live,
                         options);
  EXPECT_THAT(Started(d), IsEmpty());
}

TEST(ScheduleQueueTest, AJobLargerThanTheClusterDoesNotBlockOthers) {
  SchedulerOptions options;
  options.max_bypasses = 0;
  std::vector<WorkerSlot> free = {Trainer("t1", "a"), Loader("l1", "a")};
  auto d = ScheduleQueue({Job("huge", 0, 1, Gang(8, 1)), Job("small", 0, 2, Gang(1, 1))}, free,
                         free, options);
  EXPECT_THAT(Started(d), ElementsAre("small"));
  EXPECT_THAT(d.reserving, IsEmpty());
}

TEST(ScheduleQueueTest, AReservationLeavesOtherDevicesAlone) {
  SchedulerOptions options;
  options.max_bypasses = 0;
  std::vector<WorkerSlot> live = {Trainer("g1", "a", tecl::v1::DEVICE_CUDA, 1),
                                  Trainer("g2", "a", tecl::v1::DEVICE_CUDA, 1),
                                  Trainer("c1", "a"),
                                  Loader("l1", "a"),
                                  Loader("l2", "a"),
                                  Loader("l3", "a")};
  std::vector<WorkerSlot> free = {Trainer("g1", "a", tecl::v1::DEVICE_CUDA, 1), Trainer("c1", "a"),
                                  Loader("l1", "a"), Loader("l2", "a"), Loader("l3", "a")};
  auto d = ScheduleQueue(
      {Job("gpu-big", 0, 1, Gang(2, 1, tecl::v1::DEVICE_CUDA)), Job("cpu-small", 0, 2, Gang(1, 1))},
      free, live, options);
  EXPECT_THAT(Started(d), ElementsAre("cpu-small"));
  EXPECT_THAT(d.reserving, ElementsAre("gpu-big"));
}

}  // namespace
}  // namespace tecl::coordinator
