// The data sets tecl-synth writes (class folders + trainlist/testlist, classInd.txt) read as
// class folders, as UCF101, and as the loader's default (--manifest) data set.
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/dataloader/synth/synth_dataset.h"
#include "tests/integration/dataloader/fixtures.h"

namespace tecl::dataloader {
namespace {

using ::testing::ElementsAre;

class SynthDatasetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern = ::testing::TempDir() + "/dataloader_synth_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = new std::string(std::filesystem::weakly_canonical(pattern).string());
    synth::SynthOptions options;
    options.out = *dir_;
    options.classes = 2;
    options.videos_per_class = 4;
    options.frames = 24;
    options.test_fraction = 0.25;
    options.jobs = 2;
    absl::StatusOr<synth::SynthSummary> summary = synth::WriteSynthDataset(options);
    ASSERT_TRUE(summary.ok()) << summary.status();
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static std::unique_ptr<DataLoaderServer> Start(const std::string& manifest = "") {
    DataLoaderConfig config = testing::TestConfig();
    config.data_roots = {*dir_};
    config.manifest = manifest;
    absl::StatusOr<std::unique_ptr<DataLoaderServer>> server = DataLoaderServer::Start(config);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  static grpc::Status Stream(const std::string& address, const tecl::v1::StreamBatchesRequest& request,
                             int* batches, int* clips) {
    auto stub = tecl::v1::DataLoader::NewStub(testing::Channel(address));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    auto reader = stub->StreamBatches(&context, request);
    tecl::v1::ClipBatch batch;
    while (reader->Read(&batch)) {
      ++*batches;
      *clips += batch.clip_info_size();
      EXPECT_EQ(batch.videos_skipped(), 0);
    }
    return reader->Finish();
  }

  static std::string* dir_;
};

std::string* SynthDatasetTest::dir_ = nullptr;

TEST_F(SynthDatasetTest, ClassFoldersAndUcf101ReadTheSameVideos) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  tecl::v1::StreamBatchesRequest request = testing::TrainRequest(*dir_ + "/unused.csv", 2, 8, 32);
  tecl::v1::DatasetSpec* dataset = request.mutable_spec()->mutable_dataset();
  dataset->Clear();
  dataset->set_format(tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
  dataset->set_root(*dir_);
  dataset->set_train_list("trainlist.txt");
  dataset->set_test_list("testlist.txt");
  request.set_max_steps(3);
  int batches = 0, clips = 0;
  grpc::Status status = Stream(server->address(), request, &batches, &clips);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(batches, 3);
  EXPECT_EQ(clips, 24);

  tecl::v1::StreamBatchesRequest ucf = request;
  ucf.mutable_spec()->mutable_dataset()->set_format(tecl::v1::DatasetSpec::FORMAT_UCF101);
  ucf.mutable_spec()->mutable_dataset()->set_class_index("classInd.txt");
  ucf.set_mode(tecl::v1::STREAM_MODE_EVAL);
  ucf.mutable_spec()->mutable_eval()->set_clips_per_video(2);
  batches = clips = 0;
  status = Stream(server->address(), ucf, &batches, &clips);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(clips, 8 * 2);
}

TEST_F(SynthDatasetTest, TheManifestFlagIsTheDefaultDataSet) {
  auto server = Start(*dir_);
  ASSERT_NE(server, nullptr);
  auto stub = tecl::v1::DataLoader::NewStub(testing::Channel(server->address()));
  grpc::ClientContext context;
  tecl::v1::DatasetInfo info;
  grpc::Status status = stub->DescribeDataset(&context, tecl::v1::DescribeDatasetRequest(), &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(info.num_videos(), 8);
  EXPECT_EQ(info.num_train(), 6);
  EXPECT_EQ(info.num_test(), 2);
  EXPECT_EQ(info.classes_size(), 2);
}

}  // namespace
}  // namespace tecl::dataloader
