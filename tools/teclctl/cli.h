// teclctl's commands: submit, list, status, cancel, events, workers, local. Run() parses the
// command line, talks to the coordinator and returns the process exit code.
//
// Exit codes (also in `teclctl --help`):
//   0 ok (submit --wait: the job succeeded)   1 the request failed
//   2 usage error                             3 cannot reach the coordinator
//   4 invalid job spec or request             5 no such job
//   6 the job failed (submit --wait)          7 the job was cancelled (submit --wait)
//
// Not thread-safe: call Run once per process.
#ifndef TECL_TOOLS_TECLCTL_CLI_H_
#define TECL_TOOLS_TECLCTL_CLI_H_

namespace tecl::teclctl {

enum ExitCode {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitUnreachable = 3,
  kExitInvalid = 4,
  kExitNotFound = 5,
  kExitJobFailed = 6,
  kExitJobCancelled = 7,
};

int Run(int argc, char** argv);

}  // namespace tecl::teclctl

#endif  // TECL_TOOLS_TECLCTL_CLI_H_
