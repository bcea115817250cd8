#include "services/dataloader/manifest/data_roots.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tecl::dataloader {
namespace {

namespace fs = std::filesystem;

std::string StripTrailingSeparator(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string CanonicalOrLexical(const std::string& path) {
  std::error_code error;
  fs::path canonical = fs::weakly_canonical(fs::path(path), error);
  if (error) return path;
  return StripTrailingSeparator(canonical.lexically_normal().string());
}

}  // namespace

bool PathIsUnder(absl::string_view path, absl::string_view folder) {
  if (folder == "/") return !path.empty() && path.front() == '/';
  if (path.size() < folder.size() || path.substr(0, folder.size()) != folder) return false;
  return path.size() == folder.size() || path[folder.size()] == '/';
}

std::string AbsoluteNormalPath(const std::string& path) {
  fs::path p(path);
  if (p.is_relative()) {
    std::error_code error;
    fs::path cwd = fs::current_path(error);
    if (!error) p = cwd / p;
  }
  return StripTrailingSeparator(p.lexically_normal().string());
}

absl::StatusOr<DataRoots> DataRoots::Create(const std::vector<std::string>& roots) {
  DataRoots result;
  for (const std::string& root : roots) {
    if (root.empty()) {
      return absl::InvalidArgumentError("--data_root: an entry is empty; give existing folders");
    }
    result.lexical_.push_back(AbsoluteNormalPath(root));
    result.canonical_.push_back(CanonicalOrLexical(result.lexical_.back()));
  }
  return result;
}

absl::StatusOr<std::string> DataRoots::ConfineLexically(const std::string& path,
                                                        absl::string_view what) const {
  std::string normal = AbsoluteNormalPath(path);
  if (!restricted()) return normal;
  for (const std::string& root : lexical_) {
    if (PathIsUnder(normal, root)) return normal;
  }
  for (const std::string& root : canonical_) {
    if (PathIsUnder(normal, root)) return normal;
  }
  return absl::PermissionDeniedError(
      absl::StrCat(what, " \"", path, "\" is outside the data roots (", absl::StrJoin(lexical_, ", "),
                   "); move the data there or start tecl-dataloader with a --data_root "
                   "including it"));
}

absl::StatusOr<std::string> DataRoots::Confine(const std::string& path,
                                               absl::string_view what) const {
  std::string normal = AbsoluteNormalPath(path);
  if (!restricted()) return normal;
  const std::string canonical = CanonicalOrLexical(normal);
  for (const std::string& root : canonical_) {
    if (PathIsUnder(canonical, root)) return normal;
  }
  return absl::PermissionDeniedError(absl::StrCat(
      what, " \"", path, "\"",
      canonical == normal ? "" : absl::StrCat(" (resolving to \"", canonical, "\")"),
      " is outside the data roots (", absl::StrJoin(lexical_, ", "),
      "); move the data there or start tecl-dataloader with a --data_root including it"));
}

}  // namespace tecl::dataloader
