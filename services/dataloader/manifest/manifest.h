// Manifest: the videos of a data set with their class labels and splits, read from one of the
// three formats of tecl.v1.DatasetSpec:
//
//   CLASS_FOLDERS  root/<class>/<video>; classes are the sub-folders in name order, videos the
//                  files with a video extension in each, in name order. Optional split lists
//                  (train_list / test_list, relative to root) of "class/video [label]" lines: with
//                  both, they are the data set; with one, every other video under root is the
//                  other split; with none, every video is train. The label always comes from the
//                  class folder.
//   UCF101         class_index (classInd.txt: "<1-based index> <name>" lines) and split lists whose
//                  lines are "<class>/<video> [<1-based label>]"; without a label the class is
//                  the path's folder (matched case-insensitively, as UCF101's own folder names
//                  differ in case from classInd.txt).
//   CSV            `manifest` with a header naming the columns path,label,split (any order; label
//                  and split optional). Labels are class names, or all integers >= 0 (then the
//                  label is the integer); an empty label is unknown (-1). Split is train or test
//                  (empty = train). Quoted fields ("a,b.mp4") are allowed.
//
// Relative paths (manifest and list files, videos) are relative to dataset.root. Every path must
// lie under the configured data roots (PERMISSION_DENIED naming it). Lines may end in CRLF; blank
// lines and lines starting with '#' are ignored (CSV: blank lines only). Errors name the file and
// line: INVALID_ARGUMENT for malformed content, FAILED_PRECONDITION for a missing or unreadable
// file or folder, or a data set without videos. The order of `videos` is deterministic: list /
// file order, or name order for scanned folders. Video files are not opened here: an unreadable
// video is found (and skipped) when it is decoded.
//
// Pure functions over the file system; thread-safe.
#ifndef TECL_SERVICES_DATALOADER_MANIFEST_MANIFEST_H_
#define TECL_SERVICES_DATALOADER_MANIFEST_MANIFEST_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/dataloader/manifest/data_roots.h"
#include "tecl/v1/job.pb.h"

namespace tecl::dataloader {

enum class Split { kTrain, kTest };

absl::string_view SplitName(Split split);  // "train" or "test".

struct VideoEntry {
  std::string path;        // Absolute, normalised.
  int32_t label = -1;      // Index into Manifest::classes; -1 = unknown.
  Split split = Split::kTrain;
};

struct Manifest {
  std::string root;                  // Absolute dataset root.
  std::vector<std::string> classes;  // Class names, label order.
  std::vector<VideoEntry> videos;

  int64_t Count(Split split) const;
  // Manifest indices of the videos pretraining reads, in manifest order: "train" (or empty) =
  // the train split, "all" = every video. INVALID_ARGUMENT for another value.
  absl::StatusOr<std::vector<int64_t>> SelectSplit(absl::string_view split) const;
};

struct ManifestLimits {
  size_t max_file_bytes = size_t{256} << 20;  // Largest manifest or list file.
  size_t max_videos = 20'000'000;
};

// Reads the data set described by `spec`. Errors as described above.
absl::StatusOr<Manifest> LoadManifest(const tecl::v1::DatasetSpec& spec, const DataRoots& roots,
                                      const ManifestLimits& limits = {});

// Whether `path` ends in an extension of a video container (.mp4, .avi, .mkv, .webm, .mov, ...).
bool HasVideoExtension(absl::string_view path);

// Splits one CSV record into fields (RFC 4180 quoting: "a,""b""" -> a,"b"). INVALID_ARGUMENT for
// an unterminated quote.
absl::StatusOr<std::vector<std::string>> SplitCsvRecord(absl::string_view line);

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_MANIFEST_MANIFEST_H_
