#include "services/dataloader/pipeline/batch_stream.h"

#include <utility>
#include <vector>

namespace tecl::dataloader {

std::shared_ptr<BatchStream> BatchStream::Create(int depth, PrepareFn prepare, ThreadPool* pool,
                                                 LoaderMetrics* metrics,
                                                 std::function<void()> on_destroy) {
  return std::shared_ptr<BatchStream>(
      new BatchStream(depth, std::move(prepare), pool, metrics, std::move(on_destroy)));
}

BatchStream::BatchStream(int depth, PrepareFn prepare, ThreadPool* pool, LoaderMetrics* metrics,
                         std::function<void()> on_destroy)
    : depth_(depth < 1 ? 1 : depth),
      prepare_(std::move(prepare)),
      pool_(pool),
      metrics_(metrics),
      on_destroy_(std::move(on_destroy)) {
  metrics_->active_streams.Increment();
}

BatchStream::~BatchStream() {
  Cancel();
  metrics_->active_streams.Decrement();
  if (on_destroy_) on_destroy_();
}

void BatchStream::Start() {
  std::weak_ptr<BatchStream> weak = weak_from_this();
  pool_->Schedule(
      [weak] {
        if (std::shared_ptr<BatchStream> self = weak.lock()) self->Prepare();
      },
      /*urgent=*/true);
}

void BatchStream::Prepare() {
  absl::StatusOr<Prepared> prepared = prepare_();
  Callback callback;
  Result result = absl::UnknownError("unset");
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    if (!prepared.ok()) {
      error_ = prepared.status();
    } else {
      build_ = std::move(prepared->build);
      num_batches_ = prepared->num_batches;
      prepared_ = true;
      StartBuildsLocked();
    }
    if (pending_ && TakeLocked(&result)) {
      callback = std::move(pending_);
      pending_ = nullptr;
    }
  }
  if (callback) callback(std::move(result));
}

void BatchStream::StartBuildsLocked() {
  while (prepared_ && error_.ok() && !cancelled_ && started_ < next_ + depth_ &&
         (num_batches_ < 0 || started_ < num_batches_)) {
    const int64_t index = started_++;
    std::weak_ptr<BatchStream> weak = weak_from_this();
    Entry& entry = entries_[index];
    entry.handle = build_(index, [weak, index](Result result) {
      if (std::shared_ptr<BatchStream> self = weak.lock()) self->OnBuilt(index, std::move(result));
    });
  }
}

void BatchStream::OnBuilt(int64_t index, Result result) {
  Callback callback;
  Result delivered = absl::UnknownError("unset");
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    auto it = entries_.find(index);
    if (it == entries_.end()) return;
    it->second.done = true;
    it->second.handle.reset();
    it->second.result = std::move(result);
    ++ready_;
    metrics_->queue_depth.Increment();
    if (pending_ && TakeLocked(&delivered)) {
      callback = std::move(pending_);
      pending_ = nullptr;
    }
  }
  if (callback) callback(std::move(delivered));
}

bool BatchStream::TakeLocked(Result* result) {
  if (cancelled_) {
    *result = absl::CancelledError("batch stream cancelled");
    return true;
  }
  if (!prepared_) {
    if (error_.ok()) return false;
    *result = error_;
    return true;
  }
  if (!error_.ok()) {
    *result = error_;
    return true;
  }
  if (num_batches_ >= 0 && next_ >= num_batches_) {
    *result = absl::OutOfRangeError("end of stream");
    return true;
  }
  auto it = entries_.find(next_);
  if (it == entries_.end() || !it->second.done) return false;
  *result = std::move(it->second.result);
  entries_.erase(it);
  --ready_;
  metrics_->queue_depth.Decrement();
  ++next_;
  if (!result->ok()) {
    error_ = result->status();  // The stream ends with this error.
  } else {
    StartBuildsLocked();
  }
  return true;
}

void BatchStream::Next(Callback callback) {
  Result result = absl::UnknownError("unset");
  {
    absl::MutexLock lock(&mu_);
    if (!TakeLocked(&result)) {
      pending_ = std::move(callback);
      return;
    }
  }
  callback(std::move(result));
}

void BatchStream::Cancel() {
  std::vector<std::shared_ptr<BuildHandle>> handles;
  std::map<int64_t, Entry> dropped;
  Callback callback;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    cancelled_ = true;
    for (auto& [index, entry] : entries_) {
      if (entry.handle) handles.push_back(std::move(entry.handle));
    }
    metrics_->queue_depth.Decrement(static_cast<double>(ready_));
    ready_ = 0;
    dropped.swap(entries_);
    callback = std::move(pending_);
    pending_ = nullptr;
  }
  for (const std::shared_ptr<BuildHandle>& handle : handles) handle->Cancel();
  dropped.clear();  // Frees the built batches now.
  if (callback) callback(absl::CancelledError("batch stream cancelled"));
}

int64_t BatchStream::started() const {
  absl::MutexLock lock(&mu_);
  return started_;
}

int64_t BatchStream::ready() const {
  absl::MutexLock lock(&mu_);
  return ready_;
}

}  // namespace tecl::dataloader
