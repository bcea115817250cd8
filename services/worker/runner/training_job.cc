// RunTrainingJob: one pretraining rank (job_runner.h).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/logging.h"
#include "services/worker/dist/gradient_reducer.h"
#include "services/worker/dist/parameter_sync.h"
#include "services/worker/dist/process_group_factory.h"
#include "services/worker/dist/step_collectives.h"
#include "services/worker/runner/batch_prefetcher.h"
#include "services/worker/runner/job_input.h"
#include "services/worker/runner/job_options.h"
#include "services/worker/runner/job_runner.h"
#include "services/worker/runner/trainer_metrics.h"
#include "services/worker/train/checkpoint.h"
#include "services/worker/train/sealed_file.h"
#include "services/worker/train/trainer.h"

namespace tecl::worker {
namespace {

namespace fs = std::filesystem;
using tecl::v1::Assignment;
using tecl::v1::JobSpec;

// Returns the outcome for a status that ends the run.
JobOutcome Ended(tecl::v1::Outcome outcome, std::string reason, int64_t step,
                 const tecl::v1::JobProgress& progress) {
  JobOutcome o;
  o.outcome = outcome;
  o.reason = std::move(reason);
  o.step = step;
  o.progress = progress;
  return o;
}

std::string InFolder(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

tecl::v1::LossTerms ToProto(const core::LossValues& v) {
  tecl::v1::LossTerms t;
  t.set_total(v.total);
  t.set_equivariance(v.equivariance.value_or(0));
  t.set_speed(v.speed.value_or(0));
  t.set_direction(v.direction.value_or(0));
  t.set_order(v.order.value_or(0));
  t.set_instance(v.instance.value_or(0));
  t.set_speed_accuracy(v.speed_accuracy.value_or(0));
  t.set_direction_accuracy(v.direction_accuracy.value_or(0));
  t.set_order_accuracy(v.order_accuracy.value_or(0));
  return t;
}

// Exponential moving average that starts at the first sample.
class Ema {
 public:
  explicit Ema(double alpha) : alpha_(alpha) {}
  void Add(double x) { value_ = seen_ ? alpha_ * x + (1 - alpha_) * value_ : x, seen_ = true; }
  double value() const { return value_; }

 private:
  double alpha_;
  double value_ = 0;
  bool seen_ = false;
};

class TrainingRun {
 public:
  TrainingRun(const Assignment& assignment, RunContext* context, const JobRunnerOptions& options)
      : a_(assignment),
        spec_(assignment.spec()),
        context_(context),
        options_(options),
        metrics_(*options.registry, assignment.job_id(), assignment.rank()) {
    progress_.set_total_steps(spec_.schedule().total_steps());
  }

  JobOutcome Run() {
    context_->ReportProgress(tecl::v1::TRAINER_STATUS_STARTING, progress_, 0, 0, 0);
    absl::Status status = Setup();
    if (!status.ok()) return Fail(status);
    status = Loop();
    if (!status.ok()) return Fail(status);
    return Ended(tecl::v1::OUTCOME_SUCCEEDED,
                 absl::StrCat("rank ", a_.rank(), " reached step ", trainer_->step()),
                 trainer_->step(), progress_);
  }

 private:
  JobOutcome Fail(const absl::Status& status) {
    const int64_t step = trainer_ ? trainer_->step() : 0;
    if (context_->StopRequested()) {
      return Ended(tecl::v1::OUTCOME_STOPPED,
                   absl::StrCat("stopped at step ", step, ": ", context_->StopReason()), step,
                   progress_);
    }
    TECL_LOG(ERROR) << "job " << a_.job_id() << " attempt " << a_.attempt() << " rank " << a_.rank()
                    << " failed at step " << step << ": " << status;
    return Ended(OutcomeForStatus(status), std::string(status.message()), step, progress_);
  }

  absl::Status Setup() {
    absl::StatusOr<c10::Device> device = DeviceForSpec(spec_, options_.cuda_device);
    if (!device.ok()) return device.status();
    absl::StatusOr<core::TrainerOptions> trainer_options =
        TrainerOptionsFromSpec(spec_, a_.world_size(), *device);
    if (!trainer_options.ok()) return trainer_options.status();
    const int threads = spec_.resources().threads_per_trainer() > 0
                            ? spec_.resources().threads_per_trainer()
                            : options_.default_threads;
    torch::set_num_threads(std::max(1, threads));
    try {
      trainer_ = std::make_unique<core::Trainer>(*trainer_options);
    } catch (...) {
      return StatusFromCurrentException("building the trainer");
    }
    if (absl::Status resumed = Resume(); !resumed.ok()) return resumed;
    if (a_.world_size() > 1) {
      absl::Status status = FormGroup(*device);
      if (!status.ok()) return status;
    }
    BatchStreamOptions stream_options = JobInput::StreamOptions(a_, tecl::v1::STREAM_MODE_TRAIN);
    stream_options.start_step = trainer_->step();
    stream_options.end_step = spec_.schedule().total_steps();
    absl::StatusOr<std::unique_ptr<JobInput>> input =
        JobInput::Open(options_.batch_sources, std::move(stream_options), context_, &metrics_);
    if (!input.ok()) return input.status();
    input_ = std::move(*input);
    TECL_LOG(INFO) << "job " << a_.job_id() << " attempt " << a_.attempt() << ": rank " << a_.rank()
                   << " of " << a_.world_size() << ", " << spec_.model().backbone() << " on "
                   << device->str() << " with " << torch::get_num_threads() << " threads, "
                   << a_.dataloader_addresses_size() << " dataloaders, steps " << trainer_->step()
                   << " -> " << spec_.schedule().total_steps()
                   << (reducer_
                           ? absl::StrCat(", ", reducer_->buckets().size(),
                                          " gradient buckets over ", communicator_->backend_name())
                           : std::string());
    return absl::OkStatus();
  }

  // Loads the newest usable checkpoint of the assignment (resume_candidates, newest first; else
  // resume_from), checking each file's digest against the registered one. A file that is missing,
  // corrupt or of another digest is rejected with the coordinator (never offered again) and the
  // next one is tried; DATA_LOSS (FATAL) when there were candidates and none was usable. Any other
  // error (a checkpoint of another model) ends the run: an older file would not help.
  absl::Status Resume() {
    std::vector<tecl::v1::Checkpoint> candidates(a_.resume_candidates().begin(),
                                                 a_.resume_candidates().end());
    if (candidates.empty() && !a_.resume_from().path().empty()) {
      candidates.push_back(a_.resume_from());
    }
    std::vector<std::string> rejected;
    for (const tecl::v1::Checkpoint& c : candidates) {
      try {
        const core::ResumeState resumed = core::LoadCheckpoint(c.path(), *trainer_, c.sha256());
        TECL_LOG(INFO) << "job " << a_.job_id() << " rank " << a_.rank() << ": resumed from "
                       << c.path() << " at step " << resumed.step << " (cursor "
                       << resumed.data_cursor << ")";
        return absl::OkStatus();
      } catch (...) {
        const absl::Status status = StatusFromCurrentException("resuming from " + c.path());
        if (status.code() != absl::StatusCode::kDataLoss &&
            status.code() != absl::StatusCode::kNotFound) {
          return status;
        }
        TECL_LOG(WARNING) << "job " << a_.job_id() << " rank " << a_.rank()
                          << ": cannot resume from checkpoint of step " << c.step() << " ("
                          << status.message() << "); trying the one before";
        rejected.push_back(absl::StrCat("step ", c.step(), ": ", status.message()));
        if (absl::Status told = context_->RejectCheckpoint(c, std::string(status.message()));
            !told.ok()) {
          TECL_LOG(WARNING) << "could not tell the coordinator: " << told.message();
        }
      }
    }
    if (rejected.empty()) return absl::OkStatus();  // Nothing to resume from: step 0.
    return absl::DataLossError(absl::StrCat("no usable checkpoint to resume from (",
                                            absl::StrJoin(rejected, "; "), ")"));
  }

  absl::Status FormGroup(const c10::Device& device) {
    if (!options_.communicators) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", a_.job_id(), " has ", a_.world_size(),
          " ranks but this trainer was given no process-group factory (JobRunnerOptions)"));
    }
    CommunicatorRequest request;
    request.job_id = a_.job_id();
    request.attempt = a_.attempt();
    request.rank = a_.rank();
    request.world_size = a_.world_size();
    request.timeout = std::chrono::milliseconds(
        static_cast<int64_t>(spec_.restart().collective_timeout_s() * 1000));
    request.device = device;
    request.session = context_->session();
    request.backend = spec_.distributed().backend() == tecl::v1::DistributedSpec::BACKEND_NCCL
                          ? dist::Backend::kNccl
                      : spec_.distributed().backend() == tecl::v1::DistributedSpec::BACKEND_GLOO
                          ? dist::Backend::kGloo
                          : dist::BackendForDevice(device);
    try {
      communicator_ = options_.communicators(request);
      // Rank 0's parameters and buffers everywhere (identical already when every rank built from
      // the same seed or loaded the same checkpoint; this makes it so whatever happened), then a
      // checksum comparison.
      const std::vector<at::Tensor> state = dist::ModuleState(*trainer_->model());
      dist::BroadcastFromRoot(state, *communicator_);
      dist::VerifyStateAgrees(state, *communicator_);
      std::vector<dist::NamedParameter> parameters;
      for (auto& [name, tensor] : trainer_->NamedParameters()) parameters.push_back({name, tensor});
      dist::ReducerOptions reducer_options;
      reducer_options.bucket_size_mb = spec_.distributed().bucket_size_mb();
      reducer_ = std::make_unique<dist::GradientReducer>(std::move(parameters), communicator_,
                                                         reducer_options);
      trainer_->SetCollectives(GlobalBatchCollectives());
    } catch (...) {
      return StatusFromCurrentException(absl::StrCat("forming the process group (rank ", a_.rank(),
                                                     " of ", a_.world_size(), ")"));
    }
    return absl::OkStatus();
  }

  // The global batch of docs/global-batch.md over this group, as the spec asks for it.
  core::StepCollectives GlobalBatchCollectives() const {
    core::StepCollectives collectives = dist::MakeStepCollectives(
        communicator_, spec_.distributed().global_batch_loss(), spec_.model().sync_batchnorm());
    TECL_LOG(INFO) << "job " << a_.job_id() << ": rank " << a_.rank() << " of " << a_.world_size()
                   << ": contrastive terms over "
                   << (collectives.global_loss ? "the global batch" : "this rank's batch")
                   << ", BatchNorm statistics over "
                   << (collectives.batch_norm ? "every rank's batch (SyncBN)" : "this rank's batch");
    return collectives;
  }

  absl::Status Loop() {
    const int64_t total = spec_.schedule().total_steps();
    const int log_interval = std::max(1, spec_.schedule().log_interval());
    Ema step_seconds(0.1), data_wait(0.1), allreduce(0.1);
    int64_t clips_per_step = 0;
    absl::Time window_start = absl::Now();
    int64_t window_steps = 0;
    double window_wait = 0;
    double window_allreduce = 0;
    double window_hidden = 0;
    // The next batch is received, converted and copied to the device while this one computes.
    core::DeviceStager stager(trainer_->options().device);
    BatchPrefetcher prefetcher(input_->source(), stager);
    while (trainer_->step() < total) {
      if (context_->StopRequested()) return absl::CancelledError(context_->StopReason());
      const absl::Time start = absl::Now();
      absl::StatusOr<BatchPrefetcher::Item> next = prefetcher.Next();
      if (!next.ok()) {
        return absl::Status(next.status().code(), absl::StrCat("input for step ", trainer_->step(),
                                                               ": ", next.status().message()));
      }
      const double wait_seconds = absl::ToDoubleSeconds(absl::Now() - start);
      if (next->step != trainer_->step()) {
        return absl::InternalError(absl::StrCat("the batch stream delivered step ", next->step,
                                                " for step ", trainer_->step()));
      }
      std::optional<core::Batch> batch(std::move(next->batch));
      clips_per_step = batch->clips.size(0);

      core::LossValues loss;
      dist::StepTimings timings;
      core::StepInfo info;
      try {
        trainer_->set_epoch(next->epoch);
        loss = trainer_->ForwardBackward(*batch);
        if (reducer_) timings = reducer_->Finalize();
        info = trainer_->ApplyGradients();
        if (info.loss_scale) {
          metrics_.RecordLossScale(*info.loss_scale, info.skipped);
          if (info.skipped) {
            TECL_LOG(WARNING) << "job " << a_.job_id() << ": step " << info.step
                              << " skipped: fp16 gradients overflowed at loss scale "
                              << *info.loss_scale << "; the scale is halved";
          }
        }
      } catch (...) {
        return StatusFromCurrentException(absl::StrCat("step ", trainer_->step()));
      }
      batch.reset();

      const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
      step_seconds.Add(seconds);
      data_wait.Add(wait_seconds);
      allreduce.Add(timings.allreduce_seconds);
      const int64_t done = trainer_->step();
      const double eta = static_cast<double>(total - done) * step_seconds.value();
      metrics_.RecordStep(done, seconds, wait_seconds, timings.allreduce_seconds,
                          timings.exposed_seconds, clips_per_step, info.learning_rate, loss, eta);
      ++window_steps;
      window_wait += wait_seconds;
      window_allreduce += timings.allreduce_seconds;
      window_hidden += std::max(0.0, timings.allreduce_seconds - timings.exposed_seconds);

      progress_.set_step(done);
      progress_.set_epoch(trainer_->epoch());
      *progress_.mutable_loss() = ToProto(loss);
      progress_.set_clips_per_second(step_seconds.value() > 0
                                         ? static_cast<double>(clips_per_step) * a_.world_size() /
                                               step_seconds.value()
                                         : 0);
      progress_.set_data_wait_fraction(
          step_seconds.value() > 0 ? std::min(1.0, data_wait.value() / step_seconds.value()) : 0);
      progress_.set_eta_s(eta);
      progress_.set_learning_rate(info.learning_rate);
      context_->ReportProgress(tecl::v1::TRAINER_STATUS_RUNNING, progress_, step_seconds.value(),
                               data_wait.value(), allreduce.value());

      if (done % log_interval == 0 || done == total) {
        const double window = absl::ToDoubleSeconds(absl::Now() - window_start);
        TECL_LOG(INFO) << absl::StrFormat(
            "job %s rank %d step %d/%d  %s  lr %.3g  %.1f clips/s  data wait %.1f%%  "
            "all-reduce %.1f ms/step (%.0f%% hidden)",
            a_.job_id(), a_.rank(), done, total, loss.ToString(), info.learning_rate,
            window > 0 ? static_cast<double>(window_steps * clips_per_step) / window : 0,
            window > 0 ? 100.0 * window_wait / window : 0,
            1000.0 * window_allreduce / std::max<int64_t>(1, window_steps),
            window_allreduce > 0 ? 100.0 * window_hidden / window_allreduce : 0);
        window_start = absl::Now();
        window_steps = 0;
        window_wait = window_allreduce = window_hidden = 0;
      }
      const int64_t interval = spec_.checkpoint().interval_steps();
      if (a_.rank() == 0 && ((interval > 0 && done % interval == 0) || done == total)) {
        absl::Status status = WriteCheckpoint(done == total);
        if (!status.ok()) return status;
      }
    }
    return absl::OkStatus();
  }

  // Rank 0: writes, registers and prunes; at the end also exports the encoder.
  absl::Status WriteCheckpoint(bool final) {
    const absl::Time start = absl::Now();
    const int64_t step = trainer_->step();
    const std::string path = InFolder(a_.checkpoint_dir(), core::CheckpointFileName(step));
    core::WrittenFile written;
    try {
      written = core::SaveCheckpoint(
          path, *trainer_,
          absl::StrCat("seed=", spec_.seed(), " world=", a_.world_size(), " step=", step),
          options_.env);
      if (final) {
        core::ExportEncoder(InFolder(a_.checkpoint_dir(), core::EncoderFileName(step)),
                            trainer_->model()->backbone(), step, options_.env);
      }
    } catch (...) {
      return StatusFromCurrentException("writing checkpoint " + path);
    }
    tecl::v1::Checkpoint checkpoint;
    checkpoint.set_step(step);
    checkpoint.set_attempt(a_.attempt());
    checkpoint.set_path(written.path);
    checkpoint.set_sha256(written.sha256);
    checkpoint.set_size_bytes(written.size_bytes);
    checkpoint.set_created_unix_ms(absl::ToUnixMillis(absl::Now()));
    absl::Status registered = context_->RegisterCheckpoint(checkpoint);
    if (!registered.ok()) {
      return absl::Status(registered.code(), absl::StrCat("registering checkpoint ", path, ": ",
                                                          registered.message()));
    }
    try {
      core::PruneCheckpoints(a_.checkpoint_dir(), std::max(1, spec_.checkpoint().keep()),
                             options_.env);
    } catch (...) {
      // The new checkpoint is registered; an old file left behind does not stop training.
      TECL_LOG(WARNING) << StatusFromCurrentException("pruning " + a_.checkpoint_dir());
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    metrics_.RecordCheckpoint(seconds);
    TECL_LOG(INFO) << absl::StrFormat("job %s: checkpoint at step %d: %s (%.1f MB, %.2f s)",
                                      a_.job_id(), step, path, written.size_bytes / 1e6, seconds);
    return absl::OkStatus();
  }

  const Assignment& a_;
  const JobSpec& spec_;
  RunContext* const context_;
  const JobRunnerOptions& options_;
  JobMetrics metrics_;
  tecl::v1::JobProgress progress_;
  std::unique_ptr<core::Trainer> trainer_;
  std::shared_ptr<dist::Communicator> communicator_;
  // Declared after the communicator and trainer it hooks into: destroyed first.
  std::unique_ptr<dist::GradientReducer> reducer_;
  std::unique_ptr<JobInput> input_;
};

}  // namespace

JobOutcome RunTrainingJob(const Assignment& assignment, RunContext* context,
                          const JobRunnerOptions& options) {
  TrainingRun run(assignment, context, options);
  return run.Run();
}

}  // namespace tecl::worker
