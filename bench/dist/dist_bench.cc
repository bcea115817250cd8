// Distributed trainer benchmark, all in one run on one machine:
//   single   1 trainer process x 1 thread, batch B, no communicator (the peer)
//   overlap  2 trainer processes x 1 thread, batch B each, Gloo, gradient buckets all-reduced
//            from backward hooks (GradientReducer, overlap_with_backward = true)
//   after    the same, every bucket all-reduced after backward (overlap_with_backward = false)
//   local    2 trainer processes with the product's core::Trainer (tiny3d and the five losses on
//            synthetic motion batches of B clips), overlapped reducer, each rank's own contrastive
//            terms and BatchNorm statistics (distributed.global_batch_loss and
//            model.sync_batchnorm off)
//   global   the same with both on (docs/global-batch.md): the contrastive terms' all-gathers and
//            SyncBN's all-reduces on the critical path
//   global_own_group (not in the default list) `global` with the step collectives on a second
//            process group, so that SyncBN's all-reduces do not queue behind the reducer's buckets
// Reports global clips/s, the speed-up over `single`, and for the multi-process runs the all-reduce
// time, the part of it exposed after backward and the share hidden behind backward; for
// local/global also the time the step waited in the global batch's gathers and SyncBN.
// The model is tiny3d-sized: four conv3d-BN-ReLU blocks (3->32->64->128->256, global max pool,
// D=256) with the method's heads (psi on [h_A,h_B] and [h_B,h_A], speed, direction, order, g).
//
// --ranks=N (2..16, default 2) sets the processes of every scenario but `single`; --batch is
// clips per process.
//
//   tecl_dist_bench [--steps=6] [--warmup=2] [--batch=32] [--frames=8] [--size=64] [--ranks=2]
//                   [--bucket_mb=1] [--scenarios=single,overlap,after,local,global] [--rounds=3]
#include <sys/wait.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "services/worker/dist/gradient_reducer.h"
#include "services/worker/dist/parameter_sync.h"
#include "services/worker/dist/process_group_factory.h"
#include "services/worker/dist/step_collectives.h"
#include "services/worker/train/synthetic_batches.h"
#include "services/worker/train/trainer.h"

namespace {

using namespace tecl::worker::dist;
using Clock = std::chrono::steady_clock;
using Flags = std::map<std::string, std::string>;

torch::nn::Sequential Mlp(int in, int hidden, int out) {
  return torch::nn::Sequential(torch::nn::Linear(in, hidden), torch::nn::BatchNorm1d(hidden),
                               torch::nn::ReLU(), torch::nn::Linear(hidden, out));
}

struct Tiny3dNet : torch::nn::Module {
  Tiny3dNet() {
    const int channels[] = {3, 32, 64, 128, 256};
    for (int i = 0; i < 4; ++i) {
      const std::vector<int64_t> stride = i == 0 ? std::vector<int64_t>{1, 2, 2}
                                                 : std::vector<int64_t>{2, 2, 2};
      backbone->push_back(torch::nn::Conv3d(torch::nn::Conv3dOptions(channels[i], channels[i + 1], 3)
                                                .stride(stride)
                                                .padding(1)
                                                .bias(false)));
      backbone->push_back(torch::nn::BatchNorm3d(channels[i + 1]));
      backbone->push_back(torch::nn::ReLU());
    }
    register_module("backbone", backbone);
    psi = register_module("psi", Mlp(512, 512, 128));
    speed = register_module("speed", Mlp(256, 512, 4));
    direction = register_module("direction", Mlp(256, 512, 2));
    order = register_module("order", Mlp(512, 512, 3));
    g = register_module("g", Mlp(256, 512, 128));
  }

  // A surrogate of the method's loss with the same graph shape: clips [0, n/2) are A, the rest B.
  torch::Tensor Loss(const torch::Tensor& clips, const torch::Tensor& labels) {
    torch::Tensor h = std::get<0>(backbone->forward(clips).flatten(2).max(2));  // N x 256
    const int64_t half = h.size(0) / 2;
    torch::Tensor ha = h.narrow(0, 0, half), hb = h.narrow(0, half, half);
    torch::Tensor zab = psi->forward(torch::cat({ha, hb}, 1));
    torch::Tensor zba = psi->forward(torch::cat({hb, ha}, 1));
    namespace F = torch::nn::functional;
    torch::Tensor loss = F::cross_entropy(speed->forward(h), labels.remainder(4)) +
                         F::cross_entropy(direction->forward(h), labels.remainder(2)) +
                         F::cross_entropy(order->forward(torch::cat({ha, hb}, 1)),
                                          labels.narrow(0, 0, half).remainder(3)) +
                         F::cosine_similarity(zab, zba.detach()).mean() +
                         F::normalize(g->forward(h)).pow(2).sum(1).mean();
    return loss;
  }

  torch::nn::Sequential backbone;
  torch::nn::Sequential psi{nullptr}, speed{nullptr}, direction{nullptr}, order{nullptr},
      g{nullptr};
};

// Forwards to a communicator and adds up the time callers spend in Wait() and the collectives
// launched: the global batch's gathers and SyncBN's all-reduces wait right after launching, so
// this is the time they hold the step up.
class TimedCommunicator : public Communicator {
 public:
  explicit TimedCommunicator(std::shared_ptr<Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend_name() const override { return inner_->backend_name(); }
  std::chrono::milliseconds timeout() const override { return inner_->timeout(); }
  std::unique_ptr<CollectiveHandle> AllReduceAverage(at::Tensor tensor) override {
    ++all_reduces;
    return std::make_unique<Handle>(inner_->AllReduceAverage(std::move(tensor)),
                                    &all_reduce_wait_seconds);
  }
  std::unique_ptr<CollectiveHandle> AllGather(at::Tensor input, at::Tensor output) override {
    ++all_gathers;
    return std::make_unique<Handle>(inner_->AllGather(std::move(input), std::move(output)),
                                    &gather_wait_seconds);
  }
  std::unique_ptr<CollectiveHandle> Broadcast(at::Tensor tensor, int root) override {
    return inner_->Broadcast(std::move(tensor), root);
  }
  void Barrier() override { inner_->Barrier(); }

  double all_reduce_wait_seconds = 0;  // SyncBN's all-reduces (the reducer has its own)
  double gather_wait_seconds = 0;      // the contrastive terms' all-gathers
  int all_reduces = 0;
  int all_gathers = 0;

 private:
  class Handle : public CollectiveHandle {
   public:
    Handle(std::unique_ptr<CollectiveHandle> inner, double* seconds)
        : inner_(std::move(inner)), seconds_(seconds) {}
    void Wait(std::chrono::milliseconds timeout) override {
      const auto start = Clock::now();
      inner_->Wait(timeout);
      *seconds_ += std::chrono::duration<double>(Clock::now() - start).count();
    }
    std::optional<Clock::time_point> CompletedAt() const override { return inner_->CompletedAt(); }

   private:
    std::unique_ptr<CollectiveHandle> inner_;
    double* seconds_;
  };
  std::shared_ptr<Communicator> inner_;
};

int IntFlag(const Flags& flags, const std::string& name, int fallback) {
  auto it = flags.find(name);
  return it == flags.end() ? fallback : std::stoi(it->second);
}

std::shared_ptr<Communicator> JoinGroup(const Flags& flags, const std::string& mode, int rank,
                                        int world_size) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(IntFlag(flags, "store_port", 0));
  store_options.waitWorkers = false;
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);
  GroupOptions group;
  group.rank = rank;
  group.world_size = world_size;
  group.timeout = std::chrono::minutes(2);
  group.gloo_hostname = "127.0.0.1";
  // Each run of a scenario forms its group under its own prefix of the shared store.
  return CreateCommunicator(AttemptStore(store, mode, IntFlag(flags, "round", 0)), group);
}

// One rank of `local` / `global`: the product's trainer, reducer and step collectives.
int TrainerWorker(const Flags& flags) {
  namespace core = tecl::worker::core;
  const int rank = IntFlag(flags, "rank", 0);
  const int steps = IntFlag(flags, "steps", 6);
  const int warmup = IntFlag(flags, "warmup", 2);
  const int batch = IntFlag(flags, "batch", 32);
  const int world_size = IntFlag(flags, "world_size", 2);
  const std::string mode = flags.at("mode");
  core::TrainerOptions options;
  options.model.backbone = "tiny3d";
  options.global_batch_clips = world_size * batch;
  core::Trainer trainer(options);
  std::shared_ptr<Communicator> comm = JoinGroup(flags, mode, rank, world_size);
  // global_own_group: the step collectives on a second group of their own, so that SyncBN's
  // all-reduces do not queue behind the reducer's bucket all-reduces.
  const bool own_group = mode == "global_own_group";
  auto timed = std::make_shared<TimedCommunicator>(
      own_group ? JoinGroup(flags, mode + "-step", rank, world_size) : comm);
  std::vector<NamedParameter> named;
  for (auto& [name, tensor] : trainer.NamedParameters()) named.push_back({name, tensor});
  ReducerOptions reducer_options;
  reducer_options.bucket_size_mb =
      std::stod(flags.count("bucket_mb") ? flags.at("bucket_mb") : "1");
  GradientReducer reducer(std::move(named), comm, reducer_options);
  const bool global = mode == "global" || own_group;
  trainer.SetCollectives(MakeStepCollectives(timed, global, global));
  core::SyntheticMotionOptions data;
  data.groups = std::max(1, batch / 4);
  data.clip_length = IntFlag(flags, "frames", 8);
  data.size = IntFlag(flags, "size", 64);
  const core::Batch clips = core::MakeSyntheticMotionBatch(data, 100 + rank);

  double step_s = 0, gather_wait_s = 0, all_reduce_wait_s = 0, gathers = 0, all_reduces = 0;
  for (int step = 0; step < warmup + steps; ++step) {
    comm->Barrier();
    const double gather_wait_before = timed->gather_wait_seconds;
    const double all_reduce_wait_before = timed->all_reduce_wait_seconds;
    const int gathers_before = timed->all_gathers, reduces_before = timed->all_reduces;
    const auto start = Clock::now();
    trainer.ForwardBackward(clips);
    reducer.Finalize();
    trainer.ApplyGradients();
    const auto end = Clock::now();
    if (step < warmup) continue;
    step_s += std::chrono::duration<double>(end - start).count();
    gather_wait_s += timed->gather_wait_seconds - gather_wait_before;
    all_reduce_wait_s += timed->all_reduce_wait_seconds - all_reduce_wait_before;
    gathers += timed->all_gathers - gathers_before;
    all_reduces += timed->all_reduces - reduces_before;
  }
  trainer.SetCollectives({});
  std::ofstream out(flags.at("out"));
  out << "step_s=" << step_s / steps << "\ngather_wait_s=" << gather_wait_s / steps
      << "\nsync_all_reduce_wait_s=" << all_reduce_wait_s / steps
      << "\ngathers=" << gathers / steps << "\nsync_all_reduces=" << all_reduces / steps
      << "\nclips=" << clips.clips.size(0) << "\n";
  return out.good() ? 0 : 1;
}

// One trainer process. Writes "name=value" lines of per-step means over the measured steps.
int Worker(const Flags& flags) {
  torch::set_num_threads(1);
  at::set_num_interop_threads(1);
  const int rank = IntFlag(flags, "rank", 0);
  const int world_size = IntFlag(flags, "world_size", 1);
  const int steps = IntFlag(flags, "steps", 6);
  const int warmup = IntFlag(flags, "warmup", 2);
  const int batch = IntFlag(flags, "batch", 32);
  const int frames = IntFlag(flags, "frames", 8);
  const int size = IntFlag(flags, "size", 64);
  const std::string mode = flags.at("mode");

  if (mode == "local" || mode == "global" || mode == "global_own_group") return TrainerWorker(flags);
  torch::manual_seed(rank + 1);
  Tiny3dNet model;
  std::shared_ptr<Communicator> comm;
  std::unique_ptr<GradientReducer> reducer;
  if (world_size > 1) {
    comm = JoinGroup(flags, mode, rank, world_size);
    BroadcastFromRoot(ModuleState(model), *comm);
    std::vector<NamedParameter> named;
    for (const auto& item : model.named_parameters()) named.push_back({item.key(), item.value()});
    ReducerOptions options;
    options.bucket_size_mb = std::stod(flags.count("bucket_mb") ? flags.at("bucket_mb") : "1");
    options.overlap_with_backward = mode == "overlap";
    reducer = std::make_unique<GradientReducer>(std::move(named), comm, options);
  }
  torch::optim::SGD optimizer(model.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  torch::Tensor clips = torch::randn({batch, 3, frames, size, size});
  torch::Tensor labels = torch::randint(0, 12, {batch});

  double step_s = 0, backward_s = 0, allreduce_s = 0, exposed_s = 0;
  int buckets = 0;
  for (int step = 0; step < warmup + steps; ++step) {
    if (comm) comm->Barrier();  // measured steps start together
    const auto start = Clock::now();
    optimizer.zero_grad();
    model.Loss(clips, labels).backward();
    const auto backward_end = Clock::now();
    StepTimings t;
    if (reducer) t = reducer->Finalize();
    optimizer.step();
    const auto end = Clock::now();
    if (step < warmup) continue;
    step_s += std::chrono::duration<double>(end - start).count();
    backward_s += std::chrono::duration<double>(backward_end - start).count();
    allreduce_s += t.allreduce_seconds;
    exposed_s += t.exposed_seconds;
    buckets = t.buckets;
  }
  std::ofstream out(flags.at("out"));
  out << "step_s=" << step_s / steps << "\nforward_backward_s=" << backward_s / steps
      << "\nallreduce_s=" << allreduce_s / steps << "\nexposed_s=" << exposed_s / steps
      << "\nbuckets=" << buckets << "\n";
  return out.good() ? 0 : 1;
}

std::map<std::string, double> ReadResult(const std::string& path) {
  std::map<std::string, double> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = std::stod(line.substr(eq + 1));
  }
  return out;
}

struct Scenario {
  std::string name;
  int world_size;
  std::vector<std::map<std::string, double>> ranks;
};

Scenario RunScenario(const std::string& name, int round, int world_size, const Flags& flags,
                     int port, const std::string& dir) {
  Scenario scenario{name, world_size, {}};
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world_size; ++rank) {
    std::vector<std::string> args = {"/proc/self/exe", "--worker=1", "--mode=" + name,
                                     "--rank=" + std::to_string(rank),
                                     "--world_size=" + std::to_string(world_size),
                                     "--round=" + std::to_string(round),
                                     "--store_port=" + std::to_string(port),
                                     "--out=" + dir + "/" + name + std::to_string(rank)};
    for (const auto& [k, v] : flags) args.push_back("--" + k + "=" + v);
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw std::runtime_error("scenario " + name + ": a trainer process failed (status " +
                               std::to_string(status) + ")");
    }
  }
  for (int rank = 0; rank < world_size; ++rank) {
    scenario.ranks.push_back(ReadResult(dir + "/" + name + std::to_string(rank)));
  }
  return scenario;
}

double Max(const Scenario& s, const std::string& key) {
  double out = 0;
  for (const auto& r : s.ranks) out = std::max(out, r.at(key));
  return out;
}
double Mean(const Scenario& s, const std::string& key) {
  double out = 0;
  for (const auto& r : s.ranks) out += r.at(key);
  return out / s.ranks.size();
}

int Driver(Flags flags) {
  const int batch = IntFlag(flags, "batch", 32);
  const int ranks = IntFlag(flags, "ranks", 2);
  flags.erase("ranks");
  if (ranks < 2 || ranks > 16) throw std::runtime_error("--ranks must be 2..16");
  std::string scenarios =
      flags.count("scenarios") ? flags["scenarios"] : "single,overlap,after,local,global";
  flags.erase("scenarios");
  char dir[] = "/tmp/tecl_dist_benchXXXXXX";
  if (mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
  c10d::TCPStoreOptions store_options;
  store_options.port = 0;
  store_options.isServer = true;
  store_options.waitWorkers = false;
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);

  // Rounds interleave the scenarios so that load from elsewhere on the machine hits them alike;
  // each scenario reports its best round (by step time), the one least disturbed by that load.
  const int rounds = IntFlag(flags, "rounds", 3);
  flags.erase("rounds");
  std::vector<std::string> names;
  {
    std::stringstream list(scenarios);
    std::string name;
    while (std::getline(list, name, ',')) names.push_back(name);
  }
  std::map<std::string, std::vector<Scenario>> runs;
  for (int round = 0; round < rounds; ++round) {
    for (const std::string& name : names) {
      Scenario s =
          RunScenario(name, round, name == "single" ? 1 : ranks, flags, store->getPort(), dir);
      std::fprintf(stderr, "round %d %s: step %.3f s\n", round, name.c_str(), Max(s, "step_s"));
      runs[name].push_back(std::move(s));
    }
  }
  std::filesystem::remove_all(dir);
  std::vector<Scenario> results;
  for (const std::string& name : names) {
    auto& all = runs[name];
    std::sort(all.begin(), all.end(), [](const Scenario& a, const Scenario& b) {
      return Max(a, "step_s") < Max(b, "step_s");
    });
    results.push_back(all.front());
  }

  double single_clips = 0;
  for (const auto& s : results) {
    if (s.name == "single") single_clips = batch / Max(s, "step_s");
  }
  std::printf("| run | processes x threads | step s | clips/s | vs 1 process |\n|---|---|---|---|---|\n");
  for (const auto& s : results) {
    const double clips = s.world_size * batch / Max(s, "step_s");
    std::printf("| %s | %d x 1 | %.3f | %.1f | %s |\n", s.name.c_str(), s.world_size,
                Max(s, "step_s"), clips,
                single_clips > 0 ? (std::to_string(clips / single_clips).substr(0, 4) + "x").c_str()
                                 : "-");
  }
  std::printf("\n| run | buckets | forward+backward s | all-reduce s | exposed after backward s "
              "| hidden behind backward |\n|---|---|---|---|---|---|\n");
  for (const auto& s : results) {
    if (s.world_size == 1 || s.name == "local" || s.name.rfind("global", 0) == 0) continue;
    const double allreduce = Mean(s, "allreduce_s");
    const double exposed = Mean(s, "exposed_s");
    std::printf("| %s | %.0f | %.3f | %.3f | %.3f | %.0f%% |\n", s.name.c_str(),
                Mean(s, "buckets"), Mean(s, "forward_backward_s"), allreduce, exposed,
                allreduce > 0 ? 100.0 * std::clamp(1.0 - exposed / allreduce, 0.0, 1.0) : 0.0);
  }
  const Scenario* local = nullptr;
  const Scenario* global = nullptr;
  const Scenario* own_group = nullptr;
  for (const auto& s : results) {
    if (s.name == "local") local = &s;
    if (s.name == "global") global = &s;
    if (s.name == "global_own_group") own_group = &s;
  }
  if (local != nullptr || global != nullptr || own_group != nullptr) {
    std::printf("\n| run (core::Trainer, %d x %d clips) | step s | clips/s | all-gathers per step "
                "| waiting in them ms/step | SyncBN all-reduces per step | waiting in them ms/step "
                "|\n|---|---|---|---|---|---|---|\n",
                ranks, batch);
    for (const Scenario* s : {local, global, own_group}) {
      if (s == nullptr) continue;
      std::printf("| %s | %.3f | %.1f | %.0f | %.1f | %.0f | %.1f |\n", s->name.c_str(),
                  Max(*s, "step_s"), s->world_size * Mean(*s, "clips") / Max(*s, "step_s"),
                  Mean(*s, "gathers"), 1000 * Mean(*s, "gather_wait_s"),
                  Mean(*s, "sync_all_reduces"), 1000 * Mean(*s, "sync_all_reduce_wait_s"));
    }
    if (local != nullptr && global != nullptr) {
      std::printf("\nglobal batch cost: step %+.1f ms (%+.1f%%) vs local\n",
                  1000 * (Max(*global, "step_s") - Max(*local, "step_s")),
                  100 * (Max(*global, "step_s") / Max(*local, "step_s") - 1));
    }
  }
  const Scenario* overlap = nullptr;
  const Scenario* after = nullptr;
  for (const auto& s : results) {
    if (s.name == "overlap") overlap = &s;
    if (s.name == "after") after = &s;
  }
  if (overlap != nullptr && after != nullptr && Mean(*after, "exposed_s") > 0) {
    std::printf("\nall-reduce time hidden vs the after-backward baseline: 1 - %.3f / %.3f = %.0f%%\n",
                Mean(*overlap, "exposed_s"), Mean(*after, "exposed_s"),
                100.0 * std::clamp(1.0 - Mean(*overlap, "exposed_s") / Mean(*after, "exposed_s"),
                                   0.0, 1.0));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::cerr << "tecl_dist_bench: argument \"" << arg << "\" is not --name=value\n";
      return 2;
    }
    flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  try {
    if (flags.count("worker")) {
      flags.erase("worker");
      return Worker(flags);
    }
    return Driver(flags);
  } catch (const std::exception& e) {
    std::cerr << "tecl_dist_bench: " << e.what() << "\n";
    return 1;
  }
}
