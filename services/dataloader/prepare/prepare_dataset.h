// PrepareDataset: a data set rewritten for the clip sampler (docs/prepare.md), on this machine's
// cores: every video of the source manifest goes through TranscodeVideo into the same relative
// path under `output_root` (extension .mp4), and the data set's files are rewritten for the copy
// (UCF101 classInd.txt copied, split lists and a CSV manifest with the new file names), so a
// pretraining spec points dataset.root at the copy and changes nothing else: the classes, labels,
// splits, manifest order and every video's frame count are the source's, so the sampler draws the
// same batches (the same videos, labels and frame indices).
//
// Resumable with the file system as the state: beside each output X.mp4 a small record X.mp4.prep
// names the parameters, the source's size and mtime and the output's size and frames; a video is
// done when its output and a matching record exist (both are renamed into place only when
// complete), so a run that was killed (SIGKILL, lost node) is simply run again: finished videos
// are kept, the rest (and stale temporary files) redone. Sharding: with num_shards N, this call
// takes the videos i with i mod N == shard (a prepare job's loaders each take one); the data set
// files are written by the call that finds every video of every shard done.
//
// A video that fails (unreadable, damaged, verification) is reported with its reason, counted and
// left out of the rewritten lists; the run goes on. Errors: INVALID_ARGUMENT for bad options
// (naming the field), the manifest's errors, FAILED_PRECONDITION when the output root is the
// source root or inside it (or holds it), the file system's status when the output cannot be
// written; a record that cannot be written ends the call with that error (the video would
// otherwise never count as done); CANCELLED when `cancelled` said so; RESOURCE_EXHAUSTED when the
// output volume runs short of space (min_free_fraction).
//
// Thread-safe; blocks while it works, with `threads` transcodes at once.
#ifndef TECL_SERVICES_DATALOADER_PREPARE_PREPARE_DATASET_H_
#define TECL_SERVICES_DATALOADER_PREPARE_PREPARE_DATASET_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "services/dataloader/manifest/data_roots.h"
#include "services/dataloader/prepare/transcode.h"
#include "tecl/v1/job.pb.h"

namespace tecl::prepare {

struct PrepareProgress {
  int64_t total = 0;     // Videos of this shard.
  int64_t prepared = 0;  // Transcoded by this call.
  int64_t kept = 0;      // Already prepared with these parameters (a resumed run).
  int64_t failed = 0;
  int64_t bytes_in = 0;  // Of the videos transcoded by this call.
  int64_t bytes_out = 0;
};

struct PrepareOptions {
  tecl::v1::DatasetSpec dataset;  // The source, as a pretraining spec names it.
  std::string output_root;
  TranscodeOptions transcode;
  int threads = 0;  // Transcodes at once; 0 = one per core.
  int shard = 0;
  int num_shards = 1;
  // Called after every video (from the worker threads, one call at a time).
  std::function<void(const PrepareProgress&)> on_progress;
  // Asked before each video and each chunk of one; true ends the call with CANCELLED. A video
  // cut short leaves no file and no record (it is redone by the next run).
  std::function<bool()> cancelled;
  // Before each transcode the output volume must keep this share of its space free (statvfs);
  // below it the call ends with RESOURCE_EXHAUSTED naming the volume (0 disables the check).
  double min_free_fraction = 0.05;
};

struct PrepareSummary {
  PrepareProgress progress;
  std::vector<std::pair<std::string, std::string>> failures;  // Source path, reason.
  bool dataset_files_written = false;  // Every shard was done: lists and prepare.json written.
  double seconds = 0;
};

absl::StatusOr<PrepareSummary> PrepareDataset(const PrepareOptions& options,
                                              const dataloader::DataRoots& roots);

// The output path of `source` (under `source_root`) in `output_root`: the same relative path with
// the extension replaced by .mp4.
std::string PreparedPath(const std::string& source_root, const std::string& output_root,
                         const std::string& source);

}  // namespace tecl::prepare

#endif  // TECL_SERVICES_DATALOADER_PREPARE_PREPARE_DATASET_H_
