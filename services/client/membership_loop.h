// MembershipLoop: a worker's membership in the cluster, shared by dataloaders and trainers. On its
// own thread it registers with the coordinator, heartbeats at the interval the coordinator asks
// for, and registers again (a new id) when the coordinator no longer knows the worker (NOT_FOUND:
// it was declared lost, or the coordinator lost its state) or no longer takes its session
// (PERMISSION_DENIED). Failures are never fatal: an
// unreachable coordinator is retried with a jittered Backoff, logged once per streak and then on
// every tenth failure, while the worker goes on serving.
//
// Each registration comes with a session token; the loop sends it with every heartbeat and hands
// it to the worker (Registration) for its other calls.
//
// The worker plugs in through Hooks (all run on the loop's thread): `before_heartbeat` fills its
// report into each heartbeat (a trainer: its status, job and progress; it may first make other
// calls, e.g. report a finished run's outcome); `on_response` gets every answer (assignments and
// stop orders); `on_lost` runs when the registration was lost, before registering again.
//
// Thread-safety: thread-safe. Owns one thread; Stop() (or the destructor) joins it. The client
// and the metrics must outlive the loop.
#ifndef TECL_SERVICES_CLIENT_MEMBERSHIP_LOOP_H_
#define TECL_SERVICES_CLIENT_MEMBERSHIP_LOOP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/client/backoff.h"
#include "services/client/coordinator_client.h"
#include "services/common/metrics.h"
#include "tecl/v1/coordinator.pb.h"

namespace tecl {

struct MembershipLoopOptions {
  tecl::v1::WorkerInfo worker;     // kind, address, metrics address, host name, device, threads.
  std::string coordinator_address;  // For log lines.
  // Until the coordinator says otherwise.
  absl::Duration default_heartbeat_interval = absl::Seconds(1);
  // Between failed registrations and heartbeats.
  BackoffOptions backoff = {absl::Milliseconds(200), absl::Seconds(5), 2.0, 0.2};
};

// The worker's metrics, registered by the caller under its own names (any may be null).
struct MembershipMetrics {
  metrics::Gauge* registered = nullptr;             // 1 while registered.
  metrics::Counter* registrations = nullptr;        // Successful registrations.
  metrics::Counter* heartbeat_failures = nullptr;   // Registrations and heartbeats that failed.
};

class MembershipLoop {
 public:
  // The current registration: the worker's id and the session its calls carry.
  struct Registration {
    std::string worker_id;
    std::string session;
  };
  struct Hooks {
    std::function<void(const Registration& registration, tecl::v1::HeartbeatRequest* request)>
        before_heartbeat;
    std::function<void(const tecl::v1::HeartbeatResponse& response)> on_response;
    std::function<void()> on_lost;
  };

  MembershipLoop(MembershipLoopOptions options, std::shared_ptr<CoordinatorClient> coordinator,
                 Hooks hooks, MembershipMetrics metrics = {});
  ~MembershipLoop();  // Stop().
  MembershipLoop(const MembershipLoop&) = delete;
  MembershipLoop& operator=(const MembershipLoop&) = delete;

  // Starts the thread. Never blocks.
  void Start();
  // Stops heartbeating and joins the thread (waits for at most the call in progress). Idempotent.
  void Stop();
  // Heartbeats now instead of at the end of the interval (e.g. a run just finished).
  void Wake();

  // The id of the current registration; empty while not registered.
  std::string worker_id() const;
  Registration registration() const;
  // Blocks until registered or `timeout` passes; returns whether registered.
  bool WaitUntilRegistered(absl::Duration timeout) const;

 private:
  void Loop();
  // Waits `duration`, or until Stop() or Wake(); returns false when stopping.
  bool Sleep(absl::Duration duration);
  void Failed(absl::string_view what, const absl::Status& status);

  const MembershipLoopOptions options_;
  const std::shared_ptr<CoordinatorClient> coordinator_;
  const Hooks hooks_;
  const MembershipMetrics metrics_;

  mutable absl::Mutex mu_;
  Registration registration_ ABSL_GUARDED_BY(mu_);
  absl::Duration interval_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  int failures_in_a_row_ = 0;  // Loop thread only.
  std::thread thread_;
};

}  // namespace tecl

#endif  // TECL_SERVICES_CLIENT_MEMBERSHIP_LOOP_H_
