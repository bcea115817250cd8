// The seam between wire types and the trainer core: spec conversion, zero-copy batches, and the
// mapping of the core's exceptions to statuses and outcomes.
#include "services/worker/runner/job_options.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <stdexcept>

#include "services/worker/dist/communicator.h"
#include "services/worker/model/error.h"
#include "services/worker/runner/job_runner.h"

namespace tecl::worker {
namespace {

tecl::v1::JobSpec Spec() {
  tecl::v1::JobSpec spec;
  spec.set_seed(7);
  auto* m = spec.mutable_model();
  m->set_backbone("tiny3d");
  m->set_head_hidden(64);
  m->set_psi_hidden(64);
  m->set_psi_dim(32);
  m->set_projection_hidden(64);
  m->set_projection_dim(32);
  auto* w = spec.mutable_method()->mutable_weights();
  w->set_equivariance(1);
  w->set_speed(0.5);
  w->set_direction(0);
  w->set_order(1);
  w->set_instance(1);
  spec.mutable_method()->set_equivariance_temperature(0.1);
  spec.mutable_method()->set_instance_temperature(0.2);
  spec.mutable_method()->set_instance_positive(tecl::v1::INSTANCE_POSITIVE_SAME_FRAMES);
  for (int s : {1, 2, 4}) spec.mutable_sampling()->add_speeds(s);
  spec.mutable_sampling()->set_groups_per_batch(4);
  auto* o = spec.mutable_optimizer();
  o->set_name("adamw");
  o->set_lr(1e-3);
  o->set_scale_lr(true);
  o->set_weight_decay(1e-4);
  o->set_beta1(0.9);
  o->set_beta2(0.999);
  spec.mutable_schedule()->set_total_steps(100);
  spec.mutable_schedule()->set_warmup_steps(5);
  return spec;
}

TEST(TrainerOptionsFromSpecTest, CopiesEveryFieldAndDerivesTheGlobalBatch) {
  absl::StatusOr<core::TrainerOptions> o =
      TrainerOptionsFromSpec(Spec(), /*world_size=*/3, c10::Device(c10::kCPU));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model.backbone, "tiny3d");
  EXPECT_EQ(o->model.num_speeds, 3);
  EXPECT_EQ(o->model.psi_dim, 32);
  EXPECT_EQ(o->loss.weights.speed, 0.5);
  EXPECT_EQ(o->loss.weights.direction, 0);
  EXPECT_EQ(o->loss.instance_temperature, 0.2);
  EXPECT_EQ(o->loss.instance_positive, core::InstancePositive::kSameFrames);
  EXPECT_EQ(o->optimizer.lr, 1e-3);
  EXPECT_EQ(o->schedule.total_steps, 100);
  EXPECT_EQ(o->schedule.warmup_steps, 5);
  EXPECT_EQ(o->seed, 7u);
  // 3 ranks x 4 groups x 2 videos x 3 clips (same-frames positives).
  EXPECT_EQ(o->global_batch_clips, 72);
}

TEST(TrainerOptionsFromSpecTest, RefusesWhatTheCoreRefusesNamingTheField) {
  tecl::v1::JobSpec spec = Spec();
  spec.mutable_model()->set_backbone("resnet50");
  absl::StatusOr<core::TrainerOptions> o = TrainerOptionsFromSpec(spec, 1, c10::Device(c10::kCPU));
  ASSERT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("backbone"), std::string::npos) << o.status();
}

TEST(DeviceForSpecTest, CudaWithoutAGpuIsAClearError) {
  tecl::v1::JobSpec spec = Spec();
  EXPECT_TRUE(DeviceForSpec(spec, 0)->is_cpu());
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has a GPU";
  spec.mutable_resources()->set_device(tecl::v1::DEVICE_CUDA);
  absl::StatusOr<c10::Device> device = DeviceForSpec(spec, 0);
  ASSERT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(device.status().message().find("resources.device"), std::string::npos);
}

std::shared_ptr<tecl::v1::ClipBatch> TwoVideoBatch() {
  auto batch = std::make_shared<tecl::v1::ClipBatch>();
  batch->set_step(3);
  const int n = 4, t = 2, h = 3, w = 3;
  for (int d : {n, t, h, w, 3}) batch->mutable_clips()->add_shape(d);
  std::string data(n * t * h * w * 3, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 251);
  batch->mutable_clips()->set_data(data);
  for (int i = 0; i < n; ++i) {
    tecl::v1::ClipInfo* info = batch->add_clip_info();
    info->set_video(i / 2);
    info->set_group(0);
    info->set_role(i % 2 == 0 ? tecl::v1::CLIP_ROLE_A : tecl::v1::CLIP_ROLE_B);
    info->set_speed_index(i % 2 == 0 ? 0 : 2);
    info->set_reversed(i % 2 == 1);
  }
  batch->add_groups()->set_relation(tecl::v1::RELATION_OVERLAP);
  return batch;
}

TEST(BatchFromProtoTest, ViewsTheMessageBytesAndCopiesTheLabels) {
  std::shared_ptr<tecl::v1::ClipBatch> message = TwoVideoBatch();
  const void* bytes = message->clips().data().data();
  absl::StatusOr<core::Batch> batch = BatchFromProto(message);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->clips.data_ptr(), bytes) << "no copy of the clip bytes";
  EXPECT_EQ(batch->clips.sizes(), (std::vector<int64_t>{4, 2, 3, 3, 3}));
  EXPECT_EQ(batch->clips.scalar_type(), at::kByte);
  EXPECT_EQ(batch->clips.flatten()[100].item<int64_t>(), 100);
  EXPECT_TRUE(torch::equal(batch->video, torch::tensor({0, 0, 1, 1}, at::kLong)));
  EXPECT_TRUE(torch::equal(batch->role, torch::tensor({1, 2, 1, 2}, at::kLong)));
  EXPECT_TRUE(torch::equal(batch->speed_index, torch::tensor({0, 2, 0, 2}, at::kLong)));
  EXPECT_TRUE(torch::equal(batch->reversed, torch::tensor({0, 1, 0, 1}, at::kLong)));
  EXPECT_TRUE(torch::equal(batch->relation, torch::tensor({3}, at::kLong)));
  // The tensor keeps the message alive after the caller lets go.
  std::weak_ptr<tecl::v1::ClipBatch> weak = message;
  message.reset();
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(batch->clips.flatten()[7].item<int64_t>(), 7);
  batch = absl::InternalError("dropped");
  EXPECT_TRUE(weak.expired());
}

TEST(BatchFromProtoTest, RefusesInconsistentMessages) {
  auto short_data = TwoVideoBatch();
  short_data->mutable_clips()->mutable_data()->pop_back();
  EXPECT_EQ(BatchFromProto(short_data).status().code(), absl::StatusCode::kInvalidArgument);
  auto missing_info = TwoVideoBatch();
  missing_info->mutable_clip_info()->RemoveLast();
  absl::Status status = BatchFromProto(missing_info).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("clip_info"), std::string::npos) << status;
  auto not_rgb = TwoVideoBatch();
  not_rgb->mutable_clips()->set_shape(4, 4);
  EXPECT_EQ(BatchFromProto(not_rgb).status().code(), absl::StatusCode::kInvalidArgument);
}

absl::Status Caught(const std::function<void()>& f) {
  try {
    f();
  } catch (...) {
    return StatusFromCurrentException("step 3");
  }
  return absl::OkStatus();
}

TEST(StatusFromCurrentExceptionTest, MapsEachKindAndPrefixesTheContext) {
  absl::Status s =
      Caught([] { throw core::Error(core::ErrorCode::kDataLoss, "checkpoint x: bad"); });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "step 3: checkpoint x: bad");
  EXPECT_EQ(Caught([] { throw dist::CollectiveError("peer died"); }).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(Caught([] { throw dist::CollectiveTimeoutError("slow"); }).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(Caught([] { throw std::invalid_argument("x"); }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Caught([] { TORCH_CHECK(false, "kernel failed"); }).code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(Caught([] { throw 42; }).code(), absl::StatusCode::kInternal);
}

TEST(OutcomeForStatusTest, RestartsOnlyWhatARestartCanFix) {
  EXPECT_EQ(OutcomeForStatus(absl::UnavailableError("peer")), tecl::v1::OUTCOME_FAILED);
  EXPECT_EQ(OutcomeForStatus(absl::InternalError("oom")), tecl::v1::OUTCOME_FAILED);
  EXPECT_EQ(OutcomeForStatus(absl::DeadlineExceededError("t")), tecl::v1::OUTCOME_FAILED);
  EXPECT_EQ(OutcomeForStatus(absl::InvalidArgumentError("spec")), tecl::v1::OUTCOME_FATAL);
  EXPECT_EQ(OutcomeForStatus(absl::DataLossError("ckpt")), tecl::v1::OUTCOME_FATAL);
  EXPECT_EQ(OutcomeForStatus(absl::FailedPreconditionError("nan")), tecl::v1::OUTCOME_FATAL);
  EXPECT_EQ(OutcomeForStatus(absl::OkStatus()), tecl::v1::OUTCOME_SUCCEEDED);
}

}  // namespace
}  // namespace tecl::worker
