#include "services/dataloader/service/dataloader_server.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/common/logging.h"
#include "services/client/grpc_coordinator_client.h"
#include "services/common/status_macros.h"
#include "services/dataloader/pipeline/ffmpeg_clip_source.h"

namespace tecl::dataloader {
namespace {

namespace fs = std::filesystem;

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

}  // namespace

absl::Status DataLoaderConfig::Validate() const {
  if (loader.decode_threads < 0 || loader.decode_threads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--decode_threads: ", loader.decode_threads, " is outside [0, 1024] (0 = one per core)"));
  }
  if (loader.max_streams < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_streams: ", loader.max_streams, " must be at least 1"));
  }
  if (loader.decode_budget <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--decode_budget: must be positive (e.g. 20s)");
  }
  if (index_cache_videos < 1) {
    return absl::InvalidArgumentError("--index_cache_videos: must be at least 1");
  }
  if (index_cache_bytes < (size_t{1} << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--index_cache_bytes: ", index_cache_bytes, " is below 1 MiB (1048576); give more"));
  }
  const video::InputLimits& limits = loader.input_limits;
  if (limits.max_width < 16 || limits.max_width > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("--max_video_width: ", limits.max_width,
                                                   " is outside [16, 65536]"));
  }
  if (limits.max_height < 16 || limits.max_height > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("--max_video_height: ", limits.max_height,
                                                   " is outside [16, 65536]"));
  }
  if (limits.max_frames < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_video_frames: ", limits.max_frames, " must be at least 1"));
  }
  for (const std::string& root : data_roots) {
    if (root.empty()) return absl::InvalidArgumentError("--data_root: an entry is empty");
  }
  for (const std::string& root : write_roots) {
    if (root.empty()) return absl::InvalidArgumentError("--write_root: an entry is empty");
  }
  return absl::OkStatus();
}

absl::StatusOr<tecl::v1::DatasetSpec> DatasetFromManifestPath(const std::string& path) {
  std::error_code error;
  const fs::path absolute = fs::absolute(path, error);
  tecl::v1::DatasetSpec dataset;
  if (fs::is_directory(absolute, error)) {
    dataset.set_format(tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
    dataset.set_root(absolute.lexically_normal().string());
    if (fs::exists(absolute / "trainlist.txt", error)) dataset.set_train_list("trainlist.txt");
    if (fs::exists(absolute / "testlist.txt", error)) dataset.set_test_list("testlist.txt");
    dataset.set_split("train");
    return dataset;
  }
  if (absl::EndsWithIgnoreCase(path, ".csv") && fs::is_regular_file(absolute, error)) {
    dataset.set_format(tecl::v1::DatasetSpec::FORMAT_CSV);
    dataset.set_root(absolute.parent_path().lexically_normal().string());
    dataset.set_manifest(absolute.filename().string());
    dataset.set_split("train");
    return dataset;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--manifest: \"", path,
      "\" is neither a folder of class sub-folders nor an existing .csv file (path,label,split)"));
}

absl::StatusOr<std::unique_ptr<DataLoaderServer>> DataLoaderServer::Start(DataLoaderConfig config,
                                                                           ClipSource* source) {
  TECL_RETURN_IF_ERROR(config.Validate());
  if (!config.manifest.empty()) {
    TECL_ASSIGN_OR_RETURN(config.loader.default_dataset, DatasetFromManifestPath(config.manifest));
  }
  TECL_ASSIGN_OR_RETURN(DataRoots roots, DataRoots::Create(config.data_roots));
  if (!roots.restricted()) {
    TECL_LOG(WARNING) << "no --data_root given: streams may read data sets anywhere this process "
                         "can read; give --data_root to confine them";
  }
  std::unique_ptr<DataLoaderServer> server(new DataLoaderServer());
  if (source == nullptr) {
    server->owned_source_ =
        std::make_unique<FfmpegClipSource>(config.index_cache_videos, config.index_cache_bytes);
    source = server->owned_source_.get();
  }
  metrics::RegisterProcessMetrics(server->registry_);
  server->manager_ =
      std::make_unique<LoaderManager>(config.loader, std::move(roots), source, &server->registry_);
  TECL_ASSIGN_OR_RETURN(Authenticator auth, MakeAuthenticator(config.server));
  server->service_ = std::make_unique<DataLoaderService>(server->manager_.get(), std::move(auth));
  TECL_ASSIGN_OR_RETURN(server->grpc_,
                        GrpcServer::Start(config.server, {server->service_.get()}, &server->registry_));
  TECL_LOG(INFO) << "tecl-dataloader serving on " << server->grpc_->address() << " with "
                 << server->manager_->pool().threads() << " decode threads; metrics on port "
                 << server->grpc_->metrics_port();

  if (!config.coordinator.empty()) {
    TECL_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                          MakeChannel(config.coordinator, config.coordinator_channel));
    MembershipLoopOptions options;
    options.coordinator_address = config.coordinator;
    options.default_heartbeat_interval = config.default_heartbeat_interval;
    tecl::v1::WorkerInfo& worker = options.worker;
    worker.set_kind(tecl::v1::WORKER_KIND_DATALOADER);
    worker.set_address(config.advertise_address.empty() ? server->address()
                                                        : config.advertise_address);
    if (server->grpc_->metrics_port() > 0) {
      worker.set_metrics_address(DialableAddress(config.server.metrics_address,
                                                 server->grpc_->metrics_port()));
    }
    worker.set_hostname(HostName());
    worker.set_device(tecl::v1::DEVICE_CPU);
    worker.set_threads(server->manager_->pool().threads());
    worker.set_version(TECL_VERSION);
    MembershipMetrics metrics;
    metrics.registered = &metrics::BuildGauge()
                              .Name("tecl_dataloader_registered")
                              .Help("1 while this dataloader is registered with the coordinator")
                              .Register(server->registry_)
                              .Add({});
    metrics.registrations = &metrics::BuildCounter()
                                 .Name("tecl_dataloader_registrations_total")
                                 .Help("Registrations with the coordinator (more than one after "
                                       "the coordinator lost this dataloader)")
                                 .Register(server->registry_)
                                 .Add({});
    metrics.heartbeat_failures =
        &metrics::BuildCounter()
             .Name("tecl_dataloader_heartbeat_failures_total")
             .Help("Registrations and heartbeats that did not reach the coordinator")
             .Register(server->registry_)
             .Add({});
    server->coordinator_ = NewCoordinatorClient(channel);
    PrepareAgentOptions prepare;
    prepare.write_roots = config.write_roots;
    prepare.data_roots = config.data_roots;
    prepare.input_limits = config.loader.input_limits;
    prepare.max_threads = server->manager_->pool().threads();
    TECL_ASSIGN_OR_RETURN(server->prepare_agent_,
                          PrepareAgent::Create(std::move(prepare), server->coordinator_,
                                               &server->registry_));
    server->membership_ = std::make_unique<MembershipLoop>(
        std::move(options), server->coordinator_, server->prepare_agent_->Hooks(), metrics);
    server->prepare_agent_->SetLoop(server->membership_.get());
    server->membership_->Start();
  }
  return server;
}

DataLoaderServer::~DataLoaderServer() { Shutdown(absl::ZeroDuration()); }

void DataLoaderServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // The current prepare run stops before its next video and reports, then heartbeats end.
  if (prepare_agent_ != nullptr) prepare_agent_->Shutdown();
  if (membership_ != nullptr) membership_->Stop();
  if (grpc_ != nullptr) grpc_->Shutdown(grace);
  manager_.reset();  // Joins the decode threads.
}

}  // namespace tecl::dataloader
