#include "services/dataloader/video/ffmpeg_util.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

extern "C" {
#include <libavutil/error.h>
#include <libavutil/log.h>
}

namespace tecl::video {
namespace {

thread_local std::string last_ffmpeg_error;

void CaptureLog(void* avcl, int level, const char* fmt, va_list vl) {
  if (level > AV_LOG_ERROR) {
    // Warnings and chatter are dropped unless someone raised FFmpeg's level to debug them.
    if (av_log_get_level() >= AV_LOG_DEBUG) av_log_default_callback(avcl, level, fmt, vl);
    return;
  }
  char line[512];
  int print_prefix = 0;
  va_list copy;
  va_copy(copy, vl);
  av_log_format_line2(avcl, level, fmt, copy, line, sizeof(line), &print_prefix);
  va_end(copy);
  absl::string_view text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (!text.empty()) last_ffmpeg_error.assign(text.data(), text.size());
}

}  // namespace

absl::Status Deadline::ExceededStatus(absl::string_view path, absl::string_view doing) const {
  return absl::DeadlineExceededError(absl::StrCat(
      path, ": ", doing, " exceeded the per-video budget of ", absl::FormatDuration(budget_),
      "; raise DecodeOptions::budget or check the file (a damaged or endless stream)"));
}

void InstallFfmpegLogCapture() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_callback(&CaptureLog); });
}

void ClearLastFfmpegError() { last_ffmpeg_error.clear(); }

std::string LastFfmpegError() { return last_ffmpeg_error; }

std::string AvErrorString(int averror) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(averror, buf, sizeof(buf));
  return buf;
}

absl::Status AvStatus(int averror, absl::string_view path, absl::string_view what,
                      absl::StatusCode fallback, const Deadline* deadline) {
  if (averror == AVERROR_EXIT && deadline != nullptr && deadline->Expired()) {
    return deadline->ExceededStatus(path, what);
  }
  absl::StatusCode code = fallback;
  if (averror == AVERROR(ENOENT)) {
    code = absl::StatusCode::kNotFound;
  } else if (averror == AVERROR(EACCES) || averror == AVERROR(EPERM)) {
    code = absl::StatusCode::kPermissionDenied;
  } else if (averror == AVERROR(ENOMEM)) {
    code = absl::StatusCode::kResourceExhausted;
  }
  std::string message = absl::StrCat(path, ": ", what, ": ", AvErrorString(averror));
  const std::string& detail = last_ffmpeg_error;
  if (!detail.empty() && detail.find(AvErrorString(averror)) == std::string::npos) {
    absl::StrAppend(&message, "; FFmpeg: ", detail);
  }
  return absl::Status(code, message);
}

}  // namespace tecl::video
