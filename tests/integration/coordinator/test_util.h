// Helpers of the coordinator's integration and end-to-end tests: temporary folders, a data set
// folder, job specs, coordinator clients, and waiting on a job's state through WatchJob (no
// polling sleeps).
#ifndef TECL_TESTS_INTEGRATION_COORDINATOR_TEST_UTIL_H_
#define TECL_TESTS_INTEGRATION_COORDINATOR_TEST_UTIL_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/client/coordinator_client.h"
#include "services/common/auth.h"

namespace tecl::testing {

// A new empty folder under /tmp; removed by the caller.
std::string MakeTempDir(const std::string& prefix);

// <dir>/data/synth with class folders and trainlist.txt / testlist.txt; returns the root.
std::string MakeDataset(const std::string& dir);

// A small valid CPU pretraining spec over `root` (tiny3d, 100 steps).
tecl::v1::JobSpec SmallSpec(const std::string& root, int trainers = 1, int dataloaders = 1);

// One token per role, as a test cluster's servers accept them (ServerOptions::tokens).
struct TestTokens {
  Credential user{Role::kUser, "tester", "user-token-0123456789abcdef"};
  Credential reader{Role::kReader, "dashboard", "reader-token-0123456789abcdef"};
  Credential trainer{Role::kTrainer, "trainers", "trainer-token-0123456789abcdef"};
  Credential dataloader{Role::kDataloader, "loaders", "dataloader-token-0123456789abcdef"};

  std::vector<Credential> all() const { return {user, reader, trainer, dataloader}; }
  // The worker kind's credential.
  const Credential& worker(tecl::v1::WorkerKind kind) const {
    return kind == tecl::v1::WORKER_KIND_DATALOADER ? dataloader : trainer;
  }
};

// A gRPC CoordinatorClient of the coordinator at `address`, sending `token` when non-empty.
std::shared_ptr<CoordinatorClient> MakeClient(const std::string& address,
                                              const std::string& token = "",
                                              ClientOptions options = {});

// Follows the job with WatchJob until `done(job)` holds; returns that snapshot, or
// DEADLINE_EXCEEDED / the stream's error.
absl::StatusOr<tecl::v1::Job> WaitForJob(CoordinatorClient* client, const std::string& id,
                                         const std::function<bool(const tecl::v1::Job&)>& done,
                                         absl::Duration timeout = absl::Seconds(30));
absl::StatusOr<tecl::v1::Job> WaitForState(CoordinatorClient* client, const std::string& id,
                                           tecl::v1::JobState state,
                                           absl::Duration timeout = absl::Seconds(30));

// Number of live (not lost) workers of `kind`.
int LiveWorkers(CoordinatorClient* client, tecl::v1::WorkerKind kind);

}  // namespace tecl::testing

#endif  // TECL_TESTS_INTEGRATION_COORDINATOR_TEST_UTIL_H_
