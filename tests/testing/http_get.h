// Test helper: a blocking HTTP/1.1 GET against 127.0.0.1 (no client library needed).
#ifndef TECL_TESTS_TESTING_HTTP_GET_H_
#define TECL_TESTS_TESTING_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace tecl::testing {

struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};

// GET http://host:port/path; returns UNAVAILABLE when it cannot connect.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port, const std::string& path);

// Runs `command` with `input` on its stdin; returns its exit status and combined output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command, const std::string& input = "");

}  // namespace tecl::testing

#endif  // TECL_TESTS_TESTING_HTTP_GET_H_
