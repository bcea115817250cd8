// Pieces the job spec's files share (job_spec.cc: defaults and names; spec_yaml.cc: reading and
// writing YAML; spec_validation.cc: ranges and limits). Not part of the spec's interface.
// Thread-safety: pure functions; a Problems object is used by one thread.
#ifndef TECL_SERVICES_COORDINATOR_SPEC_SPEC_INTERNAL_H_
#define TECL_SERVICES_COORDINATOR_SPEC_SPEC_INTERNAL_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "services/coordinator/spec/job_spec.h"

namespace tecl::coordinator::spec_internal {

// Problems found in a spec, each "<path>: <message>", reported together.
class Problems {
 public:
  void Add(absl::string_view path, absl::string_view message) {
    list_.push_back(path.empty() ? std::string(message) : absl::StrCat(path, ": ", message));
  }
  void Append(const Problems& other) {
    list_.insert(list_.end(), other.list_.begin(), other.list_.end());
  }
  bool empty() const { return list_.empty(); }
  size_t size() const { return list_.size(); }
  absl::Status ToStatus() const {
    if (list_.empty()) return absl::OkStatus();
    if (list_.size() == 1) return absl::InvalidArgumentError(absl::StrCat("job spec: ", list_[0]));
    return absl::InvalidArgumentError(absl::StrCat("job spec has ", list_.size(), " problems:\n  ",
                                                   absl::StrJoin(list_, "\n  ")));
  }

 private:
  std::vector<std::string> list_;
};

// "a.b" from a path and a field name ("" path = the name alone).
std::string Join(absl::string_view path, absl::string_view name);
// "\"text\"".
std::string Quote(absl::string_view s);
// The short names of an enum's values, *_UNSPECIFIED left out.
std::vector<std::string> EnumChoices(const google::protobuf::EnumDescriptor& type);
// The value named `text` (short or full name, any case); null when none.
const google::protobuf::EnumValueDescriptor* FindEnumValue(
    const google::protobuf::EnumDescriptor& type, absl::string_view text);
// Shortest decimal that reads back as exactly `value`.
std::string FormatDouble(double value);
// Every range and limit problem of a resolved spec (spec_validation.cc).
Problems Validate(const tecl::v1::JobSpec& spec, const SpecLimits& limits);

}  // namespace tecl::coordinator::spec_internal

#endif  // TECL_SERVICES_COORDINATOR_SPEC_SPEC_INTERNAL_H_
