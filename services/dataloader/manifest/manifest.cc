#include "services/dataloader/manifest/manifest.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/status_macros.h"

namespace tecl::dataloader {
namespace {

namespace fs = std::filesystem;
using tecl::v1::DatasetSpec;

constexpr const char* kVideoExtensions[] = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v",
                                            ".mpg", ".mpeg", ".flv", ".wmv", ".ogv", ".3gp",
                                            ".ts",  ".y4m", ".gif"};

// A text file split into lines, with the name used in error messages.
struct TextFile {
  std::string path;     // Absolute.
  std::string display;  // As the spec named it (field and path).
  std::vector<std::string> lines;

  std::string Where(size_t line_index) const { return absl::StrCat(path, ":", line_index + 1); }
};

absl::StatusOr<TextFile> ReadTextFile(const std::string& path, absl::string_view field,
                                      const ManifestLimits& limits) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (!fs::exists(status)) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": \"", path, "\" does not exist; check the path (relative paths are "
                     "relative to dataset.root)"));
  }
  if (!fs::is_regular_file(status)) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": \"", path, "\" is not a regular file; give the list file itself"));
  }
  const uintmax_t size = fs::file_size(path, error);
  if (!error && size > limits.max_file_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": \"", path, "\" is ", size,
                                                      " bytes, more than the limit of ",
                                                      limits.max_file_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": cannot read \"", path,
                                                      "\": ", std::strerror(errno)));
  }
  TextFile file;
  file.path = path;
  file.display = std::string(field);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    file.lines.push_back(std::move(line));
    line.clear();
  }
  if (in.bad()) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": error reading \"", path, "\""));
  }
  return file;
}

bool IsSkippable(absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  return line.empty() || line.front() == '#';
}

// Resolves a manifest path against the data set root and confines it.
absl::StatusOr<std::string> ResolveVideoPath(const std::string& root, absl::string_view entry,
                                             const DataRoots& roots, const std::string& where) {
  fs::path path{std::string(entry)};
  if (path.is_relative()) path = fs::path(root) / path;
  absl::StatusOr<std::string> confined = roots.ConfineLexically(path.string(), where);
  return confined;
}

// "path [label]": the label is the last whitespace-separated token when it is an integer and
// something precedes it.
struct ListLine {
  std::string path;
  bool has_label = false;
  int64_t label = 0;
};

ListLine ParseListLine(absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  ListLine result;
  const size_t split = line.find_last_of(" \t");
  if (split != absl::string_view::npos) {
    int64_t label = 0;
    if (absl::SimpleAtoi(line.substr(split + 1), &label)) {
      result.path = std::string(absl::StripTrailingAsciiWhitespace(line.substr(0, split)));
      result.has_label = true;
      result.label = label;
      return result;
    }
  }
  result.path = std::string(line);
  return result;
}

std::string FirstComponent(absl::string_view relative) {
  relative = absl::StripPrefix(relative, "./");
  const size_t slash = relative.find('/');
  return std::string(slash == absl::string_view::npos ? absl::string_view() : relative.substr(0, slash));
}

// Tracks where each video was listed, to report duplicates with both locations.
class SeenPaths {
 public:
  absl::Status Add(const std::string& path, const std::string& where) {
    auto [it, inserted] = seen_.emplace(path, where);
    if (inserted) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"", path, "\" is already listed at ",
                                                   it->second, "; list each video once"));
  }
  bool Contains(const std::string& path) const { return seen_.contains(path); }

 private:
  absl::flat_hash_map<std::string, std::string> seen_;
};

absl::Status CheckVideoCount(const Manifest& manifest, const ManifestLimits& limits) {
  if (manifest.videos.size() > limits.max_videos) {
    return absl::FailedPreconditionError(absl::StrCat("dataset: ", manifest.videos.size(),
                                                      " videos, more than the limit of ",
                                                      limits.max_videos));
  }
  return absl::OkStatus();
}

absl::Status RequireVideos(const Manifest& manifest, absl::string_view hint) {
  if (!manifest.videos.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("dataset: no videos found under \"", manifest.root, "\"; ", hint));
}

absl::StatusOr<std::string> ResolveListFile(const std::string& root, const std::string& value,
                                            absl::string_view field, const DataRoots& roots) {
  fs::path path(value);
  if (path.is_relative()) path = fs::path(root) / path;
  return roots.Confine(path.string(), field);
}

// ---- Class folders ---------------------------------------------------------------------------

absl::StatusOr<std::vector<std::string>> ScanClassFolders(const std::string& root) {
  std::vector<std::string> classes;
  std::error_code error;
  for (fs::directory_iterator it(root, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.front() == '.') continue;
    std::error_code type_error;
    if (it->is_directory(type_error)) classes.push_back(name);
  }
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset.root: cannot list \"", root, "\": ", error.message()));
  }
  std::sort(classes.begin(), classes.end());
  return classes;
}

absl::StatusOr<std::vector<std::string>> ScanVideos(const std::string& folder) {
  std::vector<std::string> files;
  std::error_code error;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.front() == '.' || !HasVideoExtension(name)) continue;
    std::error_code type_error;
    if (it->is_regular_file(type_error)) files.push_back(name);
  }
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset: cannot list \"", folder, "\": ", error.message()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

struct ListedVideo {
  std::string path;
  int32_t label;
};

// Reads a split list of a class-folder data set.
absl::StatusOr<std::vector<ListedVideo>> ReadClassFolderList(
    const std::string& root, const std::string& value, absl::string_view field,
    const absl::flat_hash_map<std::string, int32_t>& class_of, const std::vector<std::string>& classes,
    const DataRoots& roots, const ManifestLimits& limits, SeenPaths* seen) {
  TECL_ASSIGN_OR_RETURN(std::string path, ResolveListFile(root, value, field, roots));
  TECL_ASSIGN_OR_RETURN(TextFile file, ReadTextFile(path, field, limits));
  std::vector<ListedVideo> videos;
  for (size_t i = 0; i < file.lines.size(); ++i) {
    if (IsSkippable(file.lines[i])) continue;
    const ListLine line = ParseListLine(file.lines[i]);
    const std::string where = file.Where(i);
    const std::string folder = FirstComponent(line.path);
    auto it = class_of.find(folder);
    if (it == class_of.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": \"", line.path, "\" is not inside a class folder of \"", root, "\" (classes: ",
          absl::StrJoin(classes.begin(), classes.begin() + std::min<size_t>(classes.size(), 8), ", "),
          classes.size() > 8 ? ", ..." : "", "); lines are <class>/<video> relative to root"));
    }
    TECL_ASSIGN_OR_RETURN(std::string video, ResolveVideoPath(root, line.path, roots, where));
    TECL_RETURN_IF_ERROR(seen->Add(video, where));
    videos.push_back({std::move(video), it->second});
  }
  return videos;
}

absl::StatusOr<Manifest> LoadClassFolders(const DatasetSpec& spec, Manifest manifest,
                                          const DataRoots& roots, const ManifestLimits& limits) {
  TECL_ASSIGN_OR_RETURN(manifest.classes, ScanClassFolders(manifest.root));
  absl::flat_hash_map<std::string, int32_t> class_of;
  for (size_t i = 0; i < manifest.classes.size(); ++i) {
    class_of[manifest.classes[i]] = static_cast<int32_t>(i);
  }
  const bool has_train = !spec.train_list().empty();
  const bool has_test = !spec.test_list().empty();
  SeenPaths seen;
  std::vector<ListedVideo> train, test;
  if (has_train) {
    TECL_ASSIGN_OR_RETURN(train, ReadClassFolderList(manifest.root, spec.train_list(),
                                                     "dataset.train_list", class_of,
                                                     manifest.classes, roots, limits, &seen));
  }
  if (has_test) {
    TECL_ASSIGN_OR_RETURN(test, ReadClassFolderList(manifest.root, spec.test_list(),
                                                    "dataset.test_list", class_of,
                                                    manifest.classes, roots, limits, &seen));
  }
  if (!(has_train && has_test)) {
    // The split without a list is every other video under root.
    std::vector<ListedVideo>& rest = has_train ? test : train;
    for (size_t c = 0; c < manifest.classes.size(); ++c) {
      const std::string folder = (fs::path(manifest.root) / manifest.classes[c]).string();
      TECL_ASSIGN_OR_RETURN(std::vector<std::string> files, ScanVideos(folder));
      for (const std::string& name : files) {
        TECL_ASSIGN_OR_RETURN(std::string video,
                              roots.ConfineLexically(folder + "/" + name, "dataset video"));
        if (seen.Contains(video)) continue;
        rest.push_back({std::move(video), static_cast<int32_t>(c)});
        if (rest.size() > limits.max_videos) break;
      }
    }
  }
  for (ListedVideo& video : train) {
    manifest.videos.push_back({std::move(video.path), video.label, Split::kTrain});
  }
  for (ListedVideo& video : test) {
    manifest.videos.push_back({std::move(video.path), video.label, Split::kTest});
  }
  TECL_RETURN_IF_ERROR(CheckVideoCount(manifest, limits));
  TECL_RETURN_IF_ERROR(RequireVideos(
      manifest, "a class-folder data set holds root/<class>/<video>.mp4 (or .avi, .mkv, ...)"));
  return manifest;
}

// ---- UCF101 ----------------------------------------------------------------------------------

absl::StatusOr<Manifest> LoadUcf101(const DatasetSpec& spec, Manifest manifest,
                                    const DataRoots& roots, const ManifestLimits& limits) {
  if (spec.class_index().empty()) {
    return absl::InvalidArgumentError(
        "dataset.class_index: missing; set it to the classInd.txt of the data set");
  }
  if (spec.train_list().empty() && spec.test_list().empty()) {
    return absl::InvalidArgumentError(
        "dataset.train_list: missing; a ucf101 data set needs train_list and/or test_list "
        "(e.g. trainlist01.txt, testlist01.txt)");
  }
  TECL_ASSIGN_OR_RETURN(std::string index_path, ResolveListFile(manifest.root, spec.class_index(),
                                                                "dataset.class_index", roots));
  TECL_ASSIGN_OR_RETURN(TextFile index, ReadTextFile(index_path, "dataset.class_index", limits));
  std::map<int64_t, std::pair<std::string, std::string>> by_index;  // index -> (name, where)
  absl::flat_hash_map<std::string, std::string> name_seen;            // lower name -> where
  for (size_t i = 0; i < index.lines.size(); ++i) {
    if (IsSkippable(index.lines[i])) continue;
    const std::string where = index.Where(i);
    std::vector<std::string> parts =
        absl::StrSplit(absl::StripAsciiWhitespace(index.lines[i]), absl::ByAnyChar(" \t"),
                       absl::SkipEmpty());
    int64_t number = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &number)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": \"", index.lines[i], "\" is not \"<index> <class name>\" (e.g. \"1 ApplyEyeMakeup\")"));
    }
    if (number < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": class index ", number, " is below 1; indices start at 1"));
    }
    auto [it, inserted] = by_index.emplace(number, std::make_pair(parts[1], where));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": class index ", number,
                                                     " is already used at ", it->second.second));
    }
    auto [name_it, name_inserted] = name_seen.emplace(absl::AsciiStrToLower(parts[1]), where);
    if (!name_inserted) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": class \"", parts[1],
                                                     "\" is already named at ", name_it->second));
    }
  }
  if (by_index.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index.path, ": no classes; write one \"<index> <class name>\" line per class"));
  }
  if (by_index.rbegin()->first != static_cast<int64_t>(by_index.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        index.path, ": class indices are not 1..", by_index.size(), " (largest is ",
        by_index.rbegin()->first, "); number the classes consecutively from 1"));
  }
  absl::flat_hash_map<std::string, int32_t> class_of;  // lower-case name -> label
  for (const auto& [number, entry] : by_index) {
    manifest.classes.push_back(entry.first);
    class_of[absl::AsciiStrToLower(entry.first)] = static_cast<int32_t>(number - 1);
  }
  const int64_t num_classes = static_cast<int64_t>(manifest.classes.size());

  SeenPaths seen;
  const std::pair<const std::string*, Split> lists[] = {{&spec.train_list(), Split::kTrain},
                                                        {&spec.test_list(), Split::kTest}};
  for (const auto& [value, split] : lists) {
    if (value->empty()) continue;
    const std::string field =
        split == Split::kTrain ? "dataset.train_list" : "dataset.test_list";
    TECL_ASSIGN_OR_RETURN(std::string path, ResolveListFile(manifest.root, *value, field, roots));
    TECL_ASSIGN_OR_RETURN(TextFile file, ReadTextFile(path, field, limits));
    for (size_t i = 0; i < file.lines.size(); ++i) {
      if (IsSkippable(file.lines[i])) continue;
      const std::string where = file.Where(i);
      const ListLine line = ParseListLine(file.lines[i]);
      int32_t label = -1;
      if (line.has_label) {
        if (line.label < 1 || line.label > num_classes) {
          return absl::InvalidArgumentError(absl::StrCat(where, ": label ", line.label,
                                                         " is outside the classes 1..", num_classes,
                                                         " of ", index.path));
        }
        label = static_cast<int32_t>(line.label - 1);
      } else {
        const std::string folder = FirstComponent(line.path);
        auto it = class_of.find(absl::AsciiStrToLower(folder));
        if (it == class_of.end()) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": \"", line.path, "\" has no label and its folder \"", folder,
              "\" is not a class of ", index.path,
              "; write \"<class>/<video> <label>\" or fix the folder"));
        }
        label = it->second;
      }
      TECL_ASSIGN_OR_RETURN(std::string video,
                            ResolveVideoPath(manifest.root, line.path, roots, where));
      TECL_RETURN_IF_ERROR(seen.Add(video, where));
      manifest.videos.push_back({std::move(video), label, split});
      if (manifest.videos.size() > limits.max_videos) break;
    }
  }
  TECL_RETURN_IF_ERROR(CheckVideoCount(manifest, limits));
  TECL_RETURN_IF_ERROR(RequireVideos(manifest, "the split lists name no video"));
  return manifest;
}

// ---- CSV -------------------------------------------------------------------------------------

absl::StatusOr<Manifest> LoadCsv(const DatasetSpec& spec, Manifest manifest,
                                 const DataRoots& roots, const ManifestLimits& limits) {
  if (spec.manifest().empty()) {
    return absl::InvalidArgumentError(
        "dataset.manifest: missing; set it to the CSV file (header path,label,split)");
  }
  TECL_ASSIGN_OR_RETURN(std::string path, ResolveListFile(manifest.root, spec.manifest(),
                                                          "dataset.manifest", roots));
  TECL_ASSIGN_OR_RETURN(TextFile file, ReadTextFile(path, "dataset.manifest", limits));
  size_t header_line = 0;
  while (header_line < file.lines.size() &&
         absl::StripAsciiWhitespace(file.lines[header_line]).empty()) {
    ++header_line;
  }
  if (header_line == file.lines.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path, ": empty; the first line must be the header path,label,split"));
  }
  absl::StatusOr<std::vector<std::string>> header = SplitCsvRecord(file.lines[header_line]);
  if (!header.ok()) return Annotate(header.status(), file.Where(header_line));
  int path_column = -1, label_column = -1, split_column = -1;
  for (size_t c = 0; c < header->size(); ++c) {
    const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace((*header)[c]));
    int* column = name == "path" ? &path_column
                  : name == "label" ? &label_column
                  : name == "split" ? &split_column
                                    : nullptr;
    if (column == nullptr) continue;
    if (*column >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(file.Where(header_line), ": column \"", name,
                                                     "\" appears twice in the header"));
    }
    *column = static_cast<int>(c);
  }
  if (path_column < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.Where(header_line), ": the header \"", file.lines[header_line],
        "\" has no path column; the first line must name the columns path,label,split"));
  }

  struct Row {
    std::string path;
    std::string label;
    Split split;
    std::string where;
  };
  std::vector<Row> rows;
  SeenPaths seen;
  for (size_t i = header_line + 1; i < file.lines.size(); ++i) {
    if (absl::StripAsciiWhitespace(file.lines[i]).empty()) continue;
    const std::string where = file.Where(i);
    absl::StatusOr<std::vector<std::string>> fields = SplitCsvRecord(file.lines[i]);
    if (!fields.ok()) return Annotate(fields.status(), where);
    const int needed = std::max({path_column, label_column, split_column}) + 1;
    if (static_cast<int>(fields->size()) < needed) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", fields->size(),
                                                     " fields but the header names ", needed,
                                                     " columns; write path,label,split"));
    }
    Row row;
    row.where = where;
    const std::string entry(absl::StripAsciiWhitespace((*fields)[path_column]));
    if (entry.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": empty path"));
    }
    if (label_column >= 0) {
      row.label = std::string(absl::StripAsciiWhitespace((*fields)[label_column]));
    }
    row.split = Split::kTrain;
    if (split_column >= 0) {
      const std::string split = absl::AsciiStrToLower(absl::StripAsciiWhitespace((*fields)[split_column]));
      if (split == "test") {
        row.split = Split::kTest;
      } else if (!split.empty() && split != "train") {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": split \"", (*fields)[split_column], "\" is not one of train, test"));
      }
    }
    TECL_ASSIGN_OR_RETURN(row.path, ResolveVideoPath(manifest.root, entry, roots, where));
    TECL_RETURN_IF_ERROR(seen.Add(row.path, where));
    rows.push_back(std::move(row));
    if (rows.size() > limits.max_videos) break;
  }

  // Labels: all integers >= 0 -> the integer; otherwise class names in name order.
  bool numeric = true;
  int64_t max_label = -1;
  std::set<std::string> names;
  for (const Row& row : rows) {
    if (row.label.empty()) continue;
    names.insert(row.label);
    int64_t value = 0;
    if (numeric && absl::SimpleAtoi(row.label, &value) && value >= 0 && value < (1 << 30)) {
      max_label = std::max(max_label, value);
    } else {
      numeric = false;
    }
  }
  absl::flat_hash_map<std::string, int32_t> class_of;
  if (numeric) {
    for (int64_t c = 0; c <= max_label; ++c) manifest.classes.push_back(absl::StrCat(c));
  } else {
    for (const std::string& name : names) {
      class_of[name] = static_cast<int32_t>(manifest.classes.size());
      manifest.classes.push_back(name);
    }
  }
  for (Row& row : rows) {
    int32_t label = -1;
    if (!row.label.empty()) {
      if (numeric) {
        int64_t value = 0;
        (void)absl::SimpleAtoi(row.label, &value);
        label = static_cast<int32_t>(value);
      } else {
        label = class_of.at(row.label);
      }
    }
    manifest.videos.push_back({std::move(row.path), label, row.split});
  }
  TECL_RETURN_IF_ERROR(CheckVideoCount(manifest, limits));
  TECL_RETURN_IF_ERROR(RequireVideos(manifest, absl::StrCat(file.path, " lists no video")));
  return manifest;
}

}  // namespace

absl::string_view SplitName(Split split) { return split == Split::kTrain ? "train" : "test"; }

int64_t Manifest::Count(Split split) const {
  return std::count_if(videos.begin(), videos.end(),
                       [split](const VideoEntry& video) { return video.split == split; });
}

absl::StatusOr<std::vector<int64_t>> Manifest::SelectSplit(absl::string_view split) const {
  const bool all = split == "all";
  if (!all && !split.empty() && split != "train") {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset.split: \"", split, "\" is not one of train, all"));
  }
  std::vector<int64_t> indices;
  for (size_t i = 0; i < videos.size(); ++i) {
    if (all || videos[i].split == Split::kTrain) indices.push_back(static_cast<int64_t>(i));
  }
  return indices;
}

bool HasVideoExtension(absl::string_view path) {
  const size_t dot = path.find_last_of('.');
  if (dot == absl::string_view::npos) return false;
  const std::string extension = absl::AsciiStrToLower(path.substr(dot));
  for (const char* known : kVideoExtensions) {
    if (extension == known) return true;
  }
  return false;
}

absl::StatusOr<std::vector<std::string>> SplitCsvRecord(absl::string_view line) {
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;
  bool field_was_quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < line.size() && line[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field.push_back(c);
      }
    } else if (c == '"' && !field_was_quoted && absl::StripAsciiWhitespace(field).empty()) {
      field.clear();
      quoted = true;
      field_was_quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
      field_was_quoted = false;
    } else {
      field.push_back(c);
    }
  }
  if (quoted) {
    return absl::InvalidArgumentError("a quoted field is not closed; end it with \"");
  }
  fields.push_back(std::move(field));
  return fields;
}

absl::StatusOr<Manifest> LoadManifest(const DatasetSpec& spec, const DataRoots& roots,
                                      const ManifestLimits& limits) {
  Manifest manifest;
  if (spec.root().empty()) {
    return absl::InvalidArgumentError("dataset.root: missing; set it to the folder holding the videos");
  }
  TECL_ASSIGN_OR_RETURN(manifest.root, roots.Confine(spec.root(), "dataset.root"));
  std::error_code error;
  const fs::file_status status = fs::status(manifest.root, error);
  if (!fs::exists(status)) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset.root: \"", spec.root(), "\" does not exist; check the path"));
  }
  if (!fs::is_directory(status)) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset.root: \"", spec.root(), "\" is not a folder"));
  }
  switch (spec.format()) {
    case DatasetSpec::FORMAT_CLASS_FOLDERS:
      return LoadClassFolders(spec, std::move(manifest), roots, limits);
    case DatasetSpec::FORMAT_UCF101:
      return LoadUcf101(spec, std::move(manifest), roots, limits);
    case DatasetSpec::FORMAT_CSV:
      return LoadCsv(spec, std::move(manifest), roots, limits);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dataset.format: ", spec.format() == DatasetSpec::FORMAT_UNSPECIFIED
                                               ? std::string("missing")
                                               : absl::StrCat("unknown value ", spec.format()),
                       "; set class_folders, ucf101 or csv"));
  }
}

}  // namespace tecl::dataloader
