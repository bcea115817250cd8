// tecl_coordinator_scale_bench: one tecl-coordinator, pinned to one CPU, under a simulated cluster
// of N workers that heartbeat every second while J jobs cycle through their states. Prints the
// tables of docs/benchmarks.md "Coordinator" / "Scale: 1,000 simulated workers".
//
// The simulation follows docs/coordinator.md "Membership and assignments" over CoordinatorClient
// (one gRPC connection per simulated worker, max_attempts = 1 so every failure counts):
//   workers     hosts of --workers_per_host workers, --trainer_share of them trainers, the rest
//               dataloaders (with an address nobody connects to). Each registers, then beats every
//               second at its own phase (phases spread evenly over the second). A fixed pool of
//               --client_threads threads owns them, each walking its workers in phase order with
//               blocking calls; a beat is due at its slot whether or not the previous one was late,
//               and the lateness is reported (the generator falling behind shows there).
//   trainers    idle beats until one returns ACTION_RUN; then beats carry TRAINER_STATUS_RUNNING,
//               the job, attempt, rank and a step that advances with every acknowledged beat. At
//               the job's total_steps, in its next slot and before its (idle) beat, rank 0
//               registers a checkpoint and every rank reports OUTCOME_SUCCEEDED. ACTION_STOP: it
//               reports OUTCOME_STOPPED and goes idle. NOT_FOUND: it registers again.
//   jobs        --jobs pretraining specs are submitted first (1-4 trainers, one dataloader per
//               trainer, total_steps drawn from [s/2, 3s/2] for s = --steps_per_job, so jobs end
//               spread out); each time rank 0's success is acknowledged another one is submitted.
//   readers     --get_rate GetJob calls per second on random submitted jobs (dashboards, teclctl).
// Warm-up --warmup_s (registrations done, first placements), then --seconds measured: calls that
// start inside the window count. Coordinator CPU is utime+stime of /proc/<pid>/stat over the
// window; store commits and write batches are deltas of its own /metrics.
//
//   tecl_coordinator_scale_bench [--workers_list=250,500,1000 | --workers=N] [--jobs=200]
//       [--seconds=60] [--warmup_s=10] [--get_rate=50] [--client_threads=32] [--dir=/tmp]
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/coordinator/bench_support.h"
#include "services/client/grpc_coordinator_client.h"
#include "services/coordinator/scheduler/gang_scheduler.h"

ABSL_FLAG(std::string, workers_list, "250,500,1000", "Cluster sizes to run, one row each");
ABSL_FLAG(int, workers, 0, "Run this one cluster size instead of --workers_list (0: the list)");
ABSL_FLAG(int, jobs, 200, "Jobs kept in the system");
ABSL_FLAG(int, steps_per_job, 30, "Mean job length in heartbeats (each job: [s/2, 3s/2])");
ABSL_FLAG(double, get_rate, 50, "GetJob calls per second");
ABSL_FLAG(int, client_threads, 32, "Threads driving the simulated workers");
ABSL_FLAG(double, warmup_s, 10, "Seconds before the measured window");
ABSL_FLAG(double, seconds, 60, "Measured seconds per cluster size");
ABSL_FLAG(double, trainer_share, 0.8, "Share of each host's workers that are trainers");
ABSL_FLAG(int, workers_per_host, 10, "Simulated workers per host name");
ABSL_FLAG(int, connections, 0, "gRPC connections to the coordinator (0: one per worker)");
ABSL_FLAG(std::string, dir, "/tmp", "Folder for the coordinators' fresh state folders");
ABSL_FLAG(int, coordinator_cpu, 0,
          "CPU the coordinator is pinned to (-1: none); the benchmark runs on the other CPUs");
ABSL_FLAG(std::string, coordinator_prefix, "",
          "Command run in front of the coordinator, words split at spaces (e.g. a profiler)");
ABSL_FLAG(bool, keep_state, false, "Keep the state folders and coordinator logs");

namespace {

using Clock = std::chrono::steady_clock;
using tecl::CoordinatorClient;
using tecl::bench::CoordinatorProcess;
using tecl::bench::Latencies;

struct ScaleConfig {
  int workers = 1000;
  int jobs = 200;
  int steps_per_job = 30;
  double get_rate = 50;
  int client_threads = 32;
  double warmup_s = 10;
  double seconds = 60;
  double trainer_share = 0.8;
  int workers_per_host = 10;
  int connections = 0;  // 0: one per worker.
  std::string dir;
  int coordinator_cpu = 0;
  std::vector<std::string> coordinator_prefix;

  absl::Status Validate() const {
    if (workers < 1 || jobs < 1 || steps_per_job < 2 || client_threads < 1 || seconds <= 0 ||
        warmup_s < 0 || get_rate < 0 || workers_per_host < 1 || connections < 0) {
      return absl::InvalidArgumentError(
          "--workers, --jobs, --client_threads, --workers_per_host and --seconds must be "
          "positive, --steps_per_job >= 2, --warmup_s, --get_rate and --connections >= 0");
    }
    const int trainers = TrainersPerHost();
    if (trainers < 1 || trainers >= workers_per_host) {
      return absl::InvalidArgumentError(
          "--trainer_share x --workers_per_host must leave at least one trainer and one "
          "dataloader per host: jobs need both kinds");
    }
    return absl::OkStatus();
  }
  int TrainersPerHost() const {
    return static_cast<int>(std::lround(workers_per_host * trainer_share));
  }
};

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// The measured window: calls that start inside it count.
struct Window {
  Clock::time_point begin;
  Clock::time_point end;
  bool Contains(Clock::time_point t) const { return t >= begin && t < end; }
  double seconds() const { return std::chrono::duration<double>(end - begin).count(); }
};

// What one thread saw inside the window.
struct CallStats {
  std::map<std::string, Latencies> latency;  // By rpc, every call (failed ones too).
  std::map<std::string, int64_t> errors;     // "Heartbeat DEADLINE_EXCEEDED" -> calls.
  Latencies lateness;                        // Beats: start - due.
  int64_t jobs_completed = 0;                // Rank 0 successes acknowledged.

  void Merge(const CallStats& other) {
    for (const auto& [rpc, samples] : other.latency) latency[rpc].Merge(samples);
    for (const auto& [what, count] : other.errors) errors[what] += count;
    lateness.Merge(other.lateness);
    jobs_completed += other.jobs_completed;
  }
};

const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

// Times calls into a CallStats when they start inside the window. One per thread.
class Recorder {
 public:
  Recorder(const Window* window, CallStats* stats) : window_(window), stats_(stats) {}

  template <typename Call>
  auto Time(const char* rpc, Call call) -> decltype(call()) {
    const Clock::time_point start = Clock::now();
    auto result = call();
    if (window_->Contains(start)) {
      stats_->latency[rpc].ms.push_back(MsBetween(start, Clock::now()));
      const absl::Status& status = StatusOf(result);
      if (!status.ok()) {
        ++stats_->errors[absl::StrCat(rpc, " ", absl::StatusCodeToString(status.code()))];
      }
    }
    return result;
  }

  const Window& window() const { return *window_; }
  CallStats& stats() { return *stats_; }

 private:
  const Window* window_;
  CallStats* stats_;
};

// A client of `role` on its own gRPC connection.
std::shared_ptr<CoordinatorClient> NewClient(const std::string& address, tecl::Role role) {
  tecl::ClientOptions options;
  options.max_attempts = 1;  // A failed call counts as failed.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      tecl::MakeChannel(address, tecl::bench::BenchChannel(role, /*own_connection=*/true));
  if (!channel.ok()) {
    std::fprintf(stderr, "%s\n", std::string(channel.status().message()).c_str());
    std::exit(1);
  }
  return tecl::NewCoordinatorClient(*channel, options);
}

// Keeps `jobs` jobs in the system: submits them at start and one more each time one succeeded;
// knows every submitted id. Thread-safe; owns one thread between Start() and Stop().
class JobFeeder {
 public:
  JobFeeder(const ScaleConfig& config, std::shared_ptr<CoordinatorClient> client,
            const Window* window)
      : config_(config), client_(std::move(client)), recorder_(window, &stats_) {}
  ~JobFeeder() { Stop(); }

  // Submits the first `jobs` jobs. Blocks; the first error.
  absl::Status SubmitInitial() {
    for (int i = 0; i < config_.jobs; ++i) {
      if (absl::Status submitted = SubmitNext(); !submitted.ok()) return submitted;
    }
    return absl::OkStatus();
  }
  void Start() { thread_ = std::thread(&JobFeeder::Loop, this); }
  // Joins the thread (after the submit in progress). Idempotent.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  // A job succeeded: submit another. Never blocks on the coordinator.
  void JobSucceeded() {
    absl::MutexLock lock(&mu_);
    ++owed_;
  }
  std::string RandomJobId(std::mt19937& random) const {
    absl::MutexLock lock(&mu_);
    return ids_[std::uniform_int_distribution<size_t>(0, ids_.size() - 1)(random)];
  }
  // The submits timed inside the window; call after Stop().
  const CallStats& stats() const { return stats_; }

 private:
  // Job k: 1-4 trainers (mean 2.5), one dataloader each, total_steps in [s/2, 3s/2].
  tecl::v1::JobSpec SpecFor(int64_t k) const {
    tecl::v1::JobSpec spec = tecl::bench::BenchJobSpec();
    std::mt19937 random(static_cast<uint32_t>(k));
    const int s = config_.steps_per_job;
    const int64_t steps = std::uniform_int_distribution<int64_t>((s + 1) / 2, s + s / 2)(random);
    spec.set_name(absl::StrCat("scale-", k));
    spec.set_seed(static_cast<uint64_t>(k));
    spec.mutable_resources()->set_trainers(1 + static_cast<int>(k % 4));
    spec.mutable_resources()->set_dataloaders_per_trainer(1);
    spec.mutable_schedule()->set_total_steps(steps);
    spec.mutable_schedule()->set_warmup_steps(steps / 20);
    spec.mutable_schedule()->set_log_interval(1);
    spec.mutable_checkpoint()->set_interval_steps(steps);
    return spec;
  }

  absl::Status SubmitNext() {
    const int64_t k = next_++;
    absl::StatusOr<tecl::v1::Job> job = recorder_.Time(
        "SubmitJob", [&] { return client_->SubmitJob(SpecFor(k), absl::StrCat("scale-", k)); });
    if (!job.ok()) return job.status();
    absl::MutexLock lock(&mu_);
    ids_.push_back(job->id());
    return absl::OkStatus();
  }

  void Loop() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || owed_ > 0; };
        mu_.Await(absl::Condition(&ready));
        if (stopping_) return;
        --owed_;
      }
      SubmitNext().IgnoreError();  // Counted by the recorder; the next success submits again.
    }
  }

  const ScaleConfig& config_;
  const std::shared_ptr<CoordinatorClient> client_;
  CallStats stats_;  // Feeder thread (and SubmitInitial before it) only.
  Recorder recorder_;
  int64_t next_ = 0;  // Likewise.
  mutable absl::Mutex mu_;
  std::vector<std::string> ids_ ABSL_GUARDED_BY(mu_);
  int64_t owed_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// One simulated worker; touched only by the thread that owns it.
struct SimWorker {
  struct Run {
    std::string job_id;
    int attempt = 0;
    int rank = 0;
    int64_t step = 0;
    int64_t total_steps = 0;
    std::string checkpoint_dir;  // Where the assignment says its checkpoints go.
  };

  tecl::v1::WorkerInfo info;  // What it registers.
  std::shared_ptr<CoordinatorClient> client;
  std::chrono::nanoseconds phase{0};  // Offset of its beats within the second.
  std::string id;                     // Current registration; empty until registered.
  std::string session;                // Its session token (sent with every later call).
  std::optional<Run> run;

  bool trainer() const { return info.kind() == tecl::v1::WORKER_KIND_TRAINER; }
};

// The protocol of one simulated worker, on its owning thread.
class WorkerDriver {
 public:
  WorkerDriver(Recorder* recorder, JobFeeder* feeder) : recorder_(recorder), feeder_(feeder) {}

  void Register(SimWorker& w) {
    absl::StatusOr<tecl::v1::RegisterWorkerResponse> registered =
        recorder_->Time("RegisterWorker", [&] { return w.client->RegisterWorker(w.info); });
    if (registered.ok()) {
      w.id = registered->worker_id();
      w.session = registered->session_token();
    }
  }

  // One heartbeat slot: a finished run's reports first (as WorkerAgent does), then the beat.
  void Beat(SimWorker& w) {
    if (w.id.empty()) {
      Register(w);
      return;
    }
    if (w.run.has_value() && w.run->step >= w.run->total_steps) {
      EndRun(w, tecl::v1::OUTCOME_SUCCEEDED, "");
    }
    tecl::v1::HeartbeatRequest request;
    request.set_worker_id(w.id);
    if (w.trainer() && w.run.has_value()) {
      request.set_status(tecl::v1::TRAINER_STATUS_RUNNING);
      request.set_job_id(w.run->job_id);
      request.set_attempt(w.run->attempt);
      request.set_rank(w.run->rank);
      request.mutable_progress()->set_step(w.run->step);
      request.mutable_progress()->set_total_steps(w.run->total_steps);
      request.set_step_seconds(1.0);
    } else if (w.trainer()) {
      request.set_status(tecl::v1::TRAINER_STATUS_IDLE);
    }
    absl::StatusOr<tecl::v1::HeartbeatResponse> response =
        recorder_->Time("Heartbeat", [&] { return w.client->Heartbeat(request, w.session); });
    if (!response.ok()) {
      if (response.status().code() == absl::StatusCode::kNotFound ||
          response.status().code() == absl::StatusCode::kPermissionDenied) {
        w.run.reset();
        w.id.clear();
        Register(w);
      }
      return;
    }
    if (!w.trainer()) return;
    switch (response->action()) {
      case tecl::v1::HeartbeatResponse::ACTION_RUN:
        if (!w.run.has_value()) {
          const tecl::v1::Assignment& a = response->assignment();
          w.run = SimWorker::Run{a.job_id(), a.attempt(), a.rank(), 0,
                                 a.spec().schedule().total_steps(), a.checkpoint_dir()};
        }
        break;
      case tecl::v1::HeartbeatResponse::ACTION_STOP:
        if (w.run.has_value()) EndRun(w, tecl::v1::OUTCOME_STOPPED, response->stop_reason());
        break;
      default:
        if (w.run.has_value() && request.job_id() == w.run->job_id) ++w.run->step;
        break;
    }
  }

 private:
  void EndRun(SimWorker& w, tecl::v1::Outcome outcome, const std::string& reason) {
    const SimWorker::Run run = *std::move(w.run);
    w.run.reset();
    const bool succeeded = outcome == tecl::v1::OUTCOME_SUCCEEDED;
    if (succeeded && run.rank == 0) {
      tecl::v1::RegisterCheckpointRequest request;
      request.set_worker_id(w.id);
      request.set_job_id(run.job_id);
      tecl::v1::Checkpoint* c = request.mutable_checkpoint();
      c->set_step(run.step);
      c->set_attempt(run.attempt);
      c->set_path(absl::StrFormat("%s/checkpoint-%012d.tecl", run.checkpoint_dir, run.step));
      c->set_sha256(std::string(64, 'a'));
      c->set_size_bytes(48 << 20);
      recorder_->Time("RegisterCheckpoint",
                      [&] { return w.client->RegisterCheckpoint(request, w.session); })
          .IgnoreError();
    }
    tecl::v1::ReportOutcomeRequest request;
    request.set_worker_id(w.id);
    request.set_job_id(run.job_id);
    request.set_attempt(run.attempt);
    request.set_rank(run.rank);
    request.set_outcome(outcome);
    request.set_reason(reason);
    request.set_step(run.step);
    request.mutable_progress()->set_step(run.step);
    request.mutable_progress()->set_total_steps(run.total_steps);
    const Clock::time_point start = Clock::now();
    const absl::Status reported =
        recorder_->Time("ReportOutcome", [&] { return w.client->ReportOutcome(request, w.session); });
    if (reported.ok() && succeeded && run.rank == 0) {
      feeder_->JobSucceeded();
      if (recorder_->window().Contains(start)) ++recorder_->stats().jobs_completed;
    }
  }

  Recorder* recorder_;
  JobFeeder* feeder_;
};

// What one cluster size measured.
struct ScenarioResult {
  int workers = 0;
  int trainers = 0;
  int dataloaders = 0;
  double seconds = 0;
  CallStats calls;
  double coordinator_cores = 0;
  double coordinator_cpu_busy = -1;  // Share of the coordinator's CPU busy, all processes.
  double generator_cores = 0;
  double schedule_pass_ms = 0;  // ScheduleQueue alone on a state like the end of the run.
  std::map<std::string, double> thread_cores;  // Coordinator threads by name.
  double commits_per_s = 0;
  double batches_per_s = 0;
  double mean_commit_ms = 0;
  std::map<std::string, double> end_metrics;  // /metrics at the end of the window.
};

double ProcessCpuSeconds() {
  double seconds = 0;
  return tecl::bench::ReadProcStat("/proc/self/stat", &seconds, nullptr) ? seconds : 0;
}

double Delta(const std::map<std::string, double>& before,
             const std::map<std::string, double>& after, const std::string& name) {
  const auto a = after.find(name);
  const auto b = before.find(name);
  return (a == after.end() ? 0 : a->second) - (b == before.end() ? 0 : b->second);
}

// Jiffies of one CPU (/proc/stat "cpuN"): busy (all but idle and iowait) and in total.
struct CpuJiffies {
  double busy = 0;
  double total = 0;
};

std::optional<CpuJiffies> ReadCpuJiffies(int cpu) {
  const std::string prefix = absl::StrCat("cpu", cpu, " ");
  for (absl::string_view line : absl::StrSplit(tecl::bench::ReadFile("/proc/stat"), '\n')) {
    if (!absl::StartsWith(line, prefix)) continue;
    CpuJiffies jiffies;
    int field = 0;
    for (absl::string_view word :
         absl::StrSplit(line.substr(prefix.size()), ' ', absl::SkipEmpty())) {
      double value = 0;
      if (!absl::SimpleAtod(word, &value)) return std::nullopt;
      jiffies.total += value;
      if (field != 3 && field != 4) jiffies.busy += value;  // idle, iowait
      ++field;
    }
    return jiffies;
  }
  return std::nullopt;
}

// The gauge `name` at the end of the run, 0 when absent.
double Gauge(const std::map<std::string, double>& metrics, const std::string& name) {
  const auto it = metrics.find(name);
  return it == metrics.end() ? 0 : it->second;
}

// Milliseconds one ScheduleQueue call takes (the pure placement policy the coordinator runs under
// its state lock on every scheduling pass) on a state shaped like the end of the run: the
// simulated cluster's hosts and worker ids, its idle trainers and dataloaders free, its pending
// jobs queued (1-4 trainers each).
double TimeSchedulePass(const ScaleConfig& config, const std::map<std::string, double>& metrics) {
  using tecl::coordinator::WorkerSlot;
  const int pending = static_cast<int>(Gauge(metrics, "tecl_coordinator_jobs{state=\"pending\"}"));
  const int free_trainers =
      static_cast<int>(Gauge(metrics, "tecl_coordinator_workers{kind=\"trainer\",state=\"idle\"}"));
  const int free_loaders = static_cast<int>(
      Gauge(metrics, "tecl_coordinator_workers{kind=\"dataloader\",state=\"idle\"}"));
  std::mt19937 random(7);
  const int trainers_per_host = config.TrainersPerHost();
  std::vector<WorkerSlot> live;
  std::vector<size_t> trainers;
  std::vector<size_t> loaders;
  for (int i = 0; i < config.workers; ++i) {
    const bool trainer = i % config.workers_per_host < trainers_per_host;
    (trainer ? trainers : loaders).push_back(live.size());
    live.push_back({absl::StrFormat("%s-%08x", trainer ? "trainer" : "loader", random()),
                    trainer ? tecl::v1::WORKER_KIND_TRAINER : tecl::v1::WORKER_KIND_DATALOADER,
                    tecl::v1::DEVICE_CPU, 0,
                    absl::StrCat("sim-host-", i / config.workers_per_host)});
  }
  std::vector<WorkerSlot> free;
  for (auto [indices, count] : {std::pair{&trainers, free_trainers}, {&loaders, free_loaders}}) {
    std::shuffle(indices->begin(), indices->end(), random);
    for (int i = 0; i < count && i < static_cast<int>(indices->size()); ++i) {
      free.push_back(live[(*indices)[i]]);
    }
  }
  std::vector<tecl::coordinator::QueuedJob> queue(pending);
  for (int k = 0; k < pending; ++k) {
    queue[k].job_id = absl::StrFormat("job-%06d", k);
    queue[k].seq = k;
    queue[k].request.trainers = 1 + k % 4;
    queue[k].request.dataloaders_per_trainer = 1;
  }
  const tecl::coordinator::SchedulerOptions options;
  const int repeats = 20;
  const Clock::time_point start = Clock::now();
  for (int r = 0; r < repeats; ++r) tecl::coordinator::ScheduleQueue(queue, free, live, options);
  return MsBetween(start, Clock::now()) / repeats;
}

absl::StatusOr<ScenarioResult> RunScenario(const ScaleConfig& config, const std::string& dir) {
  tecl::bench::CoordinatorProcessOptions process_options;
  process_options.dir = dir;
  process_options.cpu = config.coordinator_cpu;
  process_options.prefix = config.coordinator_prefix;
  process_options.start_timeout_s = config.coordinator_prefix.empty() ? 30 : 300;
  process_options.flags = {"--heartbeat_interval=1s",
                           absl::StrCat("--max_trainers=", std::max(64, config.workers))};
  absl::StatusOr<std::unique_ptr<CoordinatorProcess>> started =
      CoordinatorProcess::Start(process_options);
  if (!started.ok()) return started.status();
  const CoordinatorProcess& coordinator = **started;

  ScenarioResult result;
  result.workers = config.workers;
  Window window;  // Set once the workers are registered; nothing is timed before.
  window.begin = window.end = Clock::time_point::max();

  JobFeeder feeder(config, NewClient(coordinator.address(), tecl::Role::kUser), &window);
  if (absl::Status submitted = feeder.SubmitInitial(); !submitted.ok()) {
    return absl::Status(submitted.code(),
                        absl::StrCat("submitting the first jobs: ", submitted.message()));
  }

  // The cluster: hosts of workers_per_host, the first trainer_share of each host trainers.
  std::vector<SimWorker> workers(config.workers);
  // With --connections, that many connections per kind (each kind calls with its own token).
  std::map<bool, std::vector<std::shared_ptr<CoordinatorClient>>> shared_clients;
  for (int c = 0; c < config.connections; ++c) {
    shared_clients[true].push_back(NewClient(coordinator.address(), tecl::Role::kTrainer));
    shared_clients[false].push_back(NewClient(coordinator.address(), tecl::Role::kDataloader));
  }
  const int trainers_per_host = config.TrainersPerHost();
  for (int i = 0; i < config.workers; ++i) {
    SimWorker& w = workers[i];
    const int host = i / config.workers_per_host;
    const int slot = i % config.workers_per_host;
    const bool trainer = slot < trainers_per_host;
    w.info.set_kind(trainer ? tecl::v1::WORKER_KIND_TRAINER : tecl::v1::WORKER_KIND_DATALOADER);
    w.info.set_hostname(absl::StrCat("sim-host-", host));
    w.info.set_device(tecl::v1::DEVICE_CPU);
    w.info.set_threads(4);
    w.info.set_version("scale-bench");
    if (!trainer) w.info.set_address(absl::StrCat("sim-host-", host, ":", 7100 + slot));
    w.info.set_metrics_address(absl::StrCat("sim-host-", host, ":", 9100 + slot));
    const auto& pool = shared_clients[trainer];
    w.client = pool.empty() ? NewClient(coordinator.address(),
                                        trainer ? tecl::Role::kTrainer : tecl::Role::kDataloader)
                            : pool[i % pool.size()];
    w.phase = std::chrono::nanoseconds(static_cast<int64_t>(1e9 * i / config.workers));
    (trainer ? result.trainers : result.dataloaders)++;
  }

  // Thread t owns workers t, t + T, ...: in phase order, evenly spread over the second.
  const int threads = std::min(config.client_threads, config.workers);
  std::vector<CallStats> stats(threads + 1);  // The last: the GetJob reader.
  {
    std::vector<std::thread> registering;
    for (int t = 0; t < threads; ++t) {
      registering.emplace_back([&, t] {
        Recorder recorder(&window, &stats[t]);
        WorkerDriver driver(&recorder, &feeder);
        for (int i = t; i < config.workers; i += threads) driver.Register(workers[i]);
      });
    }
    for (std::thread& t : registering) t.join();
  }
  const Clock::time_point base = Clock::now() + std::chrono::milliseconds(100);
  const Clock::time_point begin = base + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(config.warmup_s));
  const Clock::time_point end = begin + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(config.seconds));

  // The window is written before the threads that read it start.
  window.begin = begin;
  window.end = end;
  feeder.Start();
  std::vector<std::thread> running;
  for (int t = 0; t < threads; ++t) {
    running.emplace_back([&, t] {
      Recorder recorder(&window, &stats[t]);
      WorkerDriver driver(&recorder, &feeder);
      for (int64_t round = 0;; ++round) {
        for (int i = t; i < config.workers; i += threads) {
          const Clock::time_point due = base + std::chrono::seconds(round) + workers[i].phase;
          if (due >= end) return;
          std::this_thread::sleep_until(due);
          if (window.Contains(due)) stats[t].lateness.ms.push_back(MsBetween(due, Clock::now()));
          driver.Beat(workers[i]);
        }
      }
    });
  }
  if (config.get_rate > 0) {
    running.emplace_back([&] {
      Recorder recorder(&window, &stats[threads]);
      std::shared_ptr<CoordinatorClient> client =
          NewClient(coordinator.address(), tecl::Role::kUser);
      std::mt19937 random(12345);
      const auto period = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(1.0 / config.get_rate));
      for (int64_t i = 0;; ++i) {
        const Clock::time_point due = base + i * period;
        if (due >= end) return;
        std::this_thread::sleep_until(due);
        const std::string id = feeder.RandomJobId(random);
        recorder.Time("GetJob", [&] { return client->GetJob(id); }).IgnoreError();
      }
    });
  }

  std::this_thread::sleep_until(begin);
  const std::map<std::string, double> metrics_before = coordinator.ScrapeMetrics();
  const double cpu_before = coordinator.CpuSeconds();
  const std::map<std::string, double> threads_before = coordinator.CpuSecondsByThreadName();
  const double generator_before = ProcessCpuSeconds();
  const std::optional<CpuJiffies> jiffies_before = ReadCpuJiffies(config.coordinator_cpu);
  std::this_thread::sleep_until(end);
  const std::optional<CpuJiffies> jiffies_after = ReadCpuJiffies(config.coordinator_cpu);
  const double cpu_after = coordinator.CpuSeconds();
  const std::map<std::string, double> threads_after = coordinator.CpuSecondsByThreadName();
  const double generator_after = ProcessCpuSeconds();
  result.end_metrics = coordinator.ScrapeMetrics();

  for (std::thread& t : running) t.join();
  feeder.Stop();

  result.seconds = window.seconds();
  for (const CallStats& s : stats) result.calls.Merge(s);
  result.calls.Merge(feeder.stats());
  result.coordinator_cores = (cpu_after - cpu_before) / result.seconds;
  result.generator_cores = (generator_after - generator_before) / result.seconds;
  if (jiffies_before.has_value() && jiffies_after.has_value() &&
      jiffies_after->total > jiffies_before->total) {
    result.coordinator_cpu_busy = (jiffies_after->busy - jiffies_before->busy) /
                                  (jiffies_after->total - jiffies_before->total);
  }
  result.schedule_pass_ms = TimeSchedulePass(config, result.end_metrics);
  for (const auto& [name, seconds] : threads_after) {
    const auto before = threads_before.find(name);
    result.thread_cores[name] =
        (seconds - (before == threads_before.end() ? 0 : before->second)) / result.seconds;
  }
  const double commits =
      Delta(metrics_before, result.end_metrics, "tecl_coordinator_store_commit_seconds_count");
  result.commits_per_s = commits / result.seconds;
  result.batches_per_s =
      Delta(metrics_before, result.end_metrics, "tecl_coordinator_store_batches_per_commit_sum") /
      result.seconds;
  result.mean_commit_ms = commits > 0 ? 1000 *
                                            Delta(metrics_before, result.end_metrics,
                                                  "tecl_coordinator_store_commit_seconds_sum") /
                                            commits
                                      : 0;
  return result;
}

std::string Errors(const CallStats& calls) {
  if (calls.errors.empty()) return "none";
  std::vector<std::string> parts;
  for (const auto& [what, count] : calls.errors) parts.push_back(absl::StrCat(what, " x", count));
  return absl::StrJoin(parts, ", ");
}

std::string JobsByState(const std::map<std::string, double>& metrics) {
  std::vector<std::string> parts;
  for (const char* state :
       {"pending", "scheduled", "running", "recovering", "succeeded", "failed", "cancelled"}) {
    const auto it = metrics.find(absl::StrCat("tecl_coordinator_jobs{state=\"", state, "\"}"));
    if (it != metrics.end() && it->second > 0)
      parts.push_back(absl::StrCat(state, " ", it->second));
  }
  return absl::StrJoin(parts, ", ");
}

void PrintTables(const ScaleConfig& config, std::vector<ScenarioResult>& results) {
  std::printf(
      "Coordinator at scale: simulated workers heartbeating every 1 s (%d per host, %.0f%% "
      "trainers), %d jobs kept in the system (1-4 trainers, 1 dataloader per trainer, %d "
      "heartbeats "
      "long on average), GetJob at %.0f/s; coordinator pinned to CPU %d; %.0f s warm-up, %.0f s "
      "measured per row\n\n",
      config.workers_per_host, 100 * config.trainer_share, config.jobs, config.steps_per_job,
      config.get_rate, config.coordinator_cpu, config.warmup_s, config.seconds);
  std::printf(
      "| workers (trainers + dataloaders) | jobs | heartbeats/s (target) | heartbeat p50 ms | p99 "
      "ms "
      "| max ms | GetJob p50 ms | p99 ms | coordinator CPU (cores) | store commits/s | write "
      "batches/s | jobs completed/s | errors |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (ScenarioResult& r : results) {
    Latencies& beats = r.calls.latency["Heartbeat"];
    Latencies& gets = r.calls.latency["GetJob"];
    std::printf(
        "| %d (%d + %d) | %d | %.0f (%d) | %.2f | %.2f | %.1f | %.2f | %.2f | %.2f | %.1f | %.1f | "
        "%.2f | %s |\n",
        r.workers, r.trainers, r.dataloaders, config.jobs, beats.ms.size() / r.seconds, r.workers,
        beats.Percentile(0.5), beats.Percentile(0.99), beats.Percentile(1.0), gets.Percentile(0.5),
        gets.Percentile(0.99), r.coordinator_cores, r.commits_per_s, r.batches_per_s,
        r.calls.jobs_completed / r.seconds, Errors(r.calls).c_str());
  }

  std::printf("\nDurable calls as clients see them, the store, the machine, the jobs\n\n");
  std::printf(
      "| workers | ReportOutcome /s, p50, p99 ms | RegisterCheckpoint p50, p99 ms | SubmitJob "
      "p50, p99 ms | mean commit ms | batches/commit | coordinator's CPU busy (all processes) | "
      "beat lateness p99, max ms | generator CPU (cores) | GetJob/s | jobs at the end | one "
      "scheduling pass (ms) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (ScenarioResult& r : results) {
    Latencies& outcomes = r.calls.latency["ReportOutcome"];
    Latencies& checkpoints = r.calls.latency["RegisterCheckpoint"];
    Latencies& submits = r.calls.latency["SubmitJob"];
    std::printf(
        "| %d | %.1f, %.2f, %.2f | %.2f, %.2f | %.2f, %.2f | %.2f | %.2f | %.0f%% | %.1f, %.1f | "
        "%.2f | %.0f | %s | %.3f |\n",
        r.workers, outcomes.ms.size() / r.seconds, outcomes.Percentile(0.5),
        outcomes.Percentile(0.99), checkpoints.Percentile(0.5), checkpoints.Percentile(0.99),
        submits.Percentile(0.5), submits.Percentile(0.99), r.mean_commit_ms,
        r.commits_per_s > 0 ? r.batches_per_s / r.commits_per_s : 0, 100 * r.coordinator_cpu_busy,
        r.calls.lateness.Percentile(0.99), r.calls.lateness.Percentile(1.0), r.generator_cores,
        r.calls.latency["GetJob"].ms.size() / r.seconds, JobsByState(r.end_metrics).c_str(),
        r.schedule_pass_ms);
  }
  std::printf(
      "\n(one scheduling pass: ScheduleQueue alone, timed in this process on a state shaped like "
      "the end of the run: its pending jobs queued, its idle workers free; the coordinator runs "
      "it under its state lock.)\n");

  std::printf("\nCoordinator CPU by thread name (cores)\n\n");
  for (const ScenarioResult& r : results) {
    std::vector<std::pair<double, std::string>> threads;
    for (const auto& [name, cores] : r.thread_cores) threads.emplace_back(cores, name);
    std::sort(threads.rbegin(), threads.rend());
    std::vector<std::string> parts;
    for (const auto& [cores, name] : threads) {
      if (cores >= 0.005) parts.push_back(absl::StrFormat("%s %.2f", name, cores));
    }
    std::printf("- %d workers: %s\n", r.workers, absl::StrJoin(parts, ", ").c_str());
  }

  for (ScenarioResult& r : results) {
    if (r.workers != 1000) continue;
    const double p99 = r.calls.latency["Heartbeat"].Percentile(0.99);
    std::printf(
        "\nGoal: heartbeat p99 < 20 ms at 1000 workers with the coordinator on one core: "
        "%s (p99 %.2f ms)\n",
        p99 < 20 ? "met" : "missed", p99);
  }
}

// Pins this process (and the threads it starts from now on) to every allowed CPU but `cpu`.
void AvoidCpu(int cpu) {
  cpu_set_t allowed;
  if (cpu < 0 || ::sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  if (!CPU_ISSET(cpu, &allowed) || CPU_COUNT(&allowed) < 2) return;
  CPU_CLR(cpu, &allowed);
  ::sched_setaffinity(0, sizeof(allowed), &allowed);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "tecl_coordinator_scale_bench: tecl-coordinator under a simulated cluster of heartbeating "
      "workers and cycling jobs");
  absl::ParseCommandLine(argc, argv);
  ScaleConfig config;
  config.jobs = absl::GetFlag(FLAGS_jobs);
  config.steps_per_job = absl::GetFlag(FLAGS_steps_per_job);
  config.get_rate = absl::GetFlag(FLAGS_get_rate);
  config.client_threads = absl::GetFlag(FLAGS_client_threads);
  config.warmup_s = absl::GetFlag(FLAGS_warmup_s);
  config.seconds = absl::GetFlag(FLAGS_seconds);
  config.trainer_share = absl::GetFlag(FLAGS_trainer_share);
  config.workers_per_host = absl::GetFlag(FLAGS_workers_per_host);
  config.connections = absl::GetFlag(FLAGS_connections);
  config.dir = absl::GetFlag(FLAGS_dir);
  config.coordinator_cpu = absl::GetFlag(FLAGS_coordinator_cpu);
  config.coordinator_prefix =
      absl::StrSplit(absl::GetFlag(FLAGS_coordinator_prefix), ' ', absl::SkipEmpty());
  std::vector<int> sizes;
  if (absl::GetFlag(FLAGS_workers) > 0) {
    sizes.push_back(absl::GetFlag(FLAGS_workers));
  } else {
    for (absl::string_view size : absl::StrSplit(absl::GetFlag(FLAGS_workers_list), ',')) {
      int n = 0;
      if (!absl::SimpleAtoi(size, &n) || n < 1) {
        std::fprintf(stderr, "--workers_list: \"%s\" is not a positive number\n",
                     std::string(size).c_str());
        return 2;
      }
      sizes.push_back(n);
    }
  }
  for (int workers : sizes) {
    config.workers = workers;
    if (absl::Status valid = config.Validate(); !valid.ok()) {
      std::fprintf(stderr, "%s\n", std::string(valid.message()).c_str());
      return 2;
    }
  }
  AvoidCpu(config.coordinator_cpu);

  std::string pattern = config.dir + "/tecl_coordinator_scale_bench_XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "cannot create a folder under %s\n", config.dir.c_str());
    return 1;
  }
  const std::string dir = pattern;
  std::vector<ScenarioResult> results;
  absl::Status failed;
  for (int workers : sizes) {
    config.workers = workers;
    std::fprintf(stderr, "running %d workers...\n", workers);
    absl::StatusOr<ScenarioResult> result =
        RunScenario(config, absl::StrCat(dir, "/workers-", workers));
    if (!result.ok()) {
      failed = absl::Status(result.status().code(),
                            absl::StrCat(workers, " workers: ", result.status().message()));
      break;
    }
    results.push_back(*std::move(result));
  }
  if (absl::GetFlag(FLAGS_keep_state)) {
    std::fprintf(stderr, "state and coordinator logs kept in %s\n", dir.c_str());
  } else {
    std::filesystem::remove_all(dir);
  }
  if (!failed.ok()) {
    std::fprintf(stderr, "%s\n", std::string(failed.message()).c_str());
    return 1;
  }
  PrintTables(config, results);
  return 0;
}
