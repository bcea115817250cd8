// `teclctl local up|down|status`: a coordinator, N dataloaders and M trainer workers as background
// processes on this machine, under one state folder (the "home", default ./.tecl or $TECL_HOME):
//
//   <home>/state/            the coordinator's --state_dir (coordinator.db, checkpoints/)
//   <home>/logs/<name>.log   each process's output
//   <home>/pids/<name>.pid   each process's pid
//   <home>/coordinator.addr  the coordinator's host:port (it listens on 127.0.0.1, port 0)
//   <home>/secrets/          the cluster's CA, per-role certificates and tokens (local_secrets.h)
//
// The cluster is secured as a shared one is: every process gets its role's certificate (mutual
// TLS) and token, the coordinator and the dataloaders the auth file; teclctl calls as `user`.
// Binaries are looked up in $TECL_LOCAL_BIN_DIR (development and tests), next to teclctl's own
// executable, then on PATH. Processes get their configuration through TECL_<FLAG> environment
// variables (TECL_COORDINATOR, TECL_LISTEN, TECL_METRICS_LISTEN, TECL_THREADS), which every TECL
// binary reads for the flags it defines.
//
// Not thread-safe (a command-line tool's single thread).
#ifndef TECL_TOOLS_TECLCTL_LOCAL_CLUSTER_H_
#define TECL_TOOLS_TECLCTL_LOCAL_CLUSTER_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/auth.h"

namespace tecl::teclctl {

struct LocalClusterOptions {
  std::string home;                            // State folder.
  int trainers = 1;                            // tecl-worker processes.
  int dataloaders = 1;                         // tecl-dataloader processes.
  int threads = 2;                             // Threads per trainer and per dataloader.
  absl::Duration timeout = absl::Seconds(60);  // For the coordinator and the registrations.
  // Folders job specs may name as checkpoint.dir (the coordinator's --checkpoint_roots).
  std::vector<std::string> checkpoint_roots;
  // Folders prepare jobs may write under (the dataloaders' --write_root; absolute).
  std::vector<std::string> write_roots;
};

// The home folder: `flag` if set, else $TECL_HOME, else ./.tecl.
std::string LocalHome(const std::string& flag);

// The address of the local cluster's coordinator when one is running under `home`.
absl::StatusOr<std::string> LocalCoordinatorAddress(const std::string& home);

// Full path of a TECL binary, or NOT_FOUND saying where it was looked for and how to build it.
absl::StatusOr<std::string> FindBinary(const std::string& name);

// Starts the processes and waits until the coordinator answers health checks and every worker
// registered. A cluster already running under `home` is left as it is (FAILED_PRECONDITION).
// Progress lines go to `out`. On failure, what was started is stopped and the message includes
// the tail of the failing process's log.
absl::Status LocalUp(const LocalClusterOptions& options, std::ostream& out);

// Stops every process of the cluster (SIGTERM, then SIGKILL after 10 s). OK when none runs.
absl::Status LocalDown(const std::string& home, std::ostream& out);

// Prints each process (alive or not) and the coordinator's view of its workers (asked with the
// cluster's user credentials). NOT_FOUND when no cluster was started under `home`.
absl::Status LocalStatus(const std::string& home, std::ostream& out);

}  // namespace tecl::teclctl

#endif  // TECL_TOOLS_TECLCTL_LOCAL_CLUSTER_H_
