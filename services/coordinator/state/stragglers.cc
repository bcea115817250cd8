#include "services/coordinator/state/stragglers.h"

#include <algorithm>

namespace tecl::coordinator {

std::vector<bool> FindStragglers(const std::vector<double>& own_seconds, double factor) {
  std::vector<bool> flags(own_seconds.size(), false);
  for (size_t i = 0; i < own_seconds.size(); ++i) {
    if (!(own_seconds[i] > 0)) continue;
    std::vector<double> others;
    for (size_t j = 0; j < own_seconds.size(); ++j) {
      if (j != i && own_seconds[j] > 0) others.push_back(own_seconds[j]);
    }
    if (others.empty()) continue;
    std::sort(others.begin(), others.end());
    const size_t n = others.size();
    const double median = n % 2 == 1 ? others[n / 2] : (others[n / 2 - 1] + others[n / 2]) / 2;
    flags[i] = own_seconds[i] > factor * median;
  }
  return flags;
}

}  // namespace tecl::coordinator
