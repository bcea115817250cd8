// tecl-export: an encoder (an encoder export or a full checkpoint of TECL) as a torch.save state
// dict with torchvision's names, or as TorchScript (tiny3d). `teclctl export JOB_ID` runs it with
// the job's registered checkpoint; it also works on a file alone.
//
// Exit codes follow teclctl's: 0 ok, 1 failed (a corrupt file, a write error), 2 usage error,
// 4 invalid request (a format the backbone lacks), 5 no such file or step.
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "services/common/flags.h"
#include "services/worker/model/error.h"
#include "services/worker/train/model_export.h"

ABSL_FLAG(std::string, encoder, "", "The encoder export or checkpoint file to export.");
ABSL_FLAG(std::string, sha256, "",
          "With --encoder: the SHA-256 (hex) its payload must have (the coordinator's record).");
ABSL_FLAG(std::string, checkpoint_dir, "", "Instead of --encoder: a job's checkpoint folder...");
ABSL_FLAG(int64_t, step, 0, "...and the step in it (its encoder export, else its checkpoint).");
ABSL_FLAG(std::string, format, "torch",
          "torch: a torch.save state dict with torchvision's parameter names; torchscript: a "
          "TorchScript module of the encoder (tiny3d).");
ABSL_FLAG(std::string, out, "", "The file to write (written beside it, then renamed).");
ABSL_FLAG(std::string, label, "", "What the summary line calls the source (e.g. job job-000001).");

namespace {

int ExitCodeOf(tecl::worker::core::ErrorCode code) {
  using tecl::worker::core::ErrorCode;
  switch (code) {
    case ErrorCode::kNotFound:
      return 5;
    case ErrorCode::kInvalidArgument:
      return 4;
    default:
      return 1;
  }
}

int Usage(const char* message) {
  std::fprintf(stderr, "tecl-export: %s (see tecl-export --help)\n", message);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  namespace core = tecl::worker::core;
  tecl::ParseFlags(
      argc, argv,
      "writes a TECL encoder in a format PyTorch loads.\n"
      "  tecl-export --encoder FILE [--sha256 HEX] --out FILE [--format torch|torchscript]\n"
      "  tecl-export --checkpoint_dir DIR --step N --out FILE [--format torch|torchscript]\n"
      "torch: m = torchvision.models.video.r2plus1d_18() (or r3d_18); "
      "m.load_state_dict(torch.load(FILE), strict=False) misses only fc.*.\n"
      "torchscript (tiny3d): torch.jit.load(FILE)(x) gives the features. Inputs: float clips\n"
      "(N, 3, T, H, W), RGB in [0, 1] normalised with the ImageNet mean and std.");
  core::ExportFormat format;
  if (!core::ParseExportFormat(absl::GetFlag(FLAGS_format), &format)) {
    return Usage("--format must be torch or torchscript");
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return Usage("--out FILE is required");
  const std::string encoder = absl::GetFlag(FLAGS_encoder);
  const std::string dir = absl::GetFlag(FLAGS_checkpoint_dir);
  const int64_t step = absl::GetFlag(FLAGS_step);
  if (encoder.empty() == dir.empty()) {
    return Usage("give --encoder FILE, or --checkpoint_dir DIR with --step N");
  }
  if (!dir.empty() && step <= 0) return Usage("--checkpoint_dir needs --step N (N > 0)");
  try {
    core::ExportSource source{encoder, absl::GetFlag(FLAGS_sha256)};
    if (!dir.empty()) source = {core::EncoderPathForStep(dir, step), ""};
    const core::ExportedModel model = core::ExportModel(source, format, out);
    std::string label = absl::GetFlag(FLAGS_label);
    if (label.empty()) label = source.path;
    std::printf("exported %s step %lld (%s, %lld tensors, SHA-256 %s of %s) to %s as %s\n",
                label.c_str(), static_cast<long long>(model.step), model.backbone.c_str(),
                static_cast<long long>(model.tensors), model.sha256.substr(0, 12).c_str(),
                source.path.c_str(), out.c_str(), absl::GetFlag(FLAGS_format).c_str());
    return 0;
  } catch (const core::Error& e) {
    std::fprintf(stderr, "tecl-export: %s\n", e.what());
    return ExitCodeOf(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tecl-export: %s\n", e.what());
    return 1;
  }
}
