// Stragglers: the ranks of a job that hold the others back. In synchronous data parallelism every
// step waits for the slowest rank, so one slow trainer (a throttled GPU, a busy host, a starved
// dataloader) sets the whole job's pace. Every rank's step then lasts equally long (the others
// wait for the slow one inside the all-reduce), so ranks are compared by their own time per step:
// step time minus all-reduce time (OwnStepSeconds), i.e. compute plus data wait, as the alert
// TeclStragglerRank does. A rank is a straggler when its own time exceeds `factor` times the
// median own time of the job's other ranks. The coordinator counts them
// (tecl_coordinator_straggler_ranks) and `teclctl top` flags them.
#ifndef TECL_SERVICES_COORDINATOR_STATE_STRAGGLERS_H_
#define TECL_SERVICES_COORDINATOR_STATE_STRAGGLERS_H_

#include <vector>

namespace tecl::coordinator {

inline constexpr double kDefaultStragglerFactor = 1.5;

// Step time minus all-reduce time, at least 0.
inline double OwnStepSeconds(double step_seconds, double allreduce_seconds) {
  return step_seconds > allreduce_seconds ? step_seconds - allreduce_seconds : 0;
}

// One flag per entry of `own_seconds` (the ranks of one job attempt). Entries <= 0 (no report
// yet) are never flagged and are not counted in the others' median; with fewer than two
// reporting ranks nothing is flagged.
std::vector<bool> FindStragglers(const std::vector<double>& own_seconds, double factor);

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_STATE_STRAGGLERS_H_
