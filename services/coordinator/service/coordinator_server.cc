#include "services/coordinator/service/coordinator_server.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/common/work_limits.h"

namespace tecl::coordinator {

absl::Status CoordinatorConfig::Validate() const {
  if (state_dir.empty()) return absl::InvalidArgumentError("--state_dir is empty; give a folder");
  const MembershipOptions& m = coordinator.membership;
  if (m.heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--heartbeat_interval must be positive");
  }
  if (m.heartbeat_timeout < 2 * m.heartbeat_interval) {
    return absl::InvalidArgumentError(
        absl::StrCat("--heartbeat_timeout (", absl::FormatDuration(m.heartbeat_timeout),
                     ") must be at least twice --heartbeat_interval (",
                     absl::FormatDuration(m.heartbeat_interval), ")"));
  }
  const SpecLimits& limits = coordinator.jobs.limits;
  if (limits.max_trainers < 1 || limits.max_trainers > work_limits::kMaxWorldSize) {
    return absl::InvalidArgumentError(absl::StrCat("--max_trainers: ", limits.max_trainers,
                                                   " is outside [1, ", work_limits::kMaxWorldSize,
                                                   "] (the largest world size a dataloader serves)"));
  }
  // A prepare job's dataloaders each take one shard (PrepareDataset: at most 100000).
  if (limits.max_prepare_dataloaders < 1 || limits.max_prepare_dataloaders > 100000) {
    return absl::InvalidArgumentError(absl::StrCat("--max_prepare_dataloaders: ",
                                                   limits.max_prepare_dataloaders,
                                                   " is outside [1, 100000]"));
  }
  // A trainer reading from k dataloaders asks each for every k-th step.
  if (limits.max_dataloaders_per_trainer < 1 ||
      limits.max_dataloaders_per_trainer > work_limits::kMaxStepStride) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_dataloaders_per_trainer: ", limits.max_dataloaders_per_trainer, " is outside [1, ",
        work_limits::kMaxStepStride, "] (the largest step stride a dataloader serves)"));
  }
  if (coordinator.attempts.scheduler.max_bypasses < 0) {
    return absl::InvalidArgumentError("--max_bypasses must be >= 0");
  }
  if (store.max_group_batches < 1) {
    return absl::InvalidArgumentError("--store_max_group must be >= 1");
  }
  if (tick_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the tick interval must be positive");
  }
  for (const std::string& root : limits.data_roots) {
    if (!std::filesystem::path(root).is_absolute()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--data_roots: \"", root, "\" is relative; give absolute folders"));
    }
  }
  if (limits.checkpoints.has_value()) {
    for (const std::string& root : limits.checkpoints->roots) {
      if (!std::filesystem::path(root).is_absolute()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--checkpoint_roots: \"", root, "\" is relative; give absolute folders"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    CoordinatorConfig config, const Clock* clock, JobStore* store) {
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
  config.store.on_commit = [&commit_seconds, &commit_batches](absl::Duration d, int batches) {
    commit_seconds.Observe(absl::ToDoubleSeconds(d));
    commit_batches.Observe(batches);
  };
  if (store == nullptr) {
    TECL_ASSIGN_OR_RETURN(server->store_, SqliteJobStore::Open(
                                              (state_dir / "coordinator.db").string(), config.store));
    store = server->store_.get();
  }
  server->store_healthy_ = &metrics::BuildGauge()
                                .Name("tecl_coordinator_store_healthy")
                                .Help("1 while the state store accepts writes; 0 once a write "
                                      "failed: changes are refused and health is NOT_SERVING "
                                      "until the coordinator is restarted.")
                                .Register(server->registry_)
                                .Add({});
  server->store_healthy_->Set(1);
  server->rendezvous_ = std::make_unique<Rendezvous>(clock, config.rendezvous);

  CoordinatorOptions& options = config.coordinator;
  if (options.checkpoints.checkpoint_root.empty()) {
    options.checkpoints.checkpoint_root = (state_dir / "checkpoints").string();
  }
  // Specs may name checkpoint folders only under --checkpoint_roots, never in the default root.
  auto& confinement = options.jobs.limits.checkpoints;
  if (!confinement.has_value()) confinement.emplace();
  confinement->default_root = options.checkpoints.checkpoint_root;
  const bool advertise_listen_address = options.attempts.coordinator_address.empty();
  server->coordinator_ = std::make_unique<Coordinator>(options, store, clock,
                                                       server->rendezvous_.get(),
                                                       &server->registry_);
  TECL_RETURN_IF_ERROR(server->coordinator_->Restore());

  TECL_ASSIGN_OR_RETURN(const Authenticator auth, MakeAuthenticator(config.server));
  server->job_service_ =
      std::make_unique<JobService>(server->coordinator_.get(), auth, config.requests);
  server->membership_service_ =
      std::make_unique<MembershipService>(server->coordinator_.get(), auth, config.requests);
  server->rendezvous_service_ = std::make_unique<RendezvousService>(
      server->rendezvous_.get(), &server->coordinator_->membership(), auth, config.requests);
  // Requests beyond the per-field limits get INVALID_ARGUMENT from the services; the transport's
  // receive limit (ServerOptions, 4 MiB) is above them and refuses anything larger before any
  // handler or credential check runs. Responses (job lists, events) stay below 16 MiB.
  config.server.max_send_message_bytes = 16 << 20;
  TECL_ASSIGN_OR_RETURN(
      server->grpc_,
      GrpcServer::Start(config.server,
                        {server->job_service_.get(), server->membership_service_.get(),
                         server->rendezvous_service_.get()},
                        &server->registry_));
  if (advertise_listen_address) {
    server->coordinator_->attempts().SetCoordinatorAddress(server->grpc_->local_address());
  }
  server->coordinator_->host().OnStoreFailure(
      [s = server.get()](const absl::Status& error) { s->OnStoreFailure(error); });
  server->background_ = std::thread(&CoordinatorServer::BackgroundLoop, server.get());
  TECL_LOG(INFO) << "tecl-coordinator serving on " << server->grpc_->address()
                 << " (metrics on port " << server->grpc_->metrics_port() << "), state in "
                 << state_dir.string();
  return server;
}

void CoordinatorServer::OnStoreFailure(const absl::Status& error) {
  store_healthy_->Set(0);
  TECL_LOG(ERROR) << "the state store failed (" << error.message()
                  << "): refusing every change and reporting NOT_SERVING on the health service "
                     "and /healthz; fix the disk and restart tecl-coordinator";
  grpc_->SetServing(false, absl::StrCat("the state store failed: ", error.message()));
}

void CoordinatorServer::BackgroundLoop() {
  while (!stop_.WaitForNotificationWithTimeout(tick_interval_)) coordinator_->Tick();
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  stop_.Notify();
  if (background_.joinable()) background_.join();
  if (rendezvous_ != nullptr) rendezvous_->Shutdown();  // Ends waits, so their calls finish.
  if (grpc_ != nullptr) grpc_->Shutdown(grace);
  if (coordinator_ != nullptr) coordinator_->host().OnStoreFailure(nullptr);
  store_.reset();  // Commits what is queued.
}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace tecl::coordinator
