// FakeWorld: an in-process group of N ranks for tests (in the style of c10d's FakeProcessGroup,
// but it really averages): each rank gets a Communicator; the k-th collectives of all ranks are
// matched, checked for the same kind, dtype, shape and root, and completed when the last rank
// joins (so ranks may run in threads, or one after another on one thread since launching never
// blocks). Mismatched collectives, a killed rank or a rank that never joins make Wait() throw
// CollectiveError / CollectiveTimeoutError, as the real backends do.
//
// Thread-safe. The world is shared by its communicators; every collective is logged per rank
// ("all-reduce float[6]", "all-gather float[2, 3]", "broadcast long[1] root 0", "barrier") for
// ordering assertions.
#ifndef TECL_SERVICES_WORKER_DIST_FAKE_COMMUNICATOR_H_
#define TECL_SERVICES_WORKER_DIST_FAKE_COMMUNICATOR_H_

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "services/worker/dist/communicator.h"

namespace tecl::worker::dist {

class FakeWorld : public std::enable_shared_from_this<FakeWorld> {
 public:
  static std::shared_ptr<FakeWorld> Create(int world_size, std::chrono::milliseconds timeout);

  // The communicator of `rank` (one per rank; calling again returns a new view of the same rank).
  std::shared_ptr<Communicator> ForRank(int rank);

  // The rank disappears: every collective it has not joined fails with CollectiveError on the
  // other ranks, now and later.
  void Kill(int rank);

  std::vector<std::string> Log(int rank) const;
  int world_size() const { return world_size_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  struct Op;
  // Joins the caller's next collective; returns the op to wait on. `output`: all-gather's.
  std::shared_ptr<Op> Join(int rank, const std::string& kind, at::Tensor tensor, int root,
                           at::Tensor output = at::Tensor());
  // Blocks until the op completed; throws like CollectiveHandle::Wait.
  void WaitFor(int rank, const std::shared_ptr<Op>& op, std::chrono::milliseconds timeout);

 private:
  FakeWorld(int world_size, std::chrono::milliseconds timeout);
  void Complete(Op& op);  // requires mu_

  const int world_size_;
  const std::chrono::milliseconds timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, std::shared_ptr<Op>> ops_;  // by sequence number; guarded by mu_
  std::vector<int64_t> next_sequence_;          // guarded by mu_
  std::vector<bool> dead_;                      // guarded by mu_
  std::vector<std::string> broken_;             // per rank, first failure; guarded by mu_
  std::vector<std::vector<std::string>> log_;   // guarded by mu_
};

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_FAKE_COMMUNICATOR_H_
