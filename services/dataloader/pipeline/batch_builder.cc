#include "services/dataloader/pipeline/batch_builder.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "services/common/logging.h"

namespace tecl::dataloader {
namespace {

using tecl::v1::ClipBatch;

// State shared by the tasks of one batch.
const char* RelationName(tecl::v1::Relation relation) {
  switch (relation) {
    case tecl::v1::RELATION_BEFORE:
      return "before";
    case tecl::v1::RELATION_AFTER:
      return "after";
    case tecl::v1::RELATION_OVERLAP:
      return "overlap";
    default:
      return "unspecified";
  }
}

class BuildJob : public BuildHandle, public std::enable_shared_from_this<BuildJob> {
 public:
  BuildJob(const BuilderEnv& env, const video::DecodeOptions& decode, int tasks,
           BatchBuilder::Done done)
      : env_(env), decode_(decode), remaining_(tasks), done_(std::move(done)) {}

  void Cancel() override {
    cancelled_.store(true);
    std::shared_ptr<std::string> buffer;
    {
      absl::MutexLock lock(&mu_);
      buffer.swap(buffer_);
    }
    // `buffer` is freed here unless a running task still writes into it (then when it ends).
  }

 protected:
  bool cancelled() const { return cancelled_.load(); }

  std::shared_ptr<std::string> Buffer() {
    absl::MutexLock lock(&mu_);
    return buffer_;
  }

  void AllocateBuffer(size_t bytes) {
    auto buffer = std::make_shared<std::string>();
    buffer->resize(bytes);
    absl::MutexLock lock(&mu_);
    buffer_ = std::move(buffer);
  }

  void Fail(absl::Status status) {
    absl::MutexLock lock(&mu_);
    if (error_.ok()) error_ = std::move(status);
  }

  // Counts a finished task; the last one assembles the batch and calls `done`.
  void TaskDone(double seconds) {
    {
      absl::MutexLock lock(&mu_);
      work_seconds_ += seconds;
    }
    if (remaining_.fetch_sub(1) != 1) return;
    absl::StatusOr<ClipBatch> result;
    absl::Status error;
    std::shared_ptr<std::string> buffer;
    double work_seconds = 0;
    {
      absl::MutexLock lock(&mu_);
      error = error_;
      buffer.swap(buffer_);
      work_seconds = work_seconds_;
    }
    if (cancelled() || buffer == nullptr) {
      result = absl::CancelledError("batch build cancelled");
    } else if (!error.ok()) {
      result = error;
    } else {
      ClipBatch batch;
      Assemble(std::move(*buffer), &batch);
      batch.set_build_seconds(work_seconds);
      env_.metrics->clips.Increment(static_cast<double>(batch.clip_info_size()));
      env_.metrics->batch_build_seconds.Observe(work_seconds);
      result = std::move(batch);
    }
    buffer.reset();
    BatchBuilder::Done done = std::move(done_);
    done(std::move(result));
  }

  // Fills `batch` from the complete buffer (all tasks succeeded).
  virtual void Assemble(std::string buffer, ClipBatch* batch) = 0;

  // Decodes the clips of `plan` and writes them, colour-augmented, as clips first_clip.. of the
  // buffer. Records decode metrics.
  absl::Status DecodeInto(const std::string& path, const VideoPlan& plan, size_t first_clip,
                          size_t clip_bytes, std::string* buffer) {
    std::vector<video::ClipRequest> requests;
    requests.reserve(plan.clips.size());
    for (const ClipPlan& clip : plan.clips) requests.push_back(clip.request);
    std::vector<video::ClipFrames> frames;
    video::DecodeStats stats;
    const absl::Time start = absl::Now();
    absl::Status status = env_.source->Decode(path, requests, decode_, &frames, &stats);
    env_.metrics->decode_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - start));
    env_.metrics->frames_decoded.Increment(static_cast<double>(stats.frames_decoded));
    env_.metrics->frames_used.Increment(static_cast<double>(stats.frames_used));
    env_.metrics->SyncIndexLoads();
    if (!status.ok()) return status;
    if (frames.size() != plan.clips.size()) {
      return absl::DataLossError(absl::StrCat(path, ": the decoder returned ", frames.size(),
                                              " clips for ", plan.clips.size(), " requests"));
    }
    for (size_t c = 0; c < plan.clips.size(); ++c) {
      const video::ClipRequest& request = plan.clips[c].request;
      const video::ClipFrames& clip = frames[c];
      if (clip.frames != static_cast<int>(request.frames.size()) ||
          clip.width != request.out_width || clip.height != request.out_height ||
          clip.data.size() != clip_bytes) {
        return absl::DataLossError(absl::StrCat(
            path, ": the decoder returned a clip of ", clip.frames, "x", clip.height, "x",
            clip.width, " (", clip.data.size(), " bytes) for ", request.frames.size(), "x",
            request.out_height, "x", request.out_width));
      }
      ApplyColor(plan.clips[c].color, clip.data.data(),
                 reinterpret_cast<uint8_t*>(buffer->data()) + (first_clip + c) * clip_bytes,
                 clip_bytes / 3);
    }
    return absl::OkStatus();
  }

  // Remembers a bad file; logs and counts it the first time.
  void MarkBad(const std::string& path, const char* reason, const absl::Status& status) {
    if (env_.bad_videos->Add(path, reason)) {
      env_.metrics->BadFiles(reason).Increment();
      TECL_LOG(WARNING) << "skipping video \"" << path << "\" (" << reason
                        << "): " << status.message() << "; it is left out from now on";
    }
  }

  const BuilderEnv env_;
  const video::DecodeOptions decode_;

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<int> remaining_;
  BatchBuilder::Done done_;  // Called once, by the last task.
  absl::Mutex mu_;
  std::shared_ptr<std::string> buffer_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  double work_seconds_ ABSL_GUARDED_BY(mu_) = 0;
};

// ---- TRAIN -----------------------------------------------------------------------------------

class TrainJob final : public BuildJob {
 public:
  TrainJob(const BuilderEnv& env, std::shared_ptr<const TrainSampler> sampler,
           const video::DecodeOptions& decode, int64_t global_step, BatchBuilder::Done done)
      : BuildJob(env, decode, sampler->settings().groups_per_batch, std::move(done)),
        sampler_(std::move(sampler)),
        settings_(sampler_->settings()),
        step_(global_step),
        position_(sampler_->schedule().Locate(global_step)),
        clip_bytes_(static_cast<size_t>(settings_.temporal.clip_length) * settings_.crop_size *
                    settings_.crop_size * 3),
        infos_(static_cast<size_t>(settings_.clips_per_batch())),
        relations_(static_cast<size_t>(settings_.groups_per_batch)),
        skipped_(static_cast<size_t>(settings_.groups_per_batch)) {}

  void Start() {
    AllocateBuffer(clip_bytes_ * static_cast<size_t>(settings_.clips_per_batch()));
    auto self = std::static_pointer_cast<TrainJob>(shared_from_this());
    for (int g = 0; g < settings_.groups_per_batch; ++g) {
      env_.pool->Schedule([self, g] { self->RunGroup(g); });
    }
  }

 private:
  // A slot's choice and the reasons of the candidates passed over before it.
  absl::StatusOr<VideoChoice> Resolve(int slot, int64_t exclude, std::vector<const char*>* skipped) {
    const Manifest& manifest = sampler_->manifest();
    for (int64_t k = 0;; ++k) {
      if (cancelled()) return absl::CancelledError("batch build cancelled");
      const int64_t index = sampler_->Candidate(position_, slot, k);
      if (index < 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "dataset: no usable video left for step ", step_, ": every one of the ",
            sampler_->split_size(), " videos of the split is unreadable or shorter than ",
            sampler_->min_frames(), " frames; check the data set"));
      }
      if (index == exclude) continue;
      const std::string& path = manifest.videos[static_cast<size_t>(index)].path;
      if (const char* reason = env_.bad_videos->Lookup(path)) {
        skipped->push_back(reason);
        continue;
      }
      absl::StatusOr<video::VideoInfo> info = env_.source->Probe(path, decode_);
      if (!info.ok()) {
        const char* reason = BadVideoReason(info.status(), /*decoding=*/false);
        MarkBad(path, reason, info.status());
        skipped->push_back(reason);
        continue;
      }
      if (!sampler_->LongEnough(*info)) {
        if (sampler_->NoteTooShort(index)) {
          env_.metrics->BadFiles(kReasonTooShort).Increment();
          TECL_LOG(WARNING) << "skipping video \"" << path << "\" (too_short): " << info->num_frames
                            << " frames of " << info->width << "x" << info->height
                            << ", fewer than the " << sampler_->min_frames()
                            << " one clip of this job needs";
        }
        skipped->push_back(kReasonTooShort);
        continue;
      }
      return VideoChoice{index, *info};
    }
  }

  void RunGroup(int group) {
    const absl::Time start = absl::Now();
    RunGroupOnce(group);
    TaskDone(absl::ToDoubleSeconds(absl::Now() - start));
  }

  void RunGroupOnce(int group) {
    // Each failed attempt marks one more file bad, so this ends; the bound guards against a
    // BadVideos memory too small to hold them.
    constexpr int kMaxAttempts = 1000;
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      if (cancelled()) return;
      std::shared_ptr<std::string> buffer = Buffer();
      if (buffer == nullptr) return;
      std::vector<const char*> skipped;
      absl::StatusOr<VideoChoice> first = Resolve(2 * group, -1, &skipped);
      if (!first.ok()) return Fail(first.status());
      absl::StatusOr<VideoChoice> second = Resolve(2 * group + 1, first->manifest_index, &skipped);
      if (!second.ok()) return Fail(second.status());
      absl::StatusOr<GroupPlan> plan = sampler_->PlanGroup(position_, group, *first, *second);
      if (!plan.ok()) return Fail(plan.status());
      bool retry = false;
      for (const VideoPlan& video : plan->videos) {
        if (cancelled()) return;
        const std::string& path =
            sampler_->manifest().videos[static_cast<size_t>(video.manifest_index)].path;
        const size_t first_clip = static_cast<size_t>(video.slot) * settings_.clips_per_video();
        absl::Status status = DecodeInto(path, video, first_clip, clip_bytes_, buffer.get());
        if (!status.ok()) {
          MarkBad(path, BadVideoReason(status, /*decoding=*/true), status);
          retry = true;
          break;
        }
      }
      if (retry) continue;
      Record(group, *plan);
      CountLabels(group, *plan, std::min(first->info.num_frames, second->info.num_frames));
      skipped_[static_cast<size_t>(group)] = std::move(skipped);
      return;
    }
    Fail(absl::InternalError(absl::StrCat("group ", group, " of step ", step_, ": no decodable pair after ",
                                          kMaxAttempts, " attempts")));
  }

  // What the sampler drew, for the label-distribution metrics, and the speeds this group could
  // not draw because its shorter video is too short (a warning the first time per speed).
  void CountLabels(int group, const GroupPlan& plan, int64_t shorter_frames) {
    const TemporalConfig& temporal = sampler_->settings().temporal;
    for (const VideoPlan& video : plan.videos) {
      for (const ClipPlan& clip : video.clips) {
        const int speed = temporal.speeds[static_cast<size_t>(clip.speed_index)];
        env_.metrics->Labels("speed", std::to_string(speed)).Increment();
        env_.metrics->Labels("direction", clip.reversed ? "backward" : "forward").Increment();
      }
    }
    env_.metrics->Labels("relation", RelationName(plan.relation)).Increment();
    for (int index : sampler_->UnavailableSpeeds(shorter_frames)) {
      const int speed = temporal.speeds[static_cast<size_t>(index)];
      env_.metrics->SpeedUnavailable(speed).Increment();
      env_.metrics->Labels("speed", std::to_string(speed));  // A visible 0 if never drawn.
      if (sampler_->NoteSpeedUnavailable(index)) {
        TECL_LOG(WARNING) << "speed " << speed << " cannot be drawn for group " << group
                          << " of step " << step_ << ": a clip of "
                          << temporal.clip_length << " frames at that speed spans "
                          << SpanLength(temporal.clip_length, speed)
                          << " source frames and the group's shorter video has "
                          << shorter_frames << "; if most videos are this short the speed head "
                          << "rarely sees this class (tecl_dataloader_speed_unavailable_total): "
                          << "drop the speed from sampling.speeds or shorten "
                          << "sampling.clip_length";
      }
    }
  }

  void Record(int group, const GroupPlan& plan) {
    relations_[static_cast<size_t>(group)] = plan.relation;
    for (const VideoPlan& video : plan.videos) {
      for (size_t c = 0; c < video.clips.size(); ++c) {
        const ClipPlan& clip = video.clips[c];
        tecl::v1::ClipInfo& info =
            infos_[static_cast<size_t>(video.slot) * settings_.clips_per_video() + c];
        info.set_video(video.slot);
        info.set_group(group);
        info.set_role(clip.role);
        info.set_speed_index(clip.speed_index);
        info.set_reversed(clip.reversed);
        info.set_start_frame(static_cast<int32_t>(clip.start_frame));
        info.set_label(-1);
        info.set_manifest_index(video.manifest_index);
      }
    }
  }

  void Assemble(std::string buffer, ClipBatch* batch) override {
    batch->set_step(step_);
    batch->set_epoch(position_.epoch);
    tecl::v1::ClipTensor* clips = batch->mutable_clips();
    for (int64_t dim : {int64_t{settings_.clips_per_batch()}, int64_t{settings_.temporal.clip_length},
                        int64_t{settings_.crop_size}, int64_t{settings_.crop_size}, int64_t{3}}) {
      clips->add_shape(dim);
    }
    clips->set_data(std::move(buffer));
    for (tecl::v1::ClipInfo& info : infos_) *batch->add_clip_info() = std::move(info);
    for (tecl::v1::Relation relation : relations_) batch->add_groups()->set_relation(relation);
    int skipped = 0;
    for (const std::vector<const char*>& reasons : skipped_) {
      for (const char* reason : reasons) env_.metrics->Skipped(reason).Increment();
      skipped += static_cast<int>(reasons.size());
    }
    batch->set_videos_skipped(skipped);
    env_.metrics->Batches("train").Increment();
  }

  const std::shared_ptr<const TrainSampler> sampler_;
  const TrainSettings& settings_;
  const int64_t step_;
  const StepPosition position_;
  const size_t clip_bytes_;
  // Written by disjoint tasks (each group its own entries), read by the last one.
  std::vector<tecl::v1::ClipInfo> infos_;
  std::vector<tecl::v1::Relation> relations_;
  std::vector<std::vector<const char*>> skipped_;
};

// ---- EVAL ------------------------------------------------------------------------------------

class EvalJob final : public BuildJob {
 public:
  EvalJob(const BuilderEnv& env, std::shared_ptr<const EvalSampler> sampler,
          const video::DecodeOptions& decode, int64_t batch, std::vector<int64_t> videos,
          BatchBuilder::Done done)
      : BuildJob(env, decode, static_cast<int>(videos.size()), std::move(done)),
        sampler_(std::move(sampler)),
        settings_(sampler_->settings()),
        batch_(batch),
        videos_(std::move(videos)),
        clip_bytes_(static_cast<size_t>(settings_.clip_length) * settings_.crop_size *
                    settings_.crop_size * 3),
        plans_(videos_.size()),
        reasons_(videos_.size(), nullptr) {}

  void Start() {
    AllocateBuffer(clip_bytes_ * settings_.clips_per_video * videos_.size());
    auto self = std::static_pointer_cast<EvalJob>(shared_from_this());
    for (size_t i = 0; i < videos_.size(); ++i) {
      env_.pool->Schedule([self, i] { self->RunVideo(i); });
    }
  }

 private:
  void RunVideo(size_t i) {
    const absl::Time start = absl::Now();
    RunVideoOnce(i);
    TaskDone(absl::ToDoubleSeconds(absl::Now() - start));
  }

  void RunVideoOnce(size_t i) {
    if (cancelled()) return;
    std::shared_ptr<std::string> buffer = Buffer();
    if (buffer == nullptr) return;
    const int64_t index = videos_[i];
    const std::string& path = sampler_->manifest().videos[static_cast<size_t>(index)].path;
    if (const char* reason = env_.bad_videos->Lookup(path)) {
      reasons_[i] = reason;
      return;
    }
    absl::StatusOr<video::VideoInfo> info = env_.source->Probe(path, decode_);
    if (!info.ok() || info->num_frames < 1) {
      const absl::Status status =
          info.ok() ? absl::DataLossError("the video has no frames") : info.status();
      reasons_[i] = BadVideoReason(status, /*decoding=*/false);
      MarkBad(path, reasons_[i], status);
      return;
    }
    VideoPlan plan = sampler_->PlanVideo(static_cast<int>(i), index, *info);
    absl::Status status = DecodeInto(path, plan, i * settings_.clips_per_video, clip_bytes_,
                                     buffer.get());
    if (!status.ok()) {
      reasons_[i] = BadVideoReason(status, /*decoding=*/true);
      MarkBad(path, reasons_[i], status);
      return;
    }
    plans_[i] = std::move(plan);
  }

  void Assemble(std::string buffer, ClipBatch* batch) override {
    const Manifest& manifest = sampler_->manifest();
    const size_t video_bytes = clip_bytes_ * settings_.clips_per_video;
    size_t kept = 0;
    int skipped = 0;
    for (size_t i = 0; i < videos_.size(); ++i) {
      const VideoEntry& entry = manifest.videos[static_cast<size_t>(videos_[i])];
      tecl::v1::EvalVideo* eval = batch->add_eval_videos();
      eval->set_manifest_index(videos_[i]);
      eval->set_label(entry.label);
      eval->set_split(std::string(SplitName(entry.split)));
      if (reasons_[i] != nullptr) {
        eval->set_num_clips(0);
        env_.metrics->Skipped(reasons_[i]).Increment();
        ++skipped;
        continue;
      }
      eval->set_num_clips(settings_.clips_per_video);
      if (kept != i) std::memmove(&buffer[kept * video_bytes], &buffer[i * video_bytes], video_bytes);
      for (const ClipPlan& clip : plans_[i].clips) {
        tecl::v1::ClipInfo* info = batch->add_clip_info();
        info->set_video(static_cast<int32_t>(videos_[i]));
        info->set_group(static_cast<int32_t>(i));
        info->set_role(tecl::v1::CLIP_ROLE_EVAL);
        info->set_speed_index(0);
        info->set_reversed(false);
        info->set_start_frame(static_cast<int32_t>(clip.start_frame));
        info->set_label(entry.label);
        info->set_manifest_index(videos_[i]);
      }
      ++kept;
    }
    buffer.resize(kept * video_bytes);
    batch->set_step(batch_);
    batch->set_epoch(0);
    tecl::v1::ClipTensor* clips = batch->mutable_clips();
    for (int64_t dim : {static_cast<int64_t>(kept) * settings_.clips_per_video,
                        int64_t{settings_.clip_length}, int64_t{settings_.crop_size},
                        int64_t{settings_.crop_size}, int64_t{3}}) {
      clips->add_shape(dim);
    }
    clips->set_data(std::move(buffer));
    batch->set_videos_skipped(skipped);
    batch->set_last(batch_ == sampler_->num_batches() - 1);
    env_.metrics->Batches("eval").Increment();
  }

  const std::shared_ptr<const EvalSampler> sampler_;
  const EvalSettings& settings_;
  const int64_t batch_;
  const std::vector<int64_t> videos_;
  const size_t clip_bytes_;
  // Per video, written by its own task.
  std::vector<VideoPlan> plans_;
  std::vector<const char*> reasons_;  // Non-null: skipped.
};

// Calls `done` with CANCELLED-free synchronous results for the blocking helpers.
absl::StatusOr<ClipBatch> Wait(const std::function<void(BatchBuilder::Done)>& start) {
  absl::Notification finished;
  absl::StatusOr<ClipBatch> result;
  start([&](absl::StatusOr<ClipBatch> batch) {
    result = std::move(batch);
    finished.Notify();
  });
  finished.WaitForNotification();
  return result;
}

}  // namespace

std::shared_ptr<BuildHandle> BatchBuilder::StartTrain(std::shared_ptr<const TrainSampler> sampler,
                                                      const video::DecodeOptions& decode,
                                                      int64_t global_step, Done done) const {
  auto job = std::make_shared<TrainJob>(env_, std::move(sampler), decode, global_step, std::move(done));
  job->Start();
  return job;
}

std::shared_ptr<BuildHandle> BatchBuilder::StartEval(std::shared_ptr<const EvalSampler> sampler,
                                                     const video::DecodeOptions& decode,
                                                     int64_t batch, Done done) const {
  std::vector<int64_t> videos = sampler->VideosOf(batch);
  if (videos.empty()) {
    // Past the end: report it from the pool, as every result.
    env_.pool->Schedule([done = std::move(done), batch] {
      done(absl::OutOfRangeError(absl::StrCat("eval batch ", batch, " is past the last video")));
    });
    return nullptr;
  }
  auto job = std::make_shared<EvalJob>(env_, std::move(sampler), decode, batch, std::move(videos),
                                       std::move(done));
  job->Start();
  return job;
}

absl::StatusOr<ClipBatch> BatchBuilder::BuildTrain(std::shared_ptr<const TrainSampler> sampler,
                                                   const video::DecodeOptions& decode,
                                                   int64_t global_step) const {
  return Wait([&](Done done) { StartTrain(sampler, decode, global_step, std::move(done)); });
}

absl::StatusOr<ClipBatch> BatchBuilder::BuildEval(std::shared_ptr<const EvalSampler> sampler,
                                                  const video::DecodeOptions& decode,
                                                  int64_t batch) const {
  return Wait([&](Done done) { StartEval(sampler, decode, batch, std::move(done)); });
}

}  // namespace tecl::dataloader
