#include "services/dataloader/prepare/prepare_dataset.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/common/file_util.h"
#include "services/common/status_macros.h"
#include "services/dataloader/manifest/manifest.h"
#include "services/dataloader/video/demuxer.h"
#include "services/dataloader/video/stored_index.h"

namespace tecl::prepare {
namespace {

namespace fs = std::filesystem;
using dataloader::Manifest;

constexpr char kRecordMagic[] = "tecl.prepare.v1";
constexpr char kRecordSuffix[] = ".prep";

std::string Normal(const std::string& path) {
  return fs::absolute(fs::path(path)).lexically_normal().string();
}

bool Inside(const std::string& path, const std::string& folder) {
  const fs::path relative = fs::path(path).lexically_relative(folder);
  return !relative.empty() && *relative.begin() != "..";
}

std::string Parameters(const TranscodeOptions& t) {
  return absl::StrCat("short_side=", t.short_side, ",keyframe_interval=", t.keyframe_interval,
                      ",codec=", t.codec == PreparedCodec::kIntra ? "intra" : "h264",
                      ",crf=", t.crf);
}

// What X.mp4.prep says about a video: the parameters and source it was made from, and the outcome.
struct Record {
  std::string parameters;
  int64_t source_size = -1;
  int64_t source_mtime_ns = -1;
  bool ok = false;
  int64_t frames = 0;
  int64_t output_size = 0;
  std::string reason;  // When failed.

  std::string Serialize() const {
    std::string clean = reason;
    for (char& c : clean) {
      if (c == '\t' || c == '\n' || c == '\r') c = ' ';
    }
    return absl::StrCat(kRecordMagic, "\tparameters=", parameters, "\tsource_size=", source_size,
                        "\tsource_mtime_ns=", source_mtime_ns, "\tstatus=", ok ? "ok" : "failed",
                        "\tframes=", frames, "\toutput_size=", output_size, "\treason=", clean,
                        "\n");
  }
};

// Reads a record; nullopt when missing or unreadable (the video is then redone).
std::optional<Record> ReadRecord(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  std::vector<std::string> fields = absl::StrSplit(line, '\t');
  if (fields.empty() || fields[0] != kRecordMagic) return std::nullopt;
  std::map<std::string, std::string> values;
  for (size_t i = 1; i < fields.size(); ++i) {
    const size_t eq = fields[i].find('=');
    if (eq != std::string::npos) values[fields[i].substr(0, eq)] = fields[i].substr(eq + 1);
  }
  Record record;
  try {
    record.parameters = values.at("parameters");
    record.source_size = std::stoll(values.at("source_size"));
    record.source_mtime_ns = std::stoll(values.at("source_mtime_ns"));
    record.ok = values.at("status") == "ok";
    record.frames = std::stoll(values.at("frames"));
    record.output_size = std::stoll(values.at("output_size"));
    record.reason = values["reason"];
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return record;
}

// The record of `source`'s output if it matches the parameters, the source and the output on disk.
std::optional<Record> DoneRecord(const std::string& source, const std::string& output,
                                 const std::string& parameters) {
  std::optional<Record> record = ReadRecord(output + kRecordSuffix);
  if (!record || record->parameters != parameters) return std::nullopt;
  absl::StatusOr<video::FileIdentity> identity = video::StatVideoFile(source);
  if (!identity.ok()) {
    // A source that could not be read: its failure stands while it still cannot be.
    if (!record->ok && record->source_size == -1) return record;
    return std::nullopt;
  }
  if (identity->size != record->source_size || identity->mtime_ns != record->source_mtime_ns) {
    return std::nullopt;
  }
  if (record->ok) {
    std::error_code error;
    const auto size = fs::file_size(output, error);
    if (error || static_cast<int64_t>(size) != record->output_size) return std::nullopt;
  }
  return record;
}

// Deletes what an interrupted attempt at `output` left: its temporary files.
void RemoveStaleTemporaries(const std::string& output) {
  const fs::path out(output);
  const std::string name = out.filename().string();
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(out.parent_path(), error)) {
    const std::string file = entry.path().filename().string();
    for (const std::string& prefix : {name + ".tmp.", name + ".tecli.tmp.", name + ".prep.tmp."}) {
      if (file.rfind(prefix, 0) == 0) fs::remove(entry.path(), error);
    }
  }
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", c);
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string CsvField(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (const char c : field) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// Where a data set file of the source (named relative to its root, or absolute) goes in the copy.
std::string CopyOfDatasetFile(const std::string& name, const std::string& source_root,
                              const std::string& output_root) {
  const fs::path path = fs::path(name).is_absolute() ? fs::path(name) : fs::path(source_root) / name;
  const std::string normal = path.lexically_normal().string();
  if (Inside(normal, source_root)) {
    return (fs::path(output_root) / fs::path(normal).lexically_relative(source_root)).string();
  }
  return (fs::path(output_root) / fs::path(normal).filename()).string();
}

// A data set file (named relative to the source root, or absolute) as lines without line ends.
absl::StatusOr<std::vector<std::string>> ReadLines(const std::string& name,
                                                   const std::string& source_root) {
  const fs::path path = fs::path(name).is_absolute() ? fs::path(name) : fs::path(source_root) / name;
  std::ifstream in(path);
  if (!in) return absl::FailedPreconditionError(absl::StrCat(path.string(), ": cannot read"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

// The prepared copy of `source`, relative to the output root (as the copy's lists name it).
std::string RelativeCopy(const std::string& source, const std::string& source_root,
                         const std::string& output_root) {
  return fs::path(PreparedPath(source_root, output_root, source))
      .lexically_relative(output_root)
      .string();
}

// The split list `name` with every video path mapped to its prepared copy (failed videos' lines
// dropped).
absl::Status RewriteList(const std::string& name, const std::string& source_root,
                         const std::string& output_root, const std::set<std::string>& failed) {
  TECL_ASSIGN_OR_RETURN(const std::vector<std::string> lines, ReadLines(name, source_root));
  std::string out;
  for (const std::string& line : lines) {
    const std::string stripped(absl::StripAsciiWhitespace(line));
    if (stripped.empty() || stripped[0] == '#') {
      out += line + "\n";
      continue;
    }
    const size_t end = stripped.find_first_of(" \t");
    const std::string entry = stripped.substr(0, end);
    const std::string rest = end == std::string::npos ? "" : stripped.substr(end);
    const std::string source = Normal((fs::path(source_root) / entry).string());
    if (failed.count(source)) continue;
    out += RelativeCopy(source, source_root, output_root) + rest + "\n";
  }
  return WriteFileAtomically(CopyOfDatasetFile(name, source_root, output_root), out);
}

absl::Status RewriteCsv(const std::string& name, const std::string& source_root,
                        const std::string& output_root, const std::set<std::string>& failed) {
  TECL_ASSIGN_OR_RETURN(const std::vector<std::string> lines, ReadLines(name, source_root));
  std::string out;
  int path_column = -1;
  for (const std::string& line : lines) {
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    TECL_ASSIGN_OR_RETURN(std::vector<std::string> fields, dataloader::SplitCsvRecord(line));
    if (path_column < 0) {
      for (size_t i = 0; i < fields.size(); ++i) {
        if (absl::AsciiStrToLower(absl::StripAsciiWhitespace(fields[i])) == "path") {
          path_column = static_cast<int>(i);
        }
      }
      if (path_column < 0) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": no path column"));
      }
      out += line + "\n";
      continue;
    }
    if (path_column >= static_cast<int>(fields.size())) continue;
    const std::string entry(absl::StripAsciiWhitespace(fields[path_column]));
    const std::string source = Normal(fs::path(entry).is_absolute()
                                          ? entry
                                          : (fs::path(source_root) / entry).string());
    if (failed.count(source)) continue;
    fields[path_column] = RelativeCopy(source, source_root, output_root);
    std::vector<std::string> quoted;
    for (const std::string& field : fields) quoted.push_back(CsvField(field));
    out += absl::StrJoin(quoted, ",") + "\n";
  }
  return WriteFileAtomically(CopyOfDatasetFile(name, source_root, output_root), out);
}

absl::Status ValidateOptions(const PrepareOptions& options) {
  TECL_RETURN_IF_ERROR(ValidateTranscodeOptions(options.transcode));
  if (options.output_root.empty()) {
    return absl::InvalidArgumentError("prepare.output_root: empty; name the folder of the copy");
  }
  if (options.num_shards < 1 || options.num_shards > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("prepare: num_shards ", options.num_shards, " is outside [1, 100000]"));
  }
  if (options.shard < 0 || options.shard >= options.num_shards) {
    return absl::InvalidArgumentError(absl::StrCat("prepare: shard ", options.shard,
                                                   " is outside [0, ", options.num_shards, ")"));
  }
  if (options.threads < 0 || options.threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("prepare: threads ", options.threads, " is outside [0, 1024]"));
  }
  if (!(options.min_free_fraction >= 0 && options.min_free_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prepare: min_free_fraction ", options.min_free_fraction, " is outside [0, 1)"));
  }
  return absl::OkStatus();
}

// RESOURCE_EXHAUSTED when the volume holding `folder` keeps less than `fraction` of its space
// free for unprivileged writers.
absl::Status CheckFreeSpace(const std::string& folder, double fraction) {
  if (fraction <= 0) return absl::OkStatus();
  struct statvfs volume;
  if (::statvfs(folder.c_str(), &volume) != 0 || volume.f_blocks == 0) {
    return absl::OkStatus();  // Not knowable here; the writes themselves report a full volume.
  }
  const double free_share =
      static_cast<double>(volume.f_bavail) / static_cast<double>(volume.f_blocks);
  if (free_share >= fraction) return absl::OkStatus();
  const double free_gib = static_cast<double>(volume.f_bavail) *
                          static_cast<double>(volume.f_frsize) / (1024.0 * 1024.0 * 1024.0);
  return absl::ResourceExhaustedError(absl::StrCat(
      "prepare.output_root: the volume holding ", folder, " has ", free_gib, " GiB (",
      static_cast<int>(free_share * 1000) / 10.0, " %) free, under the ", fraction * 100,
      " % kept free; free space there or choose another output_root (finished videos are kept: "
      "running the job again resumes)"));
}

}  // namespace

std::string PreparedPath(const std::string& source_root, const std::string& output_root,
                         const std::string& source) {
  fs::path relative = fs::path(source).lexically_normal().lexically_relative(
      fs::path(source_root).lexically_normal());
  relative.replace_extension(".mp4");
  return (fs::path(output_root) / relative).lexically_normal().string();
}

absl::StatusOr<PrepareSummary> PrepareDataset(const PrepareOptions& options,
                                              const dataloader::DataRoots& roots) {
  TECL_RETURN_IF_ERROR(ValidateOptions(options));
  const absl::Time start = absl::Now();
  TECL_ASSIGN_OR_RETURN(const Manifest manifest, dataloader::LoadManifest(options.dataset, roots));
  const std::string source_root = Normal(manifest.root);
  const std::string output_root = Normal(options.output_root);
  if (output_root == source_root || Inside(output_root, source_root) ||
      Inside(source_root, output_root)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "prepare.output_root: ", output_root, " and the source ", source_root,
        " overlap; write the copy to a folder outside the source (and not holding it)"));
  }
  const std::string parameters = Parameters(options.transcode);

  // Every video's output; two sources may not name the same one (a.avi and a.mkv).
  std::vector<std::string> outputs;
  std::map<std::string, std::string> owner;
  for (const dataloader::VideoEntry& video : manifest.videos) {
    outputs.push_back(PreparedPath(source_root, output_root, video.path));
    const auto [it, inserted] = owner.emplace(outputs.back(), video.path);
    if (!inserted && it->second != video.path) {
      return absl::FailedPreconditionError(absl::StrCat(
          "prepare: ", it->second, " and ", video.path, " would both become ", outputs.back(),
          "; rename one of them"));
    }
  }
  std::vector<size_t> mine;
  for (size_t i = 0; i < manifest.videos.size(); ++i) {
    if (static_cast<int>(i % options.num_shards) == options.shard) mine.push_back(i);
  }

  std::error_code created;
  fs::create_directories(output_root, created);
  PrepareSummary summary;
  summary.progress.total = static_cast<int64_t>(mine.size());
  std::mutex mu;
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  absl::Status first_error;  // Guarded by mu: what ended the call early.
  const auto end_early = [&](absl::Status status) {
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.ok()) first_error = std::move(status);
    stop = true;
  };
  const auto work = [&] {
    for (size_t k; !stop.load() && (k = next.fetch_add(1)) < mine.size();) {
      const std::string& source = manifest.videos[mine[k]].path;
      const std::string& output = outputs[mine[k]];
      if (std::optional<Record> done = DoneRecord(source, output, parameters)) {
        std::lock_guard<std::mutex> lock(mu);
        if (done->ok) {
          ++summary.progress.kept;
        } else {  // Failed before with these parameters and this source: not retried.
          ++summary.progress.failed;
          summary.failures.emplace_back(source, done->reason);
        }
        if (options.on_progress) options.on_progress(summary.progress);
        continue;
      }
      if (options.cancelled && options.cancelled()) {
        end_early(absl::CancelledError("prepare: cancelled"));
        break;
      }
      if (absl::Status space = CheckFreeSpace(output_root, options.min_free_fraction);
          !space.ok()) {
        end_early(std::move(space));
        break;
      }
      Record record;
      record.parameters = parameters;
      std::error_code error;
      fs::create_directories(fs::path(output).parent_path(), error);
      RemoveStaleTemporaries(output);
      fs::remove(output + kRecordSuffix, error);
      absl::StatusOr<video::FileIdentity> identity = video::StatVideoFile(source);
      TranscodeOptions transcode = options.transcode;
      transcode.cancelled = options.cancelled;
      absl::StatusOr<TranscodeResult> result =
          identity.ok() ? TranscodeVideo(source, output, transcode)
                        : absl::StatusOr<TranscodeResult>(identity.status());
      if (absl::IsCancelled(result.status())) {  // Not the video's failure: no record, redone.
        end_early(result.status());
        break;
      }
      if (identity.ok()) {
        record.source_size = identity->size;
        record.source_mtime_ns = identity->mtime_ns;
      }
      if (result.ok()) {
        record.ok = true;
        record.frames = result->frames;
        record.output_size = result->bytes_out;
      } else {
        fs::remove(output, error);  // An older copy must not stand for this source.
        fs::remove(video::StoredIndexPath(output), error);
        record.reason = std::string(result.status().message());
      }
      const absl::Status written = WriteFileAtomically(output + kRecordSuffix, record.Serialize());
      if (!written.ok()) {  // Without its record the video never counts as done: stop here.
        end_early(written);
        break;
      }
      std::lock_guard<std::mutex> lock(mu);
      if (result.ok()) {
        ++summary.progress.prepared;
        summary.progress.bytes_in += result->bytes_in;
        summary.progress.bytes_out += result->bytes_out;
      } else {
        ++summary.progress.failed;
        summary.failures.emplace_back(source, std::string(result.status().message()));
      }
      if (options.on_progress) options.on_progress(summary.progress);
    }
  };
  int threads = options.threads > 0 ? options.threads
                                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<size_t>(threads, std::max<size_t>(1, mine.size())));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (std::thread& thread : pool) thread.join();
  if (!first_error.ok()) return first_error;

  // The data set files, once every video of every shard has its record.
  std::set<std::string> failed;
  std::vector<std::string> json_videos;
  for (size_t i = 0; i < manifest.videos.size(); ++i) {
    std::optional<Record> record = DoneRecord(manifest.videos[i].path, outputs[i], parameters);
    if (!record) {
      summary.seconds = absl::ToDoubleSeconds(absl::Now() - start);
      return summary;  // Another shard is still working (or this one failed to write a record).
    }
    if (!record->ok) failed.insert(manifest.videos[i].path);
    json_videos.push_back(absl::StrCat(
        "    {\"source\": ", JsonString(manifest.videos[i].path), ", \"output\": ",
        JsonString(outputs[i]), ", \"status\": \"", record->ok ? "ok" : "failed", "\", \"frames\": ",
        record->frames, ", \"bytes\": ", record->output_size,
        record->ok ? "" : absl::StrCat(", \"reason\": ", JsonString(record->reason)), "}"));
  }
  const tecl::v1::DatasetSpec& spec = options.dataset;
  if (spec.format() == tecl::v1::DatasetSpec::FORMAT_CSV) {
    TECL_RETURN_IF_ERROR(RewriteCsv(spec.manifest(), source_root, output_root, failed));
  } else {
    if (spec.format() == tecl::v1::DatasetSpec::FORMAT_UCF101 && !spec.class_index().empty()) {
      TECL_ASSIGN_OR_RETURN(const std::vector<std::string> lines,
                            ReadLines(spec.class_index(), source_root));
      TECL_RETURN_IF_ERROR(
          WriteFileAtomically(CopyOfDatasetFile(spec.class_index(), source_root, output_root),
                          absl::StrJoin(lines, "\n") + "\n"));
    }
    for (const std::string& list : {spec.train_list(), spec.test_list()}) {
      if (!list.empty()) TECL_RETURN_IF_ERROR(RewriteList(list, source_root, output_root, failed));
    }
  }
  TECL_RETURN_IF_ERROR(WriteFileAtomically(
      (fs::path(output_root) / "prepare.json").string(),
      absl::StrCat("{\n  \"source_root\": ", JsonString(source_root), ",\n  \"parameters\": ",
                   JsonString(parameters), ",\n  \"videos_failed\": ", failed.size(),
                   ",\n  \"videos\": [\n", absl::StrJoin(json_videos, ",\n"), "\n  ]\n}\n")));
  summary.dataset_files_written = true;
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return summary;
}

}  // namespace tecl::prepare
