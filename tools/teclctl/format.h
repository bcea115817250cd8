// Text output of teclctl: tables, times, durations, the progress line, job and event views.
// Pure functions: thread-safe.
#ifndef TECL_TOOLS_TECLCTL_FORMAT_H_
#define TECL_TOOLS_TECLCTL_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "google/protobuf/message.h"
#include "tecl/v1/job.pb.h"

namespace tecl::teclctl {

// Columns padded to the widest cell; the first row is the header.
std::string Table(const std::vector<std::vector<std::string>>& rows);

// "2023-11-24 16:02:03" in local time; "-" for 0.
std::string FormatTime(int64_t unix_ms);
// "48s", "3m05s", "2h10m"; "-" when negative.
std::string ShortDuration(double seconds);
// Time since `unix_ms`, e.g. "3m05s ago".
std::string Age(int64_t unix_ms, int64_t now_ms);

// "running", "pending", ...
std::string StateText(tecl::v1::JobState state);

// One line: state, bar, step/total, percent, loss, clips/s, ETA.
std::string ProgressLine(const tecl::v1::Job& job, int bar_width = 24);

// "16:02:03  state  pending -> scheduled  attempt 1  attempt 1 placed on ..."
std::string EventLine(const tecl::v1::JobEvent& event);

// `teclctl status`: the job's fields, progress, placement, checkpoint, evaluation results.
std::string JobDetails(const tecl::v1::Job& job, int64_t now_ms);

// `teclctl top`: the running ranks (trainers with RankStats) by job, attempt and rank: step, step
// time, steps/s, own time (step time without the all-reduce), the shares of a step spent waiting
// for data and in the all-reduce, heartbeat age, and STRAGGLER for a rank whose own time exceeds
// `straggler_factor` times the median of its job's other ranks (coordinator::FindStragglers).
// A line saying so when no rank is running.
std::string TopTable(const std::vector<tecl::v1::WorkerInfo>& workers, int64_t now_ms,
                     double straggler_factor);

// Protobuf JSON (proto field names), pretty-printed, with a trailing newline.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace tecl::teclctl

#endif  // TECL_TOOLS_TECLCTL_FORMAT_H_
