#include "tools/teclctl/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/client/grpc_coordinator_client.h"
#include "tools/teclctl/local_secrets.h"

extern char** environ;

namespace tecl::teclctl {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kPoll = absl::Milliseconds(100);

std::string ReadFile(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

// The last `lines` lines of a log.
std::string Tail(const fs::path& path, int lines = 15) {
  std::ifstream file(path);
  std::deque<std::string> tail;
  for (std::string line; std::getline(file, line);) {
    tail.push_back(line);
    if (static_cast<int>(tail.size()) > lines) tail.pop_front();
  }
  std::string out;
  for (const std::string& line : tail) absl::StrAppend(&out, "\n    ", line);
  return out.empty() ? "\n    (the log is empty)" : out;
}

// A process this tool started: its pid file holds "<pid> <binary>".
struct Managed {
  std::string name;  // coordinator, dataloader-0, worker-1, ...
  pid_t pid = 0;
  std::string binary;
};

std::vector<Managed> ReadPidFiles(const std::string& home) {
  std::vector<Managed> result;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(fs::path(home) / "pids", error)) {
    if (entry.path().extension() != ".pid") continue;
    std::vector<std::string> parts =
        absl::StrSplit(absl::StripAsciiWhitespace(ReadFile(entry.path())), absl::MaxSplits(' ', 1));
    Managed m;
    m.name = entry.path().stem().string();
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &m.pid) || m.pid <= 0) continue;
    m.binary = parts[1];
    result.push_back(m);
  }
  // Trainers first, then dataloaders, the coordinator last.
  auto order = [](const Managed& m) {
    return absl::StartsWith(m.name, "worker") ? 0 : absl::StartsWith(m.name, "dataloader") ? 1 : 2;
  };
  std::sort(result.begin(), result.end(), [&](const Managed& a, const Managed& b) {
    return std::make_pair(order(a), a.name) < std::make_pair(order(b), b.name);
  });
  return result;
}

// Alive and still the program we started (pids get reused).
bool IsAlive(const Managed& m) {
  if (::kill(m.pid, 0) != 0) return false;
  const std::string stat = ReadFile(absl::StrCat("/proc/", m.pid, "/stat"));
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z') return false;
  std::string cmdline = ReadFile(absl::StrCat("/proc/", m.pid, "/cmdline"));
  cmdline = cmdline.substr(0, cmdline.find('\0'));
  return cmdline.empty() || cmdline == m.binary;
}

// Reaps a child of this process that exited (so that IsAlive sees it gone).
void Reap(pid_t pid) { ::waitpid(pid, nullptr, WNOHANG); }

// For children of this process: whether it still runs (waitpid is authoritative).
bool ChildAlive(pid_t pid) {
  const pid_t rc = ::waitpid(pid, nullptr, WNOHANG);
  return rc == 0;
}

// Stops children of this process: SIGTERM, then SIGKILL after 10 s.
void StopChildren(const std::vector<Managed>& children) {
  for (const Managed& m : children) ::kill(m.pid, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (const Managed& m : children) {
    while (ChildAlive(m.pid) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
    if (ChildAlive(m.pid)) {
      ::kill(m.pid, SIGKILL);
      ::waitpid(m.pid, nullptr, 0);
    }
  }
}

absl::StatusOr<pid_t> Spawn(const std::string& binary, const std::vector<std::string>& args,
                            const std::map<std::string, std::string>& env_overrides,
                            const fs::path& log) {
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string key = entry.substr(0, entry.find('='));
    if (!env_overrides.count(key)) env_storage.push_back(entry);
  }
  for (const auto& [key, value] : env_overrides) env_storage.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID);  // Survives this terminal.
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", binary, ": ", std::strerror(rc)));
  }
  return pid;
}

absl::Status WritePidFile(const std::string& home, const Managed& m) {
  const fs::path path = fs::path(home) / "pids" / (m.name + ".pid");
  std::ofstream file(path);
  file << m.pid << " " << m.binary << "\n";
  if (!file) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

bool Healthy(const std::string& address, const ChannelOptions& channel_options) {
  auto channel = MakeChannel(address, channel_options);
  if (!channel.ok()) return false;
  auto stub = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  return stub->Check(&context, request, &response).ok() &&
         response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> ListWorkers(const std::string& address,
                                                              const ChannelOptions& options) {
  auto channel = MakeChannel(address, options);
  if (!channel.ok()) return channel.status();
  ClientOptions client_options;
  client_options.rpc_timeout = absl::Seconds(2);
  absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> workers =
      NewCoordinatorClient(*channel, client_options)->ListWorkers(tecl::v1::WORKER_KIND_UNSPECIFIED);
  if (!workers.ok()) {
    return absl::UnavailableError(absl::StrCat("list workers: ", workers.status().message()));
  }
  return workers;
}

absl::Status Died(const Managed& m, const std::string& home) {
  return absl::FailedPreconditionError(
      absl::StrCat(m.name, " (", m.binary, ") exited during start-up; the end of ",
                   (fs::path(home) / "logs" / (m.name + ".log")).string(), ":",
                   Tail(fs::path(home) / "logs" / (m.name + ".log"))));
}

}  // namespace

std::string LocalHome(const std::string& flag) {
  if (!flag.empty()) return fs::absolute(flag).lexically_normal().string();
  const char* env = std::getenv("TECL_HOME");
  if (env != nullptr && *env != '\0') return fs::absolute(env).lexically_normal().string();
  return (fs::current_path() / ".tecl").string();
}

absl::StatusOr<std::string> LocalCoordinatorAddress(const std::string& home) {
  for (const Managed& m : ReadPidFiles(home)) {
    if (m.name != "coordinator") continue;
    if (!IsAlive(m)) break;
    const std::string address =
        std::string(absl::StripAsciiWhitespace(ReadFile(fs::path(home) / "coordinator.addr")));
    if (!address.empty()) return address;
  }
  return absl::NotFoundError(absl::StrCat("no local cluster is running under ", home));
}

absl::StatusOr<std::string> FindBinary(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* dir = std::getenv("TECL_LOCAL_BIN_DIR"); dir != nullptr && *dir)
    dirs.push_back(dir);
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) dirs.push_back(self.parent_path().string());
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty()))
      dirs.emplace_back(dir);
  }
  for (const std::string& dir : dirs) {
    const fs::path candidate = fs::path(dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate, error)) {
      return candidate.string();
    }
  }
  return absl::NotFoundError(
      absl::StrCat(name, " was not found next to teclctl",
                   error ? "" : absl::StrCat(" (", self.parent_path().string(), ")"),
                   " or on PATH; build it (ninja ", name, ") or put it on PATH"));
}

absl::Status LocalUp(const LocalClusterOptions& options, std::ostream& out) {
  const std::string& home = options.home;
  std::error_code error;
  for (const char* sub : {"state", "logs", "pids"})
    fs::create_directories(fs::path(home) / sub, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", home, ": ", error.message(),
                                                    "; pass --home or set TECL_HOME"));
  }
  if (auto address = LocalCoordinatorAddress(home); address.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("a local cluster is already running under ", home, " (coordinator at ",
                     *address, "); see `teclctl local status`, or `teclctl local down` first"));
  }
  if (options.trainers < 0 || options.dataloaders < 0 || options.threads < 1) {
    return absl::InvalidArgumentError("--trainers and --dataloaders must be >= 0, --threads >= 1");
  }
  for (const std::string& root : options.checkpoint_roots) {
    if (!fs::path(root).is_absolute()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--checkpoint_roots: \"", root, "\" is relative; give absolute folders"));
    }
  }
  for (const std::string& root : options.write_roots) {
    if (!fs::path(root).is_absolute()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--write_roots: \"", root, "\" is relative; give absolute folders"));
    }
  }
  const LocalSecrets secrets = LocalSecretsIn(home);
  if (absl::Status made = EnsureLocalSecrets(secrets); !made.ok()) return made;
  const ChannelOptions user = LocalChannelOptions(secrets, "user");
  // A process's credentials: its role's certificate, the CA, its token; servers the auth file.
  auto credentials = [&](const std::string& role, bool server) {
    std::map<std::string, std::string> env = {
        {"TECL_TLS_CERT", secrets.Certificate(role)},
        {"TECL_TLS_KEY", secrets.Key(role)},
        {"TECL_TLS_CA", secrets.ca},
        {"TECL_TLS_SERVER_NAME", ""},
        {"TECL_INSECURE", "false"},
        {"TECL_AUTH_TOKEN", ""},
    };
    env["TECL_TOKEN_FILE"] = role == "coordinator" ? "" : secrets.Token(role);
    env["TECL_AUTH_FILE"] = server ? secrets.auth_file : "";
    return env;
  };
  // Every binary first, so that nothing starts when one is missing.
  absl::StatusOr<std::string> coordinator_bin = FindBinary("tecl-coordinator");
  if (!coordinator_bin.ok()) return coordinator_bin.status();
  std::string dataloader_bin;
  std::string worker_bin;
  if (options.dataloaders > 0) {
    absl::StatusOr<std::string> bin = FindBinary("tecl-dataloader");
    if (!bin.ok()) {
      return absl::NotFoundError(absl::StrCat(bin.status().message(), "; or pass --dataloaders 0"));
    }
    dataloader_bin = *bin;
  }
  if (options.trainers > 0) {
    absl::StatusOr<std::string> bin = FindBinary("tecl-worker");
    if (!bin.ok()) {
      return absl::NotFoundError(absl::StrCat(bin.status().message(), "; or pass --trainers 0"));
    }
    worker_bin = *bin;
  }
  // Stale files of a previous run.
  for (const Managed& m : ReadPidFiles(home))
    fs::remove(fs::path(home) / "pids" / (m.name + ".pid"), error);
  const fs::path addr_file = fs::path(home) / "coordinator.addr";
  fs::remove(addr_file, error);

  std::vector<Managed> started;
  auto fail = [&](absl::Status status) {
    StopChildren(started);
    for (const Managed& m : started) fs::remove(fs::path(home) / "pids" / (m.name + ".pid"), error);
    fs::remove(addr_file, error);
    return status;
  };
  auto start = [&](const std::string& name, const std::string& binary,
                   const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env) -> absl::Status {
    const fs::path log = fs::path(home) / "logs" / (name + ".log");
    absl::StatusOr<pid_t> pid = Spawn(binary, args, env, log);
    if (!pid.ok()) return pid.status();
    Managed m{name, *pid, binary};
    started.push_back(m);
    return WritePidFile(home, m);
  };
  auto check_alive = [&]() -> absl::Status {
    for (const Managed& m : started) {
      if (!ChildAlive(m.pid)) return Died(m, home);
    }
    return absl::OkStatus();
  };

  const absl::Time deadline = absl::Now() + options.timeout;
  const int64_t start_ms = absl::ToUnixMillis(absl::Now());
  absl::Status status = start(
      "coordinator", *coordinator_bin,
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
       absl::StrCat("--state_dir=", (fs::path(home) / "state").string()),
       absl::StrCat("--port_file=", addr_file.string()),
       absl::StrCat("--checkpoint_roots=", absl::StrJoin(options.checkpoint_roots, ","))},
      credentials("coordinator", /*server=*/true));
  if (!status.ok()) return fail(status);
  std::string address;
  while (true) {
    if (status = check_alive(); !status.ok()) return fail(status);
    address = std::string(absl::StripAsciiWhitespace(ReadFile(addr_file)));
    if (!address.empty() && Healthy(address, user)) break;
    if (absl::Now() > deadline) {
      return fail(absl::DeadlineExceededError(absl::StrCat(
          "the coordinator did not become healthy within ", absl::FormatDuration(options.timeout),
          "; its log:", Tail(fs::path(home) / "logs" / "coordinator.log"))));
    }
    absl::SleepFor(kPoll);
  }
  out << "coordinator  " << address << "  (log "
      << (fs::path(home) / "logs" / "coordinator.log").string() << ")\n";
  const std::string threads = absl::StrCat(options.threads);
  for (int i = 0; i < options.dataloaders; ++i) {
    std::map<std::string, std::string> env = credentials("dataloader", /*server=*/true);
    env.insert({{"TECL_COORDINATOR", address},
                {"TECL_LISTEN", "127.0.0.1:0"},
                {"TECL_METRICS_LISTEN", "127.0.0.1:0"},
                {"TECL_THREADS", threads}});
    if (!options.write_roots.empty()) {
      env.insert({"TECL_WRITE_ROOT", absl::StrJoin(options.write_roots, ",")});
    }
    status = start(absl::StrCat("dataloader-", i), dataloader_bin, {}, env);
    if (!status.ok()) return fail(status);
  }
  for (int i = 0; i < options.trainers; ++i) {
    std::map<std::string, std::string> env = credentials("trainer", /*server=*/false);
    env.insert({{"TECL_COORDINATOR", address},
                {"TECL_LISTEN", "127.0.0.1:0"},
                {"TECL_METRICS_LISTEN", "127.0.0.1:0"},
                {"TECL_THREADS", threads}});
    status = start(absl::StrCat("worker-", i), worker_bin, {}, env);
    if (!status.ok()) return fail(status);
  }
  // Wait until every worker registered.
  while (true) {
    if (status = check_alive(); !status.ok()) return fail(status);
    absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> workers =
        ListWorkers(address, user);
    int trainers = 0;
    int dataloaders = 0;
    if (workers.ok()) {
      for (const auto& w : *workers) {
        if (w.registered_unix_ms() < start_ms || w.state() == tecl::v1::WORKER_STATE_LOST) continue;
        (w.kind() == tecl::v1::WORKER_KIND_TRAINER ? trainers : dataloaders)++;
      }
    }
    if (trainers >= options.trainers && dataloaders >= options.dataloaders) break;
    if (absl::Now() > deadline) {
      return fail(absl::DeadlineExceededError(
          absl::StrCat("only ", trainers, " of ", options.trainers, " trainers and ", dataloaders,
                       " of ", options.dataloaders, " dataloaders registered within ",
                       absl::FormatDuration(options.timeout), "; see the logs in ",
                       (fs::path(home) / "logs").string())));
    }
    absl::SleepFor(kPoll);
  }
  out << "dataloaders  " << options.dataloaders << "\n"
      << "trainers     " << options.trainers << " (" << options.threads << " threads each)\n"
      << "credentials  " << secrets.dir << " (mutual TLS and a token per role)\n"
      << "local cluster up under " << home << "; `teclctl local down` stops it\n";
  return absl::OkStatus();
}

absl::Status LocalDown(const std::string& home, std::ostream& out) {
  std::vector<Managed> processes = ReadPidFiles(home);
  std::vector<Managed> alive;
  for (const Managed& m : processes) {
    Reap(m.pid);
    if (IsAlive(m)) {
      ::kill(m.pid, SIGTERM);
      alive.push_back(m);
    }
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!alive.empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    alive.erase(std::remove_if(alive.begin(), alive.end(),
                               [](const Managed& m) {
                                 Reap(m.pid);
                                 return !IsAlive(m);
                               }),
                alive.end());
  }
  for (const Managed& m : alive) {
    out << m.name << " (pid " << m.pid << ") did not stop within 10 s: killed\n";
    ::kill(m.pid, SIGKILL);
    Reap(m.pid);
  }
  std::error_code error;
  for (const Managed& m : processes) fs::remove(fs::path(home) / "pids" / (m.name + ".pid"), error);
  fs::remove(fs::path(home) / "coordinator.addr", error);
  if (processes.empty()) {
    out << "no local cluster under " << home << "\n";
  } else {
    out << "stopped " << processes.size() << " process(es); state kept in "
        << (fs::path(home) / "state").string() << "\n";
  }
  return absl::OkStatus();
}

absl::Status LocalStatus(const std::string& home, std::ostream& out) {
  const ChannelOptions channel = LocalChannelOptions(LocalSecretsIn(home), "user");
  std::vector<Managed> processes = ReadPidFiles(home);
  if (processes.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no local cluster under ", home, "; start one with `teclctl local up`"));
  }
  int dead = 0;
  for (const Managed& m : processes) {
    const bool alive = IsAlive(m);
    dead += alive ? 0 : 1;
    out << absl::StrFormat("%-14s pid %-8d %-8s %s\n", m.name, m.pid, alive ? "running" : "exited",
                           (fs::path(home) / "logs" / (m.name + ".log")).string());
  }
  absl::StatusOr<std::string> address = LocalCoordinatorAddress(home);
  if (!address.ok()) return absl::UnavailableError("the local coordinator is not running");
  out << "coordinator at " << *address
      << (Healthy(*address, channel) ? " (healthy)" : " (not answering)") << "\n";
  absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> workers = ListWorkers(*address, channel);
  if (workers.ok()) {
    std::map<std::string, int> counts;
    for (const auto& w : *workers) {
      ++counts[absl::StrCat(w.kind() == tecl::v1::WORKER_KIND_TRAINER ? "trainers" : "dataloaders",
                            " ",
                            w.state() == tecl::v1::WORKER_STATE_IDLE   ? "idle"
                            : w.state() == tecl::v1::WORKER_STATE_BUSY ? "busy"
                                                                       : "lost")];
    }
    for (const auto& [what, count] : counts) out << "  " << count << " " << what << "\n";
  }
  if (dead > 0) {
    return absl::UnavailableError(
        absl::StrCat(dead, " process(es) of the local cluster exited; see their logs"));
  }
  return absl::OkStatus();
}

}  // namespace tecl::teclctl
