#include "services/coordinator/state/job_logs.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace tecl::coordinator {
namespace {

constexpr int64_t kLineOverheadBytes = 96;  // The message, its deque slot, ids.
constexpr char kCutMarker[] = "... [cut at 4 KiB]";

}  // namespace

JobLogs::JobLogs(JobLogsOptions options)
    : options_(options),
      // Tail ids of a restarted coordinator differ from the last run's.
      next_tail_id_(std::chrono::system_clock::now().time_since_epoch().count() & 0x7fffffffffff) {}

int64_t JobLogs::LineBytes(const tecl::v1::LogLine& line) {
  return kLineOverheadBytes + static_cast<int64_t>(line.text().size() + line.job_id().size() +
                                                   line.worker_id().size());
}

void JobLogs::Append(tecl::v1::LogLine line) {
  if (line.text().size() > kMaxLogLineBytes) {
    std::string* text = line.mutable_text();
    text->resize(kMaxLogLineBytes - (sizeof(kCutMarker) - 1));
    text->append(kCutMarker);
  }
  absl::MutexLock lock(&mu_);
  auto [it, created] = tails_.try_emplace(line.job_id());
  Tail& tail = it->second;
  if (created) tail.id = ++next_tail_id_;
  tail.last_append = ++appends_;
  line.set_cursor(tail.first_cursor + static_cast<int64_t>(tail.lines.size()));
  const int64_t size = LineBytes(line);
  tail.bytes += size;
  bytes_ += size;
  tail.lines.push_back(std::move(line));
  while (tail.bytes > options_.max_bytes_per_job && tail.lines.size() > 1) {
    const int64_t evicted = LineBytes(tail.lines.front());
    tail.bytes -= evicted;
    bytes_ -= evicted;
    tail.lines.pop_front();
    ++tail.first_cursor;
  }
  while (static_cast<int>(tails_.size()) > std::max(1, options_.max_jobs)) {
    auto oldest = std::min_element(tails_.begin(), tails_.end(), [](const auto& a, const auto& b) {
      return a.second.last_append < b.second.last_append;
    });
    bytes_ -= oldest->second.bytes;
    tails_.erase(oldest);
  }
}

LogPage JobLogs::Read(const std::string& job_id, const LogQuery& query) const {
  LogPage page;
  page.next_cursor = query.after_cursor;
  absl::MutexLock lock(&mu_);
  auto it = tails_.find(job_id);
  if (it == tails_.end()) return page;
  const Tail& tail = it->second;
  page.tail_id = tail.id;
  const int64_t end_cursor = tail.first_cursor + static_cast<int64_t>(tail.lines.size());
  const int64_t after = std::max<int64_t>(query.after_cursor, 0);
  if (after + 1 < tail.first_cursor) page.skipped = tail.first_cursor - after - 1;
  const size_t start =
      static_cast<size_t>(std::max<int64_t>(after + 1, tail.first_cursor) - tail.first_cursor);
  if (start >= tail.lines.size()) return page;
  const auto matches = [&](const tecl::v1::LogLine& line) {
    return !query.rank.has_value() || line.rank() == *query.rank;
  };
  const int max_lines = std::clamp(query.max_lines, 1, kMaxLogLinesPerRead);
  int64_t page_bytes = 0;
  if (query.tail > 0 && after == 0) {
    // The newest `tail` matching lines, within the read's bounds.
    const int want = std::min(query.tail, max_lines);
    for (size_t i = tail.lines.size(); i > start && static_cast<int>(page.lines.size()) < want;) {
      const tecl::v1::LogLine& line = tail.lines[--i];
      if (!matches(line)) continue;
      page_bytes += LineBytes(line);
      if (page_bytes > kMaxLogBytesPerRead) break;
      page.lines.push_back(line);
    }
    std::reverse(page.lines.begin(), page.lines.end());
    page.skipped = 0;  // Leaving out older lines was asked for.
    page.next_cursor = end_cursor - 1;
    return page;
  }
  for (size_t i = start; i < tail.lines.size(); ++i) {
    const tecl::v1::LogLine& line = tail.lines[i];
    if (!matches(line)) {
      page.next_cursor = line.cursor();
      continue;
    }
    if (static_cast<int>(page.lines.size()) == max_lines ||
        page_bytes + LineBytes(line) > kMaxLogBytesPerRead) {
      page.more = true;
      break;
    }
    page_bytes += LineBytes(line);
    page.lines.push_back(line);
    page.next_cursor = line.cursor();
  }
  return page;
}

int64_t JobLogs::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

int JobLogs::jobs() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(tails_.size());
}

}  // namespace tecl::coordinator
