// StreamBatches requests as a dataloader receives them (serialized tecl.v1.StreamBatchesRequest):
// StreamConfigFromRequest, then, for an accepted request, the first batch's plan as the batch
// builder makes it (samplers over an in-memory manifest, videos of the shortest usable length and
// of 1000 frames): what validation lets through must be safe to plan.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "services/dataloader/pipeline/batch_plan.h"
#include "services/dataloader/pipeline/stream_config.h"
#include "tecl/v1/dataloader.pb.h"

namespace {

using namespace tecl::dataloader;

// Most videos the in-memory manifest may hold (a request for more ranks is validated only).
constexpr int64_t kMaxVideos = 4096;

std::shared_ptr<const Manifest> MakeManifest(int64_t videos) {
  auto manifest = std::make_shared<Manifest>();
  manifest->root = "/data/set";
  manifest->classes = {"a", "b"};
  for (int64_t i = 0; i < videos; ++i) {
    VideoEntry entry;
    entry.path = "/data/set/v" + std::to_string(i) + ".mp4";
    entry.label = static_cast<int32_t>(i % 2);
    entry.split = i % 4 == 3 ? Split::kTest : Split::kTrain;
    manifest->videos.push_back(std::move(entry));
  }
  return manifest;
}

tecl::video::VideoInfo Info(int64_t frames) {
  tecl::video::VideoInfo info;
  info.width = 320;
  info.height = 240;
  info.num_frames = frames;
  info.fps = 25;
  return info;
}

void PlanTrain(const StreamConfig& config) {
  const int64_t videos = int64_t{config.train.world_size} * config.train.videos_per_batch() * 2;
  if (videos > kMaxVideos) return;
  absl::StatusOr<std::shared_ptr<const TrainSampler>> sampler =
      TrainSampler::Create(MakeManifest(videos), config.dataset.split(), config.train);
  if (!sampler.ok()) return;
  const StepPosition position = (*sampler)->schedule().Locate(config.start_step);
  for (int slot = 0; slot < config.train.videos_per_batch(); ++slot) {
    (void)(*sampler)->Candidate(position, slot, 0);
  }
  for (const int64_t frames : {(*sampler)->min_frames(), int64_t{1000}}) {
    const VideoChoice first{0, Info(frames)}, second{1, Info(frames)};
    if (!(*sampler)->LongEnough(first.info)) continue;
    (void)(*sampler)->PlanGroup(position, 0, first, second);
  }
}

void PlanEval(const StreamConfig& config) {
  EvalSampler sampler(MakeManifest(3 * config.eval.videos_per_batch), config.eval);
  if (config.start_step >= sampler.num_batches()) return;
  const std::vector<int64_t> videos = sampler.VideosOf(config.start_step);
  for (const int64_t frames : {int64_t{1}, int64_t{config.eval.clip_length}, int64_t{1000}}) {
    if (!videos.empty()) (void)sampler.PlanVideo(0, videos[0], Info(frames));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tecl::v1::StreamBatchesRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  absl::StatusOr<StreamConfig> config = StreamConfigFromRequest(request);
  if (!config.ok()) return 0;
  if (config->mode == tecl::v1::STREAM_MODE_EVAL) {
    PlanEval(*config);
  } else {
    PlanTrain(*config);
  }
  return 0;
}
