// One trainer process of the multi-process distributed tests. Joins the Gloo group through the
// test's TCPStore, broadcasts rank 0's initial parameters, trains SmallNet on its shard of the
// global batches and saves its final parameters (--out). With --hang_at_step=K it announces
// "hung/<rank>" in the store at step K and blocks there (the test then kills or stops it). A
// CollectiveError is caught: the process writes --report (error type, monotonic time it was
// caught, message), drops its reducer and group, checks it can still compute, and exits 0.
//
//   tecl_dist_test_trainer --rank=R --world_size=W --store_port=P --steps=N --batch=B
//                          --out=FILE [--report=FILE] [--hang_at_step=K] [--timeout_ms=T]
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include "services/worker/dist/parameter_sync.h"
#include "services/worker/dist/process_group_factory.h"
#include "tests/integration/dist/dist_test_model.h"

namespace {

using namespace tecl::worker::dist;
using namespace tecl::worker::dist::testing;

int64_t MonotonicNs() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

int Run(std::map<std::string, std::string> flags) {
  auto Int = [&](const std::string& name, int fallback) {
    return flags.count(name) ? std::stoi(flags[name]) : fallback;
  };
  const int rank = Int("rank", 0);
  const int world_size = Int("world_size", 1);
  const int steps = Int("steps", 1);
  const int batch = Int("batch", 4);
  const int hang_at_step = Int("hang_at_step", -1);
  const auto timeout = std::chrono::milliseconds(Int("timeout_ms", 30000));
  torch::set_num_threads(1);

  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(Int("store_port", 0));
  store_options.isServer = false;
  store_options.waitWorkers = false;
  store_options.timeout = std::chrono::seconds(60);
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);

  GroupOptions group;
  group.rank = rank;
  group.world_size = world_size;
  group.timeout = timeout;
  group.gloo_hostname = "127.0.0.1";
  std::shared_ptr<Communicator> comm = CreateCommunicator(AttemptStore(store, "job", 0), group);

  torch::manual_seed(rank + 1);  // different on purpose: the broadcast must align them
  SmallNet model;
  BroadcastFromRoot(ModuleState(model), *comm);
  VerifyStateAgrees(ModuleState(model), *comm);

  ReducerOptions reducer_options;
  reducer_options.bucket_size_mb = 4.0 / 1024;  // a few buckets for this small model
  auto reducer = std::make_unique<GradientReducer>(NamedParameters(model), comm, reducer_options);
  try {
    Train(
        model, steps, [&](int step) { return RankBatch(step, rank, world_size, batch); },
        reducer.get(), [&](int step) {
          if (step == hang_at_step) {
            store->set("hung/" + std::to_string(rank), {1});
            store->wait({"never"}, std::chrono::minutes(10));
          }
        });
  } catch (const CollectiveError& e) {
    const int64_t caught = MonotonicNs();
    const bool timed_out = dynamic_cast<const CollectiveTimeoutError*>(&e) != nullptr;
    reducer.reset();
    comm.reset();
    const int64_t dropped = MonotonicNs();
    const bool alive = torch::ones({3}).sum().item<float>() == 3.0f;
    std::ofstream report(flags["report"]);
    report << "error=" << (timed_out ? "CollectiveTimeoutError" : "CollectiveError") << "\n"
           << "caught_ns=" << caught << "\n"
           << "dropped_ns=" << dropped << "\n"
           << "alive=" << alive << "\n"
           << "message=" << e.what() << "\n";
    return report.good() ? 0 : 4;
  }
  std::vector<torch::Tensor> parameters = model.parameters();
  torch::save(parameters, flags["out"]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::cerr << "tecl_dist_test_trainer: argument \"" << arg << "\" is not --name=value\n";
      return 2;
    }
    flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  try {
    return Run(std::move(flags));
  } catch (const std::exception& e) {
    std::cerr << "tecl_dist_test_trainer: " << e.what() << "\n";
    return 1;
  }
}
