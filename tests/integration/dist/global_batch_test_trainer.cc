// One rank of the global-batch exactness test (global_batch_exactness_test.cc). Joins the Gloo
// group through the test's TCPStore and, for every ExactnessConfig in turn, builds the trainer,
// the gradient reducer and the step collectives exactly as the job runner does
// (dist::MakeStepCollectives), trains kExactSteps steps on its slices of the global batches and
// saves its RankRecord (global_batch_fixture.h) to OUT_DIR/<config>.<rank>.pt.
//
//   tecl_global_batch_test_trainer --rank=R --world_size=W --store_port=P --out_dir=DIR
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "services/worker/dist/gradient_reducer.h"
#include "services/worker/dist/parameter_sync.h"
#include "services/worker/dist/process_group_factory.h"
#include "services/worker/dist/step_collectives.h"
#include "tests/integration/dist/global_batch_fixture.h"

namespace {

using namespace tecl::worker;
using namespace tecl::worker::testing;

int Run(std::map<std::string, std::string> flags) {
  const int rank = std::stoi(flags.at("rank"));
  const int world_size = std::stoi(flags.at("world_size"));
  torch::set_num_threads(1);

  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(std::stoi(flags.at("store_port")));
  store_options.isServer = false;
  store_options.waitWorkers = false;
  store_options.timeout = std::chrono::seconds(60);
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);
  dist::GroupOptions group;
  group.rank = rank;
  group.world_size = world_size;
  group.timeout = std::chrono::seconds(60);
  group.gloo_hostname = "127.0.0.1";
  std::shared_ptr<dist::Communicator> communicator =
      dist::CreateCommunicator(dist::AttemptStore(store, "exact", 0), group);

  for (const ExactnessConfig& config : ExactnessConfigs()) {
    core::Trainer trainer(ExactnessTrainerOptions(config, world_size));
    dist::VerifyStateAgrees(dist::ModuleState(*trainer.model()), *communicator);
    std::vector<dist::NamedParameter> parameters;
    for (auto& [name, tensor] : trainer.NamedParameters()) parameters.push_back({name, tensor});
    dist::ReducerOptions reducer_options;
    reducer_options.bucket_size_mb = 0.05;  // several buckets, as in a real job
    auto reducer = std::make_unique<dist::GradientReducer>(std::move(parameters), communicator,
                                                           reducer_options);
    trainer.SetCollectives(
        dist::MakeStepCollectives(communicator, config.global_loss, config.sync_batchnorm));
    RankRecord record;
    std::vector<core::LossValues> losses;
    for (int step = 0; step < kExactSteps; ++step) {
      TrainerState before = StateOf(trainer);
      losses.push_back(trainer.ForwardBackward(RankSlice(GlobalStepBatch(step, world_size), rank)));
      reducer->Finalize();
      before.gradients = StateOf(trainer).gradients;
      record.steps.push_back(std::move(before));
      trainer.ApplyGradients();
    }
    trainer.SetCollectives({});
    reducer.reset();
    record.losses = LossTable(losses);
    record.final_state = StateOf(trainer);
    SaveRecord(record, flags.at("out_dir") + "/" + config.name + "." + std::to_string(rank) + ".pt");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::cerr << "tecl_global_batch_test_trainer: argument \"" << arg
                << "\" is not --name=value\n";
      return 2;
    }
    flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  try {
    return Run(std::move(flags));
  } catch (const std::exception& e) {
    std::cerr << "tecl_global_batch_test_trainer: " << e.what() << "\n";
    return 1;
  }
}
