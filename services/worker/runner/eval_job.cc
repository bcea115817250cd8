// RunEvalJob: feature extraction, retrieval and linear probe (job_runner.h).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/common/logging.h"
#include "services/worker/eval/eval_metrics.h"
#include "services/worker/model/backbone.h"
#include "services/worker/model/model.h"
#include "services/worker/runner/job_input.h"
#include "services/worker/runner/job_options.h"
#include "services/worker/runner/job_runner.h"
#include "services/worker/runner/trainer_metrics.h"
#include "services/worker/train/checkpoint.h"

namespace tecl::worker {
namespace {

using tecl::v1::Assignment;

struct Features {
  std::vector<at::Tensor> rows;  // (D) each, L2-normalised.
  std::vector<int64_t> labels;
  at::Tensor Stacked() const { return rows.empty() ? at::Tensor() : at::stack(rows); }
  at::Tensor Labels() const { return torch::tensor(labels, at::kLong); }
};

class EvalRun {
 public:
  EvalRun(const Assignment& assignment, RunContext* context, const JobRunnerOptions& options)
      : a_(assignment),
        spec_(assignment.spec()),
        context_(context),
        options_(options),
        metrics_(*options.registry, assignment.job_id(), assignment.rank()) {}

  JobOutcome Run() {
    JobOutcome outcome;
    absl::Status status = RunOrStatus(&outcome.eval_result);
    outcome.progress = progress_;
    if (status.ok()) {
      outcome.outcome = tecl::v1::OUTCOME_SUCCEEDED;
      outcome.reason = "evaluation finished";
      return outcome;
    }
    if (context_->StopRequested()) {
      outcome.outcome = tecl::v1::OUTCOME_STOPPED;
      outcome.reason = absl::StrCat("stopped: ", context_->StopReason());
      return outcome;
    }
    TECL_LOG(ERROR) << "evaluation job " << a_.job_id() << " failed: " << status;
    outcome.outcome = OutcomeForStatus(status);
    outcome.reason = std::string(status.message());
    return outcome;
  }

 private:
  absl::Status RunOrStatus(tecl::v1::EvalResult* result) {
    // The total goes out with the first report, so progress never shows another number first.
    if (a_.rank() == 0) progress_.set_total_steps(CountVideos());
    context_->ReportProgress(tecl::v1::TRAINER_STATUS_STARTING, progress_, 0, 0, 0);
    if (a_.rank() != 0) return absl::OkStatus();  // One rank evaluates.
    absl::StatusOr<c10::Device> device = DeviceForSpec(spec_, options_.cuda_device);
    if (!device.ok()) return device.status();
    const int threads = spec_.resources().threads_per_trainer() > 0
                            ? spec_.resources().threads_per_trainer()
                            : options_.default_threads;
    torch::set_num_threads(std::max(1, threads));

    std::shared_ptr<core::Backbone> encoder;
    try {
      if (spec_.eval().random_init()) {
        torch::manual_seed(spec_.seed());
        encoder = core::MakeBackbone(spec_.model().backbone());
        encoder->to(*device);
        encoder->eval();
        result->set_encoder(
            absl::StrCat("random init (", spec_.model().backbone(), ", seed ", spec_.seed(), ")"));
      } else {
        const std::string& path = a_.resume_from().path();
        if (path.empty()) {
          return absl::FailedPreconditionError(
              spec_.eval().source_job_id().empty()
                  ? "eval: no encoder; set eval.source_job_id, eval.checkpoint or eval.random_init"
                  : absl::StrCat("eval.source_job_id ", spec_.eval().source_job_id(),
                                 " has no checkpoint; evaluate it once it wrote one"));
        }
        core::LoadedEncoder loaded = core::LoadEncoder(path, *device);
        if (!a_.resume_from().sha256().empty() && loaded.sha256 != a_.resume_from().sha256()) {
          return absl::DataLossError(absl::StrCat(
              "checkpoint ", path, ": its payload's SHA-256 ", loaded.sha256,
              " is not the registered ", a_.resume_from().sha256(),
              "; it was changed after it was written"));
        }
        encoder = loaded.backbone;
        result->set_encoder_step(loaded.step);
        result->set_encoder(
            spec_.eval().source_job_id().empty()
                ? absl::StrCat(path, " step ", loaded.step)
                : absl::StrCat("job ", spec_.eval().source_job_id(), " step ", loaded.step));
      }
    } catch (...) {
      return StatusFromCurrentException("loading the encoder");
    }
    TECL_LOG(INFO) << "evaluation job " << a_.job_id() << ": " << result->encoder() << " on "
                   << device->str() << ", " << spec_.eval().clips_per_video() << " clips per video";

    Features train, test;
    int skipped = 0;
    absl::Status status = ExtractFeatures(*encoder, *device, &train, &test, &skipped);
    if (!status.ok()) return status;
    result->set_num_gallery(static_cast<int>(train.rows.size()));
    result->set_num_queries(static_cast<int>(test.rows.size()));
    result->set_videos_skipped(skipped);
    if (train.rows.empty() || test.rows.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "dataset ", spec_.dataset().root(), ": evaluation needs videos in both splits (train ",
          train.rows.size(), ", test ", test.rows.size(),
          "); set dataset.train_list and dataset.test_list"));
    }
    int64_t num_classes = 0;
    for (int64_t l : train.labels) num_classes = std::max(num_classes, l + 1);
    for (int64_t l : test.labels) num_classes = std::max(num_classes, l + 1);
    result->set_num_classes(static_cast<int>(num_classes));
    try {
      const at::Tensor gallery = train.Stacked();
      const at::Tensor queries = test.Stacked();
      const std::vector<int> ks(spec_.eval().recall_at().begin(), spec_.eval().recall_at().end());
      const std::vector<double> recall =
          eval::RetrievalRecall(queries, test.Labels(), gallery, train.Labels(), ks);
      for (size_t i = 0; i < ks.size(); ++i) {
        tecl::v1::RecallAtK* r = result->add_retrieval();
        r->set_k(ks[i]);
        r->set_recall(recall[i]);
      }
      if (spec_.eval().probe_epochs() > 0) {
        eval::LinearProbeOptions probe;
        probe.max_iterations = spec_.eval().probe_epochs();
        probe.learning_rate = spec_.eval().probe_lr();
        probe.weight_decay = spec_.eval().probe_weight_decay();
        const eval::LinearProbeResult top1 = eval::LinearProbe(
            gallery, train.Labels(), queries, test.Labels(), static_cast<int>(num_classes), probe);
        result->set_linear_probe_top1(top1.test_top1);
        TECL_LOG(INFO) << "evaluation job " << a_.job_id() << ": linear probe "
                       << (top1.converged ? "converged" : "stopped unconverged") << " after "
                       << top1.iterations << " L-BFGS iterations (training loss "
                       << absl::StrFormat("%.4g", top1.train_loss) << ", train top-1 "
                       << absl::StrFormat("%.1f%%", 100 * top1.train_top1)
                       << (top1.converged ? "" : "; raise eval.probe_epochs") << ")";
      }
    } catch (...) {
      return StatusFromCurrentException("scoring the features");
    }
    std::string line;
    for (const auto& r : result->retrieval()) {
      absl::StrAppendFormat(&line, "R@%d %.1f%%  ", r.k(), 100 * r.recall());
    }
    TECL_LOG(INFO) << "evaluation job " << a_.job_id() << ": " << result->encoder() << ": " << line
                   << "linear probe top-1 "
                   << absl::StrFormat("%.1f%%", 100 * result->linear_probe_top1()) << " ("
                   << result->num_queries() << " queries, " << result->num_gallery() << " gallery, "
                   << result->num_classes() << " classes, " << skipped << " videos skipped)";
    return absl::OkStatus();
  }

  absl::Status ExtractFeatures(core::Backbone& encoder, const c10::Device& device, Features* train,
                               Features* test, int* skipped) {
    BatchStreamOptions stream_options = JobInput::StreamOptions(a_, tecl::v1::STREAM_MODE_EVAL);
    stream_options.rank = 0;
    stream_options.world_size = 1;
    absl::StatusOr<std::unique_ptr<JobInput>> input =
        JobInput::Open(options_.batch_sources, std::move(stream_options), context_, &metrics_);
    if (!input.ok()) return input.status();
    BatchSource* stream = &(*input)->source();
    torch::NoGradGuard no_grad;
    int64_t videos = 0;
    int64_t clips = 0;
    const absl::Time start = absl::Now();
    while (true) {
      if (context_->StopRequested()) return absl::CancelledError(context_->StopReason());
      absl::StatusOr<tecl::v1::ClipBatch> next = stream->Next();
      if (absl::IsOutOfRange(next.status())) break;
      if (!next.ok()) {
        return absl::Status(next.status().code(),
                            absl::StrCat("eval input: ", next.status().message()));
      }
      auto message = std::make_shared<tecl::v1::ClipBatch>(std::move(*next));
      at::Tensor features;
      if (message->clips().shape_size() > 0 && message->clips().shape(0) > 0) {
        absl::StatusOr<at::Tensor> clips = ClipsFromProto(message);
        if (!clips.ok()) return clips.status();
        try {
          features = encoder.forward(core::NormalizeClips(*clips, device)).to(at::kCPU);
        } catch (...) {
          return StatusFromCurrentException(
              absl::StrCat("features of eval batch ", message->step()));
        }
      }
      int64_t row = 0;
      for (const tecl::v1::EvalVideo& video : message->eval_videos()) {
        ++videos;
        if (video.num_clips() == 0) {
          ++*skipped;
          continue;
        }
        if (!features.defined() || row + video.num_clips() > features.size(0)) {
          return absl::InternalError(absl::StrCat("eval batch ", message->step(),
                                                  ": eval_videos name more clips than it holds"));
        }
        at::Tensor mean = features.narrow(0, row, video.num_clips()).mean(0);
        mean = mean / mean.norm().clamp_min(1e-12);
        row += video.num_clips();
        Features* split = video.split() == "test"    ? test
                          : video.split() == "train" ? train
                                                     : nullptr;
        if (split == nullptr || video.label() < 0) continue;  // Unlabelled or outside the splits.
        split->rows.push_back(mean);
        split->labels.push_back(video.label());
      }
      metrics_.RecordEvalVideos(message->eval_videos_size());
      clips += features.defined() ? features.size(0) : 0;
      progress_.set_step(videos);
      const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
      if (elapsed > 0) progress_.set_clips_per_second(static_cast<double>(clips) / elapsed);
      if (progress_.total_steps() > videos && videos > 0) {
        progress_.set_eta_s(elapsed / videos *
                            static_cast<double>(progress_.total_steps() - videos));
      }
      context_->ReportProgress(tecl::v1::TRAINER_STATUS_RUNNING, progress_, 0, 0, 0);
    }
    return absl::OkStatus();
  }

  // Videos in the data set (both splits), from a dataloader's DescribeDataset; 0 when unknown.
  int64_t CountVideos() const {
    if (!options_.loader_clients) return 0;
    for (const std::string& address : a_.dataloader_addresses()) {
      std::shared_ptr<LoaderClient> loader = options_.loader_clients(address);
      if (loader == nullptr) continue;
      tecl::v1::DescribeDatasetRequest request;
      *request.mutable_dataset() = spec_.dataset();
      absl::StatusOr<tecl::v1::DatasetInfo> info = loader->DescribeDataset(request);
      if (info.ok()) return info->num_videos();
    }
    return 0;
  }

  const Assignment& a_;
  const tecl::v1::JobSpec& spec_;
  RunContext* const context_;
  const JobRunnerOptions& options_;
  JobMetrics metrics_;
  tecl::v1::JobProgress progress_;
};

}  // namespace

JobOutcome RunEvalJob(const Assignment& assignment, RunContext* context,
                      const JobRunnerOptions& options) {
  EvalRun run(assignment, context, options);
  return run.Run();
}

}  // namespace tecl::worker
