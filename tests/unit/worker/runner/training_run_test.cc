// RunTrainingJob end to end inside one process: the ranks of a job run in threads on one
// dist::FakeWorld, read synthetic motion batches in the dataloader's wire layout (uint8 THWC
// clips, clip_info labels, group relations, step numbers) from an in-memory BatchSource, and
// report to a fake RunContext that records progress and checkpoints and can order a stop.
// tiny3d on 8 clips of 4 frames 16x16: a step takes milliseconds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "services/common/metrics.h"
#include "services/worker/dist/fake_communicator.h"
#include "services/worker/runner/batch_source.h"
#include "services/worker/runner/communicator_factory.h"
#include "services/worker/runner/job_options.h"
#include "services/worker/runner/job_runner.h"
#include "services/worker/runner/worker_agent.h"
#include "services/worker/train/checkpoint.h"
#include "services/worker/train/fault_injecting_env.h"
#include "services/worker/train/sealed_file.h"
#include "services/worker/train/synthetic_batches.h"
#include "services/worker/train/trainer.h"

namespace tecl::worker {
namespace {

namespace fs = std::filesystem;
using tecl::v1::ClipBatch;
using tecl::v1::JobSpec;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kJobId[] = "job-1";
constexpr int kAttempt = 3;

JobSpec SmallSpec(int64_t total_steps) {
  JobSpec spec;
  spec.set_kind(tecl::v1::JOB_KIND_PRETRAIN);
  spec.set_seed(7);
  auto* model = spec.mutable_model();
  model->set_backbone("tiny3d");
  model->set_head_hidden(16);
  model->set_psi_hidden(16);
  model->set_psi_dim(8);
  model->set_projection_hidden(16);
  model->set_projection_dim(8);
  auto* method = spec.mutable_method();
  method->mutable_weights()->set_equivariance(1);
  method->mutable_weights()->set_speed(1);
  method->mutable_weights()->set_direction(1);
  method->mutable_weights()->set_order(1);
  method->mutable_weights()->set_instance(1);
  method->set_equivariance_temperature(0.1);
  method->set_instance_temperature(0.1);
  method->set_instance_positive(tecl::v1::INSTANCE_POSITIVE_OTHER_CLIP);
  auto* sampling = spec.mutable_sampling();
  sampling->set_clip_length(4);
  sampling->set_crop_size(16);
  for (int speed : {1, 2, 4, 8}) sampling->add_speeds(speed);
  sampling->set_groups_per_batch(2);  // 8 clips per rank and step.
  auto* optimizer = spec.mutable_optimizer();
  optimizer->set_name("adamw");
  optimizer->set_lr(1e-3);
  optimizer->set_weight_decay(0.05);
  optimizer->set_beta1(0.9);
  optimizer->set_beta2(0.999);
  optimizer->set_grad_clip_norm(1.0);
  auto* schedule = spec.mutable_schedule();
  schedule->set_total_steps(total_steps);
  schedule->set_warmup_steps(2);
  schedule->set_final_lr_ratio(0.1);
  schedule->set_log_interval(2);
  auto* resources = spec.mutable_resources();
  resources->set_trainers(2);
  resources->set_device(tecl::v1::DEVICE_CPU);
  resources->set_threads_per_trainer(1);
  resources->set_prefetch_batches(1);
  spec.mutable_checkpoint()->set_interval_steps(2);
  spec.mutable_checkpoint()->set_keep(2);
  spec.mutable_restart()->set_collective_timeout_s(120);
  spec.mutable_distributed()->set_bucket_size_mb(0.05);  // Several buckets.
  return spec;
}

// The batch of (rank, step) as a dataloader sends it: a pure function of (seed, rank, step).
ClipBatch SyntheticClipBatch(const JobSpec& spec, int rank, int64_t step) {
  core::SyntheticMotionOptions options;
  options.groups = spec.sampling().groups_per_batch();
  options.clip_length = spec.sampling().clip_length();
  options.size = spec.sampling().crop_size();
  options.speeds.assign(spec.sampling().speeds().begin(), spec.sampling().speeds().end());
  options.video_frames = 80;
  const core::Batch batch =
      core::MakeSyntheticMotionBatch(options, spec.seed() * 1000003 + rank * 10007 + step);
  ClipBatch message;
  message.set_step(step);
  message.set_epoch(step / 3);
  const at::Tensor clips = batch.clips.contiguous();
  for (int64_t d : clips.sizes()) message.mutable_clips()->add_shape(d);
  message.mutable_clips()->set_data(static_cast<const char*>(clips.data_ptr()),
                                    static_cast<size_t>(clips.numel()));
  const auto video = batch.video.accessor<int64_t, 1>();
  const auto group = batch.group.accessor<int64_t, 1>();
  const auto role = batch.role.accessor<int64_t, 1>();
  const auto speed = batch.speed_index.accessor<int64_t, 1>();
  const auto reversed = batch.reversed.accessor<int64_t, 1>();
  for (int64_t i = 0; i < clips.size(0); ++i) {
    tecl::v1::ClipInfo* info = message.add_clip_info();
    info->set_video(static_cast<int>(video[i]));
    info->set_group(static_cast<int>(group[i]));
    info->set_role(static_cast<tecl::v1::ClipRole>(role[i]));
    info->set_speed_index(static_cast<int>(speed[i]));
    info->set_reversed(reversed[i] != 0);
  }
  const auto relation = batch.relation.accessor<int64_t, 1>();
  for (int64_t g = 0; g < batch.relation.size(0); ++g) {
    message.add_groups()->set_relation(static_cast<tecl::v1::Relation>(relation[g]));
  }
  return message;
}

// Steps [start_step, end_step) of one rank, built on demand; `tamper` may edit a batch.
class SyntheticBatchSource final : public BatchSource {
 public:
  using Tamper = std::function<void(int rank, ClipBatch* batch)>;
  SyntheticBatchSource(BatchStreamOptions options, Tamper tamper)
      : options_(std::move(options)), tamper_(std::move(tamper)), next_(options_.start_step) {}

  absl::StatusOr<ClipBatch> Next() override {
    if (cancelled_) return absl::CancelledError("batch source cancelled");
    if (next_ >= options_.end_step) return absl::OutOfRangeError("past the last step");
    ClipBatch batch = SyntheticClipBatch(options_.spec, options_.rank, next_++);
    if (tamper_) tamper_(options_.rank, &batch);
    return batch;
  }
  void Cancel() override { cancelled_ = true; }

 private:
  const BatchStreamOptions options_;
  const Tamper tamper_;
  int64_t next_;
  std::atomic<bool> cancelled_{false};
};

// A FakeWorld rank that, like a real communicator, closes its side of the group when dropped:
// peers blocked in a collective with it fail at once instead of waiting for the timeout.
class ClosingCommunicator final : public dist::Communicator {
 public:
  ClosingCommunicator(std::shared_ptr<dist::FakeWorld> world, int rank)
      : world_(std::move(world)), rank_(rank), fake_(world_->ForRank(rank)) {}
  ~ClosingCommunicator() override { world_->Kill(rank_); }

  int rank() const override { return fake_->rank(); }
  int world_size() const override { return fake_->world_size(); }
  std::string backend_name() const override { return fake_->backend_name(); }
  std::chrono::milliseconds timeout() const override { return fake_->timeout(); }
  std::unique_ptr<dist::CollectiveHandle> AllReduceAverage(at::Tensor tensor) override {
    return fake_->AllReduceAverage(tensor);
  }
  std::unique_ptr<dist::CollectiveHandle> AllGather(at::Tensor input, at::Tensor output) override {
    return fake_->AllGather(input, output);
  }
  std::unique_ptr<dist::CollectiveHandle> Broadcast(at::Tensor tensor, int root) override {
    return fake_->Broadcast(tensor, root);
  }
  void Barrier() override { fake_->Barrier(); }

 private:
  const std::shared_ptr<dist::FakeWorld> world_;
  const int rank_;
  const std::shared_ptr<dist::Communicator> fake_;
};

// A stop order: for the whole job (every rank's context shares one) or for one rank.
class StopOrder {
 public:
  void Request(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!requested_) reason_ = reason;
    requested_ = true;
  }
  bool requested() const { return requested_; }
  std::string reason() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }

 private:
  mutable std::mutex mu_;
  std::atomic<bool> requested_{false};
  std::string reason_;
};

// Records what a rank reports; hooks run on the rank's thread.
class FakeRunContext final : public RunContext {
 public:
  explicit FakeRunContext(std::shared_ptr<StopOrder> job_stop) : job_stop_(std::move(job_stop)) {}

  bool StopRequested() const override { return job_stop_->requested() || rank_stop_.requested(); }
  std::string StopReason() const override {
    return job_stop_->requested() ? job_stop_->reason() : rank_stop_.reason();
  }
  void ReportProgress(tecl::v1::TrainerStatus status, const tecl::v1::JobProgress& progress, double,
                      double, double) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      statuses_.push_back(status);
      steps_.push_back(progress.step());
      last_progress_ = progress;
    }
    if (on_progress) on_progress(progress);
  }
  absl::Status RegisterCheckpoint(const tecl::v1::Checkpoint& checkpoint) override {
    if (on_checkpoint) on_checkpoint(checkpoint);
    std::lock_guard<std::mutex> lock(mu_);
    checkpoints_.push_back(checkpoint);
    return absl::OkStatus();
  }
  absl::Status RejectCheckpoint(const tecl::v1::Checkpoint& checkpoint,
                                const std::string& reason) override {
    std::lock_guard<std::mutex> lock(mu_);
    rejected_.push_back({checkpoint.step(), reason});
    return absl::OkStatus();
  }
  std::string session() const override { return "session-of-this-rank"; }
  DataloaderList Dataloaders() const override { return dataloaders; }
  std::vector<std::pair<int64_t, std::string>> rejected() const {
    std::lock_guard<std::mutex> lock(mu_);
    return rejected_;
  }

  // This rank alone stops (as if its process went away).
  void StopThisRank(const std::string& reason) { rank_stop_.Request(reason); }

  std::vector<tecl::v1::Checkpoint> registered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return checkpoints_;
  }
  std::vector<int64_t> registered_steps() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> steps;
    for (const auto& c : checkpoints_) steps.push_back(c.step());
    return steps;
  }
  std::vector<int64_t> reported_steps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_;
  }
  std::vector<tecl::v1::TrainerStatus> statuses() const {
    std::lock_guard<std::mutex> lock(mu_);
    return statuses_;
  }
  tecl::v1::JobProgress last_progress() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_progress_;
  }

  std::function<void(const tecl::v1::JobProgress&)> on_progress;
  std::function<void(const tecl::v1::Checkpoint&)> on_checkpoint;
  DataloaderList dataloaders;  // The assignment's, set by the harness.

 private:
  const std::shared_ptr<StopOrder> job_stop_;
  std::vector<std::pair<int64_t, std::string>> rejected_;
  StopOrder rank_stop_;
  mutable std::mutex mu_;
  std::vector<tecl::v1::TrainerStatus> statuses_;
  std::vector<int64_t> steps_;
  tecl::v1::JobProgress last_progress_;
  std::vector<tecl::v1::Checkpoint> checkpoints_;
};

// One job: `world_size` ranks of `spec`, each in its own thread, on one FakeWorld.
class FakeJob {
 public:
  FakeJob(JobSpec spec, int world_size, std::string checkpoint_dir)
      : spec_(std::move(spec)),
        world_size_(world_size),
        checkpoint_dir_(std::move(checkpoint_dir)),
        world(dist::FakeWorld::Create(world_size, std::chrono::seconds(120))) {
    for (int rank = 0; rank < world_size; ++rank) {
      contexts.push_back(std::make_unique<FakeRunContext>(stop));
    }
  }

  // Runs every rank to its end; returns the outcomes by rank.
  std::vector<JobOutcome> Run() {
    JobRunnerOptions options;
    options.registry = &registry_;
    options.env = env;
    options.batch_sources = [this](const BatchStreamOptions& stream,
                                   const std::vector<std::string>& addresses) {
      std::lock_guard<std::mutex> lock(mu_);
      streams.push_back(stream);
      loader_addresses.push_back(addresses);
      return std::make_unique<SyntheticBatchSource>(stream, tamper);
    };
    options.communicators = [this](const CommunicatorRequest& request) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests.push_back(request);
      }
      return std::make_shared<ClosingCommunicator>(world, request.rank);
    };
    std::vector<tecl::v1::Assignment> assignments(world_size_);
    std::vector<JobOutcome> outcomes(world_size_);
    std::vector<std::thread> threads;
    for (int rank = 0; rank < world_size_; ++rank) {
      tecl::v1::Assignment& a = assignments[rank];
      a.set_job_id(kJobId);
      a.set_attempt(kAttempt);
      a.set_rank(rank);
      a.set_world_size(world_size_);
      *a.mutable_spec() = spec_;
      a.add_dataloader_addresses("loader-" + std::to_string(rank));
      contexts[rank]->dataloaders = {0, {"loader-" + std::to_string(rank)}};
      a.set_checkpoint_dir(checkpoint_dir_);
      a.mutable_resume_from()->set_path(resume_from);
      for (const tecl::v1::Checkpoint& c : candidates) *a.add_resume_candidates() = c;
      if (!candidates.empty()) *a.mutable_resume_from() = candidates.front();
    }
    for (int rank = 0; rank < world_size_; ++rank) {
      threads.emplace_back([&, rank] {
        outcomes[rank] = RunTrainingJob(assignments[rank], contexts[rank].get(), options);
      });
    }
    for (std::thread& thread : threads) thread.join();
    return outcomes;
  }

  FakeRunContext& context(int rank) { return *contexts[rank]; }

 private:
  const JobSpec spec_;
  const int world_size_;
  const std::string checkpoint_dir_;
  metrics::Registry registry_;
  std::mutex mu_;

 public:
  std::shared_ptr<dist::FakeWorld> world;
  std::shared_ptr<StopOrder> stop = std::make_shared<StopOrder>();
  std::vector<std::unique_ptr<FakeRunContext>> contexts;
  std::string resume_from;
  // The assignment's resume_candidates, newest first (resume_from becomes the first).
  std::vector<tecl::v1::Checkpoint> candidates;
  core::Env* env = core::Env::Default();
  SyntheticBatchSource::Tamper tamper;
  // What the runner asked the factories for (guarded by mu_ while the job runs).
  std::vector<CommunicatorRequest> requests;
  std::vector<BatchStreamOptions> streams;
  std::vector<std::vector<std::string>> loader_addresses;
};

class TrainingRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tecl_training_run_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Dir(const std::string& name) const { return (dir_ / name).string(); }
  static std::vector<std::string> Names(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  // A trainer of `spec` (2 ranks) holding the checkpoint at `path`.
  static std::unique_ptr<core::Trainer> Load(const JobSpec& spec, const std::string& path) {
    absl::StatusOr<core::TrainerOptions> options =
        TrainerOptionsFromSpec(spec, 2, c10::Device(c10::kCPU));
    EXPECT_TRUE(options.ok()) << options.status();
    auto trainer = std::make_unique<core::Trainer>(*options);
    core::LoadCheckpoint(path, *trainer);
    return trainer;
  }

  fs::path dir_;
};

std::vector<std::pair<std::string, at::Tensor>> StateOf(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : module.named_parameters()) out.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) out.emplace_back(item.key(), item.value());
  return out;
}

TEST_F(TrainingRunTest, CheckpointsAtEveryIntervalAndAtTheEndThenExportsTheEncoder) {
  const std::string dir = Dir("ckpt");
  FakeJob job(SmallSpec(5), 2, dir);
  job.context(0).on_checkpoint = [&](const tecl::v1::Checkpoint& checkpoint) {
    // Registered only once completely written: the final name, the checksum and size of the
    // file, no temporary file beside it.
    EXPECT_EQ(checkpoint.path(),
              (fs::path(dir) / core::CheckpointFileName(checkpoint.step())).string());
    EXPECT_EQ(checkpoint.attempt(), kAttempt);
    const core::SealedFile file = core::ReadSealedFile(checkpoint.path());
    EXPECT_EQ(file.kind, core::SealedKind::kCheckpoint);
    EXPECT_EQ(file.sha256, checkpoint.sha256());
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(checkpoint.path())), checkpoint.size_bytes());
    for (const std::string& name : Names(dir)) EXPECT_NE(name[0], '.') << name;
  };
  const std::vector<JobOutcome> outcomes = job.Run();

  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(outcomes[rank].outcome, tecl::v1::OUTCOME_SUCCEEDED) << outcomes[rank].reason;
    EXPECT_EQ(outcomes[rank].reason, "rank " + std::to_string(rank) + " reached step 5");
    EXPECT_EQ(outcomes[rank].step, 5);
    EXPECT_EQ(outcomes[rank].progress.step(), 5);
    EXPECT_EQ(outcomes[rank].progress.total_steps(), 5);
    EXPECT_THAT(job.context(rank).reported_steps(), ElementsAre(0, 1, 2, 3, 4, 5));
    EXPECT_EQ(job.context(rank).statuses().front(), tecl::v1::TRAINER_STATUS_STARTING);
    EXPECT_EQ(job.context(rank).statuses().back(), tecl::v1::TRAINER_STATUS_RUNNING);
    EXPECT_GT(job.context(rank).last_progress().loss().total(), 0);
  }
  EXPECT_THAT(job.context(0).registered_steps(), ElementsAre(2, 4, 5));
  EXPECT_THAT(job.context(1).registered_steps(), IsEmpty());
  // checkpoint.keep = 2, and the encoder of the last step.
  EXPECT_THAT(Names(dir), ElementsAre(core::CheckpointFileName(4), core::CheckpointFileName(5),
                                      core::EncoderFileName(5)));
  const core::LoadedEncoder encoder =
      core::LoadEncoder((fs::path(dir) / core::EncoderFileName(5)).string(), c10::kCPU);
  const core::LoadedEncoder from_checkpoint =
      core::LoadEncoder((fs::path(dir) / core::CheckpointFileName(5)).string(), c10::kCPU);
  EXPECT_EQ(encoder.step, 5);
  EXPECT_EQ(encoder.source, core::SealedKind::kEncoder);
  const auto exported = StateOf(*encoder.backbone), saved = StateOf(*from_checkpoint.backbone);
  ASSERT_EQ(exported.size(), saved.size());
  for (size_t i = 0; i < exported.size(); ++i) {
    EXPECT_TRUE(torch::equal(exported[i].second, saved[i].second)) << exported[i].first;
  }

  // What the runner asked its factories for.
  ASSERT_EQ(job.requests.size(), 2u);
  for (const CommunicatorRequest& request : job.requests) {
    EXPECT_EQ(request.job_id, kJobId);
    EXPECT_EQ(request.attempt, kAttempt);
    EXPECT_EQ(request.world_size, 2);
    EXPECT_EQ(request.timeout, std::chrono::milliseconds(120000));
    EXPECT_EQ(request.backend, dist::Backend::kGloo);
    EXPECT_TRUE(request.device.is_cpu());
  }
  ASSERT_EQ(job.streams.size(), 2u);
  for (const BatchStreamOptions& stream : job.streams) {
    EXPECT_EQ(stream.job_id, kJobId);
    EXPECT_EQ(stream.mode, tecl::v1::STREAM_MODE_TRAIN);
    EXPECT_EQ(stream.world_size, 2);
    EXPECT_EQ(stream.start_step, 0);
    EXPECT_EQ(stream.end_step, 5);
    EXPECT_EQ(stream.prefetch, 1);
    EXPECT_EQ(job.loader_addresses[&stream - job.streams.data()],
              std::vector<std::string>{"loader-" + std::to_string(stream.rank)});
  }
  // Both ranks ran the same collectives: broadcast and checksum, then the buckets of each step.
  EXPECT_FALSE(job.world->Log(0).empty());
  EXPECT_EQ(job.world->Log(0), job.world->Log(1));
}

TEST_F(TrainingRunTest, StopEndsEveryRankAtAStepBoundary) {
  const std::string dir = Dir("ckpt");
  FakeJob job(SmallSpec(20), 2, dir);
  job.context(0).on_progress = [&](const tecl::v1::JobProgress& progress) {
    if (progress.step() == 3) job.stop->Request("stopped by the test");
  };
  const std::vector<JobOutcome> outcomes = job.Run();
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(outcomes[rank].outcome, tecl::v1::OUTCOME_STOPPED) << outcomes[rank].reason;
    EXPECT_EQ(outcomes[rank].reason, "stopped at step 3: stopped by the test");
    EXPECT_EQ(outcomes[rank].step, 3);
    EXPECT_EQ(outcomes[rank].progress.step(), 3);
    EXPECT_EQ(job.context(rank).reported_steps().back(), 3);
  }
  EXPECT_THAT(job.context(0).registered_steps(), ElementsAre(2));
  EXPECT_THAT(Names(dir), ElementsAre(core::CheckpointFileName(2)));
}

TEST_F(TrainingRunTest, ResumedRunReachesTheSameStateAsAnUninterruptedRun) {
  JobSpec spec = SmallSpec(6);
  spec.mutable_checkpoint()->set_interval_steps(3);
  spec.mutable_checkpoint()->set_keep(5);
  FakeJob whole(spec, 2, Dir("whole"));
  for (const JobOutcome& outcome : whole.Run()) {
    ASSERT_EQ(outcome.outcome, tecl::v1::OUTCOME_SUCCEEDED) << outcome.reason;
  }
  ASSERT_THAT(whole.context(0).registered_steps(), ElementsAre(3, 6));

  FakeJob resumed(spec, 2, Dir("resumed"));
  resumed.resume_from = (fs::path(Dir("whole")) / core::CheckpointFileName(3)).string();
  for (const JobOutcome& outcome : resumed.Run()) {
    ASSERT_EQ(outcome.outcome, tecl::v1::OUTCOME_SUCCEEDED) << outcome.reason;
    EXPECT_EQ(outcome.step, 6);
  }
  EXPECT_THAT(resumed.context(0).registered_steps(), ElementsAre(6));
  EXPECT_THAT(resumed.context(0).reported_steps(), ElementsAre(0, 4, 5, 6));
  for (const BatchStreamOptions& stream : resumed.streams) EXPECT_EQ(stream.start_step, 3);

  // The last step's loss and every parameter, buffer and optimiser moment agree bit for bit (the
  // fake group averages in a fixed order and the CPU kernels run on one thread).
  for (int rank = 0; rank < 2; ++rank) {
    const tecl::v1::LossTerms a = whole.context(rank).last_progress().loss();
    const tecl::v1::LossTerms b = resumed.context(rank).last_progress().loss();
    EXPECT_EQ(a.total(), b.total()) << "rank " << rank;
    EXPECT_EQ(a.equivariance(), b.equivariance()) << "rank " << rank;
    EXPECT_EQ(a.instance(), b.instance()) << "rank " << rank;
  }
  const auto a = Load(spec, (fs::path(Dir("whole")) / core::CheckpointFileName(6)).string());
  const auto b = Load(spec, (fs::path(Dir("resumed")) / core::CheckpointFileName(6)).string());
  EXPECT_EQ(a->step(), 6);
  EXPECT_EQ(b->step(), 6);
  EXPECT_EQ(a->epoch(), b->epoch());
  const auto sa = StateOf(*a->model()), sb = StateOf(*b->model());
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
  }
  const auto pa = a->NamedParameters(), pb = b->NamedParameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto key = [](const at::Tensor& p) {
      return c10::guts::to_string(p.unsafeGetTensorImpl());
    };
    const auto& ma =
        static_cast<torch::optim::AdamWParamState&>(*a->optimizer().state().at(key(pa[i].second)));
    const auto& mb =
        static_cast<torch::optim::AdamWParamState&>(*b->optimizer().state().at(key(pb[i].second)));
    EXPECT_EQ(ma.step(), mb.step()) << pa[i].first;
    EXPECT_TRUE(torch::equal(ma.exp_avg(), mb.exp_avg())) << pa[i].first;
    EXPECT_TRUE(torch::equal(ma.exp_avg_sq(), mb.exp_avg_sq())) << pa[i].first;
  }
}

TEST_F(TrainingRunTest, KilledPeerFailsTheSurvivor) {
  JobSpec spec = SmallSpec(10);
  spec.mutable_checkpoint()->set_interval_steps(100);
  FakeJob job(spec, 2, Dir("ckpt"));
  job.context(1).on_progress = [&](const tecl::v1::JobProgress& progress) {
    if (progress.step() == 2) {
      job.world->Kill(1);  // Its connections close ...
      job.context(1).StopThisRank("killed by the test");  // ... and it runs no further.
    }
  };
  const std::vector<JobOutcome> outcomes = job.Run();
  EXPECT_EQ(outcomes[0].outcome, tecl::v1::OUTCOME_FAILED) << outcomes[0].reason;
  EXPECT_THAT(outcomes[0].reason, HasSubstr("step 2: "));
  EXPECT_THAT(outcomes[0].reason, HasSubstr("rank 1 is gone (connection closed)"));
  EXPECT_EQ(outcomes[0].step, 2);
  EXPECT_EQ(outcomes[1].outcome, tecl::v1::OUTCOME_STOPPED);
  EXPECT_EQ(outcomes[1].reason, "stopped at step 2: killed by the test");
  EXPECT_THAT(job.context(0).registered_steps(), IsEmpty());
}

TEST_F(TrainingRunTest, InconsistentBatchIsFatalAndFailsThePeer) {
  JobSpec spec = SmallSpec(4);
  spec.mutable_checkpoint()->set_interval_steps(100);
  FakeJob job(spec, 2, Dir("ckpt"));
  job.tamper = [](int rank, ClipBatch* batch) {
    if (rank == 1 && batch->step() == 1) batch->mutable_clip_info()->RemoveLast();
  };
  const std::vector<JobOutcome> outcomes = job.Run();
  EXPECT_EQ(outcomes[1].outcome, tecl::v1::OUTCOME_FATAL) << outcomes[1].reason;
  EXPECT_EQ(outcomes[1].reason, "input for step 1: batch 1: 8 clips but 7 clip_info entries");
  EXPECT_EQ(outcomes[1].step, 1);
  EXPECT_EQ(outcomes[0].outcome, tecl::v1::OUTCOME_FAILED) << outcomes[0].reason;
  EXPECT_THAT(outcomes[0].reason, HasSubstr("rank 1 is gone"));
  EXPECT_EQ(outcomes[0].step, 1);
}

TEST_F(TrainingRunTest, BatchTheCoreRefusesIsFatal) {
  JobSpec spec = SmallSpec(4);
  spec.mutable_resources()->set_trainers(1);
  FakeJob job(spec, 1, Dir("ckpt"));
  job.tamper = [](int, ClipBatch* batch) {
    for (tecl::v1::ClipInfo& info : *batch->mutable_clip_info()) {
      info.set_role(tecl::v1::CLIP_ROLE_A);
    }
  };
  const std::vector<JobOutcome> outcomes = job.Run();
  EXPECT_EQ(outcomes[0].outcome, tecl::v1::OUTCOME_FATAL) << outcomes[0].reason;
  EXPECT_THAT(outcomes[0].reason, HasSubstr("step 0: batch: video 0 has 2 clips with role A"));
  EXPECT_EQ(outcomes[0].step, 0);
  EXPECT_THAT(job.requests, IsEmpty());  // One rank forms no group.
}

TEST_F(TrainingRunTest, BadSpecIsFatalOnEveryRank) {
  JobSpec spec = SmallSpec(4);
  spec.mutable_model()->set_backbone("r50");
  FakeJob job(spec, 2, Dir("ckpt"));
  for (const JobOutcome& outcome : job.Run()) {
    EXPECT_EQ(outcome.outcome, tecl::v1::OUTCOME_FATAL) << outcome.reason;
    EXPECT_THAT(outcome.reason, HasSubstr("model.backbone: \"r50\" is not one of"));
    EXPECT_EQ(outcome.step, 0);
  }
  EXPECT_THAT(job.requests, IsEmpty());
  EXPECT_THAT(job.streams, IsEmpty());
}

TEST_F(TrainingRunTest, CorruptResumeCheckpointIsFatal) {
  const JobSpec spec = SmallSpec(4);
  const std::string path = Dir(core::CheckpointFileName(2));
  {
    absl::StatusOr<core::TrainerOptions> options =
        TrainerOptionsFromSpec(spec, 2, c10::Device(c10::kCPU));
    ASSERT_TRUE(options.ok()) << options.status();
    core::Trainer trainer(*options);
    core::SaveCheckpoint(path, trainer, "");
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = static_cast<std::streamoff>(fs::file_size(path) / 2);
    file.seekg(middle);
    const char byte = static_cast<char>(file.get() ^ 0x40);
    file.seekp(middle);
    file.put(byte);
  }
  FakeJob job(spec, 2, Dir("ckpt"));
  job.resume_from = path;
  for (const JobOutcome& outcome : job.Run()) {
    EXPECT_EQ(outcome.outcome, tecl::v1::OUTCOME_FATAL) << outcome.reason;
    EXPECT_THAT(outcome.reason, HasSubstr("resuming from " + path + ": checkpoint " + path +
                                          ": checksum mismatch"));
  }
  EXPECT_THAT(job.requests, IsEmpty());
}

// The newest registered checkpoint has another digest than the registered one, the next is
// corrupt: each rank rejects both with the coordinator and resumes from the third.
TEST_F(TrainingRunTest, UnusableNewestCheckpointsAreRejectedAndAnOlderOneIsUsed) {
  JobSpec spec = SmallSpec(6);
  spec.mutable_checkpoint()->set_interval_steps(2);
  spec.mutable_checkpoint()->set_keep(5);
  FakeJob whole(spec, 2, Dir("whole"));
  for (const JobOutcome& outcome : whole.Run()) {
    ASSERT_EQ(outcome.outcome, tecl::v1::OUTCOME_SUCCEEDED) << outcome.reason;
  }
  std::vector<tecl::v1::Checkpoint> registered = whole.context(0).registered();
  ASSERT_EQ(registered.size(), 3u);
  for (const auto& c : registered) EXPECT_EQ(c.sha256().size(), 64u) << c.path();
  std::vector<tecl::v1::Checkpoint> candidates(registered.rbegin(), registered.rend());
  candidates[0].set_sha256(std::string(64, 'a'));  // Step 6: replaced after registration.
  {
    std::fstream file(candidates[1].path(), std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = static_cast<std::streamoff>(fs::file_size(candidates[1].path()) / 2);
    file.seekg(middle);
    const char byte = static_cast<char>(file.get() ^ 0x40);
    file.seekp(middle);
    file.put(byte);  // Step 4: corrupt.
  }
  FakeJob resumed(spec, 2, Dir("resumed"));
  resumed.candidates = candidates;
  for (const JobOutcome& outcome : resumed.Run()) {
    ASSERT_EQ(outcome.outcome, tecl::v1::OUTCOME_SUCCEEDED) << outcome.reason;
    EXPECT_EQ(outcome.step, 6);
  }
  for (const BatchStreamOptions& stream : resumed.streams) EXPECT_EQ(stream.start_step, 2);
  for (int rank = 0; rank < 2; ++rank) {
    const auto rejected = resumed.context(rank).rejected();
    ASSERT_EQ(rejected.size(), 2u) << "rank " << rank;
    EXPECT_EQ(rejected[0].first, 6);
    EXPECT_THAT(rejected[0].second, HasSubstr("is not the registered aaaa"));
    EXPECT_EQ(rejected[1].first, 4);
    EXPECT_THAT(rejected[1].second, HasSubstr("checksum mismatch"));
  }
  for (const CommunicatorRequest& request : resumed.requests) {
    EXPECT_EQ(request.session, "session-of-this-rank");
  }

  // None usable: FATAL, naming each.
  JobSpec alone = spec;
  alone.mutable_resources()->set_trainers(1);
  FakeJob hopeless(alone, 1, Dir("hopeless"));
  hopeless.candidates = {candidates[0], candidates[1]};
  const std::vector<JobOutcome> outcomes = hopeless.Run();
  EXPECT_EQ(outcomes[0].outcome, tecl::v1::OUTCOME_FATAL);
  EXPECT_THAT(outcomes[0].reason, HasSubstr("no usable checkpoint to resume from (step 6"));
}

TEST_F(TrainingRunTest, FailedCheckpointWriteFailsTheRunAndKeepsThePreviousCheckpoint) {
  JobSpec spec = SmallSpec(4);
  spec.mutable_resources()->set_trainers(1);
  const std::string dir = Dir("ckpt");
  core::FaultInjectingEnv env;
  FakeJob job(spec, 1, dir);
  job.env = &env;
  job.context(0).on_checkpoint = [&](const tecl::v1::Checkpoint&) {
    env.FailNext(core::FaultInjectingEnv::Op::kSync, std::errc::io_error);  // The next write.
  };
  const std::vector<JobOutcome> outcomes = job.Run();
  const std::string failed = (fs::path(dir) / core::CheckpointFileName(4)).string();
  EXPECT_EQ(outcomes[0].outcome, tecl::v1::OUTCOME_FAILED) << outcomes[0].reason;
  EXPECT_EQ(outcomes[0].reason, "writing checkpoint " + failed + ": checkpoint " + failed +
                                    ": fsync failed: Input/output error; check the folder's "
                                    "free space and permissions");
  EXPECT_EQ(outcomes[0].step, 4);
  EXPECT_THAT(job.context(0).registered_steps(), ElementsAre(2));
  EXPECT_THAT(Names(dir), ElementsAre(core::CheckpointFileName(2)));
  EXPECT_EQ(core::ReadSealedFile((fs::path(dir) / core::CheckpointFileName(2)).string()).kind,
            core::SealedKind::kCheckpoint);
}

}  // namespace
}  // namespace tecl::worker
