// A caching allocator for host (CPU) tensors, installed process-wide as LibTorch's CPU allocator.
//
// Why: a training step allocates and frees the same large activation, gradient and workspace
// buffers every step. LibTorch's default CPU allocator hands each one to glibc malloc, which maps
// large blocks with mmap and unmaps them on free (its threshold adapts only up to 32 MiB and trims
// the heap top), so every step faults in and zeroes its working set again: on a 2-core machine
// the tiny3d step spent about three quarters of its time in page faults and their cache misses
// (docs/benchmarks.md "Trainer core"). This allocator keeps freed large blocks and hands them
// back to the next request of the same size class, the host-side equivalent of LibTorch's CUDA
// caching allocator.
//
//   InstallHostCachingAllocator();                  // once, before the first tensor of a job
//   HostAllocatorStats s = GetHostAllocatorStats(); // hits, misses, cached and live bytes
//   UninstallHostCachingAllocator();                // back to LibTorch's default allocator
//
// Requests below options.min_block_bytes go to the C library (c10::alloc_cpu), as before. Larger
// ones are rounded up to one of four size classes per power of two (at most 25 % slack, whole
// pages), mapped with mmap and, when freed, kept in a per-class free list (last freed, first
// reused: the block most likely still in cache). A freed block that would take the cache above
// options.max_cached_bytes is unmapped instead, so the cache is bounded; when a mapping fails the
// cache is released and the mapping retried before the allocation fails with LibTorch's
// out-of-memory error.
//
// Memory handed out is not zeroed (LibTorch's contract for CPU storage). Blocks allocated while
// installed are freed correctly after an uninstall. Thread-safety: all functions are thread-safe;
// one mutex guards the free lists (a few hundred large allocations per step).
#ifndef TECL_SERVICES_WORKER_TRAIN_HOST_ALLOCATOR_H_
#define TECL_SERVICES_WORKER_TRAIN_HOST_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>

namespace tecl::worker::core {

struct HostAllocatorOptions {
  // Requests smaller than this go to the C library unchanged.
  size_t min_block_bytes = size_t{128} << 10;
  // Upper bound of the bytes kept in free lists; 0 = a quarter of physical memory.
  size_t max_cached_bytes = 0;
};

struct HostAllocatorStats {
  int64_t hits = 0;          // Large requests served from the cache.
  int64_t misses = 0;        // Large requests that mapped new memory.
  int64_t releases = 0;      // Blocks unmapped (cache bound, EmptyHostCache, uninstall).
  int64_t cached_bytes = 0;  // Bytes in free lists now.
  int64_t live_bytes = 0;    // Bytes of large blocks handed out and not yet freed.
  int64_t peak_live_bytes = 0;
  int64_t max_cached_bytes = 0;  // The bound in force.
};

// Makes the caching allocator LibTorch's CPU allocator (c10::SetCPUAllocator). Calling it again
// only replaces the options.
void InstallHostCachingAllocator(const HostAllocatorOptions& options = {});

// Restores LibTorch's default CPU allocator and unmaps the cache.
void UninstallHostCachingAllocator();

bool HostCachingAllocatorInstalled();

// Unmaps every cached block (live blocks are untouched).
void EmptyHostCache();

HostAllocatorStats GetHostAllocatorStats();

// The size class a large request of `bytes` is served from (exposed for tests).
size_t HostAllocatorSizeClass(size_t bytes);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_HOST_ALLOCATOR_H_
