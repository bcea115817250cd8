// Bucket assignment for gradient averaging: which parameters share one flat all-reduce buffer.
//
// Parameters are visited in REVERSE registration order, which approximates the order in which
// backward produces their gradients (the last layer's gradients come first). Each (dtype, device)
// has its own open bucket; a parameter joins the open bucket of its kind, and the bucket closes
// once it holds at least `bucket_bytes` (so one parameter larger than the cap gets a bucket of its
// own, and buckets never mix dtypes or devices). Buckets are returned in launch order: ordered by
// the position of their first parameter in the visiting order, which is identical on every rank
// for the same model, so every rank launches bucket i as its i-th collective.
//
// Pure functions; thread-safe.
#ifndef TECL_SERVICES_WORKER_DIST_BUCKET_ASSIGNMENT_H_
#define TECL_SERVICES_WORKER_DIST_BUCKET_ASSIGNMENT_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <vector>

namespace tecl::worker::dist {

// What the assignment needs to know about one parameter.
struct ParameterSpec {
  int64_t numel = 0;
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
};

struct BucketSpec {
  // Indices into the registration-ordered parameter list, in the order they were added (reverse
  // registration order); parameter k of the bucket occupies [offsets[k], offsets[k] + numel).
  std::vector<size_t> parameters;
  std::vector<int64_t> offsets;
  int64_t numel = 0;
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
};

// Assigns `parameters` (registration order) to buckets of at least `bucket_bytes` each (the last
// bucket of each kind may be smaller). Throws std::invalid_argument for bucket_bytes <= 0.
std::vector<BucketSpec> AssignBuckets(const std::vector<ParameterSpec>& parameters,
                                      int64_t bucket_bytes);

// bucket_size_mb (MiB, as DDP's bucket_cap_mb) -> bytes; throws std::invalid_argument unless > 0.
int64_t BucketBytes(double bucket_size_mb);

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_BUCKET_ASSIGNMENT_H_
