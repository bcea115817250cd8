#include "services/dataloader/pipeline/loader_manager.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/status_macros.h"

namespace tecl::dataloader {
namespace {

int ThreadsOrHardware(int threads) {
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

LoaderManager::LoaderManager(LoaderOptions options, DataRoots roots, ClipSource* source,
                             metrics::Registry* registry)
    : options_(std::move(options)),
      roots_(std::move(roots)),
      source_(source),
      metrics_(*registry),
      open_streams_(std::make_shared<std::atomic<int>>(0)),
      pool_(std::make_unique<ThreadPool>(ThreadsOrHardware(options_.decode_threads))),
      builder_(BuilderEnv{source_, pool_.get(), &bad_videos_, &metrics_}) {}

LoaderManager::~LoaderManager() {
  pool_.reset();  // Joins the decode threads before the state their tasks use goes away.
}

const tecl::v1::DatasetSpec& LoaderManager::DatasetOf(const tecl::v1::DatasetSpec& requested) const {
  const bool names_none = requested.format() == tecl::v1::DatasetSpec::FORMAT_UNSPECIFIED &&
                          requested.root().empty();
  return names_none && !options_.default_dataset.root().empty() ? options_.default_dataset
                                                                : requested;
}

absl::StatusOr<std::shared_ptr<const Manifest>> LoaderManager::GetManifest(
    const tecl::v1::DatasetSpec& requested) {
  const tecl::v1::DatasetSpec& dataset = DatasetOf(requested);
  std::string key;
  {
    tecl::v1::DatasetSpec keyed = dataset;
    keyed.clear_fps();  // Decoding settings do not change the manifest.
    keyed.clear_short_side();
    keyed.clear_split();
    keyed.SerializeToString(&key);
  }
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = manifests_.find(key);
    if (it != manifests_.end() && now - it->second.loaded < options_.manifest_cache_ttl) {
      return it->second.manifest;
    }
  }
  TECL_ASSIGN_OR_RETURN(Manifest manifest, LoadManifest(dataset, roots_, options_.manifest_limits));
  auto shared = std::make_shared<const Manifest>(std::move(manifest));
  absl::MutexLock lock(&mu_);
  for (auto it = manifests_.begin(); it != manifests_.end();) {
    it = now - it->second.loaded >= options_.manifest_cache_ttl ? manifests_.erase(it) : std::next(it);
  }
  if (manifests_.size() < 64) manifests_[key] = {shared, now};
  return shared;
}

absl::StatusOr<std::shared_ptr<BatchStream>> LoaderManager::OpenStream(
    const tecl::v1::StreamBatchesRequest& request) {
  TECL_ASSIGN_OR_RETURN(StreamConfig config, StreamConfigFromRequest(request));
  config.dataset = DatasetOf(config.dataset);
  config.decode.budget = options_.decode_budget;
  config.decode.limits = options_.input_limits;

  int open = open_streams_->load();
  do {
    if (open >= options_.max_streams) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "tecl-dataloader: ", open, " streams are open, the --max_streams limit; retry later, "
          "add dataloaders or raise --max_streams"));
    }
  } while (!open_streams_->compare_exchange_weak(open, open + 1));

  BatchStream::PrepareFn prepare = [this, config]() -> absl::StatusOr<BatchStream::Prepared> {
    TECL_ASSIGN_OR_RETURN(std::shared_ptr<const Manifest> manifest, GetManifest(config.dataset));
    BatchStream::Prepared prepared;
    const BatchBuilder* builder = &builder_;
    const video::DecodeOptions decode = config.decode;
    // start, stride and max_steps are bounded (StreamConfig), so start + index * stride below
    // cannot overflow for any index < num_batches.
    const int64_t start = config.start_step;
    const int64_t stride = config.stride;
    if (config.mode == tecl::v1::STREAM_MODE_EVAL) {
      auto sampler = std::make_shared<const EvalSampler>(manifest, config.eval);
      prepared.num_batches = StepsBelow(start, stride, sampler->num_batches());
      if (config.max_steps > 0) prepared.num_batches = std::min(prepared.num_batches, config.max_steps);
      prepared.build = [builder, sampler, decode, start, stride](int64_t index, BatchBuilder::Done done) {
        return builder->StartEval(sampler, decode, start + index * stride, std::move(done));
      };
      return prepared;
    }
    TECL_ASSIGN_OR_RETURN(std::shared_ptr<const TrainSampler> sampler,
                          TrainSampler::Create(manifest, config.dataset.split(), config.train));
    // max_steps asks for that many batches (past total_steps if need be), never past the last
    // step a stream serves; otherwise the stream ends before total_steps.
    prepared.num_batches =
        config.max_steps > 0
            ? std::min(config.max_steps, StepsBelow(start, stride, work_limits::kMaxSteps + 1))
            : StepsBelow(start, stride, config.total_steps);
    prepared.build = [builder, sampler, decode, start, stride](int64_t index, BatchBuilder::Done done) {
      return builder->StartTrain(sampler, decode, start + index * stride, std::move(done));
    };
    return prepared;
  };
  std::shared_ptr<std::atomic<int>> counter = open_streams_;
  std::shared_ptr<BatchStream> stream =
      BatchStream::Create(config.prefetch, std::move(prepare), pool_.get(), &metrics_,
                          [counter] { counter->fetch_sub(1); });
  stream->Start();
  return stream;
}

void LoaderManager::DescribeDataset(const tecl::v1::DatasetSpec& dataset,
                                    std::function<void(absl::StatusOr<tecl::v1::DatasetInfo>)> done) {
  if (std::vector<work_limits::Problem> problems = work_limits::CheckDataset(dataset);
      !problems.empty()) {
    done(absl::InvalidArgumentError(
        absl::StrCat(problems.front().field, ": ", problems.front().message)));
    return;
  }
  pool_->Schedule(
      [this, dataset, done = std::move(done)] {
        absl::StatusOr<std::shared_ptr<const Manifest>> manifest = GetManifest(dataset);
        if (!manifest.ok()) {
          done(manifest.status());
          return;
        }
        tecl::v1::DatasetInfo info;
        info.set_num_videos(static_cast<int64_t>((*manifest)->videos.size()));
        info.set_num_train((*manifest)->Count(Split::kTrain));
        info.set_num_test((*manifest)->Count(Split::kTest));
        for (const std::string& name : (*manifest)->classes) info.add_classes(name);
        done(std::move(info));
      },
      /*urgent=*/true);
}

}  // namespace tecl::dataloader
