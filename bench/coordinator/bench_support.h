// What the coordinator benchmarks (tecl_coordinator_bench, tecl_coordinator_scale_bench) share: a
// tecl-coordinator child process on a fresh state folder (optionally pinned to one CPU), its
// /metrics and CPU time as read from outside, latency samples, and the pretraining spec they
// submit.
//
// Thread-safety: CoordinatorProcess's const methods may be called from any thread; Latencies is
// not thread-safe (one per thread, merged afterwards).
#ifndef TECL_BENCH_COORDINATOR_BENCH_SUPPORT_H_
#define TECL_BENCH_COORDINATOR_BENCH_SUPPORT_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/common/auth.h"
#include "tecl/v1/job.pb.h"

namespace tecl::bench {

// The whole file, or "" when it cannot be read.
std::string ReadFile(const std::string& path);

// The body of GET http://127.0.0.1:port/path (HTTP/1.0, read to the end); "" on failure.
std::string HttpGetBody(int port, const std::string& path);

// The coordinators run secured as shipped: CoordinatorProcess writes an auth file with one token
// per role (user, trainer, dataloader) and every call carries the token of its caller's role.
// How a client of `role` calls a benchmark coordinator. With `own_connection`, the channel does
// not share its TCP connection with other channels to the same address (one connection per
// simulated host).
ChannelOptions BenchChannel(Role role, bool own_connection = false);

struct CoordinatorProcessOptions {
  // Fresh folder: the coordinator's --state_dir, its log (coordinator.log) and port file.
  std::string dir;
  // Flags after the ones every benchmark passes (--listen=127.0.0.1:0, --metrics_listen=
  // 127.0.0.1:0, --state_dir, --port_file, --auth_file, --check_dataset_paths=false).
  std::vector<std::string> flags;
  // Pins the process (and so every thread it starts) to this CPU; -1 = no pinning.
  int cpu = -1;
  // Words run in front of the coordinator (e.g. {"valgrind", "--tool=callgrind"}); the first is
  // looked up in PATH.
  std::vector<std::string> prefix;
  // How long to wait for the coordinator to write its port file.
  double start_timeout_s = 30;
};

// A tecl-coordinator child process: the binary in $TECL_BIN_DIR when set, else next to the running
// benchmark. Stopped with SIGTERM (and waited for) by the destructor.
class CoordinatorProcess {
 public:
  // Starts it and waits until it serves. INVALID_ARGUMENT for a CPU that does not exist or may
  // not be used;
  // UNAVAILABLE (with the coordinator's log) when it did not come up. Blocks.
  static absl::StatusOr<std::unique_ptr<CoordinatorProcess>> Start(
      CoordinatorProcessOptions options);
  ~CoordinatorProcess();
  CoordinatorProcess(const CoordinatorProcess&) = delete;
  CoordinatorProcess& operator=(const CoordinatorProcess&) = delete;

  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  int metrics_port() const { return metrics_port_; }
  std::string log_path() const;

  // Every sample of /metrics by name and labels as written ("x_count" -> 12,
  // "x{state=\"running\"}" -> 3); empty on failure.
  std::map<std::string, double> ScrapeMetrics() const;
  // Mean of a histogram on /metrics (sum / count), or -1.
  double HistogramMean(const std::string& name) const;
  // utime + stime of the process so far (/proc/<pid>/stat), seconds; -1 when unreadable.
  double CpuSeconds() const;
  // utime + stime so far of each thread name (/proc/<pid>/task/*/stat, threads of one name
  // summed), seconds.
  std::map<std::string, double> CpuSecondsByThreadName() const;

 private:
  CoordinatorProcess() = default;

  std::string dir_;
  pid_t pid_ = 0;
  std::string address_;
  int metrics_port_ = 0;
};

// utime + stime of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat in seconds and the thread's
// name; false when unreadable.
bool ReadProcStat(const std::string& stat_path, double* cpu_seconds, std::string* name);

// Latency samples in milliseconds.
struct Latencies {
  std::vector<double> ms;
  // The p-quantile (0..1; 1 = max) of the samples; 0 when empty. Sorts the samples.
  double Percentile(double p);
  void Merge(const Latencies& other) { ms.insert(ms.end(), other.ms.begin(), other.ms.end()); }
};

// The pretraining spec the benchmarks submit: tiny3d (the CPU preset) on /data/synth, a path the
// coordinator does not check (--check_dataset_paths=false).
tecl::v1::JobSpec BenchJobSpec();

}  // namespace tecl::bench

#endif  // TECL_BENCH_COORDINATOR_BENCH_SUPPORT_H_
