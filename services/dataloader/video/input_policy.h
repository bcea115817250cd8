// What the decoder agrees to open (video_reader.h, "Inputs"): the checks Demuxer::Open applies to
// a file before and while FFmpeg opens it. A regular file is opened here, without blocking, and
// handed to FFmpeg by its /proc/self/fd link, so FFmpeg reads exactly the file that was checked
// (no FIFO can be swapped in between) and never blocks in open(); FFmpeg's options restrict it to
// the file protocol and the allowed container formats.
//
// Thread-safety: pure functions are thread-safe; a CheckedFile is owned by one thread.
#ifndef TECL_SERVICES_DATALOADER_VIDEO_INPUT_POLICY_H_
#define TECL_SERVICES_DATALOADER_VIDEO_INPUT_POLICY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/dataloader/video/video_reader.h"

extern "C" {
#include <libavformat/avformat.h>
}

namespace tecl::video {

// `status` with the refusal `reason` (a kRefusal* value) attached as its payload.
absl::Status WithRefusal(absl::Status status, const char* reason);

// Whether one of the comma-separated names of the demuxer `name` ("mov,mp4,m4a,3gp,3g2,mj2") is
// in kAllowedFormats.
bool IsAllowedFormat(absl::string_view name);
// "mov, mp4, ..." for messages.
std::string AllowedFormatNames();

// The options every open passes to FFmpeg: protocol_whitelist=file and format_whitelist of
// kAllowedFormats. The caller frees the dictionary (av_dict_free).
AVDictionary* RestrictedInputOptions();

// A regular file opened read-only without blocking (O_NONBLOCK: opening a FIFO returns at once),
// checked with fstat. The descriptor stays open until destruction.
class CheckedFile {
 public:
  // NOT_FOUND when missing, PERMISSION_DENIED when unreadable, INVALID_ARGUMENT with
  // kRefusalNotRegularFile for a folder, FIFO, device or socket, DATA_LOSS for 0 bytes.
  static absl::StatusOr<CheckedFile> Open(const std::string& path);
  CheckedFile(CheckedFile&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  CheckedFile& operator=(CheckedFile&&) = delete;
  CheckedFile(const CheckedFile&) = delete;
  ~CheckedFile();

  // "/proc/self/fd/<n>": opening it opens this very file.
  std::string ProcPath() const;

 private:
  explicit CheckedFile(int fd) : fd_(fd) {}
  int fd_;
};

// INVALID_ARGUMENT with kRefusalNotRegularFile naming `path` and its type (from st_mode), or OK
// for a regular file.
absl::Status CheckRegularFileMode(const std::string& path, unsigned mode);

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_INPUT_POLICY_H_
