#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/grpc_status.h"
#include "services/common/status_macros.h"

namespace tecl {
namespace {

TEST(GrpcStatusTest, EveryCanonicalCodeRoundTrips) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), code == 0 ? "" : "message");
    const grpc::Status grpc_status = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(grpc_status.error_code()), code);
    const absl::Status back = FromGrpcStatus(grpc_status);
    EXPECT_EQ(back, status) << "code " << code;
  }
}

TEST(GrpcStatusTest, KeepsMessageAndSpecificCodes) {
  const grpc::Status s =
      ToGrpcStatus(absl::InvalidArgumentError("job spec: model.backbone: \"r50\" is unknown"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "job spec: model.backbone: \"r50\" is unknown");
  EXPECT_EQ(ToGrpcStatus(absl::UnauthenticatedError("x")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")),
            absl::UnavailableError("down"));
}

TEST(GrpcStatusTest, OutOfRangeCodeBecomesUnknown) {
  const absl::Status odd(static_cast<absl::StatusCode>(42), "odd");
  EXPECT_EQ(ToGrpcStatus(odd).error_code(), grpc::StatusCode::UNKNOWN);
  // 31 is the largest value grpc::StatusCode can hold (its codes are 0..16) and names no code;
  // a larger cast would itself be undefined.
  EXPECT_EQ(FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(31), "odd")).code(),
            absl::StatusCode::kUnknown);
}

absl::StatusOr<int> Half(int value) {
  if (value % 2 != 0) return absl::InvalidArgumentError("odd");
  return value / 2;
}

absl::StatusOr<int> Quarter(int value) {
  TECL_ASSIGN_OR_RETURN(int half, Half(value));
  TECL_ASSIGN_OR_RETURN(half, Half(half));
  return half;
}

absl::Status CheckQuarter(int value, int* out) {
  TECL_RETURN_IF_ERROR(Half(value).status());
  TECL_ASSIGN_OR_RETURN(*out, Quarter(value));
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status(), absl::InvalidArgumentError("odd"));
  int out = 0;
  EXPECT_TRUE(CheckQuarter(12, &out).ok());
  EXPECT_EQ(out, 3);
  EXPECT_EQ(CheckQuarter(3, &out), absl::InvalidArgumentError("odd"));
}

TEST(StatusMacrosTest, AnnotateKeepsCode) {
  EXPECT_EQ(Annotate(absl::NotFoundError("no file"), "manifest a.csv"),
            absl::NotFoundError("manifest a.csv: no file"));
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

}  // namespace
}  // namespace tecl
