// FakeWorker: a trainer or dataloader written against the coordinator's client API alone, for
// testing the control plane without LibTorch or FFmpeg. It registers, heartbeats on its own
// (fast) interval, and runs each assignment by advancing a step counter on every heartbeat,
// reporting progress, registering a checkpoint (rank 0) and ending with the configured outcome.
// Lost registrations (NOT_FOUND) are redone; stop orders are obeyed.
//
// Thread-safe; owns one thread between Start and Stop.
#ifndef TECL_TESTS_INTEGRATION_COORDINATOR_FAKE_WORKER_H_
#define TECL_TESTS_INTEGRATION_COORDINATOR_FAKE_WORKER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/client/coordinator_client.h"
#include "tecl/v1/coordinator.pb.h"

namespace tecl::testing {

struct FakeWorkerOptions {
  tecl::v1::WorkerKind kind = tecl::v1::WORKER_KIND_TRAINER;
  std::string hostname = "fake-host";
  tecl::v1::Device device = tecl::v1::DEVICE_CPU;
  int gpus = 0;
  std::string address = "127.0.0.1:1";  // Dataloaders need one; nobody connects to it.
  absl::Duration interval = absl::Milliseconds(20);
  int64_t steps_per_beat = 50;
  // How an assignment ends: SUCCEEDED, FAILED or FATAL once total_steps is reached; UNSPECIFIED
  // never ends (runs until stopped).
  tecl::v1::Outcome outcome = tecl::v1::OUTCOME_SUCCEEDED;
  std::string reason = "fake failure";
};

class FakeWorker {
 public:
  FakeWorker(std::shared_ptr<CoordinatorClient> coordinator, FakeWorkerOptions options);
  ~FakeWorker();  // Stop().

  void Start();
  // Stops heartbeating (the coordinator will declare the worker lost after its timeout).
  void Stop();

  std::string id() const;
  // The session of the current registration ("" before the first).
  std::string session() const;
  int64_t runs_finished() const { return runs_finished_.load(); }
  void set_outcome(tecl::v1::Outcome outcome);

 private:
  void Loop();
  void Beat();

  const std::shared_ptr<CoordinatorClient> coordinator_;
  FakeWorkerOptions options_;

  mutable absl::Mutex mu_;
  std::string id_ ABSL_GUARDED_BY(mu_);
  std::string session_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ = false;  // Loop thread only.
  tecl::v1::Assignment assignment_;
  int64_t step_ = 0;
  std::atomic<int64_t> runs_finished_{0};
  std::thread thread_;
};

}  // namespace tecl::testing

#endif  // TECL_TESTS_INTEGRATION_COORDINATOR_FAKE_WORKER_H_
