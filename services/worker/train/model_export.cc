#include "services/worker/train/model_export.h"

#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <filesystem>
#include <sstream>
#include <vector>

#include "services/worker/model/error.h"
#include "services/worker/train/checkpoint.h"
#include "services/worker/train/sealed_file.h"

namespace tecl::worker::core {
namespace {

namespace fs = std::filesystem;

std::vector<char> StateDictBytes(Backbone& backbone, int64_t* tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  auto add = [&](const std::string& name, const at::Tensor& tensor) {
    dict.insert(name, tensor.detach().to(at::kCPU).contiguous());
  };
  for (const auto& p : backbone.named_parameters()) add(p.key(), p.value());
  for (const auto& b : backbone.named_buffers()) add(b.key(), b.value());
  *tensors = static_cast<int64_t>(dict.size());
  return torch::pickle_save(c10::IValue(dict));
}

// TorchScript has no dots in attribute names: features.0.weight -> features_0_weight.
std::string Attribute(std::string name) {
  for (char& c : name) {
    if (c == '.') c = '_';
  }
  return name;
}

// tiny3d as TorchScript: four (conv 3x3x3, BatchNorm, ReLU) stages, global max pooling.
std::vector<char> Tiny3dTorchScriptBytes(Backbone& backbone, int64_t* tensors) {
  torch::jit::Module module("__torch__.tecl.Tiny3dEncoder");
  *tensors = 0;
  for (const auto& p : backbone.named_parameters()) {
    module.register_parameter(Attribute(p.key()), p.value().detach().to(at::kCPU).clone(), false);
    ++*tensors;
  }
  for (const auto& b : backbone.named_buffers()) {
    module.register_buffer(Attribute(b.key()), b.value().detach().to(at::kCPU).clone());
    ++*tensors;
  }
  std::ostringstream src;
  src << "def forward(self, x):\n";
  for (int stage = 0; stage < 4; ++stage) {
    const std::string conv = "self.features_" + std::to_string(3 * stage) + "_";
    const std::string norm = "self.features_" + std::to_string(3 * stage + 1) + "_";
    const int t_stride = stage == 0 ? 1 : 2;
    src << "    x = torch.conv3d(x, " << conv << "weight, None, [" << t_stride
        << ", 2, 2], [1, 1, 1])\n"
        << "    x = torch.batch_norm(x, " << norm << "weight, " << norm << "bias, " << norm
        << "running_mean, " << norm << "running_var, False, 0.1, 1e-05, True)\n"
        << "    x = torch.relu(x)\n";
  }
  src << "    return torch.amax(x, [2, 3, 4])\n";
  module.define(src.str());
  module.eval();
  std::ostringstream out;
  module.save(out);
  const std::string bytes = out.str();
  return std::vector<char>(bytes.begin(), bytes.end());
}

}  // namespace

bool ParseExportFormat(const std::string& text, ExportFormat* format) {
  if (text == "torch") {
    *format = ExportFormat::kStateDict;
    return true;
  }
  if (text == "torchscript") {
    *format = ExportFormat::kTorchScript;
    return true;
  }
  return false;
}

std::string EncoderPathForStep(const std::string& dir, int64_t step) {
  for (const std::string& name : {EncoderFileName(step), CheckpointFileName(step)}) {
    const std::string path = (fs::path(dir) / name).string();
    if (fs::exists(path)) return path;
  }
  std::ostringstream message;
  message << "step " << step << ": no " << EncoderFileName(step) << " or "
          << CheckpointFileName(step) << " in " << dir << "; its checkpoints are at steps";
  const std::vector<CheckpointEntry> entries = ListCheckpoints(dir);
  if (entries.empty()) message << " (none)";
  for (const CheckpointEntry& entry : entries) message << " " << entry.step;
  throw Error(ErrorCode::kNotFound, message.str());
}

ExportedModel ExportModel(const ExportSource& source, ExportFormat format,
                          const std::string& out_path) {
  if (!fs::exists(source.path)) {
    throw Error(ErrorCode::kNotFound, "export: no encoder file " + source.path);
  }
  // LoadEncoder verifies the sealed file's own checksum before decoding anything.
  LoadedEncoder loaded = LoadEncoder(source.path, c10::Device(c10::kCPU));
  if (!source.expected_sha256.empty() && loaded.sha256 != source.expected_sha256) {
    throw Error(ErrorCode::kDataLoss,
                "export: " + source.path + ": its payload's SHA-256 " + loaded.sha256 +
                    " is not the registered " + source.expected_sha256 +
                    "; it was changed after it was written");
  }
  ExportedModel exported;
  exported.backbone = loaded.backbone->backbone_name();
  exported.step = loaded.step;
  exported.sha256 = loaded.sha256;
  std::vector<char> bytes;
  if (format == ExportFormat::kStateDict) {
    bytes = StateDictBytes(*loaded.backbone, &exported.tensors);
  } else if (exported.backbone == "tiny3d") {
    bytes = Tiny3dTorchScriptBytes(*loaded.backbone, &exported.tensors);
  } else {
    throw Error(ErrorCode::kInvalidArgument,
                "export: --format torchscript is for tiny3d; " + exported.backbone +
                    " is a torchvision model: export it with --format torch and load it into "
                    "torchvision.models.video." + exported.backbone + "()");
  }
  WriteFileAtomically(out_path, {{bytes.data(), bytes.size()}});
  return exported;
}

}  // namespace tecl::worker::core
