// ExportModel: the files Python loads (checked by check_export.py with Debian's python3-torch and
// python3-torchvision) and the refusals (a changed file, a format the backbone lacks, a step
// the folder does not have).
#include "services/worker/train/model_export.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "services/worker/model/backbone.h"
#include "services/worker/model/error.h"
#include "services/worker/train/checkpoint.h"
#include "services/worker/train/sealed_file.h"

namespace tecl::worker::core {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

void WriteTensor(const std::string& path, const at::Tensor& tensor) {
  const std::vector<char> bytes = torch::pickle_save(tensor);
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class ModelExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tecl_model_export_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // An encoder export of `name` at step 42 whose BatchNorm statistics are not the defaults.
  std::string TrainedEncoder(const std::string& name, std::shared_ptr<Backbone>* backbone) {
    torch::manual_seed(11);
    *backbone = MakeBackbone(name);
    (*backbone)->train();
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) (*backbone)->forward(torch::randn({2, 3, 8, 32, 32}) * 2 + 0.5);
    (*backbone)->eval();
    const std::string path = (dir_ / EncoderFileName(42)).string();
    ExportEncoder(path, **backbone, 42);
    return path;
  }

  fs::path dir_;
};

TEST_F(ModelExportTest, PythonLoadsTheExportsAndComputesTheSameFeatures) {
  torch::manual_seed(5);
  const at::Tensor clip = torch::randn({2, 3, 8, 32, 32});
  WriteTensor((dir_ / "clip.pt").string(), clip);
  for (const std::string name : {"r2plus1d_18", "r3d_18", "tiny3d"}) {
    std::shared_ptr<Backbone> backbone;
    const std::string encoder = TrainedEncoder(name, &backbone);
    torch::NoGradGuard no_grad;
    WriteTensor((dir_ / ("features_" + name + ".pt")).string(), backbone->forward(clip));
    const bool scripted = name == "tiny3d";
    const std::string out = (dir_ / (name + (scripted ? ".torchscript" : ".pt"))).string();
    const ExportedModel exported = ExportModel(
        {encoder, ""}, scripted ? ExportFormat::kTorchScript : ExportFormat::kStateDict, out);
    EXPECT_EQ(exported.backbone, name);
    EXPECT_EQ(exported.step, 42);
    EXPECT_EQ(exported.tensors, static_cast<int64_t>(backbone->named_parameters().size() +
                                                     backbone->named_buffers().size()));
    fs::remove(encoder);
  }
  // Debian's interpreter: python3-torch and python3-torchvision live there, not in another
  // python3 that may come first on PATH.
  const std::string command = "/usr/bin/python3 " + std::string(std::getenv("TECL_SOURCE_DIR")) +
                              "/tests/unit/worker/train/check_export.py " + dir_.string();
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
}

TEST_F(ModelExportTest, AChangedFileOrAnotherChecksumIsRefusedAndNothingIsWritten) {
  std::shared_ptr<Backbone> backbone;
  const std::string encoder = TrainedEncoder("tiny3d", &backbone);
  const std::string out = (dir_ / "out.pt").string();
  const std::string sha = ExportModel({encoder, ""}, ExportFormat::kStateDict, out).sha256;
  fs::remove(out);
  try {
    ExportModel({encoder, std::string(64, '0')}, ExportFormat::kStateDict, out);
    ADD_FAILURE() << "another registered checksum was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDataLoss);
    EXPECT_THAT(e.what(), HasSubstr("is not the registered"));
  }
  EXPECT_EQ(ExportModel({encoder, sha}, ExportFormat::kStateDict, out).sha256, sha);
  fs::remove(out);
  {  // One payload byte flipped.
    std::fstream file(encoder, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(-10, std::ios::end);
    char byte = 0;
    file.read(&byte, 1);
    file.seekp(-10, std::ios::end);
    byte = static_cast<char>(byte ^ 0x5a);
    file.write(&byte, 1);
  }
  try {
    ExportModel({encoder, ""}, ExportFormat::kStateDict, out);
    ADD_FAILURE() << "a corrupt encoder file was exported";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDataLoss) << e.what();
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(ModelExportTest, TorchScriptIsForTiny3dAndStepsMustExist) {
  std::shared_ptr<Backbone> backbone;
  const std::string encoder = TrainedEncoder("r3d_18", &backbone);
  try {
    ExportModel({encoder, ""}, ExportFormat::kTorchScript, (dir_ / "r3d.ts").string());
    ADD_FAILURE() << "r3d_18 exported as TorchScript";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("--format torch"));
  }
  EXPECT_EQ(EncoderPathForStep(dir_.string(), 42), encoder);
  std::ofstream(dir_ / CheckpointFileName(40)) << "x";
  EXPECT_EQ(EncoderPathForStep(dir_.string(), 40), (dir_ / CheckpointFileName(40)).string());
  try {
    EncoderPathForStep(dir_.string(), 7);
    ADD_FAILURE() << "step 7 found";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr("checkpoints are at steps 40"));
  }
  ExportFormat format;
  EXPECT_TRUE(ParseExportFormat("torchscript", &format));
  EXPECT_EQ(format, ExportFormat::kTorchScript);
  EXPECT_FALSE(ParseExportFormat("onnx", &format));
}

}  // namespace
}  // namespace tecl::worker::core
