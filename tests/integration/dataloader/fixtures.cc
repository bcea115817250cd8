#include "tests/integration/dataloader/fixtures.h"

#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "services/common/auth.h"
#include "services/common/logging.h"

namespace tecl::dataloader::testing {
namespace {

namespace fs = std::filesystem;

void Run(const std::string& command) {
  const int status = std::system((command + " 2>&1").c_str());
  TECL_CHECK(status == 0) << "fixture command failed (" << status << "): " << command;
}

void Encode(const std::string& source, int frames, const std::string& extra, const std::string& out) {
  fs::create_directories(fs::path(out).parent_path());
  Run(absl::StrCat("ffmpeg -nostdin -v error -y -f lavfi -i \"", source, "\" -frames:v ", frames,
                   " -c:v libx264 ", extra, " -pix_fmt yuv420p \"", out, "\""));
}

std::string* data_dir = nullptr;

void RemoveDataSet() {
  std::error_code error;
  if (data_dir != nullptr) fs::remove_all(*data_dir, error);
}

DataSet* MakeDataSet() {
  auto* data = new DataSet();
  std::string pattern = ::testing::TempDir() + "/dataloader_it_XXXXXX";
  TECL_CHECK(mkdtemp(pattern.data()) != nullptr) << "mkdtemp failed";
  data->dir = fs::weakly_canonical(pattern).string();
  data_dir = new std::string(data->dir);
  std::atexit(&RemoveDataSet);
  data->class_root = data->dir + "/classes";
  const std::string sources[2] = {"testsrc=size=160x120:rate=25", "smptebars=size=160x120:rate=25"};
  std::ofstream good(data->dir + "/good.csv");
  std::ofstream mixed(data->dir + "/mixed.csv");
  good << "path,label,split\n";
  mixed << "path,label,split\n";
  for (int c = 0; c < 2; ++c) {
    for (int v = 0; v < 4; ++v) {
      const std::string relative = absl::StrCat("classes/class", c, "/v", v, ".mp4");
      // 75 .. 117 frames; keyframe every 12.
      Encode(sources[c], 75 + 14 * v + c, "-g 12 -bf 2", data->dir + "/" + relative);
      good << relative << ",class" << c << ",train\n";
      mixed << relative << ",class" << c << ",train\n";
    }
  }
  // Bad files next to the good ones.
  const std::string bad = data->dir + "/bad";
  fs::create_directories(bad);
  fs::copy_file(data->dir + "/classes/class0/v3.mp4", bad + "/corrupt.mp4");
  {
    std::fstream corrupt(bad + "/corrupt.mp4", std::ios::in | std::ios::out | std::ios::binary);
    corrupt.seekp(0);
    for (int i = 0; i < 512; ++i) corrupt.put(static_cast<char>((i * 97 + 13) & 0xff));
  }
  // Truncated before the index (moov) at the end of the file.
  fs::copy_file(data->dir + "/classes/class1/v3.mp4", bad + "/truncated.mp4");
  fs::resize_file(bad + "/truncated.mp4", fs::file_size(bad + "/truncated.mp4") / 3);
  std::ofstream(bad + "/empty.mp4").close();
  std::ofstream(bad + "/notes.mp4") << "these are notes, not a video\n";
  for (const char* name : {"corrupt", "truncated", "empty", "notes"}) {
    data->bad_files.push_back(absl::StrCat(bad, "/", name, ".mp4"));
    mixed << "bad/" << name << ".mp4,class0,train\n";
  }
  std::ofstream ramp(data->dir + "/ramp.csv");
  ramp << "path,label,split\n";
  for (int v = 0; v < 4; ++v) {
    const std::string relative = absl::StrCat("ramp/r", v, ".mp4");
    Encode("color=c=black:size=64x64:rate=25,geq=lum='16+4*N':cb=128:cr=128", 50, "-qp 0 -g 10",
           data->dir + "/" + relative);
    ramp << relative << ",ramp,train\n";
  }
  data->good_csv = data->dir + "/good.csv";
  data->mixed_csv = data->dir + "/mixed.csv";
  data->ramp_csv = data->dir + "/ramp.csv";
  return data;
}

}  // namespace

const DataSet& TestData() {
  static const DataSet* data = MakeDataSet();
  return *data;
}

DataLoaderConfig TestConfig() {
  DataLoaderConfig config;
  config.server.address = "127.0.0.1:0";
  config.server.metrics_address = "";  // /metrics over HTTP only where a test scrapes it.
  config.server.tokens = {Credential{Role::kTrainer, "trainers", kTrainerToken}};
  config.loader.decode_threads = 2;
  config.data_roots = {TestData().dir};
  return config;
}

tecl::v1::StreamBatchesRequest TrainRequest(const std::string& csv, int groups, int length, int size) {
  tecl::v1::StreamBatchesRequest request;
  request.set_job_id("it-job");
  request.set_rank(0);
  request.set_world_size(1);
  request.set_mode(tecl::v1::STREAM_MODE_TRAIN);
  tecl::v1::JobSpec* spec = request.mutable_spec();
  spec->set_seed(11);
  tecl::v1::DatasetSpec* dataset = spec->mutable_dataset();
  dataset->set_format(tecl::v1::DatasetSpec::FORMAT_CSV);
  dataset->set_root(fs::path(csv).parent_path().string());
  dataset->set_manifest(fs::path(csv).filename().string());
  dataset->set_split("train");
  tecl::v1::SamplingSpec* sampling = spec->mutable_sampling();
  sampling->set_clip_length(length);
  sampling->set_crop_size(size);
  for (int speed : {1, 2, 4}) sampling->add_speeds(speed);
  sampling->set_groups_per_batch(groups);
  spec->mutable_resources()->set_prefetch_batches(2);
  spec->mutable_method()->set_instance_positive(tecl::v1::INSTANCE_POSITIVE_OTHER_CLIP);
  return request;
}

void DisableAugmentation(tecl::v1::StreamBatchesRequest* request) {
  tecl::v1::AugmentSpec* augment = request->mutable_spec()->mutable_augment();
  augment->set_crop_area_min(1.0);
  augment->set_crop_area_max(1.0);
  augment->set_aspect_min(1.0);
  augment->set_aspect_max(1.0);
  augment->set_flip_prob(0);
  augment->set_jitter_prob(0);
  augment->set_grayscale_prob(0);
}

std::shared_ptr<grpc::Channel> Channel(const std::string& address, bool small_window,
                                       const std::string& token) {
  if (!small_window) {
    ChannelOptions options;
    options.token = token;
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(address, options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return channel.ok() ? *channel : nullptr;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

int64_t RampFrame(uint8_t value) {
  // Limited-range grey 16 + 4N becomes RGB 4N * 255 / 219, give or take the conversion's
  // rounding (a frame is 4.7 RGB levels apart, so a couple of levels off still reads right).
  return std::lround(value * 219.0 / 255.0 / 4.0);
}

}  // namespace tecl::dataloader::testing
