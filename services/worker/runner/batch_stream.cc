#include "services/worker/runner/batch_stream.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"

namespace tecl::worker {

BatchStream::BatchStream(BatchStreamOptions options, std::vector<std::string> addresses,
                         LoaderClientFactory loaders)
    : options_(std::move(options)),
      loaders_(std::move(loaders)),
      addresses_(std::move(addresses)),
      next_step_(options_.start_step) {}

BatchStream::~BatchStream() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  StopGenerationLocked();
}

bool BatchStream::IsFatal(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kFailedPrecondition ||
         code == absl::StatusCode::kPermissionDenied ||
         code == absl::StatusCode::kUnauthenticated;
}

void BatchStream::StartGenerationLocked() {
  std::vector<std::string> healthy;
  while (!cancelled_) {
    const absl::Time now = absl::Now();
    absl::Time retry_at = absl::InfiniteFuture();
    for (const std::string& address : addresses_) {
      auto it = penalties_.find(address);
      if (it == penalties_.end() || it->second.until <= now) {
        healthy.push_back(address);
      } else {
        retry_at = std::min(retry_at, it->second.until);
      }
    }
    if (!healthy.empty()) break;
    // Every loader failed recently: wait for the earliest backoff to pass (or new addresses, or a
    // cancel).
    const int64_t version = addresses_version_;
    auto woken = [this, version]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return cancelled_ || addresses_version_ != version;
    };
    mu_.AwaitWithDeadline(absl::Condition(&woken), retry_at);
  }
  if (cancelled_) return;
  ++generation_;
  generation_start_step_ = next_step_;
  const absl::Time started = absl::Now();
  const int64_t stride = static_cast<int64_t>(healthy.size());
  for (int64_t j = 0; j < stride; ++j) {
    Reader reader;
    reader.address = healthy[static_cast<size_t>(j)];
    std::shared_ptr<LoaderClient> loader = loaders_(reader.address);
    if (loader == nullptr) {
      fatal_ = absl::FailedPreconditionError(absl::StrCat(
          "dataloader ", reader.address, ": no channel can be made to it (check --tls_ca, "
          "--tls_cert and --tls_key)"));
      break;
    }
    tecl::v1::StreamBatchesRequest request;
    request.set_job_id(options_.job_id);
    *request.mutable_spec() = options_.spec;
    request.set_rank(options_.rank);
    request.set_world_size(options_.world_size);
    request.set_start_step(next_step_ + j);
    request.set_step_stride(stride);
    request.set_mode(options_.mode);
    reader.stream = loader->StreamBatches(request);  // Starts in its thread, at the first Read.
    reader.started = started;
    reader.thread = std::thread(&BatchStream::ReadLoop, this, generation_, reader.address,
                                reader.stream.get(), stride);
    readers_.push_back(std::move(reader));
  }
  restart_needed_ = false;
}

void BatchStream::StopGenerationLocked() {
  std::vector<Reader> readers;
  readers.swap(readers_);
  ++generation_;  // Readers of older generations drop what they read.
  for (Reader& reader : readers) reader.stream->Cancel();
  mu_.Unlock();
  for (Reader& reader : readers) {
    if (reader.thread.joinable()) reader.thread.join();
  }
  mu_.Lock();
}

void BatchStream::ReadLoop(int generation, std::string address, BatchReader* stream,
                           int64_t stride) {
  tecl::v1::ClipBatch batch;
  bool complete = false;
  while (stream->Read(&batch)) {
    absl::MutexLock lock(&mu_);
    // Stop reading past the prefetch window: gRPC flow control then pauses the loader.
    const int64_t window = stride * std::max(1, options_.prefetch);
    auto can_store = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return cancelled_ || generation != generation_ || batch.step() < next_step_ + window;
    };
    mu_.Await(absl::Condition(&can_store));
    if (cancelled_ || generation != generation_) break;
    const bool last = batch.last();
    const int64_t step = batch.step();
    if (step >= next_step_) ready_.emplace(step, std::move(batch));
    warm_.insert(address);
    penalties_.erase(address);  // It works again.
    batch.Clear();
    if (last || (options_.end_step > 0 && step + stride >= options_.end_step)) complete = true;
  }
  const absl::Status status = stream->Finish();
  absl::MutexLock lock(&mu_);
  if (cancelled_ || generation != generation_) return;
  if (status.ok() && (complete || options_.mode == tecl::v1::STREAM_MODE_EVAL)) return;
  if (IsFatal(status.code())) {
    fatal_ = Annotate(status, absl::StrCat("dataloader ", address));
    return;
  }
  TECL_LOG(WARNING) << "dataloader " << address << " stream for job " << options_.job_id
                    << " rank " << options_.rank << " broke at step >= " << next_step_ << ": "
                    << (status.ok() ? std::string("ended early") : std::string(status.message()))
                    << "; continuing with the other loaders";
  MarkFailedLocked(address, "error", absl::ZeroDuration());
}

void BatchStream::MarkFailedLocked(const std::string& address, const std::string& reason,
                                   absl::Duration waited) {
  auto [it, first] = penalties_.try_emplace(address);
  Penalty& penalty = it->second;
  if (first) {
    penalty.next = options_.reconnect_backoff;
    penalty.cap = std::max(options_.reconnect_backoff, absl::Seconds(5));
  }
  penalty.cap = std::max(penalty.cap, 4 * waited);
  const absl::Duration out = std::max(penalty.next, waited);
  penalty.until = absl::Now() + out;
  penalty.next = std::min(2 * out, penalty.cap);
  restart_needed_ = true;
  if (options_.on_failover) options_.on_failover(address, reason);
}

const BatchStream::Reader* BatchStream::OwnerLocked() const {
  if (readers_.empty() || next_step_ < generation_start_step_) return nullptr;
  const int64_t k = static_cast<int64_t>(readers_.size());
  return &readers_[static_cast<size_t>((next_step_ - generation_start_step_) % k)];
}

absl::StatusOr<tecl::v1::ClipBatch> BatchStream::Next() {
  absl::MutexLock lock(&mu_);
  const absl::Time waiting_since = absl::Now();
  while (true) {
    if (cancelled_) return absl::CancelledError("batch stream cancelled");
    if (!fatal_.ok()) return fatal_;
    if (eval_done_ || (options_.mode == tecl::v1::STREAM_MODE_TRAIN && options_.end_step > 0 &&
                       next_step_ >= options_.end_step)) {
      return absl::OutOfRangeError(absl::StrCat("batch stream ended at step ", next_step_));
    }
    auto it = ready_.find(next_step_);
    if (it != ready_.end()) {
      tecl::v1::ClipBatch batch = std::move(it->second);
      ready_.erase(ready_.begin(), std::next(it));
      ++next_step_;
      if (batch.last()) eval_done_ = true;
      return batch;
    }
    if (restart_needed_) {
      const bool first = readers_.empty() && generation_ == 0;
      StopGenerationLocked();
      if (cancelled_) continue;
      if (!first) ++reconnects_;
      if (addresses_.empty()) {
        return absl::FailedPreconditionError("no dataloader addresses for this trainer");
      }
      StartGenerationLocked();
      continue;
    }
    // The loader that owes this step has until its deadline, counted from when the consumer
    // began to wait or the loader's stream started, whichever is later.
    absl::Time deadline = absl::InfiniteFuture();
    if (const Reader* owner = OwnerLocked(); owner != nullptr) {
      const bool warm = warm_.count(owner->address) > 0;
      const absl::Duration timeout = warm ? options_.stall_timeout : options_.start_timeout;
      deadline = std::max(waiting_since, owner->started) + timeout;
      if (absl::Now() >= deadline) {
        TECL_LOG(WARNING) << "dataloader " << owner->address << " sent nothing for step "
                          << next_step_ << " of job " << options_.job_id << " rank "
                          << options_.rank << " within " << absl::FormatDuration(timeout)
                          << (warm ? "" : " (its first batch)")
                          << ": stalled; continuing with the other loaders";
        MarkFailedLocked(owner->address, "stalled", timeout);
        continue;
      }
    }
    auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return cancelled_ || !fatal_.ok() || restart_needed_ || ready_.count(next_step_) > 0;
    };
    mu_.AwaitWithDeadline(absl::Condition(&wake),
                          std::min(deadline, absl::Now() + absl::Seconds(1)));
  }
}

void BatchStream::SetAddresses(std::vector<std::string> addresses) {
  absl::MutexLock lock(&mu_);
  if (addresses == addresses_) return;
  addresses_ = std::move(addresses);
  for (auto it = penalties_.begin(); it != penalties_.end();) {
    const bool kept =
        std::find(addresses_.begin(), addresses_.end(), it->first) != addresses_.end();
    it = kept ? std::next(it) : penalties_.erase(it);
  }
  ++addresses_version_;
  restart_needed_ = true;
}

void BatchStream::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (Reader& reader : readers_) reader.stream->Cancel();
}

int64_t BatchStream::next_step() const {
  absl::MutexLock lock(&mu_);
  return next_step_;
}

int64_t BatchStream::reconnects() const {
  absl::MutexLock lock(&mu_);
  return reconnects_;
}

BatchSourceFactory LoaderBatchSources(LoaderClientFactory loaders) {
  return [loaders = std::move(loaders)](const BatchStreamOptions& options,
                                        const std::vector<std::string>& loader_addresses) {
    return std::make_unique<BatchStream>(options, loader_addresses, loaders);
  };
}

}  // namespace tecl::worker
