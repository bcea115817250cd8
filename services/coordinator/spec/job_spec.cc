#include "services/coordinator/spec/job_spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <set>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"

namespace tecl::coordinator {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::EnumDescriptor;
using ::google::protobuf::EnumValueDescriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;
using ::tecl::v1::JobKind;
using ::tecl::v1::JobSpec;

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
  absl::Status ToStatus() const {
    if (list_.empty()) return absl::OkStatus();
    if (list_.size() == 1) return absl::InvalidArgumentError(absl::StrCat("job spec: ", list_[0]));
    return absl::InvalidArgumentError(absl::StrCat("job spec has ", list_.size(), " problems:\n  ",
                                                   absl::StrJoin(list_, "\n  ")));
  }

 private:
  std::vector<std::string> list_;
};

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

std::string DescribeNode(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "nothing";
  }
}

// Walks a YAML document and a message descriptor together.
class YamlReader {
 public:
  // Sets the fields of `message` from the map `node`.
  void ReadMessage(const YAML::Node& node, Message* message, const std::string& path) {
    if (!node.IsMap()) {
      Add(node, path,
          absl::StrCat("expected a mapping of ", message->GetDescriptor()->name(), " fields, got ",
                       DescribeNode(node)));
      return;
    }
    const Descriptor* descriptor = message->GetDescriptor();
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key_node = it->first;
      if (!key_node.IsScalar()) {
        Add(key_node, path, "keys must be plain field names");
        continue;
      }
      const std::string key = key_node.Scalar();
      const std::string field_path = Join(path, key);
      if (!seen.insert(key).second) {
        Add(key_node, field_path, "given twice; keep one");
        continue;
      }
      const FieldDescriptor* field = descriptor->FindFieldByName(key);
      if (field == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < descriptor->field_count(); ++i)
          names.push_back(descriptor->field(i)->name());
        const std::string close = ClosestMatch(key, names);
        Add(key_node, field_path,
            close.empty()
                ? absl::StrCat("unknown field; the fields here are ", absl::StrJoin(names, ", "))
                : absl::StrCat("unknown field; did you mean ", close, "?"));
        continue;
      }
      ReadField(it->second, message, field, field_path);
    }
  }

  const Problems& problems() const { return problems_; }
  const std::set<std::string>& set_paths() const { return set_paths_; }

 private:
  void Add(const YAML::Node& node, const std::string& path, const std::string& message) {
    const YAML::Mark mark = node.Mark();
    if (mark.is_null()) {
      problems_.Add(path, message);
    } else {
      problems_.Add(path, absl::StrCat(message, " (line ", mark.line + 1, ")"));
    }
  }

  void ReadField(const YAML::Node& value, Message* message, const FieldDescriptor* field,
                 const std::string& path) {
    if (value.IsNull()) return;  // `key:` with no value keeps the default.
    const Reflection* reflection = message->GetReflection();
    if (field->is_repeated()) {
      if (!value.IsSequence()) {
        Add(value, path, absl::StrCat("expected a list like [1, 2, 4], got ", DescribeNode(value)));
        return;
      }
      reflection->ClearField(message, field);
      for (size_t i = 0; i < value.size(); ++i) {
        ReadScalar(value[i], message, field, absl::StrCat(path, "[", i, "]"));
      }
      set_paths_.insert(path);
      return;
    }
    if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      ReadMessage(value, reflection->MutableMessage(message, field), path);
      return;
    }
    if (ReadScalar(value, message, field, path)) set_paths_.insert(path);
  }

  // Sets (or adds, for repeated fields) one scalar. Returns whether it was valid.
  bool ReadScalar(const YAML::Node& value, Message* message, const FieldDescriptor* field,
                  const std::string& path) {
    const Reflection* reflection = message->GetReflection();
    const bool repeated = field->is_repeated();
    if (!value.IsScalar()) {
      Add(value, path, absl::StrCat("expected ", TypeName(field), ", got ", DescribeNode(value)));
      return false;
    }
    const std::string text = value.Scalar();
    auto bad = [&]() {
      Add(value, path, absl::StrCat("expected ", TypeName(field), ", got ", Quote(text)));
      return false;
    };
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        int64_t v;
        if (!absl::SimpleAtoi(text, &v)) return bad();
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
          Add(value, path, absl::StrCat(text, " does not fit a 32-bit integer"));
          return false;
        }
        repeated ? reflection->AddInt32(message, field, static_cast<int32_t>(v))
                 : reflection->SetInt32(message, field, static_cast<int32_t>(v));
        return true;
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        int64_t v;
        if (!absl::SimpleAtoi(text, &v)) return bad();
        repeated ? reflection->AddInt64(message, field, v)
                 : reflection->SetInt64(message, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v;
        if (!absl::SimpleAtoi(text, &v)) return bad();
        repeated ? reflection->AddUInt32(message, field, v)
                 : reflection->SetUInt32(message, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v;
        if (!absl::SimpleAtoi(text, &v)) return bad();
        repeated ? reflection->AddUInt64(message, field, v)
                 : reflection->SetUInt64(message, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        double v;
        const std::string lower = absl::AsciiStrToLower(text);
        if (lower == ".nan") {
          v = std::numeric_limits<double>::quiet_NaN();
        } else if (lower == ".inf" || lower == "+.inf") {
          v = std::numeric_limits<double>::infinity();
        } else if (lower == "-.inf") {
          v = -std::numeric_limits<double>::infinity();
        } else if (!absl::SimpleAtod(text, &v)) {
          return bad();
        }
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
          repeated ? reflection->AddFloat(message, field, static_cast<float>(v))
                   : reflection->SetFloat(message, field, static_cast<float>(v));
        } else {
          repeated ? reflection->AddDouble(message, field, v)
                   : reflection->SetDouble(message, field, v);
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        const std::string lower = absl::AsciiStrToLower(text);
        bool v;
        if (lower == "true" || lower == "yes" || lower == "on") {
          v = true;
        } else if (lower == "false" || lower == "no" || lower == "off") {
          v = false;
        } else {
          return bad();
        }
        repeated ? reflection->AddBool(message, field, v) : reflection->SetBool(message, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        const EnumValueDescriptor* v = FindEnumValue(*field->enum_type(), text);
        if (v == nullptr) {
          Add(value, path,
              absl::StrCat(Quote(text), " is not one of ",
                           absl::StrJoin(EnumChoices(*field->enum_type()), ", ")));
          return false;
        }
        repeated ? reflection->AddEnum(message, field, v) : reflection->SetEnum(message, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_STRING:
        repeated ? reflection->AddString(message, field, text)
                 : reflection->SetString(message, field, text);
        return true;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    return bad();
  }

  static std::string TypeName(const FieldDescriptor* field) {
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
        return "an integer";
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
        return "a non-negative integer";
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT:
        return "a number";
      case FieldDescriptor::CPPTYPE_BOOL:
        return "true or false";
      case FieldDescriptor::CPPTYPE_ENUM:
        return absl::StrCat("one of ", absl::StrJoin(EnumChoices(*field->enum_type()), ", "));
      case FieldDescriptor::CPPTYPE_STRING:
        return "a string";
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return "a mapping";
    }
    return "a value";
  }

  Problems problems_;
  std::set<std::string> set_paths_;
};

// The kind and backbone the YAML asks for, to pick the defaults before reading the rest.
void PeekPreset(const YAML::Node& root, JobKind* kind, std::string* backbone) {
  *kind = tecl::v1::JOB_KIND_PRETRAIN;
  *backbone = "r2plus1d_18";
  if (!root.IsMap()) return;
  const YAML::Node kind_node = root["kind"];
  if (kind_node && kind_node.IsScalar()) {
    const EnumValueDescriptor* value =
        FindEnumValue(*tecl::v1::JobKind_descriptor(), kind_node.Scalar());
    if (value != nullptr) *kind = static_cast<JobKind>(value->number());
  }
  const YAML::Node model = root["model"];
  if (model && model.IsMap()) {
    const YAML::Node b = model["backbone"];
    if (b && b.IsScalar()) *backbone = b.Scalar();
  }
}

void ResolvePath(const std::string& base_dir, std::string* path) {
  if (path->empty() || base_dir.empty()) return;
  std::filesystem::path p(*path);
  if (p.is_absolute()) return;
  *path = (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

// ------------------------------------------------------------------------------------------------
// Validation helpers.

template <typename T>
void CheckRange(Problems& p, const std::string& path, T value, T lo, T hi,
                absl::string_view fix = "") {
  if (value >= lo && value <= hi) return;  // Also false for NaN.
  p.Add(path, absl::StrCat(value, " is out of range; use a value in [", lo, ", ", hi, "]",
                           fix.empty() ? "" : absl::StrCat(" (", fix, ")")));
}

void CheckProbability(Problems& p, const std::string& path, double value) {
  CheckRange(p, path, value, 0.0, 1.0);
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
  CheckRange(p, "dataset.fps", d.fps(), 0.0, 240.0, "0 keeps the native frame rate");
  if (d.short_side() != 0)
    CheckRange(p, "dataset.short_side", d.short_side(), 16, 4096, "0 = auto");
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
  if (m.instance_positive() == tecl::v1::INSTANCE_POSITIVE_UNSPECIFIED) {
    p.Add("method.instance_positive", "missing; set other_clip or same_frames");
  }
}

void ValidateSampling(Problems& p, const JobSpec& spec, const SpecLimits& limits) {
  const auto& s = spec.sampling();
  CheckRange(p, "sampling.clip_length", s.clip_length(), 1, 256);
  CheckRange(p, "sampling.crop_size", s.crop_size(), 16, 1024);
  CheckAscending(p, "sampling.speeds", s.speeds(), "[1, 2, 4, 8]");
  if (s.speeds_size() > 16) p.Add("sampling.speeds", "more than 16 speeds; use at most 16");
  if (!s.speeds().empty() && s.clip_length() > 0) {
    const int max_speed = *std::max_element(s.speeds().begin(), s.speeds().end());
    const int64_t span = static_cast<int64_t>(s.clip_length()) * max_speed;
    if (span > limits.max_clip_span_frames) {
      p.Add("sampling",
            absl::StrCat("clip_length ", s.clip_length(), " x largest speed ", max_speed, " = ",
                         span, " source frames per clip exceeds ", limits.max_clip_span_frames,
                         "; use shorter clips or smaller speeds"));
    }
  }
  CheckRange(p, "sampling.groups_per_batch", s.groups_per_batch(), 1, 4096);
}

void ValidateAugment(Problems& p, const JobSpec& spec) {
  const auto& a = spec.augment();
  CheckRange(p, "augment.crop_area_min", a.crop_area_min(), 1e-3, 1.0);
  CheckRange(p, "augment.crop_area_max", a.crop_area_max(), 1e-3, 1.0);
  if (a.crop_area_max() < a.crop_area_min()) {
    p.Add("augment.crop_area_max", absl::StrCat(a.crop_area_max(), " is below crop_area_min ",
                                                a.crop_area_min(), "; swap them"));
  }
  CheckRange(p, "augment.aspect_min", a.aspect_min(), 0.1, 10.0);
  CheckRange(p, "augment.aspect_max", a.aspect_max(), 0.1, 10.0);
  if (a.aspect_max() < a.aspect_min()) {
    p.Add("augment.aspect_max",
          absl::StrCat(a.aspect_max(), " is below aspect_min ", a.aspect_min(), "; swap them"));
  }
  CheckProbability(p, "augment.flip_prob", a.flip_prob());
  CheckProbability(p, "augment.jitter_prob", a.jitter_prob());
  CheckProbability(p, "augment.grayscale_prob", a.grayscale_prob());
  CheckRange(p, "augment.brightness", a.brightness(), 0.0, 1.0);
  CheckRange(p, "augment.contrast", a.contrast(), 0.0, 1.0);
  CheckRange(p, "augment.saturation", a.saturation(), 0.0, 1.0);
  CheckRange(p, "augment.hue", a.hue(), 0.0, 0.5);
}

void ValidateTraining(Problems& p, const JobSpec& spec) {
  const auto& o = spec.optimizer();
  if (o.name() != "adamw")
    p.Add("optimizer.name", absl::StrCat(Quote(o.name()), " is not one of adamw"));
  CheckRange(p, "optimizer.lr", o.lr(), 1e-9, 10.0);
  CheckRange(p, "optimizer.weight_decay", o.weight_decay(), 0.0, 10.0);
  CheckRange(p, "optimizer.beta1", o.beta1(), 0.0, 0.999999);
  CheckRange(p, "optimizer.beta2", o.beta2(), 0.0, 0.999999);
  CheckRange(p, "optimizer.grad_clip_norm", o.grad_clip_norm(), 0.0, 1e6, "0 disables clipping");

  const auto& s = spec.schedule();
  CheckRange<int64_t>(p, "schedule.total_steps", s.total_steps(), 1, 1'000'000'000);
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
  CheckRange(p, "resources.prefetch_batches", r.prefetch_batches(), 1, 64);

  const auto& rs = spec.restart();
  CheckRange(p, "restart.max_restarts", rs.max_restarts(), 0, 1000);
  CheckRange(p, "restart.heartbeat_timeout_s", rs.heartbeat_timeout_s(), 1.0, 86400.0);
  CheckRange(p, "restart.collective_timeout_s", rs.collective_timeout_s(), 1.0, 86400.0);

  const auto& d = spec.distributed();
  if (d.backend() == tecl::v1::DistributedSpec::BACKEND_NCCL &&
      r.device() != tecl::v1::DEVICE_CUDA) {
    p.Add("distributed.backend", "nccl needs resources.device cuda; use gloo on cpu");
  }
  CheckRange(p, "distributed.bucket_size_mb", d.bucket_size_mb(), 0.01, 1024.0);
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
  if (!e.checkpoint().empty()) {
    CheckPath(p, "eval.checkpoint", e.checkpoint(), limits, /*confine=*/false,
              /*want_directory=*/false);
  }
  CheckRange(p, "eval.clips_per_video", e.clips_per_video(), 1, 100);
  CheckAscending(p, "eval.recall_at", e.recall_at(), "[1, 5, 10, 20, 50]");
  CheckRange(p, "eval.probe_epochs", e.probe_epochs(), 0, 10000, "0 skips the linear probe");
  CheckRange(p, "eval.probe_lr", e.probe_lr(), 1e-9, 100.0);
  CheckRange(p, "eval.probe_weight_decay", e.probe_weight_decay(), 0.0, 10.0);
}

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
  if (!pretrain && !eval) p.Add("kind", "missing; set pretrain or eval");
  CheckRange(p, "priority", spec.priority(), -1000, 1000, "higher runs first");
  ValidateDataset(p, spec, limits);
  ValidateModel(p, spec);
  ValidateSampling(p, spec, limits);
  ValidateResources(p, spec, limits);
  if (!spec.checkpoint().dir().empty()) {
    // Rank 0 creates it.
    CheckPath(p, "checkpoint.dir", spec.checkpoint().dir(), limits, /*confine=*/false,
              /*want_directory=*/true, /*must_exist=*/false);
  }
  if (pretrain) {
    ValidateMethod(p, spec);
    ValidateAugment(p, spec);
    ValidateTraining(p, spec);
  }
  if (eval) ValidateEval(p, spec, limits);
  return p;
}

// ------------------------------------------------------------------------------------------------
// YAML output.

void EmitScalar(YAML::Emitter& out, const Message& message, const FieldDescriptor* field,
                int index) {
  const Reflection* r = message.GetReflection();
  const bool rep = index >= 0;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      out << absl::StrCat(rep ? r->GetRepeatedInt32(message, field, index)
                              : r->GetInt32(message, field));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      out << absl::StrCat(rep ? r->GetRepeatedInt64(message, field, index)
                              : r->GetInt64(message, field));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      out << absl::StrCat(rep ? r->GetRepeatedUInt32(message, field, index)
                              : r->GetUInt32(message, field));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      out << absl::StrCat(rep ? r->GetRepeatedUInt64(message, field, index)
                              : r->GetUInt64(message, field));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      out << FormatDouble(rep ? r->GetRepeatedDouble(message, field, index)
                              : r->GetDouble(message, field));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      out << FormatDouble(rep ? r->GetRepeatedFloat(message, field, index)
                              : r->GetFloat(message, field));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out << ((rep ? r->GetRepeatedBool(message, field, index) : r->GetBool(message, field))
                  ? "true"
                  : "false");
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumValueDescriptor* v =
          rep ? r->GetRepeatedEnum(message, field, index) : r->GetEnum(message, field);
      // Unset enums are written as null, which reads back as "keep the default".
      if (v->number() == 0) {
        out << YAML::Null;
      } else {
        out << EnumValueShortName(*v);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      const std::string s =
          rep ? r->GetRepeatedString(message, field, index) : r->GetString(message, field);
      out << YAML::DoubleQuoted << s;
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
}

void EmitMessage(YAML::Emitter& out, const Message& message) {
  const Descriptor* descriptor = message.GetDescriptor();
  const Reflection* r = message.GetReflection();
  out << YAML::BeginMap;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !field->is_repeated()) {
      if (!r->HasField(message, field)) continue;
      out << YAML::Key << field->name() << YAML::Value;
      EmitMessage(out, r->GetMessage(message, field));
      continue;
    }
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING && !field->is_repeated() &&
        r->GetString(message, field).empty()) {
      continue;  // Absent paths and names.
    }
    out << YAML::Key << field->name() << YAML::Value;
    if (field->is_repeated()) {
      out << YAML::Flow << YAML::BeginSeq;
      for (int j = 0; j < r->FieldSize(message, field); ++j) EmitScalar(out, message, field, j);
      out << YAML::EndSeq;
    } else {
      EmitScalar(out, message, field, -1);
    }
  }
  out << YAML::EndMap;
}

}  // namespace

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

  auto* dist = spec.mutable_distributed();
  dist->set_backend(cpu ? tecl::v1::DistributedSpec::BACKEND_GLOO
                        : tecl::v1::DistributedSpec::BACKEND_NCCL);
  dist->set_bucket_size_mb(25.0);

  if (kind == tecl::v1::JOB_KIND_EVAL) {
    auto* e = spec.mutable_eval();
    e->set_clips_per_video(10);
    for (int k : {1, 5, 10, 20, 50}) e->add_recall_at(k);
    e->set_probe_epochs(30);
    e->set_probe_lr(1e-2);
    e->set_probe_weight_decay(1e-4);
  }
  return spec;
}

namespace {

// Parses `yaml` into `spec` (defaults first) and collects the problems of reading it. Returns a
// non-OK status only when the text is not YAML at all.
absl::Status ParseInto(absl::string_view yaml, const ParseOptions& options, JobSpec* spec,
                       Problems* problems) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("job spec: not valid YAML at line ",
                                                   e.mark.line + 1, ", column ", e.mark.column + 1,
                                                   ": ", e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) {
    return absl::InvalidArgumentError("job spec: empty; see examples/cpu-demo.yaml");
  }
  JobKind kind;
  std::string backbone;
  PeekPreset(root, &kind, &backbone);
  *spec = DefaultJobSpec(kind, backbone);
  spec->set_name(options.default_name);
  YamlReader reader;
  try {
    reader.ReadMessage(root, spec, "");
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("job spec: cannot read the YAML: ", e.msg));
  }
  problems->Append(reader.problems());

  // Values derived from other fields when not given.
  const auto& set = reader.set_paths();
  if (!set.count("schedule.warmup_steps")) {
    spec->mutable_schedule()->set_warmup_steps(spec->schedule().total_steps() / 20);
  }
  if (!set.count("distributed.backend")) {
    spec->mutable_distributed()->set_backend(spec->resources().device() == tecl::v1::DEVICE_CUDA
                                                 ? tecl::v1::DistributedSpec::BACKEND_NCCL
                                                 : tecl::v1::DistributedSpec::BACKEND_GLOO);
  }
  ResolvePath(options.base_dir, spec->mutable_dataset()->mutable_root());
  ResolvePath(options.base_dir, spec->mutable_checkpoint()->mutable_dir());
  if (spec->has_eval()) ResolvePath(options.base_dir, spec->mutable_eval()->mutable_checkpoint());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ParseJobSpecYaml(absl::string_view yaml, const ParseOptions& options) {
  JobSpec spec;
  Problems problems;
  absl::Status status = ParseInto(yaml, options, &spec, &problems);
  if (!status.ok()) return status;
  if (!problems.empty()) return problems.ToStatus();
  return spec;
}

absl::Status ValidateJobSpec(const JobSpec& spec, const SpecLimits& limits) {
  return Validate(spec, limits).ToStatus();
}

absl::StatusOr<JobSpec> LoadJobSpec(absl::string_view yaml, const ParseOptions& options,
                                    const SpecLimits& limits) {
  JobSpec spec;
  Problems problems;
  absl::Status status = ParseInto(yaml, options, &spec, &problems);
  if (!status.ok()) return status;
  problems.Append(Validate(spec, limits));
  if (!problems.empty()) return problems.ToStatus();
  return spec;
}

absl::StatusOr<std::string> ApplyYamlOverrides(absl::string_view yaml,
                                               const std::vector<std::string>& overrides) {
  if (overrides.empty()) return std::string(yaml);
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) return absl::InvalidArgumentError("job spec: the YAML is not a mapping");
    for (const std::string& override : overrides) {
      const size_t eq = override.find('=');
      if (eq == std::string::npos || eq == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set ", Quote(override),
                         ": expected path.to.field=value, e.g. resources.trainers=4"));
      }
      const std::vector<std::string> parts = absl::StrSplit(override.substr(0, eq), '.');
      YAML::Node value = YAML::Load(override.substr(eq + 1));
      YAML::Node node;
      node.reset(root);
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        if (parts[i].empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("--set ", Quote(override), ": empty field name"));
        }
        YAML::Node child = node[parts[i]];
        if (!child.IsMap()) {
          if (child.IsDefined() && !child.IsNull()) {
            return absl::InvalidArgumentError(absl::StrCat(
                "--set ", Quote(override), ": ", parts[i], " is not a mapping in the spec"));
          }
          node[parts[i]] = YAML::Node(YAML::NodeType::Map);
          child.reset(node[parts[i]]);
        }
        node.reset(child);
      }
      node[parts.back()] = value;
    }
    YAML::Emitter out;
    out << root;
    return std::string(out.c_str()) + "\n";
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("job spec: not valid YAML: ", e.msg));
  }
}

std::string JobSpecToYaml(const JobSpec& spec) {
  YAML::Emitter out;
  out.SetIndent(2);
  EmitMessage(out, spec);
  return std::string(out.c_str()) + "\n";
}

}  // namespace tecl::coordinator
