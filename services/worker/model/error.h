// Error: the one exception type of the LibTorch-only trainer core (model/, loss/, train/).
//
// The core follows LibTorch's error idiom and throws; the runner catches at one seam and turns the
// exception into an absl::Status with the matching code (the core itself depends on LibTorch
// only). Every message names the thing that is wrong and how to fix it, e.g.
//   model.backbone: "r50" is not one of r2plus1d_18, r3d_18, tiny3d
// LibTorch's own c10::Error (out of memory, a kernel failure) is not wrapped and reaches the
// seam as it is.
//
// Thread-safety: immutable after construction. Header only.
#ifndef TECL_SERVICES_WORKER_MODEL_ERROR_H_
#define TECL_SERVICES_WORKER_MODEL_ERROR_H_

#include <stdexcept>
#include <string>

namespace tecl::worker::core {

// What the caller should do, named after the absl::StatusCode the runner maps it to.
enum class ErrorCode {
  kInvalidArgument,     // The options or the input (a batch) are wrong: fix the job spec / data.
  kNotFound,            // A file (checkpoint, encoder) does not exist.
  kDataLoss,            // A file exists but is corrupt or truncated: use another checkpoint.
  kFailedPrecondition,  // The state does not allow the call (e.g. a checkpoint of another model,
                        // a diverged loss): do not retry until the state is fixed.
  kUnavailable,         // An I/O operation failed (disk full, permission): may succeed later.
};

// Name of the code ("INVALID_ARGUMENT", ...), for logs.
inline const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::kNotFound: return "NOT_FOUND";
    case ErrorCode::kDataLoss: return "DATA_LOSS";
    case ErrorCode::kFailedPrecondition: return "FAILED_PRECONDITION";
    case ErrorCode::kUnavailable: return "UNAVAILABLE";
  }
  return "UNKNOWN";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_MODEL_ERROR_H_
