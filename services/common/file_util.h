// WriteFileAtomically: a small file replaced whole or not at all. The bytes go to
// "<path>.tmp.<pid>" in the same folder, are synced, and the temporary file is renamed over
// `path`, so a reader (or a run after a crash) sees the old file or the new one, never a part.
//
// Errors: UNAVAILABLE naming the path (the temporary file is removed). Thread-compatible per path.
#ifndef TECL_SERVICES_COMMON_FILE_UTIL_H_
#define TECL_SERVICES_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tecl {

absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_FILE_UTIL_H_
