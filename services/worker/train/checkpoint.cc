#include "services/worker/train/checkpoint.h"

#include <torch/torch.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

using Dict = c10::impl::GenericDict;

constexpr char kCheckpointFormat[] = "tecl.checkpoint";
constexpr char kEncoderFormat[] = "tecl.encoder";
constexpr char kBackbonePrefix[] = "backbone.";

template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

[[noreturn]] void Fail(ErrorCode code, const std::string& path, const std::string& what) {
  throw Error(code, Cat("checkpoint ", path, ": ", what));
}

Dict NewDict() { return Dict(c10::StringType::get(), c10::AnyType::get()); }

torch::Tensor ForStorage(const torch::Tensor& tensor) {
  return tensor.detach().to(torch::kCPU).contiguous();
}

// Every parameter and buffer by its registered name.
std::vector<std::pair<std::string, torch::Tensor>> StateTensors(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}

Dict TensorDict(const torch::nn::Module& module) {
  Dict dict = NewDict();
  for (const auto& [name, tensor] : StateTensors(module)) dict.insert(name, ForStorage(tensor));
  return dict;
}

Dict ModelOptionsDict(const ModelOptions& options) {
  Dict dict = NewDict();
  dict.insert("backbone", options.backbone);
  dict.insert("head_hidden", options.head_hidden);
  dict.insert("psi_hidden", options.psi_hidden);
  dict.insert("psi_dim", options.psi_dim);
  dict.insert("projection_hidden", options.projection_hidden);
  dict.insert("projection_dim", options.projection_dim);
  dict.insert("num_speeds", options.num_speeds);
  return dict;
}

// Typed access to the decoded payload; anything missing or of another type is DATA_LOSS.
class Reader {
 public:
  Reader(std::string path) : path_(std::move(path)) {}

  Dict Decode(const std::vector<char>& payload) const {
    c10::IValue value;
    try {
      value = torch::pickle_load(payload);
    } catch (const c10::Error& e) {
      Fail(ErrorCode::kDataLoss, path_,
           Cat("the payload cannot be decoded (", e.what_without_backtrace(),
               "); the file was not written by SaveCheckpoint/ExportEncoder"));
    }
    if (!value.isGenericDict()) Fail(ErrorCode::kDataLoss, path_, "the payload is not a dictionary");
    return value.toGenericDict();
  }

  c10::IValue Get(const Dict& dict, const std::string& key) const {
    const auto it = dict.find(key);
    if (it == dict.end()) {
      Fail(ErrorCode::kDataLoss, path_, Cat("the payload has no \"", key, "\" entry"));
    }
    return it->value();
  }
  Dict GetDict(const Dict& dict, const std::string& key) const {
    const c10::IValue value = Get(dict, key);
    if (!value.isGenericDict()) Fail(ErrorCode::kDataLoss, path_, Cat("\"", key, "\" is not a dictionary"));
    return value.toGenericDict();
  }
  int64_t GetInt(const Dict& dict, const std::string& key) const {
    const c10::IValue value = Get(dict, key);
    if (!value.isInt()) Fail(ErrorCode::kDataLoss, path_, Cat("\"", key, "\" is not an integer"));
    return value.toInt();
  }
  std::string GetString(const Dict& dict, const std::string& key) const {
    const c10::IValue value = Get(dict, key);
    if (!value.isString()) Fail(ErrorCode::kDataLoss, path_, Cat("\"", key, "\" is not a string"));
    return value.toStringRef();
  }
  double GetDouble(const Dict& dict, const std::string& key) const {
    const c10::IValue value = Get(dict, key);
    if (!value.isDouble()) Fail(ErrorCode::kDataLoss, path_, Cat("\"", key, "\" is not a float"));
    return value.toDouble();
  }
  torch::Tensor GetTensor(const Dict& dict, const std::string& key) const {
    const c10::IValue value = Get(dict, key);
    if (!value.isTensor()) Fail(ErrorCode::kDataLoss, path_, Cat("\"", key, "\" is not a tensor"));
    return value.toTensor();
  }

  ModelOptions GetModelOptions(const Dict& payload) const {
    const Dict dict = GetDict(payload, "model_options");
    ModelOptions options;
    options.backbone = GetString(dict, "backbone");
    options.head_hidden = GetInt(dict, "head_hidden");
    options.psi_hidden = GetInt(dict, "psi_hidden");
    options.psi_dim = GetInt(dict, "psi_dim");
    options.projection_hidden = GetInt(dict, "projection_hidden");
    options.projection_dim = GetInt(dict, "projection_dim");
    options.num_speeds = GetInt(dict, "num_speeds");
    return options;
  }

  // Matches every state tensor of `module` with dict[prefix + name] (same dtype and shape, no
  // extra entries under the prefix). Returns them in StateTensors order; changes nothing.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> MatchTensors(const torch::nn::Module& module,
                                                                    const Dict& dict,
                                                                    const std::string& prefix) const {
    std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs;
    for (const auto& [name, target] : StateTensors(module)) {
      const torch::Tensor saved = GetTensor(dict, prefix + name);
      if (saved.scalar_type() != target.scalar_type() || saved.sizes() != target.sizes()) {
        Fail(ErrorCode::kFailedPrecondition, path_,
             Cat("\"", prefix + name, "\" is ", saved.scalar_type(), " ", saved.sizes(),
                 " but the model has ", target.scalar_type(), " ", target.sizes(),
                 "; load it into the model it was written for"));
      }
      pairs.emplace_back(target, saved);
    }
    int64_t under_prefix = 0;
    for (const auto& entry : dict) {
      if (entry.key().toStringRef().rfind(prefix, 0) == 0) ++under_prefix;
    }
    if (under_prefix != static_cast<int64_t>(pairs.size())) {
      Fail(ErrorCode::kFailedPrecondition, path_,
           Cat("holds ", under_prefix, " tensors but the model has ", pairs.size(),
               "; load it into the model it was written for"));
    }
    return pairs;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string Describe(const ModelOptions& options, const std::string& heads) {
  return Cat("backbone ", options.backbone, ", head_hidden ", options.head_hidden, ", psi_hidden ",
             options.psi_hidden, ", psi_dim ", options.psi_dim, ", projection_hidden ",
             options.projection_hidden, ", projection_dim ", options.projection_dim,
             ", num_speeds ", options.num_speeds, ", heads ", heads);
}

void CopyInto(const std::vector<std::pair<torch::Tensor, torch::Tensor>>& pairs) {
  torch::NoGradGuard no_grad;
  for (const auto& [target, saved] : pairs) target.copy_(saved);
}

}  // namespace

WrittenFile SaveCheckpoint(const std::string& path, Trainer& trainer, const std::string& data_cursor,
                           Env* env) {
  TeclModelImpl& model = *trainer.model();
  Dict payload = NewDict();
  payload.insert("format", std::string(kCheckpointFormat));
  payload.insert("model_options", ModelOptionsDict(model.options()));
  payload.insert("heads", model.heads().ToString());
  payload.insert("tensors", TensorDict(model));

  Dict optimizer = NewDict();
  auto& state = trainer.optimizer().state();
  for (const auto& [name, parameter] : trainer.NamedParameters()) {
    const auto it = state.find(c10::guts::to_string(parameter.unsafeGetTensorImpl()));
    if (it == state.end()) continue;
    const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    Dict entry = NewDict();
    entry.insert("step", adam.step());
    entry.insert("exp_avg", ForStorage(adam.exp_avg()));
    entry.insert("exp_avg_sq", ForStorage(adam.exp_avg_sq()));
    if (adam.max_exp_avg_sq().defined()) {
      entry.insert("max_exp_avg_sq", ForStorage(adam.max_exp_avg_sq()));
    }
    optimizer.insert(name, entry);
  }
  payload.insert("optimizer", optimizer);
  payload.insert("step", trainer.step());
  payload.insert("epoch", trainer.epoch());
  payload.insert("next_learning_rate", trainer.NextLearningRate());
  if (const DynamicLossScale* scale = trainer.loss_scale()) {
    const LossScaleState state = scale->state();
    Dict loss_scale = NewDict();
    loss_scale.insert("scale", state.scale);
    loss_scale.insert("clean_streak", state.clean_streak);
    loss_scale.insert("skipped", state.skipped);
    payload.insert("loss_scale", loss_scale);
  }
  {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(cpu.mutex());
    payload.insert("rng_cpu", cpu.get_state());
  }
  const c10::Device device = trainer.options().device;
  if (device.is_cuda()) {
    at::Generator cuda = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(cuda.mutex());
    payload.insert("rng_cuda", cuda.get_state());
  }
  torch::Tensor cursor = torch::empty({static_cast<int64_t>(data_cursor.size())}, torch::kByte);
  std::memcpy(cursor.data_ptr(), data_cursor.data(), data_cursor.size());
  payload.insert("data_cursor", cursor);
  return WriteSealedFile(path, SealedKind::kCheckpoint, torch::pickle_save(payload), env);
}

ResumeState LoadCheckpoint(const std::string& path, Trainer& trainer,
                           const std::string& expected_sha256) {
  const SealedFile file = ReadSealedFile(path);
  if (!expected_sha256.empty() && file.sha256 != expected_sha256) {
    Fail(ErrorCode::kDataLoss, path,
         Cat("its payload's SHA-256 ", file.sha256, " is not the registered ", expected_sha256,
             "; it was changed after it was written"));
  }
  if (file.kind != SealedKind::kCheckpoint) {
    Fail(ErrorCode::kFailedPrecondition, path,
         "is an encoder export, not a training checkpoint; resuming needs a file written by "
         "SaveCheckpoint");
  }
  const Reader reader(path);
  const Dict payload = reader.Decode(file.payload);
  if (reader.GetString(payload, "format") != kCheckpointFormat) {
    Fail(ErrorCode::kDataLoss, path, "the payload is not a training checkpoint");
  }
  TeclModelImpl& model = *trainer.model();
  const std::string written =
      Describe(reader.GetModelOptions(payload), reader.GetString(payload, "heads"));
  const std::string expected = Describe(model.options(), model.heads().ToString());
  if (written != expected) {
    Fail(ErrorCode::kFailedPrecondition, path,
         Cat("written for the model {", written, "} but this trainer has {", expected,
             "}; resume with the job's original model and method.weights"));
  }

  const auto tensors = reader.MatchTensors(model, reader.GetDict(payload, "tensors"), "");

  // Optimiser state, matched by parameter name.
  const Dict optimizer = reader.GetDict(payload, "optimizer");
  std::vector<std::pair<torch::Tensor, std::unique_ptr<torch::optim::AdamWParamState>>> states;
  for (const auto& [name, parameter] : trainer.NamedParameters()) {
    if (!optimizer.contains(name)) continue;
    const Dict entry = reader.GetDict(optimizer, name);
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(reader.GetInt(entry, "step"));
    const auto moment = [&](const char* key) {
      const torch::Tensor value = reader.GetTensor(entry, key);
      if (value.sizes() != parameter.sizes() || value.scalar_type() != parameter.scalar_type()) {
        Fail(ErrorCode::kDataLoss, path,
             Cat("optimizer state \"", name, "\" ", key, " has shape ", value.sizes(),
                 " but the parameter has ", parameter.sizes()));
      }
      return value.to(parameter.device());
    };
    state->exp_avg(moment("exp_avg"));
    state->exp_avg_sq(moment("exp_avg_sq"));
    if (entry.contains("max_exp_avg_sq")) state->max_exp_avg_sq(moment("max_exp_avg_sq"));
    states.emplace_back(parameter, std::move(state));
  }
  if (static_cast<size_t>(optimizer.size()) != states.size()) {
    Fail(ErrorCode::kDataLoss, path, "the optimizer state names parameters the model does not have");
  }

  ResumeState resume;
  resume.step = reader.GetInt(payload, "step");
  resume.epoch = reader.GetInt(payload, "epoch");
  const torch::Tensor rng_cpu = reader.GetTensor(payload, "rng_cpu");
  torch::Tensor rng_cuda;
  if (payload.contains("rng_cuda")) rng_cuda = reader.GetTensor(payload, "rng_cuda");
  const torch::Tensor cursor = reader.GetTensor(payload, "data_cursor");
  if (cursor.scalar_type() != torch::kByte || cursor.dim() != 1) {
    Fail(ErrorCode::kDataLoss, path, "\"data_cursor\" is not a uint8 vector");
  }
  const torch::Tensor cursor_bytes = cursor.contiguous();
  resume.data_cursor.assign(static_cast<const char*>(cursor_bytes.data_ptr()),
                            static_cast<size_t>(cursor_bytes.numel()));
  resume.sha256 = file.sha256;
  // fp16: the loss scale goes on where it was (a checkpoint of another precision has none, and an
  // fp16 one resumed in bf16 or fp32 has no use for it).
  std::optional<LossScaleState> loss_scale;
  if (payload.contains("loss_scale") && trainer.loss_scale() != nullptr) {
    const Dict entry = reader.GetDict(payload, "loss_scale");
    loss_scale = LossScaleState{reader.GetDouble(entry, "scale"),
                                reader.GetInt(entry, "clean_streak"), reader.GetInt(entry, "skipped")};
    try {
      DynamicLossScale(*trainer.loss_scale()).Restore(*loss_scale);  // Checked on a copy.
    } catch (const Error& e) {
      Fail(ErrorCode::kDataLoss, path, e.what());
    }
  }

  // Everything checked: commit.
  CopyInto(tensors);
  auto& optimizer_state = trainer.optimizer().state();
  optimizer_state.clear();
  for (auto& [parameter, state] : states) {
    optimizer_state[c10::guts::to_string(parameter.unsafeGetTensorImpl())] = std::move(state);
  }
  {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu.set_state(rng_cpu);
  }
  const c10::Device device = trainer.options().device;
  if (device.is_cuda() && rng_cuda.defined()) {
    at::Generator cuda = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(cuda.mutex());
    cuda.set_state(rng_cuda);
  }
  trainer.RestoreCounters(resume.step, resume.epoch);
  if (loss_scale) trainer.loss_scale()->Restore(*loss_scale);
  return resume;
}

WrittenFile ExportEncoder(const std::string& path, Backbone& backbone, int64_t step, Env* env) {
  Dict payload = NewDict();
  payload.insert("format", std::string(kEncoderFormat));
  payload.insert("backbone", backbone.backbone_name());
  payload.insert("feature_dim", backbone.feature_dim());
  payload.insert("step", step);
  payload.insert("tensors", TensorDict(backbone));
  return WriteSealedFile(path, SealedKind::kEncoder, torch::pickle_save(payload), env);
}

LoadedEncoder LoadEncoder(const std::string& path, const c10::Device& device) {
  const SealedFile file = ReadSealedFile(path);
  const Reader reader(path);
  const Dict payload = reader.Decode(file.payload);
  const std::string format = reader.GetString(payload, "format");
  std::string name;
  std::string prefix;
  if (format == kEncoderFormat) {
    name = reader.GetString(payload, "backbone");
  } else if (format == kCheckpointFormat) {
    name = reader.GetModelOptions(payload).backbone;
    prefix = kBackbonePrefix;
  } else {
    Fail(ErrorCode::kDataLoss, path, Cat("unknown payload format \"", format, "\""));
  }
  std::shared_ptr<Backbone> backbone;
  try {
    backbone = MakeBackbone(name);
  } catch (const Error& e) {
    Fail(ErrorCode::kDataLoss, path, Cat("names an unknown backbone: ", e.what()));
  }
  const Dict all = reader.GetDict(payload, "tensors");
  Dict tensors = NewDict();
  for (const auto& entry : all) {
    const std::string& key = entry.key().toStringRef();
    if (key.rfind(prefix, 0) == 0) tensors.insert(key.substr(prefix.size()), entry.value());
  }
  CopyInto(reader.MatchTensors(*backbone, tensors, ""));
  backbone->to(device);
  backbone->eval();
  LoadedEncoder loaded;
  loaded.backbone = std::move(backbone);
  loaded.step = reader.GetInt(payload, "step");
  loaded.source = file.kind;
  loaded.sha256 = file.sha256;
  return loaded;
}

}  // namespace tecl::worker::core
