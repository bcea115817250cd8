#include "bench/coordinator/bench_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "services/coordinator/spec/job_spec.h"

extern char** environ;

namespace tecl::bench {
namespace {

namespace fs = std::filesystem;

std::string CoordinatorBinary() {
  if (const char* dir = std::getenv("TECL_BIN_DIR"); dir != nullptr && *dir != '\0') {
    return (fs::path(dir) / "tecl-coordinator").string();
  }
  return (fs::read_symlink("/proc/self/exe").parent_path() / "tecl-coordinator").string();
}

// `name` itself when it has a '/', else its first match in PATH; "" when there is none.
std::string FindInPath(const std::string& name) {
  if (absl::StrContains(name, '/')) return name;
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path == nullptr ? "" : path, ':')) {
    const fs::path candidate = fs::path(std::string(dir)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

std::string HttpGetBody(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, n);
    }
  }
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

ChannelOptions BenchChannel(Role role, bool own_connection) {
  ChannelOptions options;
  options.token = absl::StrCat("bench-", RoleName(role), "-token-0123456789abcdef");
  options.own_connection = own_connection;
  return options;
}

absl::StatusOr<std::unique_ptr<CoordinatorProcess>> CoordinatorProcess::Start(
    CoordinatorProcessOptions options) {
  std::unique_ptr<CoordinatorProcess> process(new CoordinatorProcess());
  process->dir_ = options.dir;
  fs::create_directories(options.dir);
  if (options.cpu >= std::min<long>(CPU_SETSIZE, ::sysconf(_SC_NPROCESSORS_CONF))) {
    return absl::InvalidArgumentError(
        absl::StrCat("CPU ", options.cpu, " does not exist on this machine; pick another"));
  }
  std::vector<std::string> args = options.prefix;
  if (!args.empty()) {
    args[0] = FindInPath(args[0]);
    if (args[0].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", options.prefix[0], "\" (in front of the coordinator) is not in PATH"));
    }
  }
  const std::string binary = CoordinatorBinary();
  const std::string auth_file = options.dir + "/auth_file";
  {
    std::ofstream auth(auth_file);
    for (Role role : {Role::kUser, Role::kTrainer, Role::kDataloader}) {
      auth << RoleName(role) << " bench " << BenchChannel(role).token << "\n";
    }
    if (!auth) return absl::UnavailableError(absl::StrCat("cannot write ", auth_file));
  }
  fs::permissions(auth_file, fs::perms::owner_read | fs::perms::owner_write);
  for (const std::string& arg :
       {binary, std::string("--listen=127.0.0.1:0"), std::string("--metrics_listen=127.0.0.1:0"),
        "--state_dir=" + options.dir + "/state", "--port_file=" + options.dir + "/addr",
        "--auth_file=" + auth_file, std::string("--check_dataset_paths=false")}) {
    args.push_back(arg);
  }
  args.insert(args.end(), options.flags.begin(), options.flags.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = process->log_path();
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::UnavailableError(absl::StrCat("cannot create ", log));

  // The child only makes system calls between fork and exec (this process has threads).
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return absl::UnavailableError("fork failed");
  }
  if (pid == 0) {
    if (options.cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(options.cpu, &set);
      if (::sched_setaffinity(0, sizeof(set), &set) != 0) ::_exit(126);
    }
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execve(argv[0], argv.data(), environ);
    ::_exit(127);
  }
  ::close(log_fd);
  process->pid_ = pid;

  const absl::Time deadline = absl::Now() + absl::Seconds(options.start_timeout_s);
  while (process->address_.empty() && absl::Now() < deadline) {
    process->address_ = std::string(absl::StripAsciiWhitespace(ReadFile(options.dir + "/addr")));
    if (!process->address_.empty()) break;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      process->pid_ = 0;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 126) {
        return absl::InvalidArgumentError(absl::StrCat("cannot pin the coordinator to CPU ",
                                                       options.cpu,
                                                       " (not allowed here); pick another"));
      }
      return absl::UnavailableError(
          absl::StrCat(binary, " exited (status ", status, ") before serving:\n", ReadFile(log)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (process->address_.empty()) {
    return absl::UnavailableError(
        absl::StrCat(binary, " did not write its port file in time:\n", ReadFile(log)));
  }
  // Logged by CoordinatorServer::Start before main writes the port file.
  const std::string text = ReadFile(log);
  const size_t at = text.find("metrics on port ");
  if (at != std::string::npos) {
    absl::SimpleAtoi(text.substr(at + 16, text.find(')', at) - at - 16), &process->metrics_port_);
  }
  return process;
}

CoordinatorProcess::~CoordinatorProcess() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, nullptr, 0);
}

std::string CoordinatorProcess::log_path() const { return dir_ + "/coordinator.log"; }

std::map<std::string, double> CoordinatorProcess::ScrapeMetrics() const {
  std::map<std::string, double> samples;
  if (metrics_port_ <= 0) return samples;
  for (absl::string_view line : absl::StrSplit(HttpGetBody(metrics_port_, "/metrics"), '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &value)) {
      continue;
    }
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

double CoordinatorProcess::HistogramMean(const std::string& name) const {
  const std::map<std::string, double> samples = ScrapeMetrics();
  const auto sum = samples.find(name + "_sum");
  const auto count = samples.find(name + "_count");
  if (sum == samples.end() || count == samples.end() || count->second <= 0) return -1;
  return sum->second / count->second;
}

bool ReadProcStat(const std::string& stat_path, double* cpu_seconds, std::string* name) {
  const std::string text = ReadFile(stat_path);
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(text).substr(close + 2), ' ', absl::SkipEmpty());
  // After comm: state is field 3, utime field 14, stime field 15 (1-based, proc(5)).
  if (fields.size() < 13) return false;
  double utime = 0;
  double stime = 0;
  if (!absl::SimpleAtod(fields[11], &utime) || !absl::SimpleAtod(fields[12], &stime)) return false;
  *cpu_seconds = (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  if (name != nullptr) *name = text.substr(open + 1, close - open - 1);
  return true;
}

double CoordinatorProcess::CpuSeconds() const {
  double seconds = 0;
  return ReadProcStat(absl::StrCat("/proc/", pid_, "/stat"), &seconds, nullptr) ? seconds : -1;
}

std::map<std::string, double> CoordinatorProcess::CpuSecondsByThreadName() const {
  std::map<std::string, double> by_name;
  std::error_code error;
  for (const auto& task : fs::directory_iterator(absl::StrCat("/proc/", pid_, "/task"), error)) {
    double seconds = 0;
    std::string name;
    if (ReadProcStat((task.path() / "stat").string(), &seconds, &name)) by_name[name] += seconds;
  }
  return by_name;
}

double Latencies::Percentile(double p) {
  if (ms.empty()) return 0;
  std::sort(ms.begin(), ms.end());
  return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
}

tecl::v1::JobSpec BenchJobSpec() {
  tecl::v1::JobSpec spec = coordinator::DefaultJobSpec(tecl::v1::JOB_KIND_PRETRAIN, "tiny3d");
  spec.set_name("bench");
  spec.mutable_dataset()->set_root("/data/synth");
  spec.mutable_dataset()->set_train_list("trainlist.txt");
  spec.mutable_dataset()->set_test_list("testlist.txt");
  return spec;
}

}  // namespace tecl::bench
