// The exactness test of the global batch (docs/global-batch.md) and its trainer helper share this:
// the configurations, the trainer options, the global batch of every step and its rank slices,
// and the state compared after k steps.
//
// A rank's batch is a slice of the step's global batch: rank r gets groups [r*G, (r+1)*G) with
// their clips, videos and groups renumbered from 0, exactly what a dataloader sends that rank.
// One process trained on the global batch is the reference: with the global batch on, N ranks
// must reach its loss terms, gradients, parameters and BatchNorm buffers.
#ifndef TECL_TESTS_INTEGRATION_DIST_GLOBAL_BATCH_FIXTURE_H_
#define TECL_TESTS_INTEGRATION_DIST_GLOBAL_BATCH_FIXTURE_H_

#include <torch/torch.h>

#include <string>
#include <vector>

#include "services/worker/loss/batch.h"
#include "services/worker/loss/objective.h"
#include "services/worker/train/trainer.h"

namespace tecl::worker::testing {

constexpr int kExactGroupsPerRank = 2;  // G: 8 clips per rank.
constexpr int kExactSteps = 3;          // k.

struct ExactnessConfig {
  std::string name;            // "all", "equi", "speed", "dir", "order", "inst", "off".
  core::LossWeights weights;   // One term, or all five.
  bool global_loss = true;     // distributed.global_batch_loss
  bool sync_batchnorm = true;  // model.sync_batchnorm
};

// Every term alone and all five with both options on, then all five with both off ("off").
std::vector<ExactnessConfig> ExactnessConfigs();

// tiny3d with small heads, AdamW at a constant lr, the same for every rank and the reference;
// global_batch_clips = world_size * 4G.
core::TrainerOptions ExactnessTrainerOptions(const ExactnessConfig& config, int world_size);

// The global batch of `step`: world_size * G groups of synthetic motion clips (8 x 32 x 32).
core::Batch GlobalStepBatch(int step, int world_size);

// Rank `rank`'s slice of `global` (groups [rank*G, (rank+1)*G), renumbered from 0).
core::Batch RankSlice(const core::Batch& global, int rank);

// The per-step loss values as a (steps, 6) double tensor: total, equi, speed, dir, order, inst
// (NaN where a term is absent).
torch::Tensor LossTable(const std::vector<core::LossValues>& losses);

// A trainer's parameters, their gradients (zeros where undefined) and its BatchNorm buffers, in
// registration order (copies).
struct TrainerState {
  std::vector<torch::Tensor> parameters, gradients, buffers;
};
TrainerState StateOf(core::Trainer& trainer);

// Overwrites the trainer's parameters and buffers with `state`'s.
void LoadState(core::Trainer& trainer, const TrainerState& state);

// What a rank records: before every step its parameters and buffers, after the reducer its
// averaged gradients; its loss terms; at the end its parameters and buffers.
struct RankRecord {
  std::vector<TrainerState> steps;  // parameters/buffers before step s, gradients of step s.
  torch::Tensor losses;             // LossTable
  TrainerState final_state;         // parameters and buffers after the last step.
};
void SaveRecord(const RankRecord& record, const std::string& path);
// Throws std::runtime_error when the file does not hold a record of `parameters` parameters and
// `buffers` buffers.
RankRecord LoadRecord(const std::string& path, size_t parameters, size_t buffers);

}  // namespace tecl::worker::testing

#endif  // TECL_TESTS_INTEGRATION_DIST_GLOBAL_BATCH_FIXTURE_H_
