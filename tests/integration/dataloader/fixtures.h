// Shared fixtures of the dataloader integration tests: real H.264 files written with the ffmpeg
// CLI (once per test process), manifests over them, and a DataLoaderServer on 127.0.0.1:0.
#ifndef TECL_TESTS_INTEGRATION_DATALOADER_FIXTURES_H_
#define TECL_TESTS_INTEGRATION_DATALOADER_FIXTURES_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "services/dataloader/service/dataloader_server.h"
#include "tecl/v1/dataloader_service.grpc.pb.h"

namespace tecl::dataloader::testing {

struct DataSet {
  std::string dir;         // Everything lives under it (the data root of the servers).
  std::string good_csv;    // 8 good videos (2 classes, 160x120, 75..117 frames).
  std::string mixed_csv;   // The 8 good ones + corrupt, truncated, zero-byte and text files.
  std::string ramp_csv;    // 4 lossless 64x64 videos of 50 frames; frame N is grey 16 + 4N.
  std::string class_root;  // The good videos as class folders.
  std::vector<std::string> bad_files;
};

// Writes the data set on first use (a few seconds of ffmpeg). Aborts the test on failure.
const DataSet& TestData();

// A config serving on 127.0.0.1:0 with 2 decode threads, confined to TestData().dir.
DataLoaderConfig TestConfig();

// A CSV data set request: G groups, L frames, S x S, speeds {1, 2, 4}.
tecl::v1::StreamBatchesRequest TrainRequest(const std::string& csv, int groups = 2, int length = 8,
                                            int size = 32);

// No crop, flip or colour change (the clips show the decoded frames as they are).
void DisableAugmentation(tecl::v1::StreamBatchesRequest* request);

// The trainers' token TestConfig's servers accept.
inline constexpr char kTrainerToken[] = "trainer-token-of-the-loader-tests";

// A channel to `address` that sends `token` on every call (none when empty). With
// `small_window`, the client keeps HTTP/2's initial 64 KiB flow-control window (no BDP probing),
// so a client that stops reading stops the server's writes after at most 64 KiB; such a channel
// sends no token (the caller adds it to its ClientContext).
std::shared_ptr<grpc::Channel> Channel(const std::string& address, bool small_window = false,
                                       const std::string& token = kTrainerToken);

// The source frame index encoded by a pixel of a ramp video (grey 16 + 4N, as RGB).
int64_t RampFrame(uint8_t value);

}  // namespace tecl::dataloader::testing

#endif  // TECL_TESTS_INTEGRATION_DATALOADER_FIXTURES_H_
