// Models that leave TECL: a verified encoder (an encoder export or a full checkpoint, sealed and
// checksummed) written in the formats users load in PyTorch.
//
//   kStateDict    torch.save-compatible pickle of {parameter or buffer name: tensor} (CPU,
//                 contiguous). The backbones use torchvision's module names, so
//                 torchvision.models.video.r2plus1d_18().load_state_dict(torch.load(FILE),
//                 strict=False) loads every tensor and misses only fc.weight and fc.bias
//                 (likewise r3d_18). BatchNorm running statistics and counters are included.
//   kTorchScript  a TorchScript module (torch.jit.load) whose forward(x) maps normalised float
//                 clips (N, 3, T, H, W) to the encoder's features (N, D); tiny3d only (the video
//                 ResNets load into torchvision instead).
// Inputs of both are the clips as NormalizeClips makes them: RGB in [0, 1] normalised with the
// ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
//
// The output is written atomically (WriteFileAtomically: a temporary file beside `out_path`,
// fsync, rename): a reader never sees half a file. Errors: Error(kNotFound) no such encoder or step; Error(kDataLoss) a corrupt
// file or a checksum other than the expected one; Error(kInvalidArgument) a format the backbone
// does not support; Error(kUnavailable) the output cannot be written.
#ifndef TECL_SERVICES_WORKER_TRAIN_MODEL_EXPORT_H_
#define TECL_SERVICES_WORKER_TRAIN_MODEL_EXPORT_H_

#include <cstdint>
#include <string>

namespace tecl::worker::core {

enum class ExportFormat { kStateDict, kTorchScript };

// "torch" -> kStateDict, "torchscript" -> kTorchScript; false for anything else.
bool ParseExportFormat(const std::string& text, ExportFormat* format);

struct ExportSource {
  // The encoder to export: an encoder export or a full checkpoint.
  std::string path;
  // Hex SHA-256 the coordinator registered for `path`; empty = only the file's own checksum.
  std::string expected_sha256;
};

// Where `step`'s encoder is in the checkpoint folder `dir`: its encoder export when there is one,
// else its full checkpoint. Error(kNotFound) naming the steps the folder has when neither exists.
std::string EncoderPathForStep(const std::string& dir, int64_t step);

struct ExportedModel {
  std::string backbone;
  int64_t step = 0;       // Training steps behind the weights.
  int64_t tensors = 0;    // Parameters and buffers written.
  std::string sha256;     // Of the source's payload, as verified.
};

ExportedModel ExportModel(const ExportSource& source, ExportFormat format,
                          const std::string& out_path);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_MODEL_EXPORT_H_
