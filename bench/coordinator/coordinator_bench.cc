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
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/coordinator/bench_support.h"
#include "services/client/grpc_coordinator_client.h"
#include "services/common/auth.h"

namespace {

using Flags = std::map<std::string, std::string>;
using SteadyClock = std::chrono::steady_clock;
using tecl::bench::BenchJobSpec;
using tecl::bench::CoordinatorProcess;
using tecl::bench::Latencies;

// A coordinator on `dir` with `flags`; exits the benchmark when it does not start.
std::unique_ptr<CoordinatorProcess> StartCoordinator(const std::string& dir,
                                                     std::vector<std::string> flags) {
  absl::StatusOr<std::unique_ptr<CoordinatorProcess>> process =
      CoordinatorProcess::Start({dir, std::move(flags)});
  if (!process.ok()) {
    std::fprintf(stderr, "%s\n", std::string(process.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(process);
}

struct RunResult {
  int64_t ok = 0;
  int64_t failed = 0;
  double seconds = 0;
  Latencies latency;
  std::vector<std::string> ids;
};

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
      auto client = tecl::NewCoordinatorClient(
          *tecl::MakeChannel(address, tecl::bench::BenchChannel(tecl::Role::kUser)), options);
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
  const tecl::v1::JobSpec spec = BenchJobSpec();
  return Drive(
      address, clients, seconds,
      [&](tecl::CoordinatorClient* client, int c, int64_t i, std::mt19937&, std::string* id) {
        absl::StatusOr<tecl::v1::Job> job =
            client->SubmitJob(spec, absl::StrCat("bench-", c, "-", i));
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
  const std::string blob = BenchJobSpec().SerializeAsString();
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
    auto peer = StartCoordinator(dir + "/ungrouped", {"--store_max_group=1"});
    ungrouped = Submits(peer->address(), clients, seconds);
    ungrouped_batches = peer->HistogramMean("tecl_coordinator_store_batches_per_commit");
  }
  sqlite_rate = SqliteTransactionsPerSecond(dir + "/sqlite.db", seconds);
  {
    auto coordinator = StartCoordinator(dir + "/grouped", {});
    grouped = Submits(coordinator->address(), clients, seconds);
    grouped_batches = coordinator->HistogramMean("tecl_coordinator_store_batches_per_commit");
    grouped_commit_ms = 1000 * coordinator->HistogramMean("tecl_coordinator_store_commit_seconds");
    get = Gets(coordinator->address(), clients, seconds, grouped.ids);
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
