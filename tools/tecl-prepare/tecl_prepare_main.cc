// tecl-prepare: rewrites a video data set for the clip sampler on this machine's cores
// (services/dataloader/prepare/prepare_dataset.h, docs/prepare.md). Resumable: run the same
// command again after an interruption and only the unfinished videos are redone.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/flags.h"
#include "services/dataloader/manifest/data_roots.h"
#include "services/dataloader/prepare/prepare_dataset.h"

ABSL_FLAG(std::string, root, "", "The source data set's root folder.");
ABSL_FLAG(std::string, format, "class_folders", "class_folders | ucf101 | csv.");
ABSL_FLAG(std::string, manifest, "", "csv: the manifest (relative to --root or absolute).");
ABSL_FLAG(std::string, class_index, "", "ucf101: classInd.txt.");
ABSL_FLAG(std::string, train_list, "", "Split list of the train videos (optional).");
ABSL_FLAG(std::string, test_list, "", "Split list of the test videos (optional).");
ABSL_FLAG(std::string, out, "", "Folder of the prepared copy (outside --root).");
ABSL_FLAG(int, short_side, 128, "Short side of the copy in pixels (even, 16..4096); 0 keeps the size.");
ABSL_FLAG(int, keyframe_interval, 32, "Frames between keyframes, 1..1000.");
ABSL_FLAG(std::string, codec, "h264", "h264 (fast-decode) | intra (every frame a keyframe).");
ABSL_FLAG(int, crf, 20, "x264 quality, 0..51.");
ABSL_FLAG(int, threads, 0, "Videos transcoded at once; 0 = one per core.");
ABSL_FLAG(int, shard, 0, "This run's shard, 0..num_shards-1 (videos i with i mod N == shard).");
ABSL_FLAG(int, num_shards, 1, "Shards the data set is split into.");

int main(int argc, char** argv) {
  tecl::ParseFlags(argc, argv,
                   "rewrites a video data set for fast clip sampling: every frame kept at the "
                   "source's rate, short side --short_side, fast-decode H.264 with a keyframe every "
                   "--keyframe_interval frames, split lists rewritten; resumable.\n"
                   "  tecl-prepare --root data/ucf101 --format ucf101 --class_index classInd.txt "
                   "--train_list trainlist01.txt --test_list testlist01.txt --out data/ucf101-prepared");
  tecl::prepare::PrepareOptions options;
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format == "class_folders") {
    options.dataset.set_format(tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
  } else if (format == "ucf101") {
    options.dataset.set_format(tecl::v1::DatasetSpec::FORMAT_UCF101);
  } else if (format == "csv") {
    options.dataset.set_format(tecl::v1::DatasetSpec::FORMAT_CSV);
  } else {
    std::fprintf(stderr, "tecl-prepare: --format: \"%s\" is not one of class_folders, ucf101, csv\n",
                 format.c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_root).empty() || absl::GetFlag(FLAGS_out).empty()) {
    std::fprintf(stderr, "tecl-prepare: --root and --out are required (see --help)\n");
    return 2;
  }
  options.dataset.set_root(absl::GetFlag(FLAGS_root));
  options.dataset.set_manifest(absl::GetFlag(FLAGS_manifest));
  options.dataset.set_class_index(absl::GetFlag(FLAGS_class_index));
  options.dataset.set_train_list(absl::GetFlag(FLAGS_train_list));
  options.dataset.set_test_list(absl::GetFlag(FLAGS_test_list));
  options.output_root = absl::GetFlag(FLAGS_out);
  options.transcode.short_side = absl::GetFlag(FLAGS_short_side);
  options.transcode.keyframe_interval = absl::GetFlag(FLAGS_keyframe_interval);
  const std::string codec = absl::GetFlag(FLAGS_codec);
  if (codec != "h264" && codec != "intra") {
    std::fprintf(stderr, "tecl-prepare: --codec: \"%s\" is not one of h264, intra\n", codec.c_str());
    return 2;
  }
  options.transcode.codec =
      codec == "intra" ? tecl::prepare::PreparedCodec::kIntra : tecl::prepare::PreparedCodec::kH264;
  options.transcode.crf = absl::GetFlag(FLAGS_crf);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.shard = absl::GetFlag(FLAGS_shard);
  options.num_shards = absl::GetFlag(FLAGS_num_shards);

  // Progress: a line per video (a bar on a terminal), videos/s and the time left.
  const bool tty = isatty(STDERR_FILENO);
  const absl::Time start = absl::Now();
  absl::Time last_line = absl::InfinitePast();
  options.on_progress = [&](const tecl::prepare::PrepareProgress& p) {
    const int64_t done = std::min(p.total, p.prepared + p.kept + p.failed);
    // A log (not a terminal) gets a line a second and the last one.
    if (!tty && done < p.total && absl::Now() - last_line < absl::Seconds(1)) return;
    last_line = absl::Now();
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const double rate = seconds > 0 ? p.prepared / seconds : 0;
    const double left = rate > 0 ? (p.total - done) / rate : 0;
    const int width = 30;
    const int filled = p.total > 0 ? static_cast<int>(width * done / p.total) : width;
    std::fprintf(stderr, "%s[%s%s] %lld/%lld videos (%lld prepared, %lld kept, %lld failed) %.1f/s, %.0f s left%s",
                 tty ? "\r" : "", std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(p.total), static_cast<long long>(p.prepared),
                 static_cast<long long>(p.kept), static_cast<long long>(p.failed), rate, left,
                 tty ? "" : "\n");
  };
  const absl::StatusOr<tecl::prepare::PrepareSummary> summary =
      tecl::prepare::PrepareDataset(options, tecl::dataloader::DataRoots());
  if (tty) std::fprintf(stderr, "\n");
  if (!summary.ok()) {
    std::fprintf(stderr, "tecl-prepare: %s\n", std::string(summary.status().message()).c_str());
    return summary.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  for (const auto& [source, reason] : summary->failures) {
    std::fprintf(stderr, "tecl-prepare: skipped %s: %s\n", source.c_str(), reason.c_str());
  }
  const tecl::prepare::PrepareProgress& p = summary->progress;
  std::printf("%lld videos: %lld prepared (%.1f MiB -> %.1f MiB), %lld already prepared, %lld "
              "failed, in %.1f s; %s\n",
              static_cast<long long>(p.total), static_cast<long long>(p.prepared),
              p.bytes_in / 1048576.0, p.bytes_out / 1048576.0, static_cast<long long>(p.kept),
              static_cast<long long>(p.failed), summary->seconds,
              summary->dataset_files_written
                  ? absl::StrCat("split lists and prepare.json written to ", options.output_root)
                        .c_str()
                  : "other shards are not finished yet: the lists are written by the last one");
  return 0;
}
