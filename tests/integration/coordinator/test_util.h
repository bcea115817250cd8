// Helpers of the coordinator's integration and end-to-end tests: temporary folders, a data set
// folder, job specs, stubs, and waiting on a job's state through WatchJob (no polling sleeps).
#ifndef TECL_TESTS_INTEGRATION_COORDINATOR_TEST_UTIL_H_
#define TECL_TESTS_INTEGRATION_COORDINATOR_TEST_UTIL_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tecl/v1/coordinator.grpc.pb.h"

namespace tecl::testing {

// A new empty folder under /tmp; removed by the caller.
std::string MakeTempDir(const std::string& prefix);

// <dir>/data/synth with class folders and trainlist.txt / testlist.txt; returns the root.
std::string MakeDataset(const std::string& dir);

// A small valid CPU pretraining spec over `root` (tiny3d, 100 steps).
tecl::v1::JobSpec SmallSpec(const std::string& root, int trainers = 1, int dataloaders = 1);

std::shared_ptr<tecl::v1::Coordinator::Stub> MakeStub(const std::string& address,
                                                      const std::string& token = "");

// Follows the job with WatchJob until `done(job)` holds; returns that snapshot, or
// DEADLINE_EXCEEDED / the stream's error.
absl::StatusOr<tecl::v1::Job> WaitForJob(tecl::v1::Coordinator::Stub* stub, const std::string& id,
                                         const std::function<bool(const tecl::v1::Job&)>& done,
                                         absl::Duration timeout = absl::Seconds(30));
absl::StatusOr<tecl::v1::Job> WaitForState(tecl::v1::Coordinator::Stub* stub, const std::string& id,
                                           tecl::v1::JobState state,
                                           absl::Duration timeout = absl::Seconds(30));

// Number of live (not lost) workers of `kind`.
int LiveWorkers(tecl::v1::Coordinator::Stub* stub, tecl::v1::WorkerKind kind);

}  // namespace tecl::testing

#endif  // TECL_TESTS_INTEGRATION_COORDINATOR_TEST_UTIL_H_
