// The one place where absl::Status and grpc::Status are converted.
//
// Codes map one to one (both follow google.rpc.Code); the message is kept. Status payloads are
// not carried across the wire.
#ifndef TECL_SERVICES_COMMON_GRPC_STATUS_H_
#define TECL_SERVICES_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace tecl {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_GRPC_STATUS_H_
