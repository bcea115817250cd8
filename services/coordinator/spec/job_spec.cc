#include "services/coordinator/spec/job_spec.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/coordinator/spec/spec_internal.h"

namespace tecl::coordinator {
namespace spec_internal {

using ::google::protobuf::EnumDescriptor;
using ::google::protobuf::EnumValueDescriptor;

std::string Join(absl::string_view path, absl::string_view name) {
  return path.empty() ? std::string(name) : absl::StrCat(path, ".", name);
}

// "JobKind" -> "JOB_KIND_".
std::string EnumPrefix(const EnumDescriptor& type) {
  std::string prefix;
  for (char c : type.name()) {
    if (absl::ascii_isupper(c) && !prefix.empty()) prefix.push_back('_');
    prefix.push_back(absl::ascii_toupper(c));
  }
  prefix.push_back('_');
  return prefix;
}

std::vector<std::string> EnumChoices(const EnumDescriptor& type) {
  std::vector<std::string> names;
  for (int i = 0; i < type.value_count(); ++i) {
    if (type.value(i)->number() == 0) continue;  // *_UNSPECIFIED is never a valid choice.
    names.push_back(EnumValueShortName(*type.value(i)));
  }
  return names;
}

const EnumValueDescriptor* FindEnumValue(const EnumDescriptor& type, absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  for (int i = 0; i < type.value_count(); ++i) {
    const EnumValueDescriptor* value = type.value(i);
    if (value->number() == 0) continue;
    if (EnumValueShortName(*value) == lower || absl::AsciiStrToLower(value->name()) == lower) {
      return value;
    }
  }
  return nullptr;
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Shortest decimal that reads back as exactly `value`.
std::string FormatDouble(double value) {
  char buffer[64];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

}  // namespace spec_internal

using ::google::protobuf::EnumValueDescriptor;
using ::tecl::v1::JobKind;
using ::tecl::v1::JobSpec;
using spec_internal::EditDistance;
using spec_internal::EnumPrefix;

std::string EnumValueShortName(const EnumValueDescriptor& value) {
  const std::string prefix = EnumPrefix(*value.type());
  absl::string_view name = value.name();
  if (absl::StartsWith(name, prefix)) name.remove_prefix(prefix.size());
  return absl::AsciiStrToLower(name);
}

std::string ClosestMatch(absl::string_view word, const std::vector<std::string>& candidates) {
  const std::string lower = absl::AsciiStrToLower(word);
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& candidate : candidates) {
    const size_t d = EditDistance(lower, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  // A typo: at most 2 edits, and fewer than half the word's letters.
  const size_t limit = std::min<size_t>(2, std::max<size_t>(1, lower.size() / 2));
  if (best_distance == 0 || best_distance > limit) {
    // Also a prefix ("clip" -> "clip_length") is a likely intent.
    for (const std::string& candidate : candidates) {
      if (lower.size() >= 3 && absl::StartsWith(candidate, lower)) return candidate;
    }
    return best_distance == 0 ? best : "";
  }
  return best;
}

JobSpec DefaultJobSpec(JobKind kind, absl::string_view backbone) {
  const bool cpu = backbone == "tiny3d";
  JobSpec spec;
  spec.set_name("job");
  spec.set_kind(kind);
  spec.set_priority(0);
  spec.set_seed(1);

  auto* d = spec.mutable_dataset();
  d->set_format(tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
  d->set_split("train");

  auto* m = spec.mutable_model();
  m->set_backbone(std::string(backbone));
  m->set_head_hidden(512);
  m->set_psi_hidden(512);
  m->set_psi_dim(128);
  m->set_projection_dim(128);
  m->set_projection_hidden(512);
  m->set_sync_batchnorm(true);

  auto* method = spec.mutable_method();
  auto* w = method->mutable_weights();
  w->set_equivariance(1.0);
  w->set_speed(1.0);
  w->set_direction(1.0);
  w->set_order(1.0);
  w->set_instance(1.0);
  method->set_equivariance_temperature(0.1);
  method->set_instance_temperature(0.1);
  method->set_instance_positive(tecl::v1::INSTANCE_POSITIVE_OTHER_CLIP);

  auto* s = spec.mutable_sampling();
  s->set_clip_length(cpu ? 8 : 16);
  s->set_crop_size(cpu ? 64 : 112);
  for (int speed : {1, 2, 4, 8}) s->add_speeds(speed);
  s->set_groups_per_batch(cpu ? 4 : 8);

  auto* a = spec.mutable_augment();
  a->set_crop_area_min(0.2);
  a->set_crop_area_max(1.0);
  a->set_aspect_min(3.0 / 4.0);
  a->set_aspect_max(4.0 / 3.0);
  a->set_flip_prob(0.5);
  a->set_jitter_prob(0.8);
  a->set_brightness(0.4);
  a->set_contrast(0.4);
  a->set_saturation(0.4);
  a->set_hue(0.1);
  a->set_grayscale_prob(0.2);

  auto* o = spec.mutable_optimizer();
  o->set_name("adamw");
  o->set_lr(3e-4);
  o->set_scale_lr(true);
  o->set_weight_decay(1e-4);
  o->set_beta1(0.9);
  o->set_beta2(0.999);
  o->set_eps(1e-8);
  o->set_precision(cpu ? tecl::v1::OptimizerSpec::PRECISION_FP32
                       : tecl::v1::OptimizerSpec::PRECISION_BF16);
  o->set_grad_clip_norm(0.0);

  auto* sc = spec.mutable_schedule();
  sc->set_total_steps(cpu ? 500 : 50000);
  sc->set_warmup_steps(sc->total_steps() / 20);
  sc->set_final_lr_ratio(0.0);
  sc->set_log_interval(10);

  auto* r = spec.mutable_resources();
  r->set_trainers(1);
  r->set_dataloaders_per_trainer(cpu ? 1 : 2);
  r->set_device(cpu ? tecl::v1::DEVICE_CPU : tecl::v1::DEVICE_CUDA);
  r->set_threads_per_trainer(cpu ? 2 : 4);
  r->set_decode_threads(cpu ? 2 : 4);
  r->set_prefetch_batches(4);

  auto* c = spec.mutable_checkpoint();
  c->set_interval_steps(cpu ? 100 : 1000);
  c->set_keep(3);

  auto* rs = spec.mutable_restart();
  rs->set_max_restarts(3);
  rs->set_heartbeat_timeout_s(30.0);
  rs->set_collective_timeout_s(300.0);
  rs->set_loader_stall_timeout_s(60.0);
  rs->set_loader_start_timeout_s(300.0);

  auto* dist = spec.mutable_distributed();
  dist->set_backend(cpu ? tecl::v1::DistributedSpec::BACKEND_GLOO
                        : tecl::v1::DistributedSpec::BACKEND_NCCL);
  dist->set_bucket_size_mb(25.0);
  dist->set_global_batch_loss(true);

  if (kind == tecl::v1::JOB_KIND_EVAL) {
    auto* e = spec.mutable_eval();
    e->set_clips_per_video(10);
    for (int k : {1, 5, 10, 20, 50}) e->add_recall_at(k);
    e->set_probe_epochs(500);
    e->set_probe_lr(1.0);
    e->set_probe_weight_decay(1e-4);
  }
  if (kind == tecl::v1::JOB_KIND_PREPARE) {
    // docs/prepare.md: the measured defaults of TranscodeOptions (services/dataloader/prepare).
    auto* pr = spec.mutable_prepare();
    pr->set_short_side(128);
    pr->set_keyframe_interval(32);
    pr->set_codec(tecl::v1::PrepareSpec::CODEC_H264);
    pr->set_crf(20);
    r->set_dataloaders(4);
    r->set_decode_threads(2);  // Transcodes at once on each dataloader.
    // A lost dataloader's shard goes to the next attempt; finished videos are kept.
    rs->set_heartbeat_timeout_s(10.0);
    rs->set_max_restarts(10);
  }
  return spec;
}

}  // namespace tecl::coordinator
