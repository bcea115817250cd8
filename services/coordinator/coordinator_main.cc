// tecl-coordinator: schedules pretraining jobs, keeps their durable state, hosts the rendezvous.
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "services/common/flags.h"
#include "services/common/logging.h"
#include "services/common/client_flags.h"
#include "services/common/server_flags.h"
#include "services/coordinator/service/coordinator_server.h"

namespace {
// The defaults of every flag below are the config's own.
const tecl::coordinator::CoordinatorConfig kDefaults;
}  // namespace

ABSL_FLAG(std::string, state_dir, kDefaults.state_dir, "Folder of coordinator.db and checkpoints/");
ABSL_FLAG(absl::Duration, heartbeat_interval, kDefaults.coordinator.membership.heartbeat_interval,
          "Interval workers heartbeat at");
ABSL_FLAG(absl::Duration, heartbeat_timeout, kDefaults.coordinator.membership.heartbeat_timeout,
          "Idle worker silence limit");
ABSL_FLAG(double, straggler_factor, kDefaults.coordinator.membership.straggler_factor,
          "A running rank whose step time without the all-reduce exceeds this times its job's "
          "other ranks' median counts in tecl_coordinator_straggler_ranks");
ABSL_FLAG(int, max_trainers, kDefaults.coordinator.jobs.limits.max_trainers,
          "Largest number of trainers one job may ask for");
ABSL_FLAG(int, max_prepare_dataloaders, kDefaults.coordinator.jobs.limits.max_prepare_dataloaders,
          "Largest number of dataloaders one prepare job may ask for");
ABSL_FLAG(std::string, data_roots, "", "Folders dataset paths must lie under (comma-separated)");
ABSL_FLAG(std::string, checkpoint_roots, "",
          "Folders a spec's checkpoint.dir may name (comma-separated; empty = specs cannot name "
          "one: checkpoints go to <state_dir>/checkpoints/<job id>)");
ABSL_FLAG(bool, check_dataset_paths, kDefaults.coordinator.jobs.limits.check_paths_exist,
          "Refuse specs whose dataset paths do not exist here");
ABSL_FLAG(int, max_bypasses, kDefaults.coordinator.attempts.scheduler.max_bypasses,
          "Starts ahead of a blocked job before it reserves (0 = FIFO)");
ABSL_FLAG(std::string, advertise_address, "", "host:port of the rendezvous given to trainers");
ABSL_FLAG(int, store_max_group, kDefaults.store.max_group_batches,
          "Most writes sharing one fsync'ed commit (1 = no grouping)");
ABSL_FLAG(int64_t, log_tail_bytes_per_job, kDefaults.coordinator.logs.max_bytes_per_job,
          "Newest trainer log bytes kept per job for teclctl logs (memory)");
ABSL_FLAG(int, log_tail_jobs, kDefaults.coordinator.logs.max_jobs,
          "Jobs whose trainer log tails are kept (the least recently written is dropped)");
ABSL_FLAG(std::string, port_file, "", "Write the bound host:port here once serving");

int main(int argc, char** argv) {
  tecl::BlockTerminationSignals();
  tecl::ParseFlags(argc, argv, "tecl-coordinator [flags]: schedules TECL jobs, stores their state");
  tecl::SetLogTag("coordinator");
  tecl::coordinator::CoordinatorConfig config;
  auto server_options = tecl::ServerOptionsFromFlags("0.0.0.0:7070");
  if (!server_options.ok()) {
    TECL_LOG(ERROR) << server_options.status().message();
    return 2;
  }
  config.server = *std::move(server_options);
  config.state_dir = absl::GetFlag(FLAGS_state_dir);
  config.coordinator.membership.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  config.coordinator.membership.heartbeat_timeout = absl::GetFlag(FLAGS_heartbeat_timeout);
  config.coordinator.membership.straggler_factor = absl::GetFlag(FLAGS_straggler_factor);
  if (!(config.coordinator.membership.straggler_factor > 1)) {
    TECL_LOG(ERROR) << "--straggler_factor must be > 1 (a rank that many times slower than its "
                    << "job's median is a straggler), not "
                    << config.coordinator.membership.straggler_factor;
    return 2;
  }
  config.coordinator.jobs.limits.max_trainers = absl::GetFlag(FLAGS_max_trainers);
  config.coordinator.jobs.limits.max_prepare_dataloaders =
      absl::GetFlag(FLAGS_max_prepare_dataloaders);
  config.coordinator.jobs.limits.data_roots =
      absl::StrSplit(absl::GetFlag(FLAGS_data_roots), ',', absl::SkipEmpty());
  config.coordinator.jobs.limits.check_paths_exist = absl::GetFlag(FLAGS_check_dataset_paths);
  config.coordinator.jobs.limits.checkpoints.emplace().roots =
      absl::StrSplit(absl::GetFlag(FLAGS_checkpoint_roots), ',', absl::SkipEmpty());
  config.coordinator.attempts.scheduler.max_bypasses = absl::GetFlag(FLAGS_max_bypasses);
  config.coordinator.attempts.coordinator_address = absl::GetFlag(FLAGS_advertise_address);
  config.store.max_group_batches = absl::GetFlag(FLAGS_store_max_group);
  config.coordinator.logs.max_bytes_per_job = absl::GetFlag(FLAGS_log_tail_bytes_per_job);
  config.coordinator.logs.max_jobs = absl::GetFlag(FLAGS_log_tail_jobs);
  if (config.coordinator.logs.max_bytes_per_job < 4096 || config.coordinator.logs.max_jobs < 1) {
    TECL_LOG(ERROR) << "--log_tail_bytes_per_job must be at least 4096 and --log_tail_jobs at "
                    << "least 1 (they bound the memory held for teclctl logs)";
    return 2;
  }
  auto server = tecl::coordinator::CoordinatorServer::Start(config);
  if (!server.ok()) {
    TECL_LOG(ERROR) << "cannot start: " << server.status().message();
    return 1;
  }
  if (const std::string file = absl::GetFlag(FLAGS_port_file); !file.empty()) {
    std::ofstream(file + ".tmp") << (*server)->address() << "\n";
    std::rename((file + ".tmp").c_str(), file.c_str());
  }
  TECL_LOG(INFO) << "signal " << tecl::WaitForTerminationSignal() << ": shutting down";
  (*server)->Shutdown(absl::Seconds(10));
  return 0;
}
