// DataRoots: the folders a dataloader may read data sets from, and the check that confines every
// dataset path (roots, manifest and split files, videos) to them.
//
// A path is allowed when, made absolute and lexically normalised, it lies inside one of the roots;
// for folders and manifest files the check also resolves symbolic links (a link inside a root that
// points outside it is refused). With no roots configured every path is allowed.
//
// Immutable after Create: thread-safe.
#ifndef TECL_SERVICES_DATALOADER_MANIFEST_DATA_ROOTS_H_
#define TECL_SERVICES_DATALOADER_MANIFEST_DATA_ROOTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tecl::dataloader {

class DataRoots {
 public:
  DataRoots() = default;  // No roots: any path is allowed.

  // Relative roots are made absolute against the working directory. INVALID_ARGUMENT for an
  // empty entry.
  static absl::StatusOr<DataRoots> Create(const std::vector<std::string>& roots);

  bool restricted() const { return !lexical_.empty(); }
  const std::vector<std::string>& roots() const { return lexical_; }

  // Returns `path` absolute and lexically normalised when it lies under a root (resolving
  // symbolic links of the existing part of the path); PERMISSION_DENIED naming `what` and the
  // path otherwise.
  absl::StatusOr<std::string> Confine(const std::string& path, absl::string_view what) const;

  // The same check without resolving links (no file-system access): for the many video paths of
  // a manifest whose folder has already passed Confine.
  absl::StatusOr<std::string> ConfineLexically(const std::string& path,
                                               absl::string_view what) const;

 private:
  std::vector<std::string> lexical_;    // Absolute, normalised, no trailing separator.
  std::vector<std::string> canonical_;  // The same with symbolic links resolved.
};

// Whether `path` equals `folder` or lies inside it (both absolute and normalised).
bool PathIsUnder(absl::string_view path, absl::string_view folder);

// `path` made absolute against the working directory and lexically normalised, without a
// trailing separator.
std::string AbsoluteNormalPath(const std::string& path);

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_MANIFEST_DATA_ROOTS_H_
