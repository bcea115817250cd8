#include "services/dataloader/video/input_policy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

extern "C" {
#include <libavutil/dict.h>
}

namespace tecl::video {
namespace {

const char* FileTypeName(unsigned mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

absl::Status WithRefusal(absl::Status status, const char* reason) {
  status.SetPayload(kRefusalPayload, absl::Cord(reason));
  return status;
}

bool IsAllowedFormat(absl::string_view name) {
  for (absl::string_view part : absl::StrSplit(name, ',')) {
    for (const char* allowed : kAllowedFormats) {
      if (part == allowed) return true;
    }
  }
  return false;
}

std::string AllowedFormatNames() { return absl::StrJoin(kAllowedFormats, ", "); }

AVDictionary* RestrictedInputOptions() {
  AVDictionary* options = nullptr;
  av_dict_set(&options, "protocol_whitelist", "file", 0);
  av_dict_set(&options, "format_whitelist", absl::StrJoin(kAllowedFormats, ",").c_str(), 0);
  return options;
}

absl::Status CheckRegularFileMode(const std::string& path, unsigned mode) {
  if (S_ISREG(mode)) return absl::OkStatus();
  return WithRefusal(
      absl::InvalidArgumentError(absl::StrCat(
          path, ": is ", FileTypeName(mode),
          ", not a regular file; only regular video files are read (remove it from the data set)")),
      kRefusalNotRegularFile);
}

absl::StatusOr<CheckedFile> CheckedFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file; check the manifest path"));
    }
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(absl::StrCat(path, ": not readable: ", strerror(err)));
    }
    if (err == ENXIO || err == ENODEV) {  // A socket, or a device without a driver.
      return WithRefusal(absl::InvalidArgumentError(absl::StrCat(
                             path, ": not a regular file (", strerror(err),
                             "); only regular video files are read (remove it from the data set)")),
                         kRefusalNotRegularFile);
    }
    return absl::UnavailableError(absl::StrCat(path, ": cannot open: ", strerror(err)));
  }
  CheckedFile file(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return absl::UnavailableError(absl::StrCat(path, ": fstat failed: ", strerror(errno)));
  }
  if (absl::Status status = CheckRegularFileMode(path, st.st_mode); !status.ok()) return status;
  if (st.st_size == 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": file is empty (0 bytes); re-copy or remove it from the data set"));
  }
  return file;
}

CheckedFile::~CheckedFile() {
  if (fd_ >= 0) close(fd_);
}

std::string CheckedFile::ProcPath() const { return absl::StrCat("/proc/self/fd/", fd_); }

}  // namespace tecl::video
