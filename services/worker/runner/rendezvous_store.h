// A c10d::Store whose keys live in the coordinator's rendezvous service, scoped by (job, attempt).
// The trainers of one attempt form their process group (Gloo, or NCCL's unique-id exchange)
// through it; keys of other attempts are invisible, and once the coordinator moves the job to a
// new attempt every call of the old one fails, so a stale rank cannot join a new group.
//
// Follows c10d's Store contract: methods block (get/wait up to the store timeout) and throw on
// failure: c10d::TimeoutError when a key does not appear in time, c10d::C10dError otherwise
// (including "attempt is stale"). Calls go through the CoordinatorClient, which owns their
// deadlines (a waiting call: its wait plus the client's rpc timeout). Thread-safe.
//
// RendezvousCommunicators: tecl-worker's CommunicatorFactory, which forms each group through a
// RendezvousStore over the coordinator.
#ifndef TECL_SERVICES_WORKER_RUNNER_RENDEZVOUS_STORE_H_
#define TECL_SERVICES_WORKER_RUNNER_RENDEZVOUS_STORE_H_

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "services/client/coordinator_client.h"
#include "services/worker/runner/communicator_factory.h"
#include "tecl/v1/coordinator.pb.h"

namespace tecl::worker {

class RendezvousStore final : public c10d::Store {
 public:
  // `session` is the trainer's (RegisterWorker): the coordinator lets it into the rendezvous of
  // its own (job, attempt) only.
  RendezvousStore(std::shared_ptr<CoordinatorClient> coordinator, std::string session,
                  std::string job_id, int attempt, std::chrono::milliseconds timeout);

  void set(const std::string& key, const std::vector<uint8_t>& value) override;
  std::vector<uint8_t> compareSet(const std::string& key, const std::vector<uint8_t>& expected,
                                  const std::vector<uint8_t>& desired) override;
  std::vector<uint8_t> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t value) override;
  bool deleteKey(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  int64_t getNumKeys() override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  tecl::v1::RendezvousScope Scope() const;
  // Throws the c10d exception matching a failed call.
  [[noreturn]] void Fail(const char* op, const std::string& key, const absl::Status& status) const;

  std::shared_ptr<CoordinatorClient> coordinator_;
  const std::string session_;
  const std::string job_id_;
  const int attempt_;
};

// Gloo transport settings of this process (dist::GroupOptions).
struct GlooOptions {
  // Network interface ("eth0"; else $GLOO_SOCKET_IFNAME) or the address to bind when none is named
  // ("127.0.0.1" on one machine; empty = this host's name).
  std::string interface;
  std::string hostname;
};

// The factory that makes a RendezvousStore over `coordinator` for the request's (job, attempt,
// session)
// calls dist::CreateCommunicator with it (Gloo settings from `gloo`, the NCCL device from
// the request's device).
CommunicatorFactory RendezvousCommunicators(std::shared_ptr<CoordinatorClient> coordinator,
                                            GlooOptions gloo);

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_RENDEZVOUS_STORE_H_
