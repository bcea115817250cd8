#include "services/worker/train/host_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

// LibTorch 2.3 made Allocator::allocate non-const and added the pure virtual copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define TECL_ALLOCATOR_2_3 1
#define TECL_ALLOCATE_CONST
#else
#define TECL_ALLOCATOR_2_3 0
#define TECL_ALLOCATE_CONST const
#endif

namespace tecl::worker::core {
namespace {

constexpr size_t kPage = 4096;

size_t QuarterOfMemory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return size_t{1} << 30;
  return static_cast<size_t>(pages) * static_cast<size_t>(page) / 4;
}

void* MapBlock(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// The free lists and the live-block table. One per process, never destroyed: tensors may be freed
// during static destruction, after any object of ours would have gone.
class BlockCache {
 public:
  void Configure(const HostAllocatorOptions& options) {
    std::lock_guard<std::mutex> lock(mutex_);
    min_block_bytes_ = std::max<size_t>(options.min_block_bytes, 1);
    max_cached_bytes_ = options.max_cached_bytes > 0 ? options.max_cached_bytes : QuarterOfMemory();
    caching_ = true;
  }

  void StopCaching() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      caching_ = false;
    }
    Empty();
  }

  void* Allocate(size_t n) {
    size_t size = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (caching_ && n >= min_block_bytes_) size = HostAllocatorSizeClass(n);
    }
    if (size == 0) return c10::alloc_cpu(n);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.cached_bytes -= static_cast<int64_t>(size);
        ++stats_.hits;
        AddLive(p, size);
        return p;
      }
    }
    void* p = MapBlock(size);
    if (p == nullptr) {
      Empty();
      p = MapBlock(size);
    }
    TORCH_CHECK(p != nullptr, "host caching allocator: out of memory: could not map ", size,
                " bytes for a request of ", n, " bytes (", GetHostAllocatorStats().live_bytes,
                " bytes of large tensors live)");
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.misses;
    AddLive(p, size);
    return p;
  }

  void Free(void* p) {
    if (p == nullptr) return;
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) {
      lock.unlock();
      c10::free_cpu(p);  // A small block, from c10::alloc_cpu.
      return;
    }
    const size_t size = it->second;
    live_.erase(it);
    stats_.live_bytes -= static_cast<int64_t>(size);
    if (caching_ && static_cast<size_t>(stats_.cached_bytes) + size <= max_cached_bytes_) {
      free_[size].push_back(p);
      stats_.cached_bytes += static_cast<int64_t>(size);
      return;
    }
    ++stats_.releases;
    lock.unlock();
    munmap(p, size);
  }

  void Empty() {
    std::unordered_map<size_t, std::vector<void*>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      stats_.cached_bytes = 0;
      for (const auto& [size, list] : blocks) stats_.releases += static_cast<int64_t>(list.size());
    }
    for (const auto& [size, list] : blocks) {
      for (void* p : list) munmap(p, size);
    }
  }

  HostAllocatorStats Stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    HostAllocatorStats stats = stats_;
    stats.max_cached_bytes = static_cast<int64_t>(max_cached_bytes_);
    return stats;
  }

 private:
  void AddLive(void* p, size_t size) {  // mutex_ held.
    live_.emplace(p, size);
    stats_.live_bytes += static_cast<int64_t>(size);
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
  }

  std::mutex mutex_;
  bool caching_ = false;
  size_t min_block_bytes_ = 0;
  size_t max_cached_bytes_ = 0;
  std::unordered_map<size_t, std::vector<void*>> free_;  // Size class -> free blocks.
  std::unordered_map<void*, size_t> live_;               // Large blocks handed out.
  HostAllocatorStats stats_;
};

BlockCache& Cache() {
  static BlockCache* cache = new BlockCache();
  return *cache;
}

void FreeBlock(void* p) { Cache().Free(p); }

class HostCachingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) TECL_ALLOCATE_CONST override {
    void* p = Cache().Allocate(n);
    return {p, p, &FreeBlock, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &FreeBlock; }
#if TECL_ALLOCATOR_2_3
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }
#endif
};

HostCachingAllocator* Allocator() {
  static HostCachingAllocator* allocator = new HostCachingAllocator();
  return allocator;
}

std::mutex install_mutex;
bool installed = false;

}  // namespace

size_t HostAllocatorSizeClass(size_t bytes) {
  if (bytes <= kPage) return kPage;
  // bytes lies in (top, 2 top]; four classes per doubling, whole pages.
  const size_t top =
      size_t{1} << (63 - __builtin_clzll(static_cast<unsigned long long>(bytes - 1)));
  const size_t step = std::max(top / 4, kPage);
  return (bytes + step - 1) / step * step;
}

void InstallHostCachingAllocator(const HostAllocatorOptions& options) {
  std::lock_guard<std::mutex> lock(install_mutex);
  Cache().Configure(options);
  if (!installed) c10::SetCPUAllocator(Allocator(), /*priority=*/0);
  installed = true;
}

void UninstallHostCachingAllocator() {
  std::lock_guard<std::mutex> lock(install_mutex);
  if (!installed) return;
  c10::SetCPUAllocator(c10::GetDefaultCPUAllocator(), /*priority=*/0);
  installed = false;
  Cache().StopCaching();
}

bool HostCachingAllocatorInstalled() {
  std::lock_guard<std::mutex> lock(install_mutex);
  return installed;
}

void EmptyHostCache() { Cache().Empty(); }

HostAllocatorStats GetHostAllocatorStats() { return Cache().Stats(); }

}  // namespace tecl::worker::core
