// Job specifications: YAML <-> tecl.v1.JobSpec, the defaults of the method, and validation.
//
// A job spec is written by users in YAML whose keys are the JobSpec field names
// (docs/job-spec.md). ParseJobSpecYaml walks the YAML and the proto descriptor together, so an
// unknown key, a wrong type or a bad enum name is caught for every field the same way, and fills
// every absent key with its default (the METHOD.md defaults; the CPU preset when model.backbone is
// tiny3d). ValidateJobSpec checks a fully resolved spec against ranges and the cluster's limits;
// the coordinator calls it on every submitted spec before anything is stored, teclctl calls it
// before submitting. Both report EVERY problem at once, each as "<field path>: <what is wrong and
// the fix>", in one INVALID_ARGUMENT.
//
// Pure functions with no shared state: thread-safe. No gRPC types.
#ifndef TECL_SERVICES_COORDINATOR_SPEC_JOB_SPEC_H_
#define TECL_SERVICES_COORDINATOR_SPEC_JOB_SPEC_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tecl/v1/job.pb.h"

namespace tecl::coordinator {

// The backbones the trainer implements, in the order error messages list them.
inline constexpr const char* kBackbones[] = {"r2plus1d_18", "r3d_18", "tiny3d"};

// What ValidateJobSpec checks a spec against (the coordinator's configuration). The limits on the
// work a spec asks of the dataloaders (clip sizes and spans, batch bytes, prefetch) are not
// configurable: they are services/common/work_limits.h, which the dataloaders check too.
struct SpecLimits {
  // Most trainer ranks one job may ask for (the cluster's size).
  int max_trainers = 64;
  // Most dataloaders streaming to one trainer.
  int max_dataloaders_per_trainer = 16;
  // Most dataloaders one prepare job may ask for.
  int max_prepare_dataloaders = 1024;
  // Largest serialized spec (bytes).
  size_t max_spec_bytes = 1 << 20;
  // When non-empty, dataset paths must lie under one of these folders.
  std::vector<std::string> data_roots;
  // Check that dataset.root, its manifest/list files and eval.checkpoint exist on this machine.
  bool check_paths_exist = false;
  // Where checkpoints may be written and read (the coordinator's; a client cannot know it and
  // leaves it unset). A named checkpoint.dir must lie under one of `roots` and not under
  // `default_root` (which holds the <default_root>/<job id> folders of jobs that name none);
  // eval.checkpoint must lie under one of `roots` or under `default_root`.
  struct CheckpointConfinement {
    std::vector<std::string> roots;
    std::string default_root;
  };
  std::optional<CheckpointConfinement> checkpoints;
};

// Whether `path` is `root` or lies inside it (both absolute; compared lexically, normalised).
bool IsPathUnder(const std::string& path, const std::string& root);

struct ParseOptions {
  // Name given to a spec without `name` (e.g. the YAML file's stem).
  std::string default_name = "job";
  // Relative dataset.root, checkpoint.dir and eval.checkpoint are made absolute against this
  // folder (teclctl passes its working directory). Empty: paths are kept as written.
  std::string base_dir;
};

// The defaults of METHOD.md for a job of `kind` with `backbone` (an unknown backbone gets the GPU
// defaults). Derived values (warmup_steps, distributed.backend) are computed from the other fields.
tecl::v1::JobSpec DefaultJobSpec(tecl::v1::JobKind kind, absl::string_view backbone);

// Parses `yaml`, starting from DefaultJobSpec(kind, backbone) of the YAML's own kind and
// model.backbone so that every absent key keeps its default. INVALID_ARGUMENT lists every unknown
// key (with "did you mean" when a field name is close), wrong type, bad enum value and YAML syntax
// error. Does not validate ranges: call ValidateJobSpec (or LoadJobSpec).
absl::StatusOr<tecl::v1::JobSpec> ParseJobSpecYaml(absl::string_view yaml,
                                                   const ParseOptions& options = {});

// Checks a resolved spec: ranges, cross-field rules, limits, dataset paths. OK or one
// INVALID_ARGUMENT naming every wrong field with its path and the fix.
absl::Status ValidateJobSpec(const tecl::v1::JobSpec& spec, const SpecLimits& limits);

// ParseJobSpecYaml then ValidateJobSpec, with the problems of both in one INVALID_ARGUMENT.
absl::StatusOr<tecl::v1::JobSpec> LoadJobSpec(absl::string_view yaml, const ParseOptions& options,
                                              const SpecLimits& limits);

// Applies command-line overrides "path.to.field=value" (value in YAML: 8, cuda, [1, 2]) to the
// YAML text and returns the new text. INVALID_ARGUMENT for a malformed override or YAML.
absl::StatusOr<std::string> ApplyYamlOverrides(absl::string_view yaml,
                                               const std::vector<std::string>& overrides);

// The spec as YAML (every field, enums by their short lower-case names); ParseJobSpecYaml of the
// result gives back the same spec.
std::string JobSpecToYaml(const tecl::v1::JobSpec& spec);

// The short lower-case YAML name of an enum value: JOB_KIND_PRETRAIN -> "pretrain",
// DEVICE_CUDA -> "cuda", JOB_STATE_RUNNING -> "running".
std::string EnumValueShortName(const google::protobuf::EnumValueDescriptor& value);

// Closest of `candidates` to `word` by edit distance, or "" when none is close enough to be a
// likely typo.
std::string ClosestMatch(absl::string_view word, const std::vector<std::string>& candidates);

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_SPEC_JOB_SPEC_H_
