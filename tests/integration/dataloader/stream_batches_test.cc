// tecl-dataloader end to end: a DataLoaderServer with the real FFmpeg decoder on 127.0.0.1:0,
// real H.264 files, a gRPC client. Shapes and labels, the frames a clip holds, determinism across
// servers, bad files, back-pressure, cancellation, authentication, EVAL streams.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/auth.h"
#include "services/dataloader/sampling/sampler.h"
#include "tests/integration/dataloader/fixtures.h"

namespace tecl::dataloader {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using tecl::v1::ClipBatch;
using tecl::v1::StreamBatchesRequest;
using testing::Channel;
using testing::DataSet;
using testing::TestConfig;
using testing::TestData;
using testing::TrainRequest;

std::unique_ptr<DataLoaderServer> Start(DataLoaderConfig config = TestConfig()) {
  absl::StatusOr<std::unique_ptr<DataLoaderServer>> server = DataLoaderServer::Start(config);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// Reads the whole stream (or `limit` batches, then cancels) within `deadline` (past it the status
// is DEADLINE_EXCEEDED).
struct StreamResult {
  std::vector<ClipBatch> batches;
  grpc::Status status;
};

StreamResult ReadStream(const std::string& address, const StreamBatchesRequest& request,
                        int limit = -1, const std::string& token = testing::kTrainerToken,
                        absl::Duration deadline = absl::Seconds(120)) {
  auto stub = tecl::v1::DataLoader::NewStub(Channel(address, /*small_window=*/false, token));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  std::unique_ptr<grpc::ClientReader<ClipBatch>> reader = stub->StreamBatches(&context, request);
  StreamResult result;
  ClipBatch batch;
  while ((limit < 0 || static_cast<int>(result.batches.size()) < limit) && reader->Read(&batch)) {
    result.batches.push_back(std::move(batch));
    batch.Clear();
  }
  if (limit >= 0 && static_cast<int>(result.batches.size()) == limit) context.TryCancel();
  result.status = reader->Finish();
  return result;
}

// Waits (with a generous deadline) until `condition` holds.
template <typename Condition>
bool WaitFor(Condition condition, absl::Duration deadline = absl::Seconds(60)) {
  const absl::Time end = absl::Now() + deadline;
  while (!condition()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST(StreamBatchesTest, BatchesHaveTheirShapesAndLabels) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  StreamBatchesRequest request = TrainRequest(TestData().good_csv, /*groups=*/2, /*length=*/8, /*size=*/32);
  request.set_start_step(1);
  request.set_max_steps(4);
  StreamResult result = ReadStream(server->address(), request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.batches.size(), 4u);
  const std::vector<int> speeds = {1, 2, 4};
  for (size_t b = 0; b < result.batches.size(); ++b) {
    const ClipBatch& batch = result.batches[b];
    EXPECT_EQ(batch.step(), static_cast<int64_t>(b) + 1);
    EXPECT_EQ(batch.epoch(), batch.step() / 2);  // 8 videos / 4 per batch = 2 steps per epoch.
    EXPECT_THAT(batch.clips().shape(), ElementsAre(8, 8, 32, 32, 3));
    EXPECT_EQ(batch.clips().data().size(), 8u * 8 * 32 * 32 * 3);
    ASSERT_EQ(batch.clip_info_size(), 8);
    ASSERT_EQ(batch.groups_size(), 2);
    EXPECT_EQ(batch.videos_skipped(), 0);
    std::set<int64_t> videos;
    for (int c = 0; c < 8; ++c) {
      const tecl::v1::ClipInfo& info = batch.clip_info(c);
      EXPECT_EQ(info.video(), c / 2);
      EXPECT_EQ(info.group(), c / 4);
      EXPECT_EQ(info.role(), c % 2 == 0 ? tecl::v1::CLIP_ROLE_A : tecl::v1::CLIP_ROLE_B);
      videos.insert(info.manifest_index());
    }
    EXPECT_EQ(videos.size(), 4u);
    for (int g = 0; g < 2; ++g) {
      const tecl::v1::ClipInfo& a = batch.clip_info(4 * g);
      const tecl::v1::ClipInfo& bclip = batch.clip_info(4 * g + 1);
      const int64_t len_a = SpanLength(8, speeds[static_cast<size_t>(a.speed_index())]);
      const int64_t len_b = SpanLength(8, speeds[static_cast<size_t>(bclip.speed_index())]);
      EXPECT_EQ(RelationOfSpans(a.start_frame(), len_a, bclip.start_frame(), len_b),
                batch.groups(g).relation());
      EXPECT_EQ(batch.clip_info(4 * g + 2).speed_index(), a.speed_index());
    }
    // Real pictures, not a blank buffer.
    std::set<char> values(batch.clips().data().begin(), batch.clips().data().begin() + 30000);
    EXPECT_GT(values.size(), 20u);
  }
  EXPECT_DOUBLE_EQ(server->manager().metrics().clips.Value(), 32);
  EXPECT_GT(server->manager().metrics().frames_decoded.Value(), 0);
  EXPECT_GE(server->manager().metrics().frames_decoded.Value(),
            server->manager().metrics().frames_used.Value());
}

// Lossless ramp videos show each source frame as grey 16 + 2N: every clip holds exactly its
// frames (speed s takes every s-th frame; backward clips are the exact reverse).
TEST(StreamBatchesTest, ClipsHoldExactlyTheSampledSourceFrames) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  StreamBatchesRequest request = TrainRequest(TestData().ramp_csv, /*groups=*/2, /*length=*/8, /*size=*/16);
  testing::DisableAugmentation(&request);
  request.set_max_steps(6);
  StreamResult result = ReadStream(server->address(), request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.batches.size(), 6u);
  const std::vector<int> speeds = {1, 2, 4};
  int reversed = 0, fast = 0;
  for (const ClipBatch& batch : result.batches) {
    const std::string& data = batch.clips().data();
    for (int c = 0; c < batch.clip_info_size(); ++c) {
      const tecl::v1::ClipInfo& info = batch.clip_info(c);
      const int speed = speeds[static_cast<size_t>(info.speed_index())];
      const std::vector<int64_t> expected = ClipFrameIndices(info.start_frame(), speed, 8, info.reversed());
      std::vector<int64_t> got;
      for (int f = 0; f < 8; ++f) {
        const size_t centre = ((static_cast<size_t>(c) * 8 + f) * 16 * 16 + 8 * 16 + 8) * 3;
        got.push_back(testing::RampFrame(static_cast<uint8_t>(data[centre])));
      }
      EXPECT_EQ(got, expected) << "clip " << c << " of step " << batch.step();
      reversed += info.reversed();
      fast += speed > 1;
    }
  }
  EXPECT_GT(reversed, 0);
  EXPECT_GT(fast, 0);
}

TEST(StreamBatchesTest, SameCursorGivesIdenticalBytesOnAnotherServer) {
  auto first = Start();
  auto second = Start();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  StreamBatchesRequest request = TrainRequest(TestData().good_csv);
  request.set_start_step(3);
  request.set_step_stride(2);
  request.set_max_steps(3);
  StreamResult a = ReadStream(first->address(), request);
  StreamResult b = ReadStream(second->address(), request);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  ASSERT_EQ(a.batches.size(), 3u);
  ASSERT_EQ(b.batches.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.batches[i].step(), 3 + 2 * static_cast<int64_t>(i));
    a.batches[i].clear_build_seconds();
    b.batches[i].clear_build_seconds();
    EXPECT_EQ(a.batches[i].SerializeAsString(), b.batches[i].SerializeAsString()) << "step " << a.batches[i].step();
  }
  // Another rank gets other videos in the same epoch.
  StreamBatchesRequest other = request;
  other.set_world_size(2);
  other.set_start_step(0);
  other.set_max_steps(1);
  StreamResult rank0 = ReadStream(first->address(), other);
  other.set_rank(1);
  StreamResult rank1 = ReadStream(first->address(), other);
  ASSERT_TRUE(rank0.status.ok() && rank1.status.ok());
  std::set<int64_t> videos0;
  for (const auto& info : rank0.batches[0].clip_info()) videos0.insert(info.manifest_index());
  for (const auto& info : rank1.batches[0].clip_info()) EXPECT_EQ(videos0.count(info.manifest_index()), 0u);
}

TEST(StreamBatchesTest, BadFilesAreSkippedCountedAndTheStreamGoesOn) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  // 12 videos (4 bad), 4 per batch: one epoch is 3 steps and uses every video once.
  StreamBatchesRequest request = TrainRequest(TestData().mixed_csv);
  request.set_max_steps(6);
  StreamResult result = ReadStream(server->address(), request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.batches.size(), 6u);
  int skipped = 0;
  for (const ClipBatch& batch : result.batches) {
    skipped += batch.videos_skipped();
    for (const auto& info : batch.clip_info()) EXPECT_LT(info.manifest_index(), 8) << "a bad file was used";
    EXPECT_EQ(batch.clip_info_size(), 8);
  }
  EXPECT_GE(skipped, 8);  // Each bad file at least once per epoch.
  LoaderMetrics& metrics = server->manager().metrics();
  double bad = 0, skipped_metric = 0;
  for (const char* reason : {"unreadable", "not_found", "decode_error", "timeout", "too_short"}) {
    bad += metrics.BadFiles(reason).Value();
    skipped_metric += metrics.Skipped(reason).Value();
  }
  EXPECT_DOUBLE_EQ(bad, 4);  // Each file is found bad once, then remembered.
  EXPECT_DOUBLE_EQ(skipped_metric, skipped);
  for (const std::string& path : TestData().bad_files) {
    EXPECT_NE(server->manager().bad_videos().Lookup(path), nullptr) << path;
  }

  // The same cursor again: the same batches, although the bad files are now known.
  StreamResult again = ReadStream(server->address(), request);
  ASSERT_TRUE(again.status.ok());
  for (size_t i = 0; i < again.batches.size(); ++i) {
    result.batches[i].clear_build_seconds();
    again.batches[i].clear_build_seconds();
    EXPECT_EQ(again.batches[i].SerializeAsString(), result.batches[i].SerializeAsString());
  }
}

// A client that stops reading stops the server: it builds at most the prefetch depth beyond the
// batch being written, and cancelling the stream frees it.
TEST(StreamBatchesTest, AStoppedClientDoesNotGrowTheServerAndCancelFreesTheStream) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  LoaderMetrics& metrics = server->manager().metrics();
  StreamBatchesRequest request = TrainRequest(TestData().good_csv, /*groups=*/2, /*length=*/8, /*size=*/64);
  request.mutable_spec()->mutable_resources()->set_prefetch_batches(2);  // 786 KiB per batch.
  auto stub = tecl::v1::DataLoader::NewStub(Channel(server->address(), /*small_window=*/true));
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", testing::kTrainerToken));
  std::unique_ptr<grpc::ClientReader<ClipBatch>> reader = stub->StreamBatches(&context, request);
  ClipBatch batch;
  ASSERT_TRUE(reader->Read(&batch));
  EXPECT_EQ(batch.step(), 0);
  // The client now stops reading. The server fills its queue, then waits.
  auto built = [&] { return metrics.Batches("train").Value(); };
  ASSERT_TRUE(WaitFor([&] { return metrics.queue_depth.Value() == 2; }));
  ASSERT_TRUE(server->manager().pool().WaitUntilIdle(absl::Seconds(60)));
  // Read: 1; being written (blocked by flow control): 1; queued: prefetch 2.
  EXPECT_EQ(built(), 4);
  EXPECT_DOUBLE_EQ(metrics.active_streams.Value(), 1);
  // Nothing else runs: the pool stays idle, the count stays.
  ASSERT_TRUE(server->manager().pool().WaitUntilIdle(absl::Seconds(1)));
  EXPECT_EQ(built(), 4);

  context.TryCancel();
  ASSERT_TRUE(WaitFor([&] { return metrics.active_streams.Value() == 0; }));
  EXPECT_DOUBLE_EQ(metrics.queue_depth.Value(), 0);
  EXPECT_EQ(server->manager().open_streams(), 0);
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST(StreamBatchesTest, RequestsAreValidatedAndStreamsLimited) {
  DataLoaderConfig config = TestConfig();
  config.loader.max_streams = 1;
  auto server = Start(config);
  ASSERT_NE(server, nullptr);
  StreamBatchesRequest request = TrainRequest(TestData().good_csv);
  request.set_world_size(2);
  request.set_rank(2);
  StreamResult bad = ReadStream(server->address(), request);
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.status.error_message(), HasSubstr("rank: 2 is not in [0, world_size 2)"));

  request = TrainRequest(TestData().good_csv);
  request.mutable_spec()->mutable_dataset()->set_root("/");
  request.mutable_spec()->mutable_dataset()->set_manifest("etc/passwd");
  StreamResult denied = ReadStream(server->address(), request);
  EXPECT_EQ(denied.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.status.error_message(), HasSubstr("dataset.root \"/\" is outside the data roots"));

  // One stream open (the client holds it without reading): a second is refused.
  ASSERT_TRUE(WaitFor([&] { return server->manager().open_streams() == 0; }));
  auto stub = tecl::v1::DataLoader::NewStub(Channel(server->address()));
  grpc::ClientContext context;
  auto reader = stub->StreamBatches(&context, TrainRequest(TestData().good_csv));
  ClipBatch batch;
  ASSERT_TRUE(reader->Read(&batch));
  StreamResult refused = ReadStream(server->address(), TrainRequest(TestData().good_csv));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("--max_streams"));
  context.TryCancel();
  reader->Finish();
}

// Resident memory of this process (the server runs in it), from /proc/self/status.
int64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// Requests an attacker (or a broken trainer) can send: each is refused before any work, naming the
// field and its range (each call has a 10 s deadline: a request that started the work it asks
// for would end DEADLINE_EXCEEDED or with batches), and none makes the server allocate what it
// asks for.
TEST(StreamBatchesTest, HostileRequestsAreRefusedQuicklyWithBoundedMemory) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  struct Case {
    std::function<void(StreamBatchesRequest*)> mutate;
    grpc::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto* r) { r->set_start_step(kMax); r->set_step_stride(2); r->set_max_steps(3); },
       grpc::StatusCode::INVALID_ARGUMENT, "start_step: 9223372036854775807 is out of range"},
      {[](auto* r) { r->set_start_step(-1); }, grpc::StatusCode::INVALID_ARGUMENT,
       "start_step: -1 is out of range; use a value in [0, 1000000000]"},
      {[](auto* r) { r->set_step_stride(kMax); r->set_max_steps(2); },
       grpc::StatusCode::INVALID_ARGUMENT, "step_stride: 9223372036854775807 is out of range"},
      {[](auto* r) { r->set_max_steps(kMax); }, grpc::StatusCode::INVALID_ARGUMENT,
       "max_steps: 9223372036854775807 is out of range"},
      {[](auto* r) {
         r->set_world_size(std::numeric_limits<int32_t>::max());
         r->set_rank(std::numeric_limits<int32_t>::max() - 1);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "world_size: 2147483647 is out of range"},
      {[](auto* r) {
         auto* s = r->mutable_spec()->mutable_sampling();
         s->set_groups_per_batch(4096);
         s->set_crop_size(1024);
         s->set_clip_length(64);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.sampling.groups_per_batch: a batch of 8192 videos"},
      {[](auto* r) { r->mutable_spec()->mutable_sampling()->set_speeds(2, 1 << 30); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.sampling: clip_length 8 at speed 1073741824"},
      {[](auto* r) {
         r->mutable_spec()->mutable_resources()->set_prefetch_batches(
             std::numeric_limits<int32_t>::max());
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.resources.prefetch_batches: 2147483647"},
      {[](auto* r) {
         r->set_mode(tecl::v1::STREAM_MODE_EVAL);
         r->set_eval_videos_per_batch(1024);
         r->mutable_spec()->mutable_eval()->set_clips_per_video(100);
         r->mutable_spec()->mutable_sampling()->set_crop_size(1024);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.eval.clips_per_video: a message of 1024 videos"},
      {[](auto* r) {
         r->mutable_spec()->mutable_dataset()->set_root("/");
         r->mutable_spec()->mutable_dataset()->set_manifest("etc/passwd");
       },
       grpc::StatusCode::PERMISSION_DENIED, "is outside the data roots"},
  };
  const int64_t rss_before = ResidentBytes();
  for (int round = 0; round < 5; ++round) {
    for (const Case& c : cases) {
      StreamBatchesRequest request = TrainRequest(TestData().good_csv);
      c.mutate(&request);
      StreamResult result = ReadStream(server->address(), request, /*limit=*/-1,
                                       testing::kTrainerToken, absl::Seconds(10));
      EXPECT_EQ(result.status.error_code(), c.code) << c.message << ": "
                                                    << result.status.error_message();
      EXPECT_THAT(result.status.error_message(), HasSubstr(c.message));
      EXPECT_TRUE(result.batches.empty());
    }
  }
  const int64_t rss_after = ResidentBytes();
  ASSERT_GT(rss_before, 0);
  EXPECT_LT(rss_after - rss_before, int64_t{64} << 20) << "RSS " << rss_before << " -> " << rss_after;
  ASSERT_TRUE(WaitFor([&] { return server->manager().open_streams() == 0; }));

  // DescribeDataset: a path past the limit.
  auto stub = tecl::v1::DataLoader::NewStub(Channel(server->address()));
  tecl::v1::DescribeDatasetRequest describe;
  describe.mutable_dataset()->set_root(std::string(5000, 'r'));
  tecl::v1::DatasetInfo info;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  const grpc::Status status = stub->DescribeDataset(&context, describe, &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dataset.root: a path of 5000 bytes"));
}

// gRPC reads a request whole before the handler (and its token check) runs: past the 4 MiB
// receive limit it is RESOURCE_EXHAUSTED, not UNAUTHENTICATED.
TEST(StreamBatchesTest, AnOversizedRequestIsRefusedBeforeTheHandler) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  StreamBatchesRequest request = TrainRequest(TestData().good_csv);
  request.set_job_id(std::string(5 << 20, 'j'));
  StreamResult anonymous = ReadStream(server->address(), request, -1, /*token=*/"");
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << anonymous.status.error_message();
  StreamResult trainer = ReadStream(server->address(), request);
  EXPECT_EQ(trainer.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << trainer.status.error_message();
  EXPECT_EQ(server->manager().open_streams(), 0);
  request.set_job_id("it-job");
  EXPECT_EQ(ReadStream(server->address(), request, -1, "").status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

// Files inside a data root that would make FFmpeg read elsewhere (an HLS playlist naming a video
// outside the roots and an http URL, a concat list) or block a decode thread (a FIFO, a device)
// are skipped, each counted by its reason. The call's deadline is half the decode budget: a decode
// thread blocked on the FIFO (even one the budget would cut) leaves the stream DEADLINE_EXCEEDED.
TEST(StreamBatchesTest, PlaylistsListsFifosAndDevicesAreSkippedAndCounted) {
  const DataSet& data = TestData();
  std::string pattern = ::testing::TempDir() + "/dataloader_outside_XXXXXX";
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  const std::string outside = pattern;
  const std::string secret = outside + "/secret.mp4";
  std::filesystem::copy_file(data.dir + "/classes/class0/v0.mp4", secret);
  const std::string hostile = data.dir + "/hostile";
  std::filesystem::remove_all(hostile);
  std::filesystem::create_directories(hostile);
  std::ofstream(hostile + "/playlist.m3u8")
      << "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"
      << "#EXTINF:4.0,\n" << secret << "\n#EXTINF:4.0,\nhttp://127.0.0.1:9/segment.ts\n"
      << "#EXT-X-ENDLIST\n";
  std::ofstream(hostile + "/list.mp4") << "ffconcat version 1.0\nfile '" << secret << "'\n";
  ASSERT_EQ(mkfifo((hostile + "/pipe.mp4").c_str(), 0600), 0);
  ASSERT_EQ(symlink("/dev/zero", (hostile + "/zero.mp4").c_str()), 0);
  {
    std::ifstream good(data.good_csv);
    std::ofstream csv(data.dir + "/hostile.csv");
    csv << good.rdbuf();
    for (const char* name : {"playlist.m3u8", "list.mp4", "pipe.mp4", "zero.mp4"}) {
      csv << "hostile/" << name << ",class0,train\n";
    }
  }
  DataLoaderConfig config = TestConfig();
  config.loader.decode_budget = absl::Seconds(60);
  auto server = Start(config);
  ASSERT_NE(server, nullptr);
  // 12 videos (4 hostile), 4 per batch: one epoch is 3 steps and meets every video.
  StreamBatchesRequest request = TrainRequest(data.dir + "/hostile.csv");
  request.set_max_steps(6);
  StreamResult result = ReadStream(server->address(), request, /*limit=*/-1,
                                   testing::kTrainerToken, config.loader.decode_budget / 2);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.batches.size(), 6u);
  for (const ClipBatch& batch : result.batches) {
    for (const auto& info : batch.clip_info()) EXPECT_LT(info.manifest_index(), 8);
  }
  LoaderMetrics& metrics = server->manager().metrics();
  EXPECT_DOUBLE_EQ(metrics.BadFiles("format_not_allowed").Value(), 2);
  EXPECT_DOUBLE_EQ(metrics.BadFiles("not_regular_file").Value(), 2);
  EXPECT_GE(metrics.Skipped("format_not_allowed").Value(), 2);
  EXPECT_GE(metrics.Skipped("not_regular_file").Value(), 2);
  EXPECT_STREQ(server->manager().bad_videos().Lookup(hostile + "/pipe.mp4"), "not_regular_file");
  EXPECT_STREQ(server->manager().bad_videos().Lookup(hostile + "/playlist.m3u8"),
               "format_not_allowed");
  std::filesystem::remove_all(outside);
}

TEST(StreamBatchesTest, ALoaderWithoutCredentialsDoesNotStart) {
  DataLoaderConfig config = TestConfig();
  config.server.tokens.clear();
  absl::StatusOr<std::unique_ptr<DataLoaderServer>> server = DataLoaderServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(server.status().message(), HasSubstr("--insecure"));
}

TEST(StreamBatchesTest, OnlyTrainersMayStream) {
  DataLoaderConfig config = TestConfig();
  config.server.tokens = {Credential{Role::kTrainer, "trainers", "s3cret-trainer-token"},
                          Credential{Role::kUser, "alice", "user-token-0123456789"}};
  auto server = Start(config);
  ASSERT_NE(server, nullptr);
  StreamBatchesRequest request = TrainRequest(TestData().good_csv);
  request.set_max_steps(1);
  StreamResult anonymous = ReadStream(server->address(), request);
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  StreamResult wrong = ReadStream(server->address(), request, -1, "guess");
  EXPECT_EQ(wrong.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A user's token is a valid credential but not a trainer's: refused before any decoding.
  StreamResult user = ReadStream(server->address(), request, -1, "user-token-0123456789");
  EXPECT_EQ(user.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(user.status.error_message(), HasSubstr("trainer"));
  StreamResult allowed = ReadStream(server->address(), request, -1, "s3cret-trainer-token");
  EXPECT_TRUE(allowed.status.ok()) << allowed.status.error_message();
  EXPECT_EQ(allowed.batches.size(), 1u);

  auto stub = tecl::v1::DataLoader::NewStub(Channel(server->address(), false, /*token=*/""));
  tecl::v1::DescribeDatasetRequest describe;
  *describe.mutable_dataset() = request.spec().dataset();
  tecl::v1::DatasetInfo info;
  grpc::ClientContext no_token;
  EXPECT_EQ(stub->DescribeDataset(&no_token, describe, &info).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext with_token;
  with_token.AddMetadata("authorization", "Bearer s3cret-trainer-token");
  grpc::Status status = stub->DescribeDataset(&with_token, describe, &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(info.num_videos(), 8);
  EXPECT_EQ(info.num_train(), 8);
  EXPECT_THAT(info.classes(), ElementsAre("class0", "class1"));
}

TEST(StreamBatchesTest, EvalStreamCoversEveryVideoAndMarksTheLast) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  StreamBatchesRequest request = TrainRequest(TestData().mixed_csv, 2, 8, 32);
  request.set_mode(tecl::v1::STREAM_MODE_EVAL);
  request.set_eval_videos_per_batch(5);
  request.mutable_spec()->mutable_eval()->set_clips_per_video(3);
  StreamResult result = ReadStream(server->address(), request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.batches.size(), 3u);  // 12 videos, 5 per batch.
  EXPECT_TRUE(result.batches.back().last());
  int videos = 0, skipped = 0, clips = 0;
  for (const ClipBatch& batch : result.batches) {
    for (const auto& video : batch.eval_videos()) {
      ++videos;
      EXPECT_EQ(video.num_clips(), video.manifest_index() < 8 ? 3 : 0) << video.manifest_index();
      EXPECT_EQ(video.label(), video.manifest_index() < 8 ? video.manifest_index() / 4 : 0);
    }
    skipped += batch.videos_skipped();
    clips += batch.clip_info_size();
    EXPECT_EQ(batch.clips().shape(0), batch.clip_info_size());
  }
  EXPECT_EQ(videos, 12);
  EXPECT_EQ(skipped, 4);
  EXPECT_EQ(clips, 24);
}

}  // namespace
}  // namespace tecl::dataloader
