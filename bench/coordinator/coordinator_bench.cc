// Coordinator benchmark, all in one run on one machine and one disk:
//   grouped    tecl-coordinator as shipped: C clients submit jobs as fast as acknowledged; every
//              acknowledged submit is durable (group commit: concurrent submits share one fsync)
//   ungrouped  the same coordinator with --store_max_group=1 (one fsync'ed transaction per
//              submit): the peer that shows what group commit buys
//   sqlite     the disk's limit for one-transaction-per-row: one thread inserting a row per
//              transaction into SQLite (WAL, synchronous=FULL), no gRPC at all
//   get        GetJob (teclctl status) latency with C concurrent clients against the grouped
//              coordinator holding the submitted jobs
// Prints the tables of docs/benchmarks.md "Coordinator".
//
//   tecl_coordinator_bench [--clients=8] [--seconds=5] [--dir=/tmp]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "services/common/auth.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/client/grpc_coordinator_client.h"

extern char** environ;

namespace {

using Flags = std::map<std::string, std::string>;
using SteadyClock = std::chrono::steady_clock;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

// The body of GET http://127.0.0.1:port/path (HTTP/1.0, read to the end); "" on failure.
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

constexpr char kBenchToken[] = "bench-user-token-0123456789abcdef";

tecl::ChannelOptions BenchChannel() {
  tecl::ChannelOptions options;
  options.token = kBenchToken;
  return options;
}

// A tecl-coordinator process on a fresh state folder.
class Coordinator {
 public:
  Coordinator(const std::string& dir, std::vector<std::string> extra_flags) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    // Secured as shipped: the clients' token in an auth file (checked on every call).
    std::ofstream(dir_ + "/auth_file") << "user bench " << kBenchToken << "\n";
    std::filesystem::permissions(dir_ + "/auth_file", std::filesystem::perms::owner_read |
                                                          std::filesystem::perms::owner_write);
    const std::string binary =
        (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "tecl-coordinator")
            .string();
    std::vector<std::string> args = {binary,
                                     "--listen=127.0.0.1:0",
                                     "--metrics_listen=127.0.0.1:0",
                                     "--state_dir=" + dir_,
                                     "--port_file=" + dir_ + "/addr",
                                     "--auth_file=" + dir_ + "/auth_file",
                                     "--check_dataset_paths=false"};
    args.insert(args.end(), extra_flags.begin(), extra_flags.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = dir_ + "/coordinator.log";
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
      std::fprintf(stderr, "cannot start %s\n", binary.c_str());
      std::exit(1);
    }
    posix_spawn_file_actions_destroy(&actions);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (address_.empty() && absl::Now() < deadline) {
      address_ = std::string(absl::StripAsciiWhitespace(ReadFile(dir_ + "/addr")));
      if (address_.empty()) absl::SleepFor(absl::Milliseconds(10));
    }
    if (address_.empty()) {
      std::fprintf(stderr, "tecl-coordinator did not start:\n%s\n", ReadFile(log).c_str());
      std::exit(1);
    }
    const std::string text = ReadFile(log);
    const size_t at = text.find("metrics on port ");
    if (at != std::string::npos) {
      absl::SimpleAtoi(text.substr(at + 16, text.find(')', at) - at - 16), &metrics_port_);
    }
  }
  // Mean of a histogram on the coordinator's /metrics (sum / count), or -1.
  double HistogramMean(const std::string& name) const {
    const std::string body = HttpGetBody(metrics_port_, "/metrics");
    double sum = 0, count = 0;
    for (absl::string_view line : absl::StrSplit(body, '\n')) {
      if (absl::StartsWith(line, name + "_sum "))
        absl::SimpleAtod(line.substr(name.size() + 5), &sum);
      if (absl::StartsWith(line, name + "_count "))
        absl::SimpleAtod(line.substr(name.size() + 7), &count);
    }
    return count > 0 ? sum / count : -1;
  }
  ~Coordinator() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  const std::string& address() const { return address_; }

 private:
  std::string dir_;
  pid_t pid_ = 0;
  std::string address_;
  int metrics_port_ = 0;
};

struct Latencies {
  std::vector<double> ms;
  double Percentile(double p) {
    if (ms.empty()) return 0;
    std::sort(ms.begin(), ms.end());
    return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  }
};

struct RunResult {
  int64_t ok = 0;
  int64_t failed = 0;
  double seconds = 0;
  Latencies latency;
  std::vector<std::string> ids;
};

tecl::v1::JobSpec BenchSpec() {
  tecl::v1::JobSpec spec = tecl::coordinator::DefaultJobSpec(tecl::v1::JOB_KIND_PRETRAIN, "tiny3d");
  spec.set_name("bench");
  spec.mutable_dataset()->set_root("/data/synth");
  spec.mutable_dataset()->set_train_list("trainlist.txt");
  spec.mutable_dataset()->set_test_list("testlist.txt");
  return spec;
}

// `clients` threads, each with its own channel, calling `call` until `seconds` pass.
template <typename Call>
RunResult Drive(const std::string& address, int clients, double seconds, Call call) {
  std::vector<RunResult> parts(clients);
  std::vector<std::thread> threads;
  const auto start = SteadyClock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      tecl::ClientOptions options;
      options.max_attempts = 1;  // A failed call counts as failed.
      auto client = tecl::NewCoordinatorClient(*tecl::MakeChannel(address, BenchChannel()), options);
      std::mt19937 random(c);
      for (int64_t i = 0; SteadyClock::now() < end; ++i) {
        const auto t0 = SteadyClock::now();
        std::string id;
        const bool ok = call(client.get(), c, i, random, &id);
        const double ms =
            std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
        if (ok) {
          ++parts[c].ok;
          parts[c].latency.ms.push_back(ms);
          if (!id.empty()) parts[c].ids.push_back(id);
        } else {
          ++parts[c].failed;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  RunResult total;
  total.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  for (auto& p : parts) {
    total.ok += p.ok;
    total.failed += p.failed;
    total.latency.ms.insert(total.latency.ms.end(), p.latency.ms.begin(), p.latency.ms.end());
    total.ids.insert(total.ids.end(), p.ids.begin(), p.ids.end());
  }
  return total;
}

RunResult Submits(const std::string& address, int clients, double seconds) {
  const tecl::v1::JobSpec spec = BenchSpec();
  return Drive(
      address, clients, seconds,
      [&](tecl::CoordinatorClient* client, int c, int64_t i, std::mt19937&, std::string* id) {
        absl::StatusOr<tecl::v1::Job> job = client->SubmitJob(spec, absl::StrCat("bench-", c, "-", i));
        if (!job.ok()) return false;
        *id = job->id();
        return true;
      });
}

RunResult Gets(const std::string& address, int clients, double seconds,
               const std::vector<std::string>& ids) {
  return Drive(
      address, clients, seconds,
      [&](tecl::CoordinatorClient* client, int, int64_t, std::mt19937& random, std::string*) {
        return client->GetJob(ids[random() % ids.size()]).ok();
      });
}

// One row inserted per transaction, WAL + synchronous=FULL, one thread: the fsync-bound limit.
double SqliteTransactionsPerSecond(const std::string& path, double seconds) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE jobs (id INTEGER PRIMARY KEY, spec BLOB)",
               nullptr, nullptr, nullptr);
  const std::string blob = BenchSpec().SerializeAsString();
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO jobs (spec) VALUES (?)", -1, &stmt, nullptr);
  const auto start = SteadyClock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  int64_t rows = 0;
  while (SteadyClock::now() < end) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    sqlite3_bind_blob(stmt, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    ++rows;
  }
  const double elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows / elapsed;
}

Flags ParseArgs(int argc, char** argv) {
  Flags flags = {{"clients", "8"}, {"seconds", "5"}, {"dir", "/tmp"}};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg.find('=') == std::string::npos) {
      std::fprintf(stderr, "usage: %s [--clients=8] [--seconds=5] [--dir=/tmp]\n", argv[0]);
      std::exit(2);
    }
    flags[arg.substr(2, arg.find('=') - 2)] = arg.substr(arg.find('=') + 1);
  }
  return flags;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = ParseArgs(argc, argv);
  int clients = 8;
  double seconds = 5;
  absl::SimpleAtoi(flags["clients"], &clients);
  absl::SimpleAtod(flags["seconds"], &seconds);
  char pattern[4096];
  std::snprintf(pattern, sizeof(pattern), "%s/tecl_coordinator_bench_XXXXXX", flags["dir"].c_str());
  const std::string dir = mkdtemp(pattern);

  RunResult grouped, ungrouped, get;
  double sqlite_rate = 0;
  double grouped_batches = 0, ungrouped_batches = 0, grouped_commit_ms = 0;
  {
    Coordinator peer(dir + "/ungrouped", {"--store_max_group=1"});
    ungrouped = Submits(peer.address(), clients, seconds);
    ungrouped_batches = peer.HistogramMean("tecl_coordinator_store_batches_per_commit");
  }
  sqlite_rate = SqliteTransactionsPerSecond(dir + "/sqlite.db", seconds);
  {
    Coordinator coordinator(dir + "/grouped", {});
    grouped = Submits(coordinator.address(), clients, seconds);
    grouped_batches = coordinator.HistogramMean("tecl_coordinator_store_batches_per_commit");
    grouped_commit_ms = 1000 * coordinator.HistogramMean("tecl_coordinator_store_commit_seconds");
    get = Gets(coordinator.address(), clients, seconds, grouped.ids);
  }
  std::filesystem::remove_all(dir);

  const double grouped_rate = grouped.ok / grouped.seconds;
  const double ungrouped_rate = ungrouped.ok / ungrouped.seconds;
  std::printf("Durable submits, %d concurrent clients, %.0f s each (disk of %s)\n\n", clients,
              seconds, flags["dir"].c_str());
  std::printf(
      "| scenario | submits/s | p50 ms | p99 ms | failed | batches/commit | vs ungrouped |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::printf("| tecl-coordinator (group commit) | %.0f | %.2f | %.2f | %lld | %.2f | %.1fx |\n",
              grouped_rate, grouped.latency.Percentile(0.5), grouped.latency.Percentile(0.99),
              static_cast<long long>(grouped.failed), grouped_batches,
              grouped_rate / ungrouped_rate);
  std::printf(
      "| tecl-coordinator --store_max_group=1 | %.0f | %.2f | %.2f | %lld | %.2f | 1.0x |\n",
      ungrouped_rate, ungrouped.latency.Percentile(0.5), ungrouped.latency.Percentile(0.99),
      static_cast<long long>(ungrouped.failed), ungrouped_batches);
  std::printf(
      "| SQLite alone, 1 thread, 1 row per fsync'ed transaction | %.0f | | | | 1 | %.1fx |\n\n",
      sqlite_rate, sqlite_rate / ungrouped_rate);
  std::printf("Mean commit (BEGIN to fsync'ed COMMIT) with group commit: %.2f ms\n\n",
              grouped_commit_ms);
  std::printf("GetJob (teclctl status), %d concurrent clients, %zu stored jobs\n\n", clients,
              grouped.ids.size());
  std::printf("| calls/s | p50 ms | p99 ms | max ms | failed |\n|---|---|---|---|---|\n");
  std::printf("| %.0f | %.3f | %.3f | %.3f | %lld |\n", get.ok / get.seconds,
              get.latency.Percentile(0.5), get.latency.Percentile(0.99),
              get.latency.Percentile(1.0), static_cast<long long>(get.failed));
  return 0;
}
