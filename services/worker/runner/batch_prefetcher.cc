#include "services/worker/runner/batch_prefetcher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/worker/runner/job_options.h"

namespace tecl::worker {

BatchPrefetcher::BatchPrefetcher(BatchSource& source, core::DeviceStager& stager)
    : source_(source), stager_(stager), thread_([this] { Run(); }) {}

BatchPrefetcher::~BatchPrefetcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  source_.Cancel();
  thread_.join();
}

void BatchPrefetcher::Run() {
  for (;;) {
    absl::StatusOr<Staged> result = [&]() -> absl::StatusOr<Staged> {
      absl::StatusOr<tecl::v1::ClipBatch> next = source_.Next();
      if (!next.ok()) return next.status();
      auto message = std::make_shared<tecl::v1::ClipBatch>(std::move(*next));
      absl::StatusOr<core::Batch> batch = BatchFromProto(message);
      if (!batch.ok()) return batch.status();
      try {
        return Staged{message->step(), message->epoch(), stager_.Stage(std::move(*batch))};
      } catch (...) {
        return StatusFromCurrentException(
            absl::StrCat("copying the batch of step ", message->step(), " to the device"));
      }
    }();
    const bool last = !result.ok();
    absl::MutexLock lock(&mu_);
    // One batch waits for the consumer; this one (already staged) waits for that slot.
    mu_.Await(absl::Condition(
        +[](BatchPrefetcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->stop_ || !self->ready_.has_value();
        },
        this));
    if (stop_) return;
    ready_.emplace(std::move(result));
    if (last) return;
  }
}

absl::StatusOr<BatchPrefetcher::Item> BatchPrefetcher::Next() {
  absl::StatusOr<Staged> taken = absl::UnknownError("unset");
  {
    absl::MutexLock lock(&mu_);
    if (!final_.ok()) return final_;
    mu_.Await(absl::Condition(
        +[](BatchPrefetcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->ready_.has_value();
        },
        this));
    taken = std::move(*ready_);
    ready_.reset();
    if (!taken.ok()) {
      final_ = taken.status();
      return final_;
    }
  }
  try {
    Item item{taken->step, taken->epoch, stager_.Ready(std::move(taken->staged))};
    return item;
  } catch (...) {
    return StatusFromCurrentException(
        absl::StrCat("waiting for the batch of step ", taken->step, " on the device"));
  }
}

}  // namespace tecl::worker
