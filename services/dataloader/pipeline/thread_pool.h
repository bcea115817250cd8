// ThreadPool: a fixed set of threads running tasks in FIFO order; the dataloader's decode
// executor. Urgent tasks (manifest loading, stream preparation) can jump the queue so a new stream
// or a DescribeDataset call does not wait behind other streams' decoding.
//
// Thread-safe. The destructor stops the threads after their current task; tasks still queued are
// destroyed without running (their captures are released).
#ifndef TECL_SERVICES_DATALOADER_PIPELINE_THREAD_POOL_H_
#define TECL_SERVICES_DATALOADER_PIPELINE_THREAD_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tecl::dataloader {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `task` (at the front when `urgent`). Never blocks.
  void Schedule(std::function<void()> task, bool urgent = false);

  int threads() const { return static_cast<int>(threads_.size()); }
  size_t queued() const;
  // Neither a queued nor a running task.
  bool idle() const;
  // Blocks until idle() or `timeout` passes; returns idle().
  bool WaitUntilIdle(absl::Duration timeout) const;

 private:
  void Run();

  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_PIPELINE_THREAD_POOL_H_
