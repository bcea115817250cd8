// Job spec validation: ranges, relations between fields, and the cluster's limits (SpecLimits).
#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/work_limits.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/coordinator/spec/spec_internal.h"

namespace tecl::coordinator {
namespace spec_internal {
namespace {

using ::tecl::v1::JobSpec;

// ------------------------------------------------------------------------------------------------
// Validation helpers.

template <typename T>
void CheckRange(Problems& p, const std::string& path, T value, T lo, T hi,
                absl::string_view fix = "") {
  if (value >= lo && value <= hi) return;  // Also false for NaN.
  p.Add(path, absl::StrCat(value, " is out of range; use a value in [", lo, ", ", hi, "]",
                           fix.empty() ? "" : absl::StrCat(" (", fix, ")")));
}

void CheckAscending(Problems& p, const std::string& path,
                    const google::protobuf::RepeatedField<int32_t>& values,
                    absl::string_view example) {
  if (values.empty()) {
    p.Add(path, absl::StrCat("empty; give a list like ", example));
    return;
  }
  for (int i = 0; i < values.size(); ++i) {
    if (values[i] < 1) {
      p.Add(absl::StrCat(path, "[", i, "]"), absl::StrCat(values[i], " must be at least 1"));
    }
  }
  for (int i = 1; i < values.size(); ++i) {
    if (values[i] <= values[i - 1]) {
      p.Add(path, absl::StrCat("[", absl::StrJoin(values, ", "),
                               "] must be strictly ascending, like ", example));
      break;
    }
  }
}

bool IsUnder(const std::filesystem::path& path, const std::string& root) {
  const std::filesystem::path r = std::filesystem::path(root).lexically_normal();
  auto pi = path.begin();
  for (auto ri = r.begin(); ri != r.end(); ++ri) {
    if (ri->empty()) continue;  // Trailing slash.
    if (pi == path.end() || *pi != *ri) return false;
    ++pi;
  }
  return true;
}

// Checks an absolute, confined path that exists (when the limits ask to check and `must_exist`).
void CheckPath(Problems& p, const std::string& path_name, const std::string& value,
               const SpecLimits& limits, bool confine, bool want_directory,
               bool must_exist = true) {
  std::filesystem::path path(value);
  if (!path.is_absolute()) {
    p.Add(path_name, absl::StrCat(Quote(value),
                                  " is relative; give an absolute path (teclctl resolves relative "
                                  "paths against its working directory)"));
    return;
  }
  for (const auto& part : path) {
    if (part == "..") {
      p.Add(path_name, absl::StrCat(Quote(value), " contains \"..\"; give the path without it"));
      return;
    }
  }
  const std::filesystem::path normal = path.lexically_normal();
  if (confine && !limits.data_roots.empty()) {
    bool under = false;
    for (const std::string& root : limits.data_roots) under = under || IsUnder(normal, root);
    if (!under) {
      p.Add(path_name, absl::StrCat(Quote(value), " is outside the data roots (",
                                    absl::StrJoin(limits.data_roots, ", "),
                                    "); move the data there or start the coordinator with "
                                    "--data_roots including it"));
      return;
    }
  }
  if (limits.check_paths_exist && must_exist) {
    std::error_code error;
    const auto status = std::filesystem::status(normal, error);
    if (!std::filesystem::exists(status)) {
      p.Add(path_name, absl::StrCat(Quote(value), " does not exist; check the path"));
    } else if (want_directory && !std::filesystem::is_directory(status)) {
      p.Add(path_name, absl::StrCat(Quote(value), " is not a folder"));
    } else if (!want_directory && std::filesystem::is_directory(status)) {
      p.Add(path_name, absl::StrCat(Quote(value), " is a folder; give a file"));
    }
  }
}

// The checkpoint confinement of SpecLimits (when the limits carry it).
void CheckCheckpointDir(Problems& p, const std::string& dir, const SpecLimits& limits) {
  CheckPath(p, "checkpoint.dir", dir, limits, /*confine=*/false, /*want_directory=*/true,
            /*must_exist=*/false);  // Rank 0 creates it.
  if (!limits.checkpoints.has_value()) return;
  const SpecLimits::CheckpointConfinement& c = *limits.checkpoints;
  if (!c.default_root.empty() && IsPathUnder(dir, c.default_root)) {
    p.Add("checkpoint.dir", absl::StrCat(Quote(dir), " lies in the coordinator's own checkpoint "
                                         "folder ", c.default_root,
                                         ", which holds other jobs' checkpoints; leave "
                                         "checkpoint.dir empty to get a folder there"));
    return;
  }
  bool under = false;
  for (const std::string& root : c.roots) under = under || IsPathUnder(dir, root);
  if (!under) {
    p.Add("checkpoint.dir",
          c.roots.empty()
              ? absl::StrCat(Quote(dir), " is not allowed: this coordinator has no "
                             "--checkpoint_roots; leave checkpoint.dir empty (checkpoints go to ",
                             c.default_root, "/<job id>)")
              : absl::StrCat(Quote(dir), " is outside the checkpoint roots (",
                             absl::StrJoin(c.roots, ", "),
                             "); choose a folder under one of them, or leave it empty"));
  }
}

void CheckEvalCheckpoint(Problems& p, const std::string& file, const SpecLimits& limits) {
  CheckPath(p, "eval.checkpoint", file, limits, /*confine=*/false, /*want_directory=*/false);
  if (!limits.checkpoints.has_value()) return;
  const SpecLimits::CheckpointConfinement& c = *limits.checkpoints;
  bool under = !c.default_root.empty() && IsPathUnder(file, c.default_root);
  for (const std::string& root : c.roots) under = under || IsPathUnder(file, root);
  if (!under) {
    p.Add("eval.checkpoint",
          absl::StrCat(Quote(file), " is outside the checkpoint roots (",
                       absl::StrJoin(c.roots, ", "), c.roots.empty() ? "" : ", ", c.default_root,
                       "); evaluate a job with eval.source_job_id, or a file under those"));
  }
}

// A dataset file field: required when `required`, resolved against dataset.root when relative.
void CheckDatasetFile(Problems& p, const std::string& field, const std::string& value,
                      const std::string& root, bool required, absl::string_view what,
                      const SpecLimits& limits) {
  if (value.empty()) {
    if (required) p.Add(field, absl::StrCat("missing; set it to ", what));
    return;
  }
  if (root.empty() || !std::filesystem::path(root).is_absolute()) return;
  std::filesystem::path path(value);
  if (path.is_relative()) path = std::filesystem::path(root) / path;
  CheckPath(p, field, path.string(), limits, /*confine=*/true, /*want_directory=*/false);
}

void ValidateDataset(Problems& p, const JobSpec& spec, const SpecLimits& limits) {
  const auto& d = spec.dataset();
  using tecl::v1::DatasetSpec;
  if (d.format() == DatasetSpec::FORMAT_UNSPECIFIED) {
    p.Add("dataset.format", "missing; set class_folders, ucf101 or csv");
  }
  if (d.root().empty()) {
    p.Add("dataset.root", "missing; set it to the folder holding the videos");
  } else {
    CheckPath(p, "dataset.root", d.root(), limits, /*confine=*/true, /*want_directory=*/true);
  }
  const bool eval = spec.kind() == tecl::v1::JOB_KIND_EVAL;
  switch (d.format()) {
    case DatasetSpec::FORMAT_CSV:
      CheckDatasetFile(p, "dataset.manifest", d.manifest(), d.root(), true,
                       "the CSV manifest (header path,label,split)", limits);
      break;
    case DatasetSpec::FORMAT_UCF101:
      CheckDatasetFile(p, "dataset.class_index", d.class_index(), d.root(), true, "classInd.txt",
                       limits);
      CheckDatasetFile(p, "dataset.train_list", d.train_list(), d.root(), true,
                       "the train split list (e.g. trainlist01.txt)", limits);
      CheckDatasetFile(p, "dataset.test_list", d.test_list(), d.root(), true,
                       "the test split list (e.g. testlist01.txt)", limits);
      break;
    case DatasetSpec::FORMAT_CLASS_FOLDERS:
      // Evaluation needs both splits (gallery = train, queries = test).
      CheckDatasetFile(p, "dataset.train_list", d.train_list(), d.root(), eval,
                       "the train split list (evaluation needs both splits)", limits);
      CheckDatasetFile(p, "dataset.test_list", d.test_list(), d.root(), eval,
                       "the test split list (evaluation needs both splits)", limits);
      break;
    default:
      break;
  }
  if (d.split() != "train" && d.split() != "all") {
    p.Add("dataset.split", absl::StrCat(Quote(d.split()), " is not one of train, all"));
  }
}

void ValidateModel(Problems& p, const JobSpec& spec) {
  const auto& m = spec.model();
  bool known = false;
  for (const char* name : kBackbones) known = known || m.backbone() == name;
  if (!known) {
    std::vector<std::string> names(std::begin(kBackbones), std::end(kBackbones));
    const std::string close = ClosestMatch(m.backbone(), names);
    p.Add("model.backbone",
          absl::StrCat(Quote(m.backbone()), " is not one of ", absl::StrJoin(names, ", "),
                       close.empty() ? "" : absl::StrCat(" (did you mean ", close, "?)")));
  }
  CheckRange(p, "model.head_hidden", m.head_hidden(), 1, 16384);
  CheckRange(p, "model.psi_hidden", m.psi_hidden(), 1, 16384);
  CheckRange(p, "model.psi_dim", m.psi_dim(), 1, 8192);
  CheckRange(p, "model.projection_dim", m.projection_dim(), 1, 8192);
  CheckRange(p, "model.projection_hidden", m.projection_hidden(), 1, 16384);
}

void ValidateMethod(Problems& p, const JobSpec& spec) {
  const auto& m = spec.method();
  const auto& w = m.weights();
  const std::pair<const char*, double> weights[] = {{"equivariance", w.equivariance()},
                                                    {"speed", w.speed()},
                                                    {"direction", w.direction()},
                                                    {"order", w.order()},
                                                    {"instance", w.instance()}};
  bool any = false;
  for (const auto& [name, value] : weights) {
    CheckRange(p, absl::StrCat("method.weights.", name), value, 0.0, 1000.0, "0 disables the term");
    any = any || value > 0;
  }
  if (!any && spec.kind() == tecl::v1::JOB_KIND_PRETRAIN) {
    p.Add("method.weights",
          "every loss weight is 0, so pretraining would learn nothing; set at least one of "
          "equivariance, speed, direction, order, instance above 0");
  }
  CheckRange(p, "method.equivariance_temperature", m.equivariance_temperature(), 1e-4, 100.0);
  CheckRange(p, "method.instance_temperature", m.instance_temperature(), 1e-4, 100.0);
}

// The fields that size a dataloader's work, by the one definition the dataloaders check too
// (services/common/work_limits.h): sampling, augment, instance positive, total steps, prefetch,
// eval clips, batch bytes, dataset rates and path lengths.
void ValidateStreamWork(Problems& p, const JobSpec& spec) {
  const tecl::v1::StreamMode mode = spec.kind() == tecl::v1::JOB_KIND_EVAL
                                        ? tecl::v1::STREAM_MODE_EVAL
                                        : tecl::v1::STREAM_MODE_TRAIN;
  for (const work_limits::Problem& problem : work_limits::CheckStreamWork(spec, mode)) {
    p.Add(problem.field, problem.message);
  }
}

void ValidateTraining(Problems& p, const JobSpec& spec) {
  const auto& o = spec.optimizer();
  if (o.name() != "adamw")
    p.Add("optimizer.name", absl::StrCat(Quote(o.name()), " is not one of adamw"));
  CheckRange(p, "optimizer.lr", o.lr(), 1e-9, 10.0);
  CheckRange(p, "optimizer.weight_decay", o.weight_decay(), 0.0, 10.0);
  CheckRange(p, "optimizer.beta1", o.beta1(), 0.0, 0.999999);
  CheckRange(p, "optimizer.beta2", o.beta2(), 0.0, 0.999999);
  if (o.eps() != 0) CheckRange(p, "optimizer.eps", o.eps(), 1e-12, 1.0);
  CheckRange(p, "optimizer.grad_clip_norm", o.grad_clip_norm(), 0.0, 1e6, "0 disables clipping");

  const auto& s = spec.schedule();
  if (s.warmup_steps() < 0 || s.warmup_steps() > s.total_steps()) {
    p.Add("schedule.warmup_steps",
          absl::StrCat(s.warmup_steps(), " must be in [0, total_steps = ", s.total_steps(), "]"));
  }
  CheckRange(p, "schedule.final_lr_ratio", s.final_lr_ratio(), 0.0, 1.0);
  CheckRange(p, "schedule.log_interval", s.log_interval(), 1, 1'000'000);

  const auto& c = spec.checkpoint();
  CheckRange<int64_t>(p, "checkpoint.interval_steps", c.interval_steps(), 1, 1'000'000'000);
  CheckRange(p, "checkpoint.keep", c.keep(), 1, 1000);
}

void ValidateResources(Problems& p, const JobSpec& spec, const SpecLimits& limits) {
  const auto& r = spec.resources();
  if (r.trainers() < 1) {
    p.Add("resources.trainers",
          absl::StrCat(r.trainers(), " trainers cannot run a job; use at least 1"));
  } else if (r.trainers() > limits.max_trainers) {
    p.Add(
        "resources.trainers",
        absl::StrCat(r.trainers(), " is more than this cluster's maximum of ", limits.max_trainers,
                     " trainers; use fewer (the coordinator's --max_trainers)"));
  }
  if (r.dataloaders_per_trainer() < 1) {
    p.Add("resources.dataloaders_per_trainer",
          absl::StrCat(r.dataloaders_per_trainer(),
                       " leaves trainers without input; use at least 1"));
  } else if (r.dataloaders_per_trainer() > limits.max_dataloaders_per_trainer) {
    p.Add("resources.dataloaders_per_trainer",
          absl::StrCat(r.dataloaders_per_trainer(), " is more than the maximum of ",
                       limits.max_dataloaders_per_trainer));
  }
  if (r.device() == tecl::v1::DEVICE_UNSPECIFIED)
    p.Add("resources.device", "missing; set cpu or cuda");
  CheckRange(p, "resources.threads_per_trainer", r.threads_per_trainer(), 1, 1024);
  CheckRange(p, "resources.decode_threads", r.decode_threads(), 1, 256);

  const auto& rs = spec.restart();
  CheckRange(p, "restart.collective_timeout_s", rs.collective_timeout_s(), 1.0, 86400.0);
  // 0 (a spec resolved before these fields existed) takes the trainer's default.
  if (rs.loader_stall_timeout_s() != 0) {
    CheckRange(p, "restart.loader_stall_timeout_s", rs.loader_stall_timeout_s(), 0.1, 86400.0,
               "0 = 60");
  }
  if (rs.loader_start_timeout_s() != 0) {
    CheckRange(p, "restart.loader_start_timeout_s", rs.loader_start_timeout_s(), 0.1, 86400.0,
               "0 = 300");
  }

  if (spec.optimizer().precision() == tecl::v1::OptimizerSpec::PRECISION_FP16 &&
      r.device() != tecl::v1::DEVICE_CUDA) {
    p.Add("optimizer.precision",
          "fp16 needs resources.device cuda (CPU autocast has no fp16); use bf16 or fp32 on cpu");
  }
  const auto& d = spec.distributed();
  if (d.backend() == tecl::v1::DistributedSpec::BACKEND_NCCL &&
      r.device() != tecl::v1::DEVICE_CUDA) {
    p.Add("distributed.backend", "nccl needs resources.device cuda; use gloo on cpu");
  }
  CheckRange(p, "distributed.bucket_size_mb", d.bucket_size_mb(), 0.01, 1024.0);
}

// Every kind: how failures are recovered.
void ValidateRestart(Problems& p, const JobSpec& spec) {
  const auto& rs = spec.restart();
  CheckRange(p, "restart.max_restarts", rs.max_restarts(), 0, 1000);
  CheckRange(p, "restart.heartbeat_timeout_s", rs.heartbeat_timeout_s(), 1.0, 86400.0);
}

// kind: prepare. The dataloaders check the output root against their --write_root.
void ValidatePrepare(Problems& p, const JobSpec& spec, const SpecLimits& limits) {
  const auto& pr = spec.prepare();
  if (pr.output_root().empty()) {
    p.Add("prepare.output_root",
          "missing; set it to the folder the prepared copy goes to (under a dataloader's "
          "--write_root)");
  } else {
    const size_t before = p.size();
    CheckPath(p, "prepare.output_root", pr.output_root(), limits, /*confine=*/false,
              /*want_directory=*/true, /*must_exist=*/false);  // The loaders create it.
    const std::string& source = spec.dataset().root();
    if (p.size() == before && !source.empty() &&
        (IsPathUnder(pr.output_root(), source) || IsPathUnder(source, pr.output_root()))) {
      p.Add("prepare.output_root",
            absl::StrCat(Quote(pr.output_root()), " overlaps dataset.root ", Quote(source),
                         "; write the copy to a folder outside the source (and not holding it)"));
    }
  }
  if (pr.short_side() != 0) {
    CheckRange(p, "prepare.short_side", pr.short_side(), 16, 4096, "0 keeps the size");
    if (pr.short_side() % 2 != 0) {
      p.Add("prepare.short_side",
            absl::StrCat(pr.short_side(), " is odd; H.264 needs even sizes, use ",
                         pr.short_side() + 1));
    }
  }
  CheckRange(p, "prepare.keyframe_interval", pr.keyframe_interval(), 1, 1000);
  if (pr.codec() == tecl::v1::PrepareSpec::CODEC_UNSPECIFIED) {
    p.Add("prepare.codec", "missing; set h264 or intra");
  }
  CheckRange(p, "prepare.crf", pr.crf(), 0, 51, "18..28 is sensible");
  const auto& r = spec.resources();
  CheckRange(p, "resources.dataloaders", r.dataloaders(), 1, limits.max_prepare_dataloaders,
             "the coordinator's --max_prepare_dataloaders");
  CheckRange(p, "resources.decode_threads", r.decode_threads(), 1, 256,
             "transcodes at once on each dataloader");
}

void ValidateEval(Problems& p, const JobSpec& spec, const SpecLimits& limits) {
  const auto& e = spec.eval();
  std::vector<std::string> sources;
  if (!e.source_job_id().empty()) sources.push_back("source_job_id");
  if (!e.checkpoint().empty()) sources.push_back("checkpoint");
  if (e.random_init()) sources.push_back("random_init");
  if (sources.empty()) {
    p.Add("eval",
          "nothing to evaluate; set one of eval.source_job_id (a pretraining job), "
          "eval.checkpoint (a file) or eval.random_init: true (baseline)");
  } else if (sources.size() > 1) {
    p.Add("eval", absl::StrCat("set exactly one of source_job_id, checkpoint, random_init; ",
                               absl::StrJoin(sources, " and "), " are both set"));
  }
  if (!e.checkpoint().empty()) CheckEvalCheckpoint(p, e.checkpoint(), limits);
  CheckAscending(p, "eval.recall_at", e.recall_at(), "[1, 5, 10, 20, 50]");
  CheckRange(p, "eval.probe_epochs", e.probe_epochs(), 0, 10000, "0 skips the linear probe");
  CheckRange(p, "eval.probe_lr", e.probe_lr(), 1e-9, 100.0);
  CheckRange(p, "eval.probe_weight_decay", e.probe_weight_decay(), 0.0, 10.0);
}

}  // namespace

Problems Validate(const JobSpec& spec, const SpecLimits& limits) {
  Problems p;
  const size_t bytes = spec.ByteSizeLong();
  if (bytes > limits.max_spec_bytes) {
    p.Add("", absl::StrCat("the spec is ", bytes, " bytes, more than the limit of ",
                           limits.max_spec_bytes, "; shorten it"));
    return p;
  }
  if (spec.name().empty()) {
    p.Add("name", "missing; give the job a name");
  } else if (spec.name().size() > 128) {
    p.Add("name", "longer than 128 characters; shorten it");
  } else if (!std::all_of(spec.name().begin(), spec.name().end(), [](char c) {
               return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
             })) {
    p.Add("name",
          absl::StrCat(Quote(spec.name()), " may only hold letters, digits, '.', '_' and '-'"));
  }
  const bool pretrain = spec.kind() == tecl::v1::JOB_KIND_PRETRAIN;
  const bool eval = spec.kind() == tecl::v1::JOB_KIND_EVAL;
  const bool prepare = spec.kind() == tecl::v1::JOB_KIND_PREPARE;
  if (!pretrain && !eval && !prepare) p.Add("kind", "missing; set pretrain, eval or prepare");
  CheckRange(p, "priority", spec.priority(), -1000, 1000, "higher runs first");
  ValidateDataset(p, spec, limits);
  ValidateRestart(p, spec);
  if (prepare) {
    ValidatePrepare(p, spec, limits);
    return p;  // Dataloaders only: no model, training or stream to check.
  }
  if (spec.has_prepare()) {
    p.Add("prepare", "only a kind: prepare job reads it; remove it or set kind: prepare");
  }
  ValidateModel(p, spec);
  ValidateResources(p, spec, limits);
  if (!spec.checkpoint().dir().empty()) CheckCheckpointDir(p, spec.checkpoint().dir(), limits);
  if (pretrain) {
    ValidateMethod(p, spec);
    ValidateTraining(p, spec);
  }
  if (eval) ValidateEval(p, spec, limits);
  ValidateStreamWork(p, spec);
  return p;
}

}  // namespace spec_internal

bool IsPathUnder(const std::string& path, const std::string& root) {
  return spec_internal::IsUnder(std::filesystem::path(path).lexically_normal(), root);
}

absl::Status ValidateJobSpec(const tecl::v1::JobSpec& spec, const SpecLimits& limits) {
  return spec_internal::Validate(spec, limits).ToStatus();
}

}  // namespace tecl::coordinator
