// The host caching allocator: size classes, reuse, the cache bound, uninstall, and training steps
// that compute exactly what they compute on LibTorch's default allocator.
#include "services/worker/train/host_allocator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "services/worker/train/synthetic_batches.h"
#include "services/worker/train/trainer.h"

namespace tecl::worker::core {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

// A float tensor of exactly `bytes` bytes.
torch::Tensor Bytes(size_t bytes) { return torch::empty({static_cast<int64_t>(bytes / 4)}); }

// Every test starts from LibTorch's default allocator and leaves it so.
class HostAllocatorTest : public ::testing::Test {
 protected:
  void TearDown() override { UninstallHostCachingAllocator(); }
};

TEST(HostAllocatorSizeClassTest, FourClassesPerDoublingInWholePages) {
  EXPECT_EQ(HostAllocatorSizeClass(1), 4096u);
  EXPECT_EQ(HostAllocatorSizeClass(4096), 4096u);
  EXPECT_EQ(HostAllocatorSizeClass(4097), 8192u);
  EXPECT_EQ(HostAllocatorSizeClass(kMiB), kMiB);                 // A power of two is a class.
  EXPECT_EQ(HostAllocatorSizeClass(kMiB + 1), kMiB + kMiB / 4);  // Next class up: +25 %.
  EXPECT_EQ(HostAllocatorSizeClass(3 * kMiB - 7), 3 * kMiB);
  EXPECT_EQ(HostAllocatorSizeClass(7 * kMiB + 1), 8 * kMiB);
  for (size_t bytes = 4097; bytes < 64 * kMiB; bytes = bytes * 9 / 7 + 13) {
    const size_t size = HostAllocatorSizeClass(bytes);
    EXPECT_GE(size, bytes);
    EXPECT_EQ(size % 4096, 0u) << bytes;
    EXPECT_LE(size, bytes + bytes / 4 + 4096) << bytes;  // At most a quarter of slack (+ a page).
  }
}

TEST_F(HostAllocatorTest, ReusesAFreedBlockOfTheSameClass) {
  InstallHostCachingAllocator();
  ASSERT_TRUE(HostCachingAllocatorInstalled());
  const HostAllocatorStats before = GetHostAllocatorStats();
  void* first = nullptr;
  {
    torch::Tensor t = Bytes(3 * kMiB);
    first = t.data_ptr();
    t.fill_(1.5f);
    EXPECT_EQ(GetHostAllocatorStats().live_bytes, before.live_bytes + 3 * kMiB);
  }
  EXPECT_EQ(GetHostAllocatorStats().cached_bytes, before.cached_bytes + 3 * kMiB);
  torch::Tensor again = Bytes(3 * kMiB - 4096);  // Same class.
  EXPECT_EQ(again.data_ptr(), first);
  const HostAllocatorStats after = GetHostAllocatorStats();
  EXPECT_EQ(after.misses, before.misses + 1);
  EXPECT_EQ(after.hits, before.hits + 1);
  // The block is usable memory: write and read it through LibTorch.
  again.fill_(2.0f);
  EXPECT_EQ(again.sum().item<double>(), 2.0 * again.numel());
}

TEST_F(HostAllocatorTest, SmallRequestsBypassTheCache) {
  HostAllocatorOptions options;
  options.min_block_bytes = 256 << 10;
  InstallHostCachingAllocator(options);
  const HostAllocatorStats before = GetHostAllocatorStats();
  for (int i = 0; i < 10; ++i) {
    torch::Tensor t = torch::ones({1000});
    EXPECT_EQ(t.sum().item<float>(), 1000.0f);
  }
  const HostAllocatorStats after = GetHostAllocatorStats();
  EXPECT_EQ(after.hits, before.hits);
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
}

TEST_F(HostAllocatorTest, TheCacheStaysWithinItsBound) {
  HostAllocatorOptions options;
  options.max_cached_bytes = 3 * kMiB;
  InstallHostCachingAllocator(options);
  EmptyHostCache();
  const HostAllocatorStats before = GetHostAllocatorStats();
  EXPECT_EQ(before.max_cached_bytes, static_cast<int64_t>(3 * kMiB));
  {
    std::vector<torch::Tensor> blocks;
    for (int i = 0; i < 4; ++i) blocks.push_back(Bytes(kMiB));
  }  // Four 1 MiB blocks freed: three fit under the bound, the fourth is unmapped.
  const HostAllocatorStats after = GetHostAllocatorStats();
  EXPECT_EQ(after.cached_bytes, static_cast<int64_t>(3 * kMiB));
  EXPECT_EQ(after.releases, before.releases + 1);
  EmptyHostCache();
  EXPECT_EQ(GetHostAllocatorStats().cached_bytes, 0);
  EXPECT_EQ(GetHostAllocatorStats().releases, before.releases + 4);
}

TEST_F(HostAllocatorTest, UninstallRestoresTheDefaultAndFreesLaterBlocks) {
  InstallHostCachingAllocator();
  torch::Tensor survivor = Bytes(2 * kMiB);
  survivor.fill_(3.0f);
  UninstallHostCachingAllocator();
  EXPECT_FALSE(HostCachingAllocatorInstalled());
  const HostAllocatorStats before = GetHostAllocatorStats();
  EXPECT_EQ(before.cached_bytes, 0);
  torch::Tensor fresh = Bytes(2 * kMiB);  // From LibTorch's default allocator.
  EXPECT_EQ(GetHostAllocatorStats().misses, before.misses);
  EXPECT_EQ(survivor.sum().item<double>(), 3.0 * survivor.numel());
  survivor = torch::Tensor();  // Freed by the cache's deleter, not kept.
  const HostAllocatorStats after = GetHostAllocatorStats();
  EXPECT_EQ(after.cached_bytes, 0);
  EXPECT_EQ(after.releases, before.releases + 1);
  EXPECT_EQ(after.live_bytes, before.live_bytes - static_cast<int64_t>(2 * kMiB));
}

// Training: the same steps give bit-identical losses on either allocator, and after the first
// step the cache serves every large allocation (the working set repeats step after step).
TEST_F(HostAllocatorTest, TrainingStepsAreUnchangedAndHitTheCache) {
  TrainerOptions options;
  options.model.backbone = "tiny3d";
  options.global_batch_clips = 8;
  options.seed = 3;
  SyntheticMotionOptions data;
  data.groups = 2;
  data.clip_length = 8;
  data.size = 32;
  std::vector<Batch> batches;
  for (int i = 0; i < 3; ++i) batches.push_back(MakeSyntheticMotionBatch(data, 50 + i));

  const auto run = [&](std::vector<HostAllocatorStats>* stats) {
    Trainer trainer(options);
    std::vector<double> totals;
    for (const Batch& batch : batches) {
      totals.push_back(trainer.TrainStep(batch).loss.total);
      if (stats != nullptr) stats->push_back(GetHostAllocatorStats());
    }
    return totals;
  };
  const std::vector<double> reference = run(nullptr);

  InstallHostCachingAllocator();
  std::vector<HostAllocatorStats> stats;
  const std::vector<double> cached = run(&stats);
  EXPECT_EQ(cached, reference);
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_GT(stats[0].misses, 0);
  EXPECT_GT(stats[1].hits, stats[0].hits);
  // Steady state: the third step maps nothing new, and its large allocations are all hits.
  EXPECT_EQ(stats[2].misses, stats[1].misses);
  EXPECT_GT(stats[2].hits - stats[1].hits, 10);
}

}  // namespace
}  // namespace tecl::worker::core
