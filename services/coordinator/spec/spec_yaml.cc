// Job specs in YAML: reading (defaults first, then the document, every problem with its path),
// --set overrides, and writing.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/coordinator/spec/spec_internal.h"

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
using spec_internal::EnumChoices;
using spec_internal::FindEnumValue;
using spec_internal::FormatDouble;
using spec_internal::Join;
using spec_internal::Problems;
using spec_internal::Quote;

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

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF): what a proto3 string field must hold to be sent at all.
bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t length;
    uint32_t code;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      length = 2, code = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3, code = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4, code = c & 0x07;
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    if ((length == 3 && (code < 0x800 || (code >= 0xd800 && code <= 0xdfff))) ||
        (length == 4 && (code < 0x10000 || code > 0x10ffff))) {
      return false;
    }
    i += length;
  }
  return true;
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
        if (!IsValidUtf8(text)) {
          Add(value, path, "is not UTF-8 text; save the spec as UTF-8");
          return false;
        }
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
  if (spec->has_prepare()) {
    ResolvePath(options.base_dir, spec->mutable_prepare()->mutable_output_root());
  }
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

absl::StatusOr<JobSpec> LoadJobSpec(absl::string_view yaml, const ParseOptions& options,
                                    const SpecLimits& limits) {
  JobSpec spec;
  Problems problems;
  absl::Status status = ParseInto(yaml, options, &spec, &problems);
  if (!status.ok()) return status;
  problems.Append(spec_internal::Validate(spec, limits));
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
