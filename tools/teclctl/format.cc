#include "tools/teclctl/format.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "services/coordinator/state/job_state.h"
#include "services/coordinator/state/stragglers.h"
#include "services/coordinator/spec/job_spec.h"

namespace tecl::teclctl {

std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(unix_ms),
                          absl::LocalTimeZone());
}

std::string ShortDuration(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds)) return "-";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string Age(int64_t unix_ms, int64_t now_ms) {
  if (unix_ms <= 0) return "-";
  return ShortDuration((now_ms - unix_ms) / 1000.0) + " ago";
}

std::string StateText(tecl::v1::JobState state) { return coordinator::StateName(state); }

std::string ProgressLine(const tecl::v1::Job& job, int bar_width) {
  const auto& p = job.progress();
  const bool prepare = job.spec().kind() == tecl::v1::JOB_KIND_PREPARE;
  const bool eval = job.spec().kind() == tecl::v1::JOB_KIND_EVAL || prepare;
  // A pretraining job's total is its schedule's until a trainer reports; an evaluation's (and a
  // prepare job's) is the data set's video count, unknown ("?") until a worker reported.
  const int64_t total = p.total_steps() > 0 ? p.total_steps()
                        : eval              ? 0
                                            : job.spec().schedule().total_steps();
  const double fraction =
      total > 0 ? std::clamp(static_cast<double>(p.step()) / total, 0.0, 1.0) : 0.0;
  const int filled = static_cast<int>(fraction * bar_width);
  std::string line = absl::StrFormat(
      "%-10s [%s%s] %d/%s%s %3.0f%%", StateText(job.state()), std::string(filled, '#'),
      std::string(bar_width - filled, '-'), p.step(), total > 0 ? absl::StrCat(total) : "?",
      eval ? " videos" : "", fraction * 100);
  if (p.updated_unix_ms() > 0 && prepare) {
    const auto& v = p.prepare();
    absl::StrAppend(&line, absl::StrFormat("  %d new, %d kept, %d failed  %.1f videos/s  ETA %s",
                                           v.videos_prepared(), v.videos_kept(),
                                           v.videos_failed(), p.clips_per_second(),
                                           ShortDuration(p.eta_s())));
  } else if (p.updated_unix_ms() > 0 && eval) {
    absl::StrAppend(&line, absl::StrFormat("  %.1f clips/s  ETA %s", p.clips_per_second(),
                                           ShortDuration(p.eta_s())));
  } else if (p.updated_unix_ms() > 0) {
    absl::StrAppend(&line, absl::StrFormat("  loss %.4f  %.1f clips/s  ETA %s", p.loss().total(),
                                           p.clips_per_second(), ShortDuration(p.eta_s())));
  }
  if (job.attempt() > 1) absl::StrAppend(&line, "  attempt ", job.attempt());
  return line;
}

std::string TopTable(const std::vector<tecl::v1::WorkerInfo>& workers, int64_t now_ms,
                     double straggler_factor) {
  // (job, attempt) -> rank -> worker.
  std::map<std::pair<std::string, int>, std::map<int, const tecl::v1::WorkerInfo*>> jobs;
  for (const tecl::v1::WorkerInfo& w : workers) {
    if (w.kind() != tecl::v1::WORKER_KIND_TRAINER || !w.has_rank_stats()) continue;
    jobs[{w.job_id(), w.attempt()}][w.rank()] = &w;
  }
  if (jobs.empty()) return "no rank is running\n";
  auto share = [](double part, double whole) {
    return whole > 0 ? absl::StrFormat("%.0f%%", 100 * std::min(1.0, part / whole)) : "-";
  };
  std::vector<std::vector<std::string>> rows = {{"JOB", "RANK", "WORKER", "HOST", "STEP",
                                                 "STEP TIME", "STEPS/S", "OWN TIME", "DATA WAIT",
                                                 "ALL-REDUCE", "HEARTBEAT", ""}};
  int stragglers = 0;
  for (const auto& [job, ranks] : jobs) {
    std::vector<double> own;
    for (const auto& [rank, w] : ranks) {
      own.push_back(coordinator::OwnStepSeconds(w->rank_stats().step_seconds(),
                                                w->rank_stats().allreduce_seconds()));
    }
    const std::vector<bool> slow = coordinator::FindStragglers(own, straggler_factor);
    size_t i = 0;
    for (const auto& [rank, w] : ranks) {
      const tecl::v1::RankStats& s = w->rank_stats();
      const double t = s.step_seconds();
      stragglers += slow[i];
      rows.push_back({absl::StrCat(job.first, "/", job.second), absl::StrCat(rank), w->id(),
                      w->hostname().empty() ? "-" : w->hostname(), absl::StrCat(s.step()),
                      t > 0 ? absl::StrFormat("%.0f ms", 1000 * t) : "-",
                      t > 0 ? absl::StrFormat("%.2f", 1 / t) : "-",
                      t > 0 ? absl::StrFormat("%.0f ms", 1000 * own[i]) : "-",
                      share(s.data_wait_seconds(), t), share(s.allreduce_seconds(), t),
                      Age(w->last_heartbeat_unix_ms(), now_ms), slow[i++] ? "STRAGGLER" : ""});
    }
  }
  std::string out = Table(rows);
  if (stragglers > 0) {
    absl::StrAppend(&out, stragglers, " straggler(s): own time (step time without the all-reduce) ",
                    "over ", straggler_factor, "x the median of their job's other ranks\n");
  }
  return out;
}

std::string EventLine(const tecl::v1::JobEvent& e) {
  std::string what = e.type();
  if (e.type() == "state") {
    what = e.from_state() == tecl::v1::JOB_STATE_UNSPECIFIED
               ? StateText(e.to_state())
               : absl::StrCat(StateText(e.from_state()), " -> ", StateText(e.to_state()));
  } else if (e.type() == "checkpoint") {
    what = absl::StrCat("checkpoint at step ", e.step());
  }
  return absl::StrFormat("%3d  %s  %-24s  attempt %d  %s", e.seq(), FormatTime(e.time_unix_ms()),
                         what, e.attempt(), e.reason());
}

std::string JobDetails(const tecl::v1::Job& job, int64_t now_ms) {
  const auto& spec = job.spec();
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"Job", absl::StrCat(job.id(), " (", spec.name(), ")")});
  const auto* kind = tecl::v1::JobKind_descriptor()->FindValueByNumber(spec.kind());
  const std::string kind_name = kind ? coordinator::EnumValueShortName(*kind) : "?";
  if (spec.kind() == tecl::v1::JOB_KIND_PREPARE) {
    rows.push_back({"Kind", absl::StrCat(kind_name, ", up to ", spec.resources().dataloaders(),
                                         " dataloader(s), ", spec.dataset().root(), " -> ",
                                         spec.prepare().output_root())});
  } else {
    rows.push_back({"Kind", absl::StrCat(kind_name, ", ", spec.model().backbone(), ", ",
                                         spec.resources().trainers(), " trainer(s) x ",
                                         spec.resources().dataloaders_per_trainer(),
                                         " dataloader(s)")});
  }
  rows.push_back({"State", absl::StrCat(StateText(job.state()), ": ", job.reason())});
  rows.push_back(
      {"Attempt", absl::StrCat(job.attempt(), " (", job.restarts(), " restart(s) of at most ",
                               spec.restart().max_restarts(), ")")});
  rows.push_back({"Submitted", absl::StrCat(FormatTime(job.created_unix_ms()), " (",
                                            Age(job.created_unix_ms(), now_ms), ")")});
  if (job.finished_unix_ms() > 0) {
    rows.push_back(
        {"Finished",
         absl::StrCat(FormatTime(job.finished_unix_ms()), " (took ",
                      ShortDuration((job.finished_unix_ms() - job.created_unix_ms()) / 1000.0),
                      ")")});
  }
  if (spec.kind() == tecl::v1::JOB_KIND_PREPARE) {
    const auto& v = job.progress().prepare();
    rows.push_back({"Progress", ProgressLine(job, 20)});
    rows.push_back({"Bytes", absl::StrFormat("%.1f MiB read, %.1f MiB written (this attempt)",
                                             v.bytes_in() / 1048576.0, v.bytes_out() / 1048576.0)});
  }
  if (spec.kind() == tecl::v1::JOB_KIND_PRETRAIN) {
    const auto& p = job.progress();
    rows.push_back({"Progress", ProgressLine(job, 20)});
    if (p.updated_unix_ms() > 0) {
      const auto& l = p.loss();
      rows.push_back(
          {"Losses",
           absl::StrFormat("equi %.4f  speed %.4f  dir %.4f  order %.4f  inst %.4f",
                           l.equivariance(), l.speed(), l.direction(), l.order(), l.instance())});
      rows.push_back(
          {"Accuracy", absl::StrFormat("speed %.3f  direction %.3f  order %.3f", l.speed_accuracy(),
                                       l.direction_accuracy(), l.order_accuracy())});
      rows.push_back({"Rates", absl::StrFormat("lr %.3g  data wait %.1f%%  updated %s",
                                               p.learning_rate(), 100 * p.data_wait_fraction(),
                                               Age(p.updated_unix_ms(), now_ms))});
    }
  }
  if (!job.latest_checkpoint().path().empty()) {
    rows.push_back({"Checkpoint", absl::StrCat("step ", job.latest_checkpoint().step(), ": ",
                                               job.latest_checkpoint().path())});
  }
  for (const auto& rank : job.ranks()) {
    rows.push_back({rank.rank() == 0 ? "Ranks" : "",
                    absl::StrCat(rank.rank(), ": ", rank.worker_id(), " <- ",
                                 absl::StrJoin(rank.dataloader_ids(), ", "))});
  }
  std::string out = Table(rows);
  if (job.has_eval_result()) {
    const auto& r = job.eval_result();
    absl::StrAppend(&out, "\nEvaluation of ", r.encoder(), " (", r.num_queries(), " queries, ",
                    r.num_gallery(), " gallery videos, ", r.num_classes(), " classes, ",
                    r.videos_skipped(), " skipped)\n");
    std::vector<std::vector<std::string>> results = {{"  metric", "value"}};
    for (const auto& k : r.retrieval()) {
      results.push_back({absl::StrCat("  recall@", k.k()), absl::StrFormat("%.4f", k.recall())});
    }
    results.push_back({"  linear probe top-1", absl::StrFormat("%.4f", r.linear_probe_top1())});
    absl::StrAppend(&out, Table(results));
  }
  return out;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) return "{}\n";
  if (json.empty() || json.back() != '\n') json.push_back('\n');
  return json;
}

}  // namespace tecl::teclctl
