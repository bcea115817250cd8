// The coordinator's spec validation and the dataloader's request validation apply the same work
// limits (services/common/work_limits.h): a spec at each limit is accepted by both, and one step
// past it is refused by both, naming the same field. A gang is thus never placed for a spec its
// dataloaders would refuse.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/work_limits.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/dataloader/pipeline/stream_config.h"

namespace tecl {
namespace {

using ::testing::HasSubstr;
namespace limits = ::tecl::work_limits;

tecl::v1::JobSpec Spec(tecl::v1::JobKind kind, const char* backbone = "tiny3d") {
  tecl::v1::JobSpec spec = coordinator::DefaultJobSpec(kind, backbone);
  spec.set_name("limits");
  spec.mutable_dataset()->set_root("/data/videos");
  spec.mutable_dataset()->set_train_list("trainlist.txt");
  spec.mutable_dataset()->set_test_list("testlist.txt");
  if (kind == tecl::v1::JOB_KIND_EVAL) spec.mutable_eval()->set_random_init(true);
  return spec;
}

absl::Status Coordinator(const tecl::v1::JobSpec& spec) {
  return coordinator::ValidateJobSpec(spec, coordinator::SpecLimits());
}

absl::Status Dataloader(const tecl::v1::JobSpec& spec) {
  tecl::v1::StreamBatchesRequest request;
  request.set_job_id("job-000001");
  *request.mutable_spec() = spec;
  request.set_rank(0);
  request.set_world_size(1);
  request.set_mode(spec.kind() == tecl::v1::JOB_KIND_EVAL ? tecl::v1::STREAM_MODE_EVAL
                                                           : tecl::v1::STREAM_MODE_TRAIN);
  return dataloader::StreamConfigFromRequest(request).status();
}

struct Limit {
  const char* name;
  tecl::v1::JobKind kind;
  const char* field;  // Named by both when refused.
  std::function<void(tecl::v1::JobSpec*)> at;    // The spec at the limit.
  std::function<void(tecl::v1::JobSpec*)> past;  // The same, one step past it.
};

void Speeds(tecl::v1::JobSpec* spec, std::vector<int> speeds) {
  spec->mutable_sampling()->clear_speeds();
  for (int s : speeds) spec->mutable_sampling()->add_speeds(s);
}

std::vector<Limit> Limits() {
  constexpr auto kTrain = tecl::v1::JOB_KIND_PRETRAIN;
  constexpr auto kEval = tecl::v1::JOB_KIND_EVAL;
  auto sampling = [](tecl::v1::JobSpec* s) { return s->mutable_sampling(); };
  return {
      {"longest clip", kTrain, "sampling.clip_length",
       [=](auto* s) { sampling(s)->set_clip_length(limits::kMaxClipLength); Speeds(s, {1, 2}); },
       [=](auto* s) { sampling(s)->set_clip_length(limits::kMaxClipLength + 1); Speeds(s, {1, 2}); }},
      {"largest crop", kTrain, "sampling.crop_size",
       [=](auto* s) { sampling(s)->set_crop_size(limits::kMaxCropSize); sampling(s)->set_clip_length(2); },
       [=](auto* s) { sampling(s)->set_crop_size(limits::kMaxCropSize + 1); sampling(s)->set_clip_length(2); }},
      {"smallest crop", kTrain, "sampling.crop_size",
       [=](auto* s) { sampling(s)->set_crop_size(limits::kMinCropSize); },
       [=](auto* s) { sampling(s)->set_crop_size(limits::kMinCropSize - 1); }},
      {"most speeds", kTrain, "sampling.speeds",
       [=](auto* s) { Speeds(s, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}); },
       [=](auto* s) { Speeds(s, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}); }},
      // (8 - 1) x 73 + 1 = 512 source frames; x 74 spans 519.
      {"longest span", kTrain, "sampling",
       [=](auto* s) { sampling(s)->set_clip_length(8); Speeds(s, {1, 73}); },
       [=](auto* s) { sampling(s)->set_clip_length(8); Speeds(s, {1, 74}); }},
      {"most groups", kTrain, "sampling.groups_per_batch",
       [=](auto* s) { sampling(s)->set_groups_per_batch(limits::kMaxGroupsPerBatch); sampling(s)->set_clip_length(1); sampling(s)->set_crop_size(16); },
       [=](auto* s) { sampling(s)->set_groups_per_batch(limits::kMaxGroupsPerBatch + 1); sampling(s)->set_clip_length(1); sampling(s)->set_crop_size(16); }},
      // 2 x 5 groups x 2 clips x 16 frames x 512 x 512 x 3 = 240 MiB exactly; 6 groups exceed it.
      {"largest train batch", kTrain, "sampling.groups_per_batch",
       [=](auto* s) { sampling(s)->set_groups_per_batch(5); sampling(s)->set_clip_length(16); sampling(s)->set_crop_size(512); },
       [=](auto* s) { sampling(s)->set_groups_per_batch(6); sampling(s)->set_clip_length(16); sampling(s)->set_crop_size(512); }},
      {"most prefetch", kTrain, "resources.prefetch_batches",
       [=](auto* s) { s->mutable_resources()->set_prefetch_batches(limits::kMaxPrefetchBatches); },
       [=](auto* s) { s->mutable_resources()->set_prefetch_batches(limits::kMaxPrefetchBatches + 1); }},
      {"highest fps", kTrain, "dataset.fps",
       [=](auto* s) { s->mutable_dataset()->set_fps(limits::kMaxFps); },
       [=](auto* s) { s->mutable_dataset()->set_fps(limits::kMaxFps + 0.001); }},
      {"largest short side", kTrain, "dataset.short_side",
       [=](auto* s) { s->mutable_dataset()->set_short_side(limits::kMaxShortSide); },
       [=](auto* s) { s->mutable_dataset()->set_short_side(limits::kMaxShortSide + 1); }},
      {"longest path", kTrain, "dataset.manifest",
       [=](auto* s) { s->mutable_dataset()->set_manifest(std::string(limits::kMaxPathBytes, 'm')); },
       [=](auto* s) { s->mutable_dataset()->set_manifest(std::string(limits::kMaxPathBytes + 1, 'm')); }},
      {"most steps", kTrain, "schedule.total_steps",
       [=](auto* s) { s->mutable_schedule()->set_total_steps(limits::kMaxSteps); },
       [=](auto* s) { s->mutable_schedule()->set_total_steps(limits::kMaxSteps + 1); }},
      {"largest hue", kTrain, "augment.hue",
       [=](auto* s) { s->mutable_augment()->set_hue(0.5); },
       [=](auto* s) { s->mutable_augment()->set_hue(0.5001); }},
      {"most eval clips", kEval, "eval.clips_per_video",
       [=](auto* s) { s->mutable_eval()->set_clips_per_video(limits::kMaxEvalClipsPerVideo); },
       [=](auto* s) { s->mutable_eval()->set_clips_per_video(limits::kMaxEvalClipsPerVideo + 1); }},
      // 8 videos x 10 clips x 4 frames x 512 x 512 x 3 = 240 MiB exactly; 11 clips exceed it.
      {"largest eval message", kEval, "eval.clips_per_video",
       [=](auto* s) { s->mutable_eval()->set_clips_per_video(10); sampling(s)->set_clip_length(4); sampling(s)->set_crop_size(512); },
       [=](auto* s) { s->mutable_eval()->set_clips_per_video(11); sampling(s)->set_clip_length(4); sampling(s)->set_crop_size(512); }},
  };
}

TEST(LimitsAgreementTest, AtEachLimitBothAcceptAndOnePastBothRefuseNamingTheField) {
  for (const Limit& limit : Limits()) {
    tecl::v1::JobSpec at = Spec(limit.kind);
    limit.at(&at);
    EXPECT_TRUE(Coordinator(at).ok()) << limit.name << ": " << Coordinator(at);
    EXPECT_TRUE(Dataloader(at).ok()) << limit.name << ": " << Dataloader(at);

    tecl::v1::JobSpec past = Spec(limit.kind);
    limit.past(&past);
    const absl::Status coordinator = Coordinator(past);
    const absl::Status dataloader = Dataloader(past);
    EXPECT_EQ(coordinator.code(), absl::StatusCode::kInvalidArgument) << limit.name;
    EXPECT_EQ(dataloader.code(), absl::StatusCode::kInvalidArgument) << limit.name;
    EXPECT_THAT(std::string(coordinator.message()), HasSubstr(std::string(limit.field) + ":"))
        << limit.name;
    EXPECT_THAT(std::string(dataloader.message()),
                HasSubstr("spec." + std::string(limit.field) + ":"))
        << limit.name;
  }
}

TEST(LimitsAgreementTest, TheDefaultSpecsOfBothPresetsPassBoth) {
  for (const char* backbone : {"tiny3d", "r2plus1d_18"}) {
    for (tecl::v1::JobKind kind : {tecl::v1::JOB_KIND_PRETRAIN, tecl::v1::JOB_KIND_EVAL}) {
      const tecl::v1::JobSpec spec = Spec(kind, backbone);
      EXPECT_TRUE(Coordinator(spec).ok()) << backbone << ": " << Coordinator(spec);
      EXPECT_TRUE(Dataloader(spec).ok()) << backbone << ": " << Dataloader(spec);
    }
  }
}

}  // namespace
}  // namespace tecl
