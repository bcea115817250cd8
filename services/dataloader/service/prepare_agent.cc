#include "services/dataloader/service/prepare_agent.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/dataloader/prepare/prepare_dataset.h"

namespace tecl::dataloader {

// One assignment being run: its thread, stop flag, progress and outcome.
struct PrepareAgent::Run {
  tecl::v1::Assignment assignment;
  MembershipLoop::Registration registration;  // The one it was assigned under.
  std::atomic<bool> stop{false};
  std::atomic<bool> done{false};
  std::thread thread;
  absl::Mutex mu;
  tecl::v1::JobProgress progress ABSL_GUARDED_BY(mu);
  PrepareRunOutcome outcome;  // Written by the thread before `done`.
};

namespace {

tecl::v1::JobProgress ToJobProgress(const prepare::PrepareProgress& p, double seconds,
                                    bool files_written) {
  tecl::v1::JobProgress progress;
  tecl::v1::PrepareProgress* out = progress.mutable_prepare();
  out->set_videos_total(p.total);
  out->set_videos_prepared(p.prepared);
  out->set_videos_kept(p.kept);
  out->set_videos_failed(p.failed);
  out->set_bytes_in(p.bytes_in);
  out->set_bytes_out(p.bytes_out);
  out->set_dataset_files_written(files_written);
  progress.set_step(p.prepared + p.kept + p.failed);
  progress.set_total_steps(p.total);
  if (seconds > 0) progress.set_clips_per_second(static_cast<double>(p.prepared) / seconds);
  return progress;
}

// What another attempt cannot fix ends the job (FATAL); the rest is retried by a new attempt.
tecl::v1::Outcome OutcomeOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kResourceExhausted:
      return tecl::v1::OUTCOME_FATAL;
    default:
      return tecl::v1::OUTCOME_FAILED;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrepareAgent>> PrepareAgent::Create(
    PrepareAgentOptions options, std::shared_ptr<CoordinatorClient> coordinator,
    metrics::Registry* registry) {
  TECL_ASSIGN_OR_RETURN(DataRoots read_roots, DataRoots::Create(options.data_roots));
  TECL_ASSIGN_OR_RETURN(DataRoots write_roots, DataRoots::Create(options.write_roots));
  return std::unique_ptr<PrepareAgent>(new PrepareAgent(std::move(options), std::move(read_roots),
                                                        std::move(write_roots),
                                                        std::move(coordinator), registry));
}

PrepareAgent::PrepareAgent(PrepareAgentOptions options, DataRoots read_roots,
                           DataRoots write_roots, std::shared_ptr<CoordinatorClient> coordinator,
                           metrics::Registry* registry)
    : options_(std::move(options)),
      read_roots_(std::move(read_roots)),
      write_roots_(std::move(write_roots)),
      coordinator_(std::move(coordinator)) {
  if (registry == nullptr) return;
  videos_ = &metrics::BuildCounter()
                 .Name("tecl_dataloader_prepare_videos_total")
                 .Help("Videos of prepare jobs' shards, by outcome: prepared (transcoded and "
                       "verified), kept (done by an earlier run), failed (left out)")
                 .Register(*registry);
  bytes_ = &metrics::BuildCounter()
                .Name("tecl_dataloader_prepare_bytes_total")
                .Help("Bytes of the videos prepare jobs transcoded here, read (in) and written (out)")
                .Register(*registry);
  outcomes_ = &metrics::BuildCounter()
                   .Name("tecl_dataloader_prepare_runs_total")
                   .Help("Prepare assignments run to an end, by outcome")
                   .Register(*registry);
  // Every label set exposed from the start (at 0), so rates and dashboards see the first run.
  for (const char* outcome : {"prepared", "kept", "failed"}) videos_->Add({{"outcome", outcome}});
  for (const char* direction : {"in", "out"}) bytes_->Add({{"direction", direction}});
  running_ = &metrics::BuildGauge()
                  .Name("tecl_dataloader_prepare_running")
                  .Help("1 while this dataloader runs a shard of a prepare job")
                  .Register(*registry)
                  .Add({});
}

PrepareAgent::~PrepareAgent() { Shutdown(); }

MembershipLoop::Hooks PrepareAgent::Hooks() {
  MembershipLoop::Hooks hooks;
  hooks.before_heartbeat = [this](const MembershipLoop::Registration& registration,
                                  tecl::v1::HeartbeatRequest* request) {
    BeforeHeartbeat(registration, request);
  };
  hooks.on_response = [this](const tecl::v1::HeartbeatResponse& r) { OnResponse(r); };
  hooks.on_lost = [this] { OnLost(); };
  return hooks;
}

void PrepareAgent::SetLoop(MembershipLoop* loop) {
  absl::MutexLock lock(&mu_);
  loop_ = loop;
}

void PrepareAgent::BeforeHeartbeat(const MembershipLoop::Registration& registration,
                                   tecl::v1::HeartbeatRequest* request) {
  std::shared_ptr<Run> finished;
  std::shared_ptr<Run> running;
  tecl::v1::ReportOutcomeRequest resend;
  std::string resend_session;
  {
    absl::MutexLock lock(&mu_);
    registration_ = registration;
    if (run_ != nullptr && run_->done.load()) finished = std::move(run_);
    running = run_;
    if (resend_report_) {
      resend_report_ = false;
      resend = last_report_;
      resend_session = last_report_session_;
    }
  }
  if (finished != nullptr) Finish(finished);  // The outcome before the idle heartbeat.
  if (!resend.job_id().empty()) Report(resend, resend_session);
  if (running == nullptr) return;             // Idle: a dataloader's plain liveness heartbeat.
  const tecl::v1::Assignment& a = running->assignment;
  request->set_status(tecl::v1::TRAINER_STATUS_RUNNING);
  request->set_job_id(a.job_id());
  request->set_attempt(a.attempt());
  request->set_rank(a.rank());
  absl::MutexLock lock(&running->mu);
  *request->mutable_progress() = running->progress;
}

void PrepareAgent::OnResponse(const tecl::v1::HeartbeatResponse& response) {
  absl::MutexLock lock(&mu_);
  switch (response.action()) {
    case tecl::v1::HeartbeatResponse::ACTION_RUN:
      if (response.assignment().spec().kind() != tecl::v1::JOB_KIND_PREPARE) {
        TECL_LOG(WARNING) << "assignment for job " << response.assignment().job_id()
                          << " is not a prepare job; a dataloader runs only those";
      } else if (run_ == nullptr && !shutting_down_) {
        const tecl::v1::Assignment& a = response.assignment();
        if (a.job_id() == last_report_.job_id() && a.attempt() == last_report_.attempt() &&
            a.rank() == last_report_.rank()) {
          resend_report_ = true;  // Its run ended here already: the coordinator missed the report.
        } else {
          StartRun(a);
        }
      }
      break;
    case tecl::v1::HeartbeatResponse::ACTION_STOP:
      if (run_ != nullptr && !run_->stop.exchange(true)) {
        TECL_LOG(INFO) << "stopping prepare job " << run_->assignment.job_id() << ": "
                       << response.stop_reason();
      }
      break;
    default:
      break;
  }
}

void PrepareAgent::OnLost() {
  absl::MutexLock lock(&mu_);
  if (run_ != nullptr) run_->stop = true;  // Its attempt is recovered elsewhere.
}

void PrepareAgent::StartRun(const tecl::v1::Assignment& assignment) {
  TECL_LOG(INFO) << "preparing shard " << assignment.rank() << " of " << assignment.world_size()
                 << " of job " << assignment.job_id() << " (attempt " << assignment.attempt()
                 << ") into " << assignment.spec().prepare().output_root();
  auto run = std::make_shared<Run>();
  run->assignment = assignment;
  run->registration = registration_;
  Run* raw = run.get();
  if (running_ != nullptr) running_->Set(1);
  run->thread = std::thread([this, raw] {
    raw->outcome =
        RunAssignment(raw->assignment, raw->stop, [raw](const tecl::v1::JobProgress& progress) {
          absl::MutexLock lock(&raw->mu);
          raw->progress = progress;
        });
    {
      absl::MutexLock lock(&raw->mu);
      raw->progress = raw->outcome.progress;
    }
    raw->done = true;
    absl::MutexLock lock(&mu_);
    if (loop_ != nullptr) loop_->Wake();  // Report promptly.
  });
  run_ = std::move(run);
}

PrepareRunOutcome PrepareAgent::RunAssignment(
    const tecl::v1::Assignment& assignment, const std::atomic<bool>& stop,
    const std::function<void(const tecl::v1::JobProgress&)>& on_progress) {
  const tecl::v1::JobSpec& spec = assignment.spec();
  const tecl::v1::PrepareSpec& p = spec.prepare();
  PrepareRunOutcome outcome;
  if (!write_roots_.restricted()) {
    outcome.outcome = tecl::v1::OUTCOME_FATAL;
    outcome.reason =
        "this dataloader has no --write_root, so it writes nothing; start the dataloaders with "
        "--write_root=<a folder holding prepare.output_root>";
    return outcome;
  }
  absl::StatusOr<std::string> output = write_roots_.Confine(p.output_root(), "prepare.output_root");
  if (!output.ok()) {
    outcome.outcome = tecl::v1::OUTCOME_FATAL;
    outcome.reason = absl::StrCat(output.status().message(), " (this dataloader's --write_root: ",
                                  absl::StrJoin(write_roots_.roots(), ", "), ")");
    return outcome;
  }
  prepare::PrepareOptions options;
  options.dataset = spec.dataset();
  options.output_root = *output;
  options.transcode.short_side = p.short_side();
  options.transcode.keyframe_interval = p.keyframe_interval();
  options.transcode.codec = p.codec() == tecl::v1::PrepareSpec::CODEC_INTRA
                                ? prepare::PreparedCodec::kIntra
                                : prepare::PreparedCodec::kH264;
  options.transcode.crf = p.crf();
  options.transcode.decode.limits = options_.input_limits;
  options.transcode.decode.budget = absl::Minutes(10);  // One chunk of one video.
  const int most = options_.max_threads > 0
                       ? options_.max_threads
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.threads = std::clamp(spec.resources().decode_threads(), 1, most);
  options.shard = assignment.rank();
  options.num_shards = assignment.world_size();
  options.min_free_fraction = options_.min_free_fraction;
  options.cancelled = [&stop] { return stop.load(); };
  const absl::Time start = absl::Now();
  prepare::PrepareProgress last;  // For the metrics' increments.
  const auto count = [&](const prepare::PrepareProgress& now) {
    if (videos_ != nullptr) {
      videos_->Add({{"outcome", "prepared"}}).Increment(static_cast<double>(now.prepared - last.prepared));
      videos_->Add({{"outcome", "kept"}}).Increment(static_cast<double>(now.kept - last.kept));
      videos_->Add({{"outcome", "failed"}}).Increment(static_cast<double>(now.failed - last.failed));
      bytes_->Add({{"direction", "in"}}).Increment(static_cast<double>(now.bytes_in - last.bytes_in));
      bytes_->Add({{"direction", "out"}}).Increment(static_cast<double>(now.bytes_out - last.bytes_out));
    }
    last = now;
  };
  options.on_progress = [&](const prepare::PrepareProgress& now) {
    count(now);
    if (on_progress) on_progress(ToJobProgress(now, absl::ToDoubleSeconds(absl::Now() - start), false));
  };
  absl::StatusOr<prepare::PrepareSummary> summary = prepare::PrepareDataset(options, read_roots_);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!summary.ok()) {
    outcome.reason = std::string(summary.status().message());
    outcome.outcome = stop.load() && absl::IsCancelled(summary.status())
                          ? tecl::v1::OUTCOME_STOPPED
                          : OutcomeOf(summary.status());
    outcome.progress = ToJobProgress(last, seconds, false);
    return outcome;
  }
  count(summary->progress);
  outcome.outcome = tecl::v1::OUTCOME_SUCCEEDED;
  outcome.progress = ToJobProgress(summary->progress, seconds, summary->dataset_files_written);
  outcome.reason = absl::StrCat("shard ", assignment.rank(), " of ", assignment.world_size(), ": ",
                                summary->progress.prepared, " transcoded, ",
                                summary->progress.kept, " kept, ", summary->progress.failed,
                                " failed in ", static_cast<int64_t>(seconds), " s",
                                summary->dataset_files_written
                                    ? "; every shard done: lists and prepare.json written"
                                    : "");
  for (const auto& [source, reason] : summary->failures) {
    TECL_LOG(WARNING) << "prepare job " << assignment.job_id() << ": " << source
                      << " left out: " << reason;
  }
  return outcome;
}

void PrepareAgent::Finish(const std::shared_ptr<Run>& run) {
  run->thread.join();
  if (running_ != nullptr) running_->Set(0);
  runs_.fetch_add(1);
  const tecl::v1::Assignment& a = run->assignment;
  const PrepareRunOutcome& outcome = run->outcome;
  if (outcomes_ != nullptr) {
    outcomes_->Add({{"outcome", tecl::v1::Outcome_Name(outcome.outcome)}}).Increment();
  }
  TECL_LOG(INFO) << "prepare job " << a.job_id() << " attempt " << a.attempt() << " shard "
                 << a.rank() << " ended: " << tecl::v1::Outcome_Name(outcome.outcome) << " ("
                 << outcome.reason << ")";
  if (coordinator_ == nullptr) return;
  tecl::v1::ReportOutcomeRequest request;
  request.set_worker_id(run->registration.worker_id);
  request.set_job_id(a.job_id());
  request.set_attempt(a.attempt());
  request.set_rank(a.rank());
  request.set_outcome(outcome.outcome);
  request.set_reason(outcome.reason);
  request.set_step(outcome.progress.step());
  *request.mutable_progress() = outcome.progress;
  {
    absl::MutexLock lock(&mu_);
    last_report_ = request;
    last_report_session_ = run->registration.session;
  }
  Report(request, run->registration.session);
}

void PrepareAgent::Report(const tecl::v1::ReportOutcomeRequest& request,
                          const std::string& session) {
  const absl::Status status = coordinator_->ReportOutcome(request, session);
  if (!status.ok()) {
    TECL_LOG(WARNING) << "outcome of prepare job " << request.job_id() << " attempt "
                      << request.attempt() << " not taken: " << status.message();
  }
}

void PrepareAgent::Shutdown() {
  std::shared_ptr<Run> run;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    if (run_ != nullptr) run_->stop = true;
    run = std::move(run_);
    loop_ = nullptr;
  }
  if (run != nullptr) Finish(run);
}

}  // namespace tecl::dataloader
