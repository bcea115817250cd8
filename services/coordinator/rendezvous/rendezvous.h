// The rendezvous key-value store trainers form their process group with (the c10d Store of
// services/worker/runner/rendezvous_store.h calls it through the coordinator's Store* rpcs).
//
// Keys are scoped by (job, attempt). A job has at most one open attempt: JobManager opens it when
// the attempt's gang is placed (BeginAttempt) and closes it when the attempt ends (EndAttempt).
// Keys of an attempt are dropped when it ends or a newer one begins, so a stale rank can never
// read or write a newer attempt's keys:
//   unknown job                      -> NOT_FOUND
//   attempt not the open one         -> ABORTED (stop and wait for a new assignment)
//   value > max_value_bytes, key too long or empty -> INVALID_ARGUMENT
//   scope over max_keys / max_scope_bytes          -> RESOURCE_EXHAUSTED
//
// Waiting calls (Get with a wait, Wait) never block the caller: they register a waiter whose
// callback runs when the keys appear (on the thread of the call that set them), when the deadline
// passes (on the timer thread, or in ExpireDue for tests with a FakeClock), when the attempt ends
// (ABORTED), when the waiter is cancelled (CANCELLED) or at Shutdown (UNAVAILABLE). Every callback
// runs exactly once, never under the store's lock, and must not block.
//
// Thread-safe.
#ifndef TECL_SERVICES_COORDINATOR_RENDEZVOUS_RENDEZVOUS_H_
#define TECL_SERVICES_COORDINATOR_RENDEZVOUS_RENDEZVOUS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"

namespace tecl::coordinator {

struct RendezvousOptions {
  size_t max_value_bytes = 1 << 20;
  size_t max_key_bytes = 4096;
  size_t max_keys = 100000;            // Per scope.
  size_t max_scope_bytes = 256 << 20;  // Keys + values per scope.
  absl::Duration max_wait = absl::Hours(24 * 7);
  // Run a thread that expires waiters at their deadline (RealClock). Without it, call ExpireDue.
  bool run_timer_thread = true;
};

struct RendezvousScopeId {
  std::string job_id;
  int attempt = 0;
};

class Rendezvous {
 public:
  using WaitId = int64_t;
  using GetCallback = std::function<void(absl::StatusOr<std::string>)>;
  using WaitCallback = std::function<void(absl::Status)>;

  Rendezvous(const Clock* clock, RendezvousOptions options = {});
  ~Rendezvous();  // Shutdown().

  // ---- Attempt lifecycle (JobManager) ----
  // Makes `attempt` the job's open attempt (the job becomes known); keys and waiters of an
  // older attempt are dropped (waiters get ABORTED).
  void BeginAttempt(const std::string& job_id, int attempt);
  // Closes `attempt` if it is the open one: its keys are dropped, its waiters get ABORTED.
  void EndAttempt(const std::string& job_id, int attempt);

  // ---- Key-value operations ----
  absl::Status Set(const RendezvousScopeId& scope, const std::string& key, std::string value);
  // Calls `done` with the value once `key` exists; DEADLINE_EXCEEDED after `wait`; with a zero
  // wait, at once (NOT_FOUND when absent). Returns an id for Cancel (0 when `done` already ran).
  WaitId Get(const RendezvousScopeId& scope, const std::string& key, absl::Duration wait,
             GetCallback done);
  // Adds `delta` to the integer value of `key` (absent = 0). INVALID_ARGUMENT when the value is
  // not an integer.
  absl::StatusOr<int64_t> Add(const RendezvousScopeId& scope, const std::string& key,
                              int64_t delta);
  // Sets `desired` when the value equals `expected` (or, with `expect_absent`, when the key is
  // absent); returns the value stored afterwards ("" when absent).
  absl::StatusOr<std::string> CompareSet(const RendezvousScopeId& scope, const std::string& key,
                                         const std::string& expected, std::string desired,
                                         bool expect_absent);
  // Calls `done` (OK) once every key exists; DEADLINE_EXCEEDED after `wait`.
  WaitId Wait(const RendezvousScopeId& scope, const std::vector<std::string>& keys,
              absl::Duration wait, WaitCallback done);
  // Whether the key existed.
  absl::StatusOr<bool> Delete(const RendezvousScopeId& scope, const std::string& key);
  struct CheckResult {
    bool all_present = false;
    int64_t num_keys = 0;
  };
  absl::StatusOr<CheckResult> Check(const RendezvousScopeId& scope,
                                    const std::vector<std::string>& keys);

  // Completes a pending waiter with CANCELLED (the client went away). No-op when it finished.
  void Cancel(WaitId id);
  // Completes every waiter whose deadline passed with DEADLINE_EXCEEDED.
  void ExpireDue();
  // Completes every waiter with UNAVAILABLE and refuses new ones; stops the timer thread.
  void Shutdown();

  size_t pending_waiters() const;

 private:
  struct Waiter {
    std::string job_id;
    int attempt = 0;
    std::vector<std::string> keys;
    absl::Time deadline;
    GetCallback on_value;   // Get: the value of keys[0].
    WaitCallback on_ready;  // Wait.
  };
  struct Scope {
    int attempt = 0;
    bool open = false;
    std::map<std::string, std::string> values;
    size_t bytes = 0;
  };
  // A completed waiter and its result, run after the lock is released.
  using Completion = std::function<void()>;

  absl::StatusOr<Scope*> FindScope(const RendezvousScopeId& scope)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckKey(const std::string& key) const;
  absl::Status Store(Scope& scope, const RendezvousScopeId& id, const std::string& key,
                     std::string value, std::vector<Completion>* done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Completes the waiters of `job_id` whose keys all exist.
  void WakeReady(const std::string& job_id, const Scope& scope, std::vector<Completion>* done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbortWaiters(const std::string& job_id, const std::string& why,
                    std::vector<Completion>* done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static Completion Complete(Waiter waiter, absl::Status status, const std::string& value);
  WaitId AddWaiter(Waiter waiter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TimerLoop();

  const Clock* const clock_;
  const RendezvousOptions options_;

  mutable absl::Mutex mu_;
  std::map<std::string, Scope> scopes_ ABSL_GUARDED_BY(mu_);
  std::map<WaitId, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  WaitId next_wait_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  int64_t wake_generation_ ABSL_GUARDED_BY(mu_) =
      0;  // Bumped when the earliest deadline may change.
  std::thread timer_;
};

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_RENDEZVOUS_RENDEZVOUS_H_
