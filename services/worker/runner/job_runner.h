// Runs one assignment on this trainer: a pretraining rank (RunTrainingJob) or an evaluation
// (RunEvalJob). MakeJobExecutor wraps both for the WorkerAgent and is the seam where the core's
// exceptions become outcomes. The runner reaches nothing by itself: its input (BatchSourceFactory),
// its process group (CommunicatorFactory), its files (core::Env) and the agent (RunContext) are
// handed in, so tests run whole jobs in one process with fakes.
//
// Pretraining rank (docs/distributed.md "The training loop"):
//   1. Build the trainer from the spec (seeded; identical on every rank), load the newest
//      checkpoint when the assignment resumes one (every rank reads it: checkpoint.dir must be
//      storage all trainers can read).
//   2. World size > 1: form the process group with the CommunicatorFactory (in tecl-worker through
//      the coordinator's rendezvous, scoped by job and attempt), broadcast rank 0's parameters
//      and buffers, verify every rank agrees, and attach a GradientReducer (buckets of
//      distributed.bucket_size_mb, all-reduce overlapped with backward).
//   3. Open this rank's BatchSource (its dataloaders; JobInput) from the resumed step (a batch is
//      a pure function of (seed, rank, world, step), so the stream continues exactly where the
//      checkpoint left it), prefetching the next batches during the current step. A failed or
//      stalled loader's steps move to the others, and new dataloader lists from the coordinator
//      reach the source while the job runs.
//   4. Each step: wait for the batch, ForwardBackward, Finalize the reducer (averaged gradients),
//      ApplyGradients; metrics per rank; progress in the heartbeats; a log line every
//      schedule.log_interval steps.
//   5. Rank 0 writes a checkpoint (core::CheckpointFileName: ckpt-<12 digits>.tecl) every
//      checkpoint.interval_steps steps and at the end (atomic, checksummed), registers it through
//      the RunContext once complete, keeps the newest checkpoint.keep (core::PruneCheckpoints,
//      which also removes stale temporary files), and at the end exports the encoder
//      (core::EncoderFileName: encoder-<12 digits>.tecl).
// Outcomes: SUCCEEDED at total_steps; STOPPED when the coordinator ordered a stop; FAILED for
// what a restart can fix (a peer died or timed out in a collective, a coordinator/loader error
// that persisted, an internal error); FATAL for what it cannot (a bad spec or data set, a
// corrupt checkpoint, a diverged loss).
//
// Evaluation (rank 0 does the work; other ranks succeed at once): load the encoder (the source
// job's newest checkpoint, an explicit file, or random init with the job's seed), extract one
// feature per video from the EVAL stream (the mean of eval.clips_per_video centre clips,
// L2-normalised), then recall@k (queries: test split, gallery: train split, cosine) and a linear
// probe (train -> test top-1). The result goes back in the outcome.
//
// Thread-safety: one job at a time per process (LibTorch's intra-op thread count and generators
// are global); the ranks of one job may run in threads of one process (tests), which then share
// the thread count and the global generator.
#ifndef TECL_SERVICES_WORKER_RUNNER_JOB_RUNNER_H_
#define TECL_SERVICES_WORKER_RUNNER_JOB_RUNNER_H_

#include <chrono>
#include <string>

#include "services/client/loader_client.h"
#include "services/common/metrics.h"
#include "services/worker/runner/batch_source.h"
#include "services/worker/runner/communicator_factory.h"
#include "services/worker/runner/worker_agent.h"
#include "services/worker/train/env.h"
#include "tecl/v1/job.pb.h"

namespace tecl::worker {

struct JobRunnerOptions {
  metrics::Registry* registry = nullptr;  // Required; outlives the runner.
  // Opens a rank's input (required): LoaderBatchSources in tecl-worker, an in-memory source in tests.
  BatchSourceFactory batch_sources;
  // Forms a pretraining rank's process group (required for world size > 1):
  // RendezvousCommunicators in tecl-worker, a dist::FakeWorld in tests.
  CommunicatorFactory communicators;
  // Clients of dataloaders, for the evaluation's DescribeDataset (the video count its progress
  // and ETA need); null = the count is unknown.
  LoaderClientFactory loader_clients;
  // Checkpoint and encoder files go through this (not owned; outlives the runner).
  core::Env* env = core::Env::Default();
  // Intra-op threads when the spec leaves resources.threads_per_trainer unset.
  int default_threads = 1;
  // The CUDA device of this trainer (resources.device: cuda).
  int cuda_device = 0;
};

JobOutcome RunTrainingJob(const tecl::v1::Assignment& assignment, RunContext* context,
                          const JobRunnerOptions& options);
JobOutcome RunEvalJob(const tecl::v1::Assignment& assignment, RunContext* context,
                      const JobRunnerOptions& options);

// Dispatches on spec.kind; never throws (an escaped exception becomes OUTCOME_FAILED).
JobExecutor MakeJobExecutor(JobRunnerOptions options);

// The outcome a failed run reports: FATAL for codes a restart cannot fix (INVALID_ARGUMENT,
// FAILED_PRECONDITION, NOT_FOUND, DATA_LOSS, PERMISSION_DENIED, UNAUTHENTICATED,
// OUT_OF_RANGE), FAILED otherwise.
tecl::v1::Outcome OutcomeForStatus(const absl::Status& status);

}  // namespace tecl::worker

#endif  // TECL_SERVICES_WORKER_RUNNER_JOB_RUNNER_H_
