#include "services/worker/dist/bucket_assignment.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>

namespace tecl::worker::dist {

std::vector<BucketSpec> AssignBuckets(const std::vector<ParameterSpec>& parameters,
                                      int64_t bucket_bytes) {
  if (bucket_bytes <= 0) {
    throw std::invalid_argument("bucket size must be positive (got " +
                                std::to_string(bucket_bytes) + " bytes)");
  }
  struct Open {
    BucketSpec bucket;
    int64_t bytes = 0;
    size_t first_visit = 0;  // visiting position of the bucket's first parameter
  };
  using Kind = std::tuple<int, int, int>;  // dtype, device type, device index
  std::map<Kind, Open> open;
  std::vector<Open> closed;

  size_t visit = 0;
  for (size_t k = parameters.size(); k-- > 0; ++visit) {
    const ParameterSpec& p = parameters[k];
    const Kind kind{static_cast<int>(p.dtype), static_cast<int>(p.device.type()),
                    static_cast<int>(p.device.index())};
    auto [it, inserted] = open.try_emplace(kind);
    Open& bucket = it->second;
    if (bucket.bucket.parameters.empty()) {
      bucket.bucket.dtype = p.dtype;
      bucket.bucket.device = p.device;
      bucket.first_visit = visit;
    }
    bucket.bucket.parameters.push_back(k);
    bucket.bucket.offsets.push_back(bucket.bucket.numel);
    bucket.bucket.numel += p.numel;
    bucket.bytes += p.numel * static_cast<int64_t>(c10::elementSize(p.dtype));
    if (bucket.bytes >= bucket_bytes) {
      closed.push_back(std::move(bucket));
      open.erase(it);
    }
  }
  for (auto& [kind, bucket] : open) closed.push_back(std::move(bucket));
  std::sort(closed.begin(), closed.end(),
            [](const Open& a, const Open& b) { return a.first_visit < b.first_visit; });

  std::vector<BucketSpec> buckets;
  buckets.reserve(closed.size());
  for (Open& o : closed) buckets.push_back(std::move(o.bucket));
  return buckets;
}

int64_t BucketBytes(double bucket_size_mb) {
  if (!(bucket_size_mb > 0)) {
    throw std::invalid_argument("bucket_size_mb must be positive (got " +
                                std::to_string(bucket_size_mb) + ")");
  }
  return std::max<int64_t>(1, static_cast<int64_t>(bucket_size_mb * 1024.0 * 1024.0));
}

}  // namespace tecl::worker::dist
