// The shared work limits: overflow-checked sizes and CheckStreamWork on hostile specs (every
// number at its extreme gives a problem naming the field, never a wrapped size).
#include "services/common/work_limits.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/checked_math.h"

namespace tecl::work_limits {
namespace {

using ::testing::Contains;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();
constexpr int32_t kMax32 = std::numeric_limits<int32_t>::max();
constexpr int32_t kMin32 = std::numeric_limits<int32_t>::min();

tecl::v1::JobSpec ValidSpec() {
  tecl::v1::JobSpec spec;
  spec.mutable_dataset()->set_root("/data/x");
  auto* s = spec.mutable_sampling();
  s->set_clip_length(16);
  s->set_crop_size(112);
  for (int speed : {1, 2, 4, 8}) s->add_speeds(speed);
  s->set_groups_per_batch(8);
  spec.mutable_method()->set_instance_positive(tecl::v1::INSTANCE_POSITIVE_OTHER_CLIP);
  auto* a = spec.mutable_augment();
  a->set_crop_area_min(0.2);
  a->set_crop_area_max(1);
  a->set_aspect_min(0.75);
  a->set_aspect_max(1.333);
  spec.mutable_schedule()->set_total_steps(1000);
  spec.mutable_resources()->set_prefetch_batches(4);
  spec.mutable_eval()->set_clips_per_video(10);
  return spec;
}

std::vector<std::string> Fields(const std::vector<Problem>& problems) {
  std::vector<std::string> fields;
  for (const Problem& p : problems) fields.push_back(p.field);
  return fields;
}

TEST(CheckedMathTest, ReportsOverflowInsteadOfWrapping) {
  EXPECT_EQ(CheckedAdd<int64_t>(2, 3), 5);
  EXPECT_EQ(CheckedAdd<int64_t>(kMax64, 1), std::nullopt);
  EXPECT_EQ(CheckedMul<int64_t>(kMax64, 2), std::nullopt);
  EXPECT_EQ(CheckedMul<int64_t>(-kMax64, 1), -kMax64);
  EXPECT_EQ(CheckedMul<int32_t>(kMax32, 2), std::nullopt);
  EXPECT_EQ(CheckedProduct<int64_t>({2, 3, 7}), 42);
  EXPECT_EQ(CheckedProduct<int64_t>({kMax32, kMax32, kMax32}), std::nullopt);
}

TEST(WorkLimitsTest, SpansAndBatchBytes) {
  EXPECT_EQ(ClipSpanFrames(16, 8), 121);
  EXPECT_EQ(ClipSpanFrames(1, kMax64), 1);
  EXPECT_EQ(ClipSpanFrames(kMax64, kMax64), kMax64);  // Saturates.
  tecl::v1::SamplingSpec s = ValidSpec().sampling();
  EXPECT_EQ(TrainBatchBytes(s, false), int64_t{2} * 8 * 2 * 16 * 112 * 112 * 3);
  EXPECT_EQ(TrainBatchBytes(s, true), int64_t{2} * 8 * 3 * 16 * 112 * 112 * 3);
  EXPECT_EQ(EvalBatchBytes(s, 10, 8), int64_t{8} * 10 * 16 * 112 * 112 * 3);
  s.set_groups_per_batch(kMax32);
  s.set_clip_length(kMax32);
  s.set_crop_size(kMax32);
  EXPECT_EQ(TrainBatchBytes(s, true), std::nullopt);
  EXPECT_EQ(EvalBatchBytes(s, kMax32, kMax32), std::nullopt);
}

TEST(WorkLimitsTest, AValidSpecHasNoProblemInEitherMode) {
  EXPECT_THAT(CheckStreamWork(ValidSpec(), tecl::v1::STREAM_MODE_TRAIN), IsEmpty());
  EXPECT_THAT(CheckStreamWork(ValidSpec(), tecl::v1::STREAM_MODE_EVAL), IsEmpty());
}

TEST(WorkLimitsTest, ExtremeValuesAreNamedWithTheirRangeAndNeverOverflow) {
  for (int32_t extreme : {kMax32, kMin32, -1, 0}) {
    tecl::v1::JobSpec spec = ValidSpec();
    auto* s = spec.mutable_sampling();
    s->set_clip_length(extreme);
    s->set_crop_size(extreme);
    s->set_groups_per_batch(extreme);
    s->set_speeds(3, extreme);
    spec.mutable_resources()->set_prefetch_batches(extreme);
    spec.mutable_eval()->set_clips_per_video(extreme);
    spec.mutable_dataset()->set_short_side(extreme);
    spec.mutable_schedule()->set_total_steps(extreme == kMax32 ? kMax64 : extreme);
    const std::vector<Problem> train = CheckStreamWork(spec, tecl::v1::STREAM_MODE_TRAIN);
    const std::vector<Problem> eval = CheckStreamWork(spec, tecl::v1::STREAM_MODE_EVAL, kMax32);
    const std::vector<std::string> fields = Fields(train);
    EXPECT_THAT(fields, Contains("sampling.clip_length")) << extreme;
    EXPECT_THAT(fields, Contains("sampling.crop_size")) << extreme;
    EXPECT_THAT(fields, Contains("sampling.groups_per_batch")) << extreme;
    EXPECT_THAT(fields, Contains("resources.prefetch_batches")) << extreme;
    EXPECT_THAT(fields, Contains("schedule.total_steps")) << extreme;
    EXPECT_THAT(Fields(eval), Contains("eval.clips_per_video")) << extreme;
    if (extreme != 0) {
      EXPECT_THAT(fields, Contains("dataset.short_side")) << extreme;
    }
  }
  tecl::v1::JobSpec spec = ValidSpec();
  spec.mutable_sampling()->set_crop_size(1024);
  spec.mutable_sampling()->set_clip_length(32);
  spec.mutable_sampling()->set_groups_per_batch(4096);
  EXPECT_THAT(CheckStreamWork(spec, tecl::v1::STREAM_MODE_TRAIN),
              Contains(AllOf(Field(&Problem::field, "sampling.groups_per_batch"),
                             Field(&Problem::message, HasSubstr("more than 251658240")))));
  spec = ValidSpec();
  spec.mutable_dataset()->set_fps(std::numeric_limits<double>::quiet_NaN());
  EXPECT_THAT(Fields(CheckStreamWork(spec, tecl::v1::STREAM_MODE_TRAIN)), Contains("dataset.fps"));
}

TEST(WorkLimitsTest, ModeChoosesWhichFieldsMatter) {
  tecl::v1::JobSpec spec = ValidSpec();
  spec.mutable_augment()->set_hue(0.9);         // TRAIN only.
  spec.mutable_eval()->set_clips_per_video(0);  // EVAL only.
  EXPECT_THAT(Fields(CheckStreamWork(spec, tecl::v1::STREAM_MODE_TRAIN)),
              testing::ElementsAre("augment.hue"));
  EXPECT_THAT(Fields(CheckStreamWork(spec, tecl::v1::STREAM_MODE_EVAL)),
              testing::ElementsAre("eval.clips_per_video"));
}

TEST(WorkLimitsTest, DatasetPathsAreBounded) {
  tecl::v1::DatasetSpec dataset;
  dataset.set_root(std::string(kMaxPathBytes, 'r'));
  EXPECT_THAT(CheckDataset(dataset), IsEmpty());
  dataset.set_manifest(std::string(kMaxPathBytes + 1, 'm'));
  ASSERT_EQ(CheckDataset(dataset).size(), 1u);
  EXPECT_EQ(CheckDataset(dataset)[0].field, "dataset.manifest");
  EXPECT_THAT(CheckDataset(dataset)[0].message, HasSubstr("4097 bytes is longer than 4096"));
}

}  // namespace
}  // namespace tecl::work_limits
