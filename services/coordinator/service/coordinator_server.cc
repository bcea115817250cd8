#include "services/coordinator/service/coordinator_server.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"

namespace tecl::coordinator {

absl::Status CoordinatorConfig::Validate() const {
  if (state_dir.empty()) return absl::InvalidArgumentError("--state_dir is empty; give a folder");
  if (heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--heartbeat_interval must be positive");
  }
  if (heartbeat_timeout < 2 * heartbeat_interval) {
    return absl::InvalidArgumentError(
        absl::StrCat("--heartbeat_timeout (", absl::FormatDuration(heartbeat_timeout),
                     ") must be at least twice --heartbeat_interval (",
                     absl::FormatDuration(heartbeat_interval), ")"));
  }
  if (max_trainers < 1) return absl::InvalidArgumentError("--max_trainers must be at least 1");
  if (max_bypasses < 0) return absl::InvalidArgumentError("--max_bypasses must be >= 0");
  if (store_max_group < 1) return absl::InvalidArgumentError("--store_max_group must be >= 1");
  if (tick_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the tick interval must be positive");
  }
  for (const std::string& root : data_roots) {
    if (!std::filesystem::path(root).is_absolute()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--data_roots: \"", root, "\" is relative; give absolute folders"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    CoordinatorConfig config, const Clock* clock) {
  TECL_RETURN_IF_ERROR(config.Validate());
  std::error_code error;
  const std::filesystem::path state_dir = std::filesystem::absolute(config.state_dir);
  std::filesystem::create_directories(state_dir / "checkpoints", error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the state folder ", state_dir.string(), ": ", error.message()));
  }
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  server->tick_interval_ = config.tick_interval;
  metrics::RegisterProcessMetrics(server->registry_);

  auto& commit_seconds = metrics::BuildHistogram()
                             .Name("tecl_coordinator_store_commit_seconds")
                             .Help("Durable store commits: BEGIN to fsync'ed COMMIT.")
                             .Register(server->registry_)
                             .Add({}, metrics::Histogram::ExponentialBuckets(0.0001, 2, 16));
  auto& commit_batches = metrics::BuildHistogram()
                             .Name("tecl_coordinator_store_batches_per_commit")
                             .Help("Write batches grouped into one store commit.")
                             .Register(server->registry_)
                             .Add({}, metrics::Histogram::ExponentialBuckets(1, 2, 12));
  SqliteJobStoreOptions store_options;
  store_options.max_group_batches = config.store_max_group;
  store_options.on_commit = [&commit_seconds, &commit_batches](absl::Duration d, int batches) {
    commit_seconds.Observe(absl::ToDoubleSeconds(d));
    commit_batches.Observe(batches);
  };
  TECL_ASSIGN_OR_RETURN(
      server->store_, SqliteJobStore::Open((state_dir / "coordinator.db").string(), store_options));

  RendezvousOptions rendezvous_options;
  server->rendezvous_ = std::make_unique<Rendezvous>(clock, rendezvous_options);

  JobManagerOptions options;
  options.checkpoint_root = (state_dir / "checkpoints").string();
  options.heartbeat_interval = config.heartbeat_interval;
  options.heartbeat_timeout = config.heartbeat_timeout;
  options.progress_persist_interval = config.progress_persist_interval;
  options.limits.max_trainers = config.max_trainers;
  options.limits.data_roots = config.data_roots;
  options.limits.check_paths_exist = config.check_dataset_paths;
  options.scheduler.max_bypasses = config.max_bypasses;
  options.coordinator_address = config.advertise_address;
  server->manager_ = std::make_unique<JobManager>(options, server->store_.get(), clock,
                                                  server->rendezvous_.get(), &server->registry_);
  TECL_RETURN_IF_ERROR(server->manager_->Restore());

  server->service_ = std::make_unique<CoordinatorService>(
      server->manager_.get(), server->rendezvous_.get(), TokenAuthenticator(config.tokens));
  // Requests beyond the per-field limits get INVALID_ARGUMENT from the service; the transport
  // limit only has to be above them.
  config.server.max_message_bytes = 16 << 20;
  TECL_ASSIGN_OR_RETURN(server->grpc_, GrpcServer::Start(config.server, {server->service_.get()},
                                                         &server->registry_));
  if (config.advertise_address.empty()) {
    server->manager_->SetCoordinatorAddress(server->grpc_->local_address());
  }
  server->background_ = std::thread(&CoordinatorServer::BackgroundLoop, server.get());
  TECL_LOG(INFO) << "tecl-coordinator serving on " << server->grpc_->address()
                 << " (metrics on port " << server->grpc_->metrics_port() << "), state in "
                 << state_dir.string();
  return server;
}

void CoordinatorServer::BackgroundLoop() {
  while (!stop_.WaitForNotificationWithTimeout(tick_interval_)) manager_->Tick();
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  stop_.Notify();
  if (background_.joinable()) background_.join();
  if (rendezvous_ != nullptr) rendezvous_->Shutdown();  // Ends waits, so their calls finish.
  if (grpc_ != nullptr) grpc_->Shutdown(grace);
  store_.reset();  // Commits what is queued.
}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace tecl::coordinator
