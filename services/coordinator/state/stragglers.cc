#include "services/coordinator/state/stragglers.h"

#include <algorithm>
#include <cstddef>

namespace tecl::coordinator {

std::vector<bool> FindStragglers(const std::vector<double>& own_seconds, double factor) {
  std::vector<bool> flags(own_seconds.size(), false);
  // The reporting ranks' times, sorted once: O(n log n) for a job of any size (this runs under
  // the coordinator's lock at every scrape).
  std::vector<double> sorted;
  for (double t : own_seconds) {
    if (t > 0) sorted.push_back(t);
  }
  if (sorted.size() < 2) return flags;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size() - 1;  // The others of any one rank.
  for (size_t i = 0; i < own_seconds.size(); ++i) {
    const double t = own_seconds[i];
    if (!(t > 0)) continue;
    // The k-th smallest of the others: `sorted` without one entry equal to t.
    const size_t skip = static_cast<size_t>(
        std::lower_bound(sorted.begin(), sorted.end(), t) - sorted.begin());
    auto other = [&](size_t k) { return sorted[k < skip ? k : k + 1]; };
    const double median = n % 2 == 1 ? other(n / 2) : (other(n / 2 - 1) + other(n / 2)) / 2;
    flags[i] = t > factor * median;
  }
  return flags;
}

}  // namespace tecl::coordinator
