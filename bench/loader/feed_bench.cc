// tecl_feed_bench: the data-wait share of a trainer that consumes clips at a fixed GPU-like rate,
// fed by a real tecl-dataloader process over gRPC, against the loader's cores, on a raw
// Kinetics-like set and on its prepared copy (docs/benchmarks.md "Prepared data sets").
//
// Writes the Kinetics-like set with the ffmpeg CLI (--videos files of 340x256, 30 fps, --seconds
// long, GOP 250, 3 B-frames, in 4 class folders) and prepares it with PrepareDataset (short side
// 128, a keyframe every 32 frames). For each copy and each loader core count c of --cores it
// starts `tecl-dataloader --insecure --register=false --decode_threads=c` confined to CPUs
// 0..c-1 (taskset), and a consumer in this process, pinned to the last CPU, streams a
// pretraining job of the GPU preset (r2plus1d_18 defaults: 16 frames of 112x112, speeds
// 1,2,4,8, 8 groups = 32 clips per batch, the whole pipeline with crops and colour jitter) and
// takes each batch as a GPU step would: it waits for the batch (data wait), then "computes" for
// clips / --consumer_rate seconds. After --warmup batches (the loader's video indexes warm, its
// prefetch full), --batches batches are measured: data-wait share = wait / (wait + compute),
// delivered clips/s = clips / elapsed. The prediction from the per-core decode rate
// (tecl_prepare_bench) is 1 - c x r / R when positive.
//
// When c equals the machine's CPUs the consumer shares a CPU with the loader (the figure then
// includes that contention; the output says so).
//
//   tecl_feed_bench [--videos=24] [--seconds=10] [--cores=1,2] [--consumer_rate=400]
//                   [--warmup=6] [--batches=30] [--data_dir=DIR] [--dataloader=PATH]
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/decode/bench_util.h"
#include "services/client/grpc_loader_client.h"
#include "services/common/auth.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/dataloader/prepare/prepare_dataset.h"

extern char** environ;

ABSL_FLAG(int, videos, 24, "Videos in the Kinetics-like set (4 classes; a batch needs 16)");
ABSL_FLAG(double, seconds, 10.0, "Length of each video (340x256, 30 fps, GOP 250)");
ABSL_FLAG(std::string, cores, "1,2", "Loader core counts to measure");
ABSL_FLAG(double, consumer_rate, 400, "Clips per second the consumer takes (a GPU trainer)");
ABSL_FLAG(int, warmup, 6, "Batches taken before measuring");
ABSL_FLAG(int, batches, 30, "Batches measured per copy and core count");
ABSL_FLAG(std::string, data_dir, "", "Reuse/create both copies here (default: a temp folder)");
ABSL_FLAG(std::string, dataloader, "", "tecl-dataloader binary (default: next to this one)");

namespace {

namespace fs = std::filesystem;

struct Result {
  bool ok = false;
  double wait_share = 0;
  double clips_per_second = 0;
};

std::string Here() {
  std::error_code error;
  return fs::read_symlink("/proc/self/exe", error).parent_path().string();
}

// Starts the loader under taskset; its pid, and its address once it serves.
pid_t StartLoader(const std::string& binary, int cores, const std::string& data_dir,
                  std::string* address) {
  const std::string port_file = absl::StrCat(data_dir, "/loader.port");
  fs::remove(port_file);
  std::vector<std::string> args = {"taskset",
                                   "-c",
                                   cores == 1 ? "0" : absl::StrCat("0-", cores - 1),
                                   binary,
                                   "--insecure",
                                   "--register=false",
                                   absl::StrCat("--decode_threads=", cores),
                                   "--listen=127.0.0.1:0",
                                   "--metrics_listen=127.0.0.1:0",
                                   absl::StrCat("--data_root=", data_dir),
                                   absl::StrCat("--port_file=", port_file)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawnp(&pid, "taskset", nullptr, nullptr, argv.data(), environ) != 0) {
    std::perror("posix_spawnp taskset");
    std::exit(1);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    std::ifstream in(port_file);
    if (in && std::getline(in, *address) && !address->empty()) return pid;
    absl::SleepFor(absl::Milliseconds(50));
  }
  std::fprintf(stderr, "the dataloader did not start within 30 s\n");
  kill(pid, SIGKILL);
  std::exit(1);
}

Result Feed(const std::string& address, const std::string& root, int cores) {
  tecl::ChannelOptions channel_options;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      tecl::MakeChannel(address, channel_options);
  if (!channel.ok()) {
    std::fprintf(stderr, "%s\n", channel.status().ToString().c_str());
    return Result();
  }
  std::shared_ptr<tecl::LoaderClient> client = tecl::NewLoaderClient(*channel);
  tecl::v1::StreamBatchesRequest request;
  request.set_job_id("feed-bench");
  *request.mutable_spec() =
      tecl::coordinator::DefaultJobSpec(tecl::v1::JOB_KIND_PRETRAIN, "r2plus1d_18");
  tecl::v1::JobSpec& spec = *request.mutable_spec();
  spec.mutable_dataset()->set_root(root);
  spec.mutable_dataset()->set_split("all");
  spec.mutable_resources()->set_decode_threads(cores);
  spec.mutable_schedule()->set_total_steps(1'000'000);
  request.set_rank(0);
  request.set_world_size(1);
  request.set_max_steps(absl::GetFlag(FLAGS_warmup) + absl::GetFlag(FLAGS_batches));
  request.set_mode(tecl::v1::STREAM_MODE_TRAIN);
  std::unique_ptr<tecl::BatchReader> reader = client->StreamBatches(request);
  tecl::v1::ClipBatch batch;
  const double rate = absl::GetFlag(FLAGS_consumer_rate);
  double wait = 0, compute = 0;
  int64_t clips = 0;
  absl::Time start;
  for (int b = 0; b < absl::GetFlag(FLAGS_warmup) + absl::GetFlag(FLAGS_batches); ++b) {
    const bool measured = b >= absl::GetFlag(FLAGS_warmup);
    if (b == absl::GetFlag(FLAGS_warmup)) start = absl::Now();
    const absl::Time before = absl::Now();
    if (!reader->Read(&batch)) {
      std::fprintf(stderr, "stream ended early: %s\n", reader->Finish().ToString().c_str());
      return Result();
    }
    const int64_t n = batch.clips().shape_size() > 0 ? batch.clips().shape(0) : 0;
    const double step = static_cast<double>(n) / rate;
    if (measured) {
      wait += absl::ToDoubleSeconds(absl::Now() - before);
      compute += step;
      clips += n;
    }
    absl::SleepFor(absl::Seconds(step));  // The GPU step.
  }
  reader->Cancel();
  Result result;
  result.ok = true;
  result.wait_share = wait / (wait + compute);
  result.clips_per_second = clips / absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

// The flags' ranges, checked before anything is written or started: "" when every flag is in
// range (and *cores holds --cores), else the message naming the flag and what it takes.
std::string FlagError(std::vector<int>* cores) {
  const auto out_of = [](const char* name, double value, double low, double high) {
    return (value >= low && value <= high)
               ? std::string()
               : absl::StrFormat("--%s=%g is out of range: it takes %g..%g", name, value, low, high);
  };
  for (const std::string& error :
       {out_of("videos", absl::GetFlag(FLAGS_videos), 16, 10000),
        out_of("seconds", absl::GetFlag(FLAGS_seconds), 1, 600),
        out_of("consumer_rate", absl::GetFlag(FLAGS_consumer_rate), 1, 1e6),
        out_of("warmup", absl::GetFlag(FLAGS_warmup), 0, 10000),
        out_of("batches", absl::GetFlag(FLAGS_batches), 1, 100000)}) {
    if (!error.empty()) return error;
  }
  for (absl::string_view c : absl::StrSplit(absl::GetFlag(FLAGS_cores), ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(c, &n) || n < 1 || n > 1024) {
      return absl::StrFormat("--cores: \"%s\" is not a core count 1..1024 (e.g. --cores=1,2)", c);
    }
    cores->push_back(n);
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::vector<int> cores;
  if (const std::string error = FlagError(&cores); !error.empty()) {
    std::fprintf(stderr, "tecl_feed_bench: %s\n", error.c_str());
    return 2;
  }
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) dir = (fs::temp_directory_path() / "tecl_feed_bench").string();
  dir = fs::absolute(dir).lexically_normal().string();
  const std::string raw = dir + "/raw";
  const std::string prepared = dir + "/prepared";
  for (int i = 0; i < absl::GetFlag(FLAGS_videos); ++i) {
    const std::string folder = absl::StrFormat("%s/class%d", raw, i % 4);
    fs::create_directories(folder);
    if (!tecl::bench::WriteKineticsLike(absl::StrFormat("%s/v%02d.mp4", folder, i), i,
                                        absl::GetFlag(FLAGS_seconds))) {
      return 1;
    }
  }
  tecl::prepare::PrepareOptions prepare;
  prepare.dataset.set_format(tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
  prepare.dataset.set_root(raw);
  prepare.output_root = prepared;
  absl::StatusOr<tecl::prepare::PrepareSummary> summary =
      tecl::prepare::PrepareDataset(prepare, tecl::dataloader::DataRoots());
  if (!summary.ok()) {
    std::fprintf(stderr, "prepare: %s\n", summary.status().ToString().c_str());
    return 1;
  }
  std::string loader = absl::GetFlag(FLAGS_dataloader);
  if (loader.empty()) loader = Here() + "/tecl-dataloader";
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  const int consumer_cpu = tecl::bench::PinToOneCpu(-1);

  const double rate = absl::GetFlag(FLAGS_consumer_rate);
  std::printf(
      "\n%d videos 340x256 30 fps %.0f s GOP 250 B-frames vs prepared (short side 128, keyframe "
      "every 32); GPU preset (32 clips of 16x112x112 per batch); consumer at %.0f clips/s on CPU "
      "%d; %d batches measured after %d:\n\n"
      "| loader cores | raw: data wait | raw: clips/s | prepared: data wait | prepared: clips/s |\n"
      "|---|---|---|---|---|\n",
      absl::GetFlag(FLAGS_videos), absl::GetFlag(FLAGS_seconds), rate, consumer_cpu,
      absl::GetFlag(FLAGS_batches), absl::GetFlag(FLAGS_warmup));
  for (int c : cores) {
    if (c < 1 || c > cpus) {
      std::fprintf(stderr, "--cores: %d is outside [1, %d]\n", c, cpus);
      return 2;
    }
    Result results[2];
    const std::string roots[2] = {raw, prepared};
    for (int copy = 0; copy < 2; ++copy) {
      std::string address;
      const pid_t pid = StartLoader(loader, c, dir, &address);
      results[copy] = Feed(address, roots[copy], c);
      kill(pid, SIGTERM);  // Also on failure: it holds this process's stdout.
      int status = 0;
      waitpid(pid, &status, 0);
      if (!results[copy].ok) return 1;
    }
    std::printf("| %d%s | %.0f %% | %.1f | %.0f %% | %.1f |\n", c,
                c + 1 > cpus ? " (shares the consumer's CPU)" : "",
                100 * results[0].wait_share, results[0].clips_per_second,
                100 * results[1].wait_share, results[1].clips_per_second);
    std::fflush(stdout);
  }
  return 0;
}
