// Job spec YAML and --set overrides, as `teclctl submit FILE.yaml --set a.b=v` reads them: the
// input is a YAML document, optionally followed by a line "#set" and one override per line
// (path.to.field=value). A parsed spec must validate without crashing, and a valid one (what the
// coordinator stores and teclctl prints) must survive JobSpecToYaml -> ParseJobSpecYaml unchanged
// (the contract of job_spec.h).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/coordinator/spec/job_spec.h"

namespace {

constexpr absl::string_view kOverridesMarker = "\n#set\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tecl::coordinator;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::string_view yaml = input;
  std::vector<std::string> overrides;
  if (const size_t marker = input.find(kOverridesMarker); marker != absl::string_view::npos) {
    yaml = input.substr(0, marker);
    for (absl::string_view line :
         absl::StrSplit(input.substr(marker + kOverridesMarker.size()), '\n')) {
      if (!line.empty()) overrides.emplace_back(line);
    }
  }
  absl::StatusOr<std::string> text = ApplyYamlOverrides(yaml, overrides);
  if (!text.ok()) return 0;

  ParseOptions options;
  options.base_dir = "/home/user";
  absl::StatusOr<tecl::v1::JobSpec> spec = ParseJobSpecYaml(*text, options);
  if (!spec.ok()) return 0;
  SpecLimits confined;
  confined.data_roots = {"/data"};
  confined.checkpoints = SpecLimits::CheckpointConfinement{{"/ckpt"}, "/state/checkpoints"};
  (void)ValidateJobSpec(*spec, confined);
  if (!ValidateJobSpec(*spec, SpecLimits{}).ok()) return 0;

  const std::string written = JobSpecToYaml(*spec);
  absl::StatusOr<tecl::v1::JobSpec> again = ParseJobSpecYaml(written, options);
  if (!again.ok()) {
    fprintf(stderr, "JobSpecToYaml wrote YAML that does not parse back: %s\n---\n%s\n",
            again.status().ToString().c_str(), written.c_str());
    abort();
  }
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  std::string difference;
  differencer.ReportDifferencesToString(&difference);
  if (!differencer.Compare(*spec, *again)) {
    fprintf(stderr, "JobSpecToYaml -> ParseJobSpecYaml changed the spec:\n%s---\n%s\n",
            difference.c_str(), written.c_str());
    abort();
  }
  return 0;
}
