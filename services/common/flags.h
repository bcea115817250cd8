// Command-line configuration for every TECL binary: absl flags, with TECL_<FLAG_NAME> environment
// variables as defaults (a flag on the command line wins over the environment).
//
//   int main(int argc, char** argv) {
//     tecl::ParseFlags(argc, argv, "tecl-coordinator: schedules pretraining jobs ...");
//
// --help lists the flags TECL itself defines; --helpfull lists every flag. A malformed value in
// the environment exits with status 2 and a message naming the variable.
#ifndef TECL_SERVICES_COMMON_FLAGS_H_
#define TECL_SERVICES_COMMON_FLAGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tecl {

// Returns the positional arguments (argv[0] first). Also the process-wide set-up every binary
// wants before its first thread: Abseil's mutex deadlock detection off (the distribution's
// Abseil keeps it on; it books every absl::Mutex acquisition, gRPC's included, in one global
// graph under one lock: 3.5% of the coordinator's CPU at 1,000 workers, docs/benchmarks.md).
std::vector<char*> ParseFlags(int argc, char** argv, absl::string_view usage);

// The environment variable that feeds flag `name`: "TECL_" + upper-case name.
std::string FlagEnvironmentVariable(absl::string_view flag_name);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_FLAGS_H_
