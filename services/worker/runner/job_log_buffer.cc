#include "services/worker/runner/job_log_buffer.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tecl::worker {

JobLogBuffer::JobLogBuffer(JobLogBufferOptions options, metrics::Counter* dropped)
    : options_(options), dropped_counter_(dropped) {}

void JobLogBuffer::Begin(const std::string& job_id, int attempt, int rank) {
  absl::MutexLock lock(&mu_);
  run_ = Run{job_id, attempt, rank};
}

void JobLogBuffer::End() {
  absl::MutexLock lock(&mu_);
  run_.reset();
}

void JobLogBuffer::Send(LogSeverity /*severity*/, absl::string_view line) {
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  absl::MutexLock lock(&mu_);
  if (!run_.has_value()) return;
  tecl::v1::LogLine& entry = pending_.emplace_back();
  entry.set_seq(next_seq_++);
  entry.set_unix_ms(now_ms);
  entry.set_job_id(run_->job_id);
  entry.set_attempt(run_->attempt);
  entry.set_rank(run_->rank);
  entry.set_text(std::string(line.substr(0, options_.max_line_bytes)));
  bytes_ += entry.text().size();
  int64_t dropped = 0;
  while (bytes_ > options_.max_bytes && pending_.size() > 1) {
    bytes_ -= pending_.front().text().size();
    pending_.pop_front();
    ++dropped;
  }
  dropped_ += dropped;
  if (dropped > 0 && dropped_counter_ != nullptr) dropped_counter_->Increment(dropped);
}

void JobLogBuffer::Take(google::protobuf::RepeatedPtrField<tecl::v1::LogLine>* out) {
  absl::MutexLock lock(&mu_);
  size_t bytes = 0;
  size_t lines = 0;
  in_flight_through_ = 0;
  for (const tecl::v1::LogLine& line : pending_) {
    if (lines == options_.max_lines_per_take ||
        (lines > 0 && bytes + line.text().size() > options_.max_bytes_per_take)) {
      break;
    }
    *out->Add() = line;
    bytes += line.text().size();
    ++lines;
    in_flight_through_ = line.seq();
  }
}

void JobLogBuffer::Delivered() {
  absl::MutexLock lock(&mu_);
  while (!pending_.empty() && pending_.front().seq() <= in_flight_through_) {
    bytes_ -= pending_.front().text().size();
    pending_.pop_front();
  }
  in_flight_through_ = 0;
}

size_t JobLogBuffer::pending_lines() const {
  absl::MutexLock lock(&mu_);
  return pending_.size();
}

int64_t JobLogBuffer::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace tecl::worker
