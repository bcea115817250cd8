#include "services/dataloader/pipeline/thread_pool.h"

#include <algorithm>
#include <utility>

namespace tecl::dataloader {

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back(&ThreadPool::Run, this);
}

ThreadPool::~ThreadPool() {
  std::deque<std::function<void()>> dropped;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  for (std::thread& thread : threads_) thread.join();
  dropped.clear();  // Releases the captures outside the lock.
}

void ThreadPool::Schedule(std::function<void()> task, bool urgent) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  if (urgent) {
    queue_.push_front(std::move(task));
  } else {
    queue_.push_back(std::move(task));
  }
}

size_t ThreadPool::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

bool ThreadPool::idle() const {
  absl::MutexLock lock(&mu_);
  return queue_.empty() && running_ == 0;
}

bool ThreadPool::WaitUntilIdle(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto is_idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return queue_.empty() && running_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&is_idle), timeout);
}

void ThreadPool::Run() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    task();
    task = nullptr;  // Release the captures before counting the task as finished.
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

}  // namespace tecl::dataloader
