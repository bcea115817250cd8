#include "tests/testing/http_get.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tecl::testing {

absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", host, ":", port));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host, "\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("short write");
  }
  std::string raw;
  char buffer[8192];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) raw.append(buffer, static_cast<size_t>(n));
  close(fd);
  HttpResponse response;
  const size_t header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos || raw.size() < 12) {
    return absl::DataLossError(absl::StrCat("malformed HTTP response: ", raw.substr(0, 200)));
  }
  response.headers = raw.substr(0, header_end);
  response.body = raw.substr(header_end + 4);
  if (!absl::SimpleAtoi(raw.substr(9, 3), &response.status)) {
    return absl::DataLossError("malformed HTTP status line");
  }
  return response;
}

CommandResult RunCommand(const std::string& command, const std::string& input) {
  char path[] = "/tmp/tecl_cmd_input_XXXXXX";
  const int fd = mkstemp(path);
  if (fd >= 0) {
    ssize_t ignored = write(fd, input.data(), input.size());
    (void)ignored;
    close(fd);
  }
  CommandResult result;
  const std::string full = absl::StrCat(command, " < ", path, " 2>&1");
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  unlink(path);
  return result;
}

}  // namespace tecl::testing
