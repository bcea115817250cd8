// Status propagation macros (the Abseil release packaged here has none).
//
//   TECL_RETURN_IF_ERROR(DoThing());
//   TECL_ASSIGN_OR_RETURN(auto value, ComputeValue());
//   TECL_ASSIGN_OR_RETURN(value_, ComputeValue());
//
// Both evaluate their argument once and return its absl::Status from the enclosing function when
// it is not OK.
#ifndef TECL_SERVICES_COMMON_STATUS_MACROS_H_
#define TECL_SERVICES_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TECL_STATUS_CONCAT_INNER_(a, b) a##b
#define TECL_STATUS_CONCAT_(a, b) TECL_STATUS_CONCAT_INNER_(a, b)

#define TECL_RETURN_IF_ERROR(expr)                           \
  do {                                                       \
    ::absl::Status tecl_status_ = (expr);                    \
    if (!tecl_status_.ok()) return tecl_status_;             \
  } while (false)

#define TECL_ASSIGN_OR_RETURN(lhs, expr) \
  TECL_ASSIGN_OR_RETURN_IMPL_(TECL_STATUS_CONCAT_(tecl_statusor_, __LINE__), lhs, expr)

#define TECL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace tecl {

// Returns `status` with `context + ": "` prepended to its message (same code). OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_STATUS_MACROS_H_
