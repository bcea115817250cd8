// Trainer core benchmark: the full training step of services/worker/train (Trainer::TrainStep:
// NormalizeClips on uint8 clips, backbone forward, the five losses, backward, AdamW step) against
// the same step written in PyTorch Python (bench/core/core_step.py, run as a subprocess), in one
// run on one machine. Both sides use one thread, start from the same weights (the C++ trainer's
// SaveCheckpoint, loaded by Python with strict names and shapes) and train on the same batches
// (synthetic motion batches, written once with torch::pickle_save); the per-step total losses of
// the two are compared as a check that they compute the same thing.
//
// Presets (docs/benchmarks.md "Trainer core"):
//   tiny      tiny3d, G=4 groups = 16 clips of 8 frames 64x64 (the CPU preset of job-spec.md and
//             examples/cpu-demo.yaml); 2 warm-up + 10 timed steps per round
//   standard  r2plus1d_18, G=1 group = 4 clips of 16 frames 112x112 (the GPU clip geometry; one
//             group keeps a CPU step near a minute); 1 warm-up + 3 timed steps per round
//   gpu       r2plus1d_18, G=8 groups = 32 clips of 16 frames 112x112 (the GPU preset of
//             job-spec.md); 3 warm-up + 10 timed steps per round; for --device=cuda
// Four implementations run per round and preset (see Variant below): the C++ trainer as shipped
// (host caching allocator), the C++ trainer on LibTorch's default allocator, Python as users run
// it, and Python with glibc keeping freed memory, each in a fresh process (the C++ ones are this
// binary with --child). The order rotates each round; each runs its warm-up steps (left out of the
// timing) and its timed steps. The table reports the median of all timed steps and the ratios; the
// headline is C++ as shipped / Python as users run it.
//
//   tecl_core_bench [--presets=tiny,standard] [--rounds=2] [--warmup=N] [--steps=N]
//                   [--variants=cpp,cpp_default,python,python_keep]
//                   [--device=cpu|cuda] [--precisions=fp32,bf16,fp16]
//                   [--memory_format=auto|contiguous|channels_last] [--torchvision=1]
//                   [--python=/usr/bin/python3] [--script=<source>/bench/core/core_step.py]
//                   [--work_dir=/tmp/tecl_core_bench]
// --warmup and --steps replace every preset's own counts. On --device=cuda every step is timed to
// the end of its kernels on both sides, each precision of --precisions is a row of its own (the
// backbone under autocast, TrainerOptions::memory_format resolved the same way on both sides), and
// the table adds the device memory in use at the peak of the steps (total - free). --torchvision=1
// has Python run torchvision's own VideoResNet with the same weights.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#if TECL_HAVE_CUDART
#include <cuda_runtime_api.h>
#endif

#include "services/worker/train/checkpoint.h"
#include "services/worker/train/host_allocator.h"
#include "services/worker/train/synthetic_batches.h"
#include "services/worker/train/trainer.h"

namespace tecl::worker::core {
namespace {

using Clock = std::chrono::steady_clock;
using Flags = std::map<std::string, std::string>;

std::string Flag(const Flags& flags, const std::string& name, const std::string& fallback) {
  const auto it = flags.find(name);
  return it == flags.end() ? fallback : it->second;
}

int IntFlag(const Flags& flags, const std::string& name, int fallback) {
  return std::stoi(Flag(flags, name, std::to_string(fallback)));
}

struct Preset {
  std::string name;
  std::string backbone;
  int64_t groups;
  int64_t clip_length;
  int64_t size;
  int warmup;  // Untimed steps per round.
  int steps;   // Timed steps per round.
};

const std::vector<Preset>& Presets() {
  static const std::vector<Preset> presets = {{"tiny", "tiny3d", 4, 8, 64, 2, 10},
                                              {"standard", "r2plus1d_18", 1, 16, 112, 1, 3},
                                              {"gpu", "r2plus1d_18", 8, 16, 112, 3, 10}};
  return presets;
}

// One implementation's run: seconds and total loss of every step (warm-up included).
struct Run {
  int64_t parameters = 0;
  double device_peak_mib = std::nan("");  // CUDA only.
  std::vector<double> seconds;
  std::vector<double> total;
};

struct Workload {
  Preset preset;
  std::string precision = "fp32";
  TrainerOptions options;
  std::vector<Batch> batches;  // In memory in the --child that trains on them only.
  std::filesystem::path dir;
};

void WritePickle(const std::filesystem::path& path, const c10::IValue& value) {
  const std::vector<char> bytes = torch::pickle_save(value);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// The parent writes the batches and the initial model state to `dir` (write = true); a --child
// regenerates the same batches in memory (they are a function of their seeds) and reads the state
// from `dir`.
Workload MakeWorkload(const Preset& preset, int num_batches, const std::filesystem::path& dir,
                      bool write = true) {
  Workload workload;
  workload.preset = preset;
  workload.dir = dir;
  if (write) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  SyntheticMotionOptions data;
  data.groups = preset.groups;
  data.clip_length = preset.clip_length;
  data.size = preset.size;
  data.video_frames = 2 * ((preset.clip_length - 1) * 8 + 1) + 32;  // Room for speed 8.
  for (int i = 0; i < num_batches; ++i) {
    Batch batch = MakeSyntheticMotionBatch(data, 1000 + i);
    if (!write) {
      workload.batches.push_back(std::move(batch));
      continue;
    }
    c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
    dict.insert("clips", batch.clips);
    dict.insert("video", batch.video);
    dict.insert("group", batch.group);
    dict.insert("role", batch.role);
    dict.insert("speed_index", batch.speed_index);
    dict.insert("reversed", batch.reversed);
    dict.insert("relation", batch.relation);
    char name[32];
    std::snprintf(name, sizeof(name), "batch-%03d.pt", i);
    WritePickle(dir / name, dict);
  }
  workload.options.model.backbone = preset.backbone;
  workload.options.global_batch_clips = 4 * preset.groups;
  workload.options.seed = 1;
  if (write) {
    // On the CPU: the parent never touches the GPU, whose memory the children measure.
    Trainer trainer(workload.options);
    SaveCheckpoint((dir / "state.tecl").string(), trainer, "");
  }
  return workload;
}

Precision ParsePrecision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  if (name == "fp16") return Precision::kFp16;
  throw std::runtime_error("--precisions: \"" + name + "\" is not one of fp32, bf16, fp16");
}

MemoryFormat ParseMemoryFormat(const std::string& name) {
  if (name == "auto") return MemoryFormat::kAuto;
  if (name == "contiguous") return MemoryFormat::kContiguous;
  if (name == "channels_last") return MemoryFormat::kChannelsLast;
  throw std::runtime_error("--memory_format: \"" + name +
                           "\" is not one of auto, contiguous, channels_last");
}

// Waits for the device's queued work; the device memory in use (MiB), NaN on the CPU.
double SyncAndMeasure(const c10::Device& device) {
#if TECL_HAVE_CUDART
  if (device.is_cuda()) {
    size_t free = 0, total = 0;
    if (cudaDeviceSynchronize() != cudaSuccess || cudaMemGetInfo(&free, &total) != cudaSuccess) {
      throw std::runtime_error("CUDA: cannot synchronise or read the device memory");
    }
    return static_cast<double>(total - free) / 1048576.0;
  }
#endif
  if (device.is_cuda()) throw std::runtime_error("--device=cuda: built without the CUDA runtime");
  return std::nan("");
}

Run RunCpp(const Workload& workload, int total_steps) {
  Trainer trainer(workload.options);
  LoadCheckpoint((workload.dir / "state.tecl").string(), trainer);
  Run run;
  for (const auto& [name, parameter] : trainer.NamedParameters())
    run.parameters += parameter.numel();
  const c10::Device device = workload.options.device;
  double peak = 0;
  for (int step = 0; step < total_steps; ++step) {
    const Batch& batch = workload.batches[step % workload.batches.size()];
    const auto start = Clock::now();
    const StepResult result = trainer.TrainStep(batch);
    const double used = SyncAndMeasure(device);
    run.seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    run.total.push_back(result.loss.total);
    if (device.is_cuda()) peak = std::max(peak, used);
  }
  if (device.is_cuda()) run.device_peak_mib = peak;
  return run;
}

std::vector<double> Numbers(std::istringstream& in) {
  std::vector<double> out;
  for (double x; in >> x;) out.push_back(x);
  return out;
}

// Runs `command` (a fresh process) and reads its "parameters", "seconds" and "total" lines.
Run RunProcess(const std::string& command, int total_steps) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot start: " + command);
  std::string output;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, n);
  if (pclose(pipe) != 0) throw std::runtime_error("failed: " + command);
  Run run;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    if (key == "parameters") in >> run.parameters;
    if (key == "device_peak_mib") in >> run.device_peak_mib;
    if (key == "seconds") run.seconds = Numbers(in);
    if (key == "total") run.total = Numbers(in);
  }
  if (run.seconds.size() != static_cast<size_t>(total_steps) ||
      run.total.size() != run.seconds.size()) {
    throw std::runtime_error("unexpected output of " + command + ":\n" + output);
  }
  return run;
}

// --torchvision=1 for a backbone torchvision has (tiny3d is ours alone).
bool TorchvisionPeer(const Workload& workload, const Flags& flags) {
  return Flag(flags, "torchvision", "0") == "1" && workload.preset.backbone != "tiny3d";
}

Run RunPython(const Workload& workload, const Flags& flags, int warmup, int steps) {
  const ScheduleOptions& schedule = workload.options.schedule;
  std::ostringstream command;
  command << Flag(flags, "python", "/usr/bin/python3") << " "
          << Flag(flags, "script", TECL_SOURCE_DIR "/bench/core/core_step.py") << " --workload "
          << workload.dir << " --warmup " << warmup << " --steps " << steps
          << " --threads 1 --device " << workload.options.device.str() << " --precision "
          << workload.precision << (workload.options.ChannelsLast() ? " --channels_last" : "")
          << (TorchvisionPeer(workload, flags) ? " --torchvision" : "") << " --peak_lr "
          << PeakLearningRate(workload.options.optimizer, workload.options.global_batch_clips)
          << " --warmup_steps " << schedule.warmup_steps << " --total_steps "
          << schedule.total_steps << " --final_lr_ratio " << schedule.final_lr_ratio;
  return RunProcess(command.str(), warmup + steps);
}

// The C++ trainer in a fresh process of this binary (--child), like the Python side: glibc
// adapts its mmap and trim thresholds to what a process has freed before, so an in-process run
// would inherit the allocator history of the runs before it.
Run RunCppChild(const Workload& workload, const Flags& flags, bool host_cache) {
  std::ostringstream command;
  command << std::filesystem::read_symlink("/proc/self/exe").string()
          << " --child=" << (host_cache ? "cpp" : "cpp_default")
          << " --presets=" << workload.preset.name << " --warmup=" << workload.preset.warmup
          << " --steps=" << workload.preset.steps << " --device=" << workload.options.device.str()
          << " --precisions=" << workload.precision
          << " --memory_format=" << Flag(flags, "memory_format", "auto")
          << " --work_dir=" << workload.dir.parent_path().string();
  return RunProcess(command.str(), workload.preset.warmup + workload.preset.steps);
}

// The device, precision and memory format of a run (the parent's flags; a child's are its one
// precision).
void Configure(Workload& workload, const Flags& flags, const std::string& precision) {
  workload.precision = precision;
  workload.options.optimizer.precision = ParsePrecision(precision);
  workload.options.device = c10::Device(Flag(flags, "device", "cpu"));
  workload.options.memory_format = ParseMemoryFormat(Flag(flags, "memory_format", "auto"));
}

// --child: one C++ run of one preset on the parent's workload; prints what core_step.py prints.
int ChildMain(const Flags& flags) {
  const std::string child = Flag(flags, "child", "");
  if (child != "cpp" && child != "cpp_default") throw std::runtime_error("--child=" + child);
  for (Preset preset : Presets()) {
    if (preset.name != Flag(flags, "presets", "")) continue;
    preset.warmup = IntFlag(flags, "warmup", preset.warmup);
    preset.steps = IntFlag(flags, "steps", preset.steps);
    Workload workload =
        MakeWorkload(preset, preset.warmup + preset.steps,
                     std::filesystem::path(Flag(flags, "work_dir", "")) / preset.name, false);
    Configure(workload, flags, Flag(flags, "precisions", "fp32"));
    if (child == "cpp") InstallHostCachingAllocator();
    const Run run = RunCpp(workload, preset.warmup + preset.steps);
    if (!std::isnan(run.device_peak_mib)) std::printf("device_peak_mib %.0f\n", run.device_peak_mib);
    std::printf("parameters %lld\nseconds", static_cast<long long>(run.parameters));
    for (double x : run.seconds) std::printf(" %.6f", x);
    std::printf("\ntotal");
    for (double x : run.total) std::printf(" %.17g", x);
    std::printf("\n");
    const HostAllocatorStats cache = GetHostAllocatorStats();
    std::fprintf(stderr,
                 "%s: host cache hits %lld misses %lld releases %lld peak live %.1f MiB, cached "
                 "%.1f MiB\n",
                 child.c_str(), static_cast<long long>(cache.hits),
                 static_cast<long long>(cache.misses), static_cast<long long>(cache.releases),
                 cache.peak_live_bytes / 1048576.0, cache.cached_bytes / 1048576.0);
    return 0;
  }
  throw std::runtime_error("--child: unknown preset " + Flag(flags, "presets", ""));
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// The timed steps of a run (warm-up left out) appended to `into`; returns their median.
double AddTimed(const Run& run, int warmup, std::vector<double>& into) {
  const std::vector<double> timed(run.seconds.begin() + warmup, run.seconds.end());
  into.insert(into.end(), timed.begin(), timed.end());
  return Median(timed);
}

double MaxRelativeDifference(const Run& a, const Run& b) {
  double worst = 0;
  for (size_t i = 0; i < a.total.size(); ++i) {
    worst =
        std::max(worst, std::abs(a.total[i] - b.total[i]) / std::max(1e-12, std::abs(b.total[i])));
  }
  return worst;
}

// The implementations timed side by side. C++ as shipped runs on the host caching allocator
// (train/host_allocator.h); the other three isolate what the allocator and the language each
// contribute: C++ on LibTorch's default allocator, Python as users run it, and Python with glibc
// told to keep freed memory (GLIBC_TUNABLES, the C library's nearest equivalent of the cache).
enum Variant { kCpp, kCppDefault, kPython, kPythonKeep, kVariants };
const char* const kVariantNames[kVariants] = {"C++", "C++ default allocator", "Python",
                                              "Python glibc keep"};
const char* const kKeepTunables = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736";

Run RunVariant(Variant v, const Workload& workload, const Flags& flags) {
  const int warmup = workload.preset.warmup, steps = workload.preset.steps;
  switch (v) {
    case kCpp:
    case kCppDefault:
      return RunCppChild(workload, flags, v == kCpp);
    case kPython:
      return RunPython(workload, flags, warmup, steps);
    default:
      setenv("GLIBC_TUNABLES", kKeepTunables, 1);
      Run run = RunPython(workload, flags, warmup, steps);
      unsetenv("GLIBC_TUNABLES");
      return run;
  }
}

std::string Ratios(const std::vector<double>& values) {
  std::ostringstream out;
  out << std::fixed;
  out.precision(3);
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  return out.str();
}

int Main(const Flags& flags) {
  setenv("OMP_NUM_THREADS", "1", 1);
  setenv("MKL_NUM_THREADS", "1", 1);
  torch::set_num_threads(1);
  if (flags.count("child")) return ChildMain(flags);
  const int rounds = IntFlag(flags, "rounds", 2);
  const std::filesystem::path work_dir = Flag(flags, "work_dir", "/tmp/tecl_core_bench");
  const std::string wanted = "," + Flag(flags, "presets", "tiny,standard") + ",";

  std::vector<std::string> precisions;
  std::istringstream precision_list(Flag(flags, "precisions", "fp32"));
  for (std::string name; std::getline(precision_list, name, ',');) {
    ParsePrecision(name);
    precisions.push_back(name);
  }
  std::vector<Workload> workloads;
  for (Preset preset : Presets()) {
    if (wanted.find("," + preset.name + ",") == std::string::npos) continue;
    preset.warmup = IntFlag(flags, "warmup", preset.warmup);
    preset.steps = IntFlag(flags, "steps", preset.steps);
    const Workload written =
        MakeWorkload(preset, preset.warmup + preset.steps, work_dir / preset.name);
    for (const std::string& precision : precisions) {
      workloads.push_back(written);
      Configure(workloads.back(), flags, precision);
    }
  }
  const bool cuda = c10::Device(Flag(flags, "device", "cpu")).is_cuda();
  // --variants=cpp,python (say) runs only those; the others' columns are then NaN.
  const char* const kVariantFlags[kVariants] = {"cpp", "cpp_default", "python", "python_keep"};
  bool enabled[kVariants] = {};
  std::istringstream variants(Flag(flags, "variants", "cpp,cpp_default,python,python_keep"));
  for (std::string name; std::getline(variants, name, ',');) {
    const auto* it = std::find(kVariantFlags, kVariantFlags + kVariants, name);
    if (it == kVariantFlags + kVariants) {
      throw std::runtime_error("--variants: \"" + name +
                               "\" is not one of cpp, cpp_default, python, python_keep");
    }
    enabled[it - kVariantFlags] = true;
  }
  // Only the python_keep variant runs with glibc tunables; the others get glibc's defaults.
  unsetenv("GLIBC_TUNABLES");
  std::printf("threads: C++ %d (LibTorch %s), Python 1 (OMP_NUM_THREADS=1); %d rounds\n",
              torch::get_num_threads(), TORCH_VERSION, rounds);

  struct Totals {
    int64_t parameters[kVariants] = {};
    std::vector<double> seconds[kVariants];
    std::vector<double> shipped_ratios, same_allocator_ratios;  // Per round.
    double loss_difference = 0;
    double peak_mib[kVariants] = {};  // CUDA: the largest over the rounds.
  };
  std::vector<Totals> totals(workloads.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t w = 0; w < workloads.size(); ++w) {
      const int warmup = workloads[w].preset.warmup;
      Run runs[kVariants];
      double medians[kVariants];
      // Rotate the order each round so that no variant always runs first or last.
      for (int k = 0; k < kVariants; ++k) {
        const auto v = static_cast<Variant>((k + round) % kVariants);
        if (enabled[v]) runs[v] = RunVariant(v, workloads[w], flags);
      }
      Totals& t = totals[w];
      std::printf("round %d %-8s %s", round, workloads[w].preset.name.c_str(),
                  workloads[w].precision.c_str());
      for (int v = 0; v < kVariants; ++v) {
        if (enabled[v]) continue;
        runs[v].seconds.assign(warmup + workloads[w].preset.steps, std::nan(""));
        runs[v].total = runs[v].seconds;
      }
      for (int v = 0; v < kVariants; ++v) {
        t.parameters[v] = runs[v].parameters;
        if (!std::isnan(runs[v].device_peak_mib)) {
          t.peak_mib[v] = std::max(t.peak_mib[v], runs[v].device_peak_mib);
        }
        medians[v] = AddTimed(runs[v], warmup, t.seconds[v]);
        t.loss_difference =
            std::max(t.loss_difference, MaxRelativeDifference(runs[v], runs[kPython]));
        std::printf("  %s %.3f s", kVariantNames[v], medians[v]);
      }
      t.shipped_ratios.push_back(medians[kCpp] / medians[kPython]);
      t.same_allocator_ratios.push_back(medians[kCppDefault] / medians[kPython]);
      std::printf("  loss %.6f\n", runs[kCpp].total.back());
      std::fflush(stdout);
    }
  }

  std::printf(
      "\nMedian seconds per step over all timed steps (the loss of every step of every variant "
      "checked against Python's):\n\n"
      "| preset | backbone | clips x frames x size | parameters | timed steps | C++ | "
      "C++ default allocator | Python | Python glibc keep | C++ / Python | per-round | "
      "C++ default / Python | per-round | C++ / Python glibc keep | max relative loss "
      "difference |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t w = 0; w < workloads.size(); ++w) {
    const Preset& p = workloads[w].preset;
    const Totals& t = totals[w];
    double m[kVariants];
    for (int v = 0; v < kVariants; ++v) m[v] = Median(t.seconds[v]);
    for (int v = 0; v < kVariants; ++v) {
      if (enabled[v] && t.parameters[v] != t.parameters[kCpp]) {
        throw std::runtime_error(std::string(kVariantNames[v]) +
                                 " has a different parameter count");
      }
    }
    std::printf(
        "| %s | %s | %lld x %lld x %lldx%lld | %lld | %zu | %.3f | %.3f | %.3f | %.3f | "
        "**%.3f** | %s | %.3f | %s | %.3f | %.1e |\n",
        (p.name + (workloads[w].precision == "fp32" ? "" : " " + workloads[w].precision)).c_str(),
        p.backbone.c_str(), static_cast<long long>(4 * p.groups),
        static_cast<long long>(p.clip_length), static_cast<long long>(p.size),
        static_cast<long long>(p.size), static_cast<long long>(t.parameters[kCpp]),
        t.seconds[kCpp].size(), m[kCpp], m[kCppDefault], m[kPython], m[kPythonKeep],
        m[kCpp] / m[kPython], Ratios(t.shipped_ratios).c_str(), m[kCppDefault] / m[kPython],
        Ratios(t.same_allocator_ratios).c_str(), m[kCpp] / m[kPythonKeep], t.loss_difference);
  }
  if (cuda) {
    std::printf(
        "\nOn %s (%s): median seconds per step, clips per second and the device memory in use "
        "at the peak of the steps:\n\n"
        "| preset | precision | channels-last | C++ s/step | Python s/step | C++ / Python | "
        "C++ clips/s | peak MiB C++ | peak MiB Python | max relative loss difference |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n",
        Flag(flags, "device", "cpu").c_str(),
        Flag(flags, "torchvision", "0") == "1" ? "Python on torchvision's model" : "core_step.py");
    for (size_t w = 0; w < workloads.size(); ++w) {
      const Workload& wl = workloads[w];
      const Totals& t = totals[w];
      const double cpp = Median(t.seconds[kCpp]), python = Median(t.seconds[kPython]);
      std::printf("| %s | %s | %s | %.4f | %.4f | **%.3f** | %.0f | %.0f | %.0f | %.1e |\n",
                  wl.preset.name.c_str(), wl.precision.c_str(),
                  wl.options.ChannelsLast() ? "yes" : "no", cpp, python, cpp / python,
                  static_cast<double>(4 * wl.preset.groups) / cpp, t.peak_mib[kCpp],
                  t.peak_mib[kPython], t.loss_difference);
    }
  }
  return 0;
}

}  // namespace
}  // namespace tecl::worker::core

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::cerr << "tecl_core_bench: argument \"" << arg << "\" is not --name=value\n";
      return 2;
    }
    flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  try {
    return tecl::worker::core::Main(flags);
  } catch (const std::exception& e) {
    std::cerr << "tecl_core_bench: " << e.what() << "\n";
    return 1;
  }
}
